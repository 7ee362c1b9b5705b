# cryptoflow's image for docker-compose.yaml: the official Airflow image of this project's Airflow and
# Python (requirements.txt pins apache-airflow==3.3.2; the project runs on Python 3.11), with
# requirements.txt installed and the code in the repository's layout, so that include/config.py takes
# relative settings (DATA_DIR=data) from /opt/cryptoflow, as it takes them from a checkout.
# tests/test_compose.py checks the tag against requirements.txt.
FROM apache/airflow:3.3.2-python3.11

# The project's folder, and data/ in it (where the named volume mounts: a new volume takes the owner of
# the folder it covers), owned by the image's airflow user (group 0, as the image expects).
USER root
RUN mkdir -p /opt/cryptoflow/data && chown -R airflow:0 /opt/cryptoflow
USER airflow

COPY requirements.txt /opt/cryptoflow/requirements.txt
# The official way to extend the image: Airflow itself named at the image's own version
# (AIRFLOW_VERSION is set by the image), so pip can never upgrade or downgrade it while installing
# the lock file unchanged.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/cryptoflow/requirements.txt

COPY --chown=airflow:0 include/ /opt/cryptoflow/include/
COPY --chown=airflow:0 dags/ /opt/cryptoflow/dags/
COPY --chown=airflow:0 plugins/ /opt/cryptoflow/plugins/
COPY --chown=airflow:0 dashboard/ /opt/cryptoflow/dashboard/

# `python -m include.*` from any folder; Airflow puts dags/ and plugins/ on the path itself.
ENV PYTHONPATH=/opt/cryptoflow
WORKDIR /opt/cryptoflow

# The dbt manifest the warehouse DAG renders from (`make manifest` runs the same module): built here,
# so no container ever parses the DAG without it ("Could not find manifest"). `dbt parse` opens no
# warehouse.
RUN python -m include.transform_group
