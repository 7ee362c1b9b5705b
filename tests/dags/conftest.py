import tests.support.airflow_env  # noqa: F401  (configures Airflow before anything imports it)
