"""Airflow operators for FC async tasks."""
