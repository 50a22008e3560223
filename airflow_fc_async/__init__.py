"""Apache Airflow provider for Alibaba Cloud Function Compute 3.0 async tasks."""

__version__ = "0.1.0"
