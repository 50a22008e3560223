"""Airflow hooks: thin adapters from a connection to the core clients (``fc.FcHook``, ``mns.MnsHook``)."""
