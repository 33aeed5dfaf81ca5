"""The Entra side's HTTP face: OpenID discovery, the token endpoint (client credentials, refresh tokens) with
AADSTS errors, and the managed identity endpoints in the two forms msal calls.

- Azure VM / AKS (IMDS): ``GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...``
  with ``Metadata: true``; msal finds it at ``AZURE_POD_IDENTITY_AUTHORITY_HOST``.
- App Service / Functions: ``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...`` with
  ``X-IDENTITY-HEADER: {IDENTITY_HEADER}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs

from graph_mail_emulator.entra import Entra
from graph_mail_emulator.entra.directory import App
from graph_mail_emulator.entra.tokens import (
    TokenInvalid,
    unverified,
    verify_client_assertion,
    verify_federated_assertion,
)
from graph_mail_emulator.http.wire import Request, Response


class EntraResponses:
    """``user_id(address)`` gives a user's object id (the mailbox's), for delegated tokens' ``oid``."""

    def __init__(self, entra: Entra, user_id: Callable[[str], str | None]):
        self.entra = entra
        self.user_id = user_id

    def _tenant(self, name: str) -> str | None:
        return self.entra.tenant_id if name.lower() in self.entra.tenant_names else None

    def openid_configuration(self, request: Request) -> Response:
        """OpenID discovery, with endpoints on the host the client asked (the emulator's address, or
        login.microsoftonline.com pointed here)."""
        tenant = request.params["tenant"]
        if self._tenant(tenant) is None:
            return self._oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.", 90002)
        base = f"{request.origin(self.entra.site.base_url)}/{tenant}"
        return Response.json(200, {
            "issuer": f"{request.origin(self.entra.site.base_url)}/{self.entra.tenant_id}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "EU",
        })

    def instance_discovery(self, request: Request) -> Response:
        """``/common/discovery/instance``: where an authority's OpenID configuration is. MSAL asks it (at
        login.microsoftonline.com) before it signs in at an authority host it does not know."""
        endpoint = request.query.get("authorization_endpoint", "")
        head = endpoint.split("/oauth2/", 1)[0] if "/oauth2/" in endpoint else ""
        if not head.startswith("https://"):
            return Response.json(400, {"error": "invalid_instance", "error_description": "AADSTS50049: Unknown "
                                       "or invalid instance."})
        host = head.split("://", 1)[1].split("/", 1)[0]
        return Response.json(200, {
            "tenant_discovery_endpoint": f"{head}/v2.0/.well-known/openid-configuration", "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]})

    def _oauth_error(self, status: int, error: str, description: str, code: int) -> Response:
        trace = str(uuid.uuid4())
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        return Response.json(status, {
            "error": error,
            "error_description": f"{description} Trace ID: {trace} Correlation ID: {uuid.uuid4()} Timestamp: {stamp}",
            "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": str(uuid.uuid4()),
        })

    def token(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        tenant_id = self._tenant(tenant)
        if tenant_id is None:
            return self._oauth_error(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.", 90002)
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        grant_type = form.get("grant_type")
        if grant_type not in ("client_credentials", "refresh_token"):
            return self._oauth_error(400, "unsupported_grant_type",
                                     "AADSTS70003: The app requested an unsupported grant type.", 70003)
        client_id = form.get("client_id", "")
        app = self.entra.directory.apps.get(client_id)
        if app is None or app.tenant_id != tenant_id:
            return self._oauth_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                     f"'{client_id}' was not found in the directory '{tenant}'.", 700016)
        token_url = f"{request.origin(self.entra.site.base_url)}/{tenant}/oauth2/v2.0/token"
        if grant_type == "refresh_token":
            return self._refresh_token_grant(app, form, token_url)
        refusal = self._check_credential(app, form, token_url)
        if refusal:
            return refusal
        scope = form.get("scope", "")
        resource = scope.split()[0][: -len("/.default")] if scope.endswith("/.default") else None
        if resource is None:
            return self._oauth_error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope {scope} "
                                     "is not valid. Client credential flows must have a scope value with "
                                     "/.default suffixed to the resource identifier.", 1002012)
        audience = self.entra.graph_resource(resource)
        if audience is None:
            return self._unknown_resource(resource)
        lifetime = self.entra.token_lifetime
        token = self.entra.issue_app_token(client_id, app.roles, audience=audience)
        return Response.json(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                                   "access_token": token})

    def _unknown_resource(self, resource: str) -> Response:
        return self._oauth_error(400, "invalid_resource", f"AADSTS500011: The resource principal named "
                                 f"{resource} was not found in the tenant.", 500011)

    def _refresh_token_grant(self, app: App, form: dict, token_url: str) -> Response:
        """A user's refresh token -> a delegated access token for Graph, and a new refresh token."""
        presented = form.get("refresh_token", "")
        grant = self.entra.directory.refresh_tokens.get(presented)
        if grant is None or grant.client_id != app.client_id:
            return self._oauth_error(400, "invalid_grant", "AADSTS9002313: Invalid request. Request is malformed "
                                     "or invalid.", 9002313)
        if grant.revoked:
            return self._oauth_error(400, "invalid_grant", "AADSTS50173: The provided grant has expired due to it "
                                     "being revoked, a fresh auth token is needed. The user might have changed or "
                                     "reset their password.", 50173)
        if any(k in form for k in ("client_secret", "client_assertion")):
            refusal = self._check_credential(app, form, token_url)
            if refusal:
                return refusal
        elif not app.public_client:
            return self._oauth_error(401, "invalid_client", "AADSTS7000218: The request body must contain the "
                                     "following parameter: 'client_assertion' or 'client_secret'.", 7000218)
        wanted = [s for s in form.get("scope", "").split() if s not in ("openid", "profile", "offline_access",
                                                                         "email")]
        resources = {s.rsplit("/", 1)[0] for s in wanted if "/" in s}
        audiences = {resource: self.entra.graph_resource(resource) for resource in resources}
        for resource, known in audiences.items():
            if known is None:
                return self._unknown_resource(resource)
        audience = next(iter(audiences.values()), None)  # bare scope names ("Mail.Send") mean Graph too
        names = [s.rsplit("/", 1)[-1] for s in wanted]
        granted = sorted(grant.scopes) if names in ([], [".default"]) else names
        missing = [name for name in granted if name not in grant.scopes]
        if missing:
            return self._oauth_error(400, "invalid_grant", f"AADSTS65001: The user or administrator has not "
                                     f"consented to use the application with ID '{app.client_id}'. Send an "
                                     f"interactive authorization request for this user and resource. Missing: "
                                     f"{' '.join(missing)}", 65001)
        user_id = self.user_id(grant.user) or str(uuid.uuid5(uuid.NAMESPACE_URL, grant.user))
        lifetime = self.entra.token_lifetime
        tenant_id = self.entra.tenant_id
        access = self.entra.issue_user_token(app.client_id, grant.user, user_id, granted, audience=audience)
        id_token = self.entra.issuer.issue({
            "aud": app.client_id, "iss": f"{self.entra.site.base_url}/{tenant_id}/v2.0", "tid": tenant_id,
            "oid": user_id, "sub": user_id, "preferred_username": grant.user, "ver": "2.0"}, lifetime)
        client_info = base64.urlsafe_b64encode(json.dumps({"uid": user_id, "utid": tenant_id}).encode()).decode()
        return Response.json(200, {
            "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
            "scope": " ".join(f"{audience}/{name}" if audience else name for name in granted)
            + " openid profile offline_access",
            "access_token": access, "id_token": id_token, "client_info": client_info.rstrip("="),
            "refresh_token": self.entra.directory.issue_refresh_token(grant.user, app.client_id, grant.scopes),
        })

    def _check_credential(self, app: App, form: dict, token_url: str) -> Response | None:
        if "client_assertion" in form:
            assertion = form["client_assertion"]
            try:
                if unverified(assertion)[1].get("iss") == app.client_id:  # signed with the app's own certificate
                    verify_client_assertion(assertion, app, token_url, self.entra.directory.client_ca)
                else:  # a token from another identity provider (workload identity federation)
                    verify_federated_assertion(assertion, app, self.entra.federation)
            except TokenInvalid as err:
                code = int(str(err)[6:].split(":")[0]) if str(err).startswith("AADSTS") else 700027
                return self._oauth_error(401 if code == 700027 else 400, "invalid_client", str(err), code)
            return None
        secret = form.get("client_secret")
        if secret is None:
            return self._oauth_error(401, "invalid_client", "AADSTS7000218: The request body must contain the "
                                     "following parameter: 'client_assertion' or 'client_secret'.", 7000218)
        if secret not in app.secrets:
            return self._oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. "
                                     "Ensure the secret being sent in the request is the client secret value, "
                                     f"not the client secret ID, for a secret added to app '{app.client_id}'.",
                                     7000215)
        expiry = app.secrets[secret]
        if expiry is not None and expiry < time.time():
            return self._oauth_error(401, "invalid_client", "AADSTS7000222: The provided client secret keys for "
                                     f"app '{app.client_id}' are expired.", 7000222)
        return None

    # -- managed identity ------------------------------------------------------------------------------

    def _identity_token(self, request: Request, app_service: bool) -> Response:
        resource = request.query.get("resource", "")
        client_id = request.query.get("client_id")
        object_id = request.query.get("object_id") or request.query.get("principal_id")
        identity = self.entra.directory.find_identity(client_id, object_id)
        if identity is None:
            return Response.json(400, {"error": "invalid_request", "error_description":
                                       "Identity not found" if client_id or object_id else
                                       "No system-assigned identity on this host"})
        audience = self.entra.graph_resource(resource)
        if audience is None:
            return Response.json(400, {"error": "invalid_resource", "error_description":
                                       f"AADSTS500011: The resource principal named {resource} was not found in "
                                       "the tenant."})
        lifetime = self.entra.token_lifetime
        token = self.entra.issue_app_token(identity.client_id, identity.roles, object_id=identity.object_id,
                                           audience=audience)
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
        if request.headers.get("x-identity-header") != self.entra.identity_header:
            return Response.json(401, {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing "
                                       "or does not match IDENTITY_HEADER."})
        return self._identity_token(request, app_service=True)
