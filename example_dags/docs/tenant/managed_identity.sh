#!/usr/bin/env bash
# Give a managed identity Mail.Send and Mail.ReadWrite on Microsoft Graph: an app role assignment is the
# consent (the portal has no consent button for a managed identity).
set -euo pipefail

GRAPH_SP=$(az ad sp show --id 00000003-0000-0000-c000-000000000000 --query id --output tsv)
for ROLE in b633e1c5-b582-4048-a93e-9f11b44c7e96 e2a3a72e-5f79-4c64-b1b1-878b674786c9; do
  az rest --method POST \
    --uri "https://graph.microsoft.com/v1.0/servicePrincipals/$IDENTITY_PRINCIPAL_ID/appRoleAssignments" \
    --body "{\"principalId\": \"$IDENTITY_PRINCIPAL_ID\", \"resourceId\": \"$GRAPH_SP\", \"appRoleId\": \"$ROLE\"}" \
    --output none
done
