import tests.airflow_env  # noqa: F401  (configures Airflow before anything imports it)
