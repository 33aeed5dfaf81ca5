#!/usr/bin/env bash
# Trust the tokens AKS projects into Airflow's pods (service account airflow/airflow-worker) as this app.
set -euo pipefail

ISSUER=$(az aks show --resource-group "$RESOURCE_GROUP" --name "$CLUSTER" \
  --query oidcIssuerProfile.issuerUrl --output tsv)
cat > federated_credential.json <<JSON
{
  "name": "airflow-worker",
  "issuer": "$ISSUER",
  "subject": "system:serviceaccount:airflow:airflow-worker",
  "audiences": ["api://AzureADTokenExchange"]
}
JSON
az ad app federated-credential create --id "$APP_ID" --parameters federated_credential.json --output none
