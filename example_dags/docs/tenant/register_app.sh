#!/usr/bin/env bash
# Register an app that sends mail without a signed-in user, with Mail.Send and Mail.ReadWrite and admin consent.
# Run it signed in (az login) as a Privileged Role Administrator or Global Administrator of the tenant.
set -euo pipefail

GRAPH=00000003-0000-0000-c000-000000000000           # Microsoft Graph's application id
MAIL_SEND=b633e1c5-b582-4048-a93e-9f11b44c7e96       # application permission Mail.Send
MAIL_READWRITE=e2a3a72e-5f79-4c64-b1b1-878b674786c9  # application permission Mail.ReadWrite

APP_ID=$(az ad app create --display-name "Airflow Graph Mail" --sign-in-audience AzureADMyOrg \
  --query appId --output tsv)
az ad sp create --id "$APP_ID" --output none
az ad app permission add --id "$APP_ID" --api "$GRAPH" \
  --api-permissions "$MAIL_SEND=Role" "$MAIL_READWRITE=Role"
az ad app permission admin-consent --id "$APP_ID"
TENANT_ID=$(az account show --query tenantId --output tsv)

echo "login (client id): $APP_ID"
echo "extra.tenant_id:   $TENANT_ID"
