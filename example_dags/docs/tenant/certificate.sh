#!/usr/bin/env bash
# A key and a self-signed certificate for the app: the certificate is uploaded, the key never leaves here.
set -euo pipefail

openssl req -x509 -newkey rsa:2048 -sha256 -days 365 -nodes \
  -subj "/CN=airflow-graph-mail" -keyout graph-app.key -out graph-app.crt
# The connection reads the key and the certificate from one PEM file, readable by Airflow alone.
cat graph-app.key graph-app.crt > graph-app.pem
chmod 600 graph-app.pem
rm graph-app.key
az ad app credential reset --id "$APP_ID" --cert @graph-app.crt --append --output none

# The thumbprint Entra shows under Certificates & secrets (the connection computes it when left empty).
openssl x509 -in graph-app.crt -noout -fingerprint -sha1 | cut -d= -f2 | tr -d :
