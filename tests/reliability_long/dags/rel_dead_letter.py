"""The dead-letter example DAGs (example_dags/example_fc_dead_letter_handler.py) in the reliability deployment:
the producer and the handler scheduled on the watched asset (Airflow 3 only; nothing on Airflow 2)."""

from example_dags.example_fc_dead_letter_handler import *  # noqa: F403 - the DAG objects, for the DAG processor
