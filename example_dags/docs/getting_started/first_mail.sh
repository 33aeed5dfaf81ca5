#!/usr/bin/env bash
# Terminal 2, in the same directory, where your Airflow runs (its AIRFLOW_HOME and DAGs folder): point the
# default connection at the emulator, then run the DAG once.
set -euo pipefail

airflow connections add graph_mail_default --conn-json "$(cat .emulator/airflow-connection.json)"
airflow dags test sales_report
