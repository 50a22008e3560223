"""The "FC async tasks" Airflow UI plugin (Airflow 3.1+ only; nothing here is imported on older versions)."""
