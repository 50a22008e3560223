"""Airflow triggers for FC async tasks."""
