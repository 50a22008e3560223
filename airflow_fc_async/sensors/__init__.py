"""Airflow sensors for FC async tasks."""
