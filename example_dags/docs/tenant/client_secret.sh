#!/usr/bin/env bash
# A client secret for the app, valid for a year. --append keeps the app's other secrets and certificates.
set -euo pipefail

SECRET=$(az ad app credential reset --id "$APP_ID" --append --years 1 --query password --output tsv)
echo "password (client secret): $SECRET"
