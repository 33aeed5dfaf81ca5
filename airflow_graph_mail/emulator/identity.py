"""The Entra side: OpenID discovery and the client-credentials token endpoint, with AADSTS errors."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from urllib.parse import parse_qs

from airflow_graph_mail.emulator.tokens import TokenInvalid, verify_client_assertion
from airflow_graph_mail.emulator.wire import Request, Response


class IdentityHandlers:
    """Mixed into Handlers; ``self.emu`` is the emulator (tenant, apps, token issuer)."""

    def _tenant(self, name: str) -> str | None:
        return self.emu.tenant_id if name.lower() in self.emu.tenant_names else None

    def openid_configuration(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        if self._tenant(tenant) is None:
            return self._oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.", 90002)
        base = f"{self.emu.base_url}/{tenant}"
        return Response.json(200, {
            "issuer": f"{self.emu.base_url}/{self.emu.tenant_id}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "EU",
        })

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
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8")).items()}
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error(400, "unsupported_grant_type",
                                     "AADSTS70003: The app requested an unsupported grant type.", 70003)
        client_id = form.get("client_id", "")
        app = self.emu.apps.get(client_id)
        if app is None or app.tenant_id != tenant_id:
            return self._oauth_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                     f"'{client_id}' was not found in the directory '{tenant}'.", 700016)
        refusal = self._check_credential(app, form, f"{self.emu.base_url}/{tenant}/oauth2/v2.0/token")
        if refusal:
            return refusal
        scope = form.get("scope", "")
        resource = scope.split()[0][: -len("/.default")] if scope.endswith("/.default") else None
        if resource is None:
            return self._oauth_error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope {scope} "
                                     "is not valid. Client credential flows must have a scope value with "
                                     "/.default suffixed to the resource identifier.", 1002012)
        if resource.rstrip("/") != self.emu.base_url:
            return self._oauth_error(400, "invalid_resource", f"AADSTS500011: The resource principal named "
                                     f"{resource} was not found in the tenant.", 500011)
        lifetime = self.emu.token_lifetime
        token = self.emu.issuer.issue({
            "aud": self.emu.base_url, "iss": f"{self.emu.base_url}/{tenant_id}/", "tid": tenant_id,
            "appid": client_id, "azp": client_id, "oid": app.client_id, "sub": app.client_id,
            "idtyp": "app", "roles": sorted(app.roles), "ver": "1.0",
        }, lifetime)
        return Response.json(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                                   "access_token": token})

    def _check_credential(self, app, form: dict, token_url: str) -> Response | None:
        if "client_assertion" in form:
            try:
                verify_client_assertion(form["client_assertion"], app.certificates, app.client_id, token_url)
            except TokenInvalid as err:
                return self._oauth_error(401, "invalid_client", str(err), 700027)
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
