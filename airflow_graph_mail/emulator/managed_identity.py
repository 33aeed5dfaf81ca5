"""Managed identity endpoints, in the two forms msal's ManagedIdentityClient calls.

- Azure VM / AKS (IMDS): ``GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...``
  with ``Metadata: true``; msal finds it at ``AZURE_POD_IDENTITY_AUTHORITY_HOST``.
- App Service / Functions: ``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...`` with
  ``X-IDENTITY-HEADER: {IDENTITY_HEADER}``.

Both answer a token for the identity of "this host": the system-assigned one, or a user-assigned one
named by ``client_id`` / ``object_id`` (``principal_id`` on App Service).
"""

from __future__ import annotations

import time

from airflow_graph_mail.emulator.wire import Request, Response

APP_SERVICE_PATH = "/msi/token"


class ManagedIdentityHandlers:
    """Mixed into Handlers; ``self.emu`` holds the directory of identities and the token issuer."""

    def _identity_token(self, request: Request, app_service: bool) -> Response:
        resource = request.query.get("resource", "")
        client_id = request.query.get("client_id")
        object_id = request.query.get("object_id") or request.query.get("principal_id")
        identity = self.emu.directory.find_identity(client_id, object_id)
        if identity is None:
            return Response.json(400, {"error": "invalid_request", "error_description":
                                       "Identity not found" if client_id or object_id else
                                       "No system-assigned identity on this host"})
        if resource.rstrip("/") != self.emu.base_url:
            return Response.json(400, {"error": "invalid_resource", "error_description":
                                       f"AADSTS500011: The resource principal named {resource} was not found in "
                                       "the tenant."})
        lifetime = self.emu.token_lifetime
        token = self.emu.issue_app_token(identity.client_id, identity.roles, object_id=identity.object_id)
        expires_on = int(time.time()) + lifetime
        body = {"access_token": token, "client_id": identity.client_id, "expires_on": str(expires_on),
                "resource": resource, "token_type": "Bearer"}
        if not app_service:  # IMDS also says how long, as strings
            body.update({"expires_in": str(lifetime), "ext_expires_in": str(lifetime),
                         "not_before": str(expires_on - lifetime)})
        return Response.json(200, body)

    def imds_token(self, request: Request) -> Response:
        if request.headers.get("metadata", "").lower() != "true":
            return Response.json(400, {"error": "invalid_request",
                                       "error_description": "Required metadata header not specified"})
        return self._identity_token(request, app_service=False)

    def app_service_token(self, request: Request) -> Response:
        if request.headers.get("x-identity-header") != self.emu.identity_header:
            return Response.json(401, {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing "
                                       "or does not match IDENTITY_HEADER."})
        return self._identity_token(request, app_service=True)
