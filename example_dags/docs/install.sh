#!/usr/bin/env bash
# Build the provider's wheel in a clone of the repository, then install it into your Airflow's Python
# environment (scheduler, workers, triggerer and API server alike) with the constraints Airflow publishes
# for its version and your Python.
set -euo pipefail

pip install uv
uv build --wheel                  # dist/airflow_graph_mail-0.1.0-py3-none-any.whl

AIRFLOW_VERSION=3.3.2             # the Airflow you run; 3.3.2 is the newest this release is tested on
PYTHON_VERSION="$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
pip install "apache-airflow==${AIRFLOW_VERSION}" dist/airflow_graph_mail-0.1.0-py3-none-any.whl \
  --constraint "https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"
