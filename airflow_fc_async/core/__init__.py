"""The FC 3.0 async-task and MNS protocol: models, signing, clients. No Airflow import below this folder."""
