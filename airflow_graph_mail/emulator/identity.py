"""The Entra side: OpenID discovery and the token endpoint (client credentials, refresh tokens), with AADSTS
errors."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from urllib.parse import parse_qs

from airflow_graph_mail.emulator.tokens import (TokenInvalid, split_jwt, verify_client_assertion,
                                                verify_federated_assertion)
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
        grant_type = form.get("grant_type")
        if grant_type not in ("client_credentials", "refresh_token"):
            return self._oauth_error(400, "unsupported_grant_type",
                                     "AADSTS70003: The app requested an unsupported grant type.", 70003)
        client_id = form.get("client_id", "")
        app = self.emu.directory.apps.get(client_id)
        if app is None or app.tenant_id != tenant_id:
            return self._oauth_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                     f"'{client_id}' was not found in the directory '{tenant}'.", 700016)
        token_url = f"{self.emu.base_url}/{tenant}/oauth2/v2.0/token"
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
        refusal = self._check_resource(resource)
        if refusal:
            return refusal
        lifetime = self.emu.token_lifetime
        token = self.emu.issue_app_token(client_id, app.roles)
        return Response.json(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                                   "access_token": token})

    def _check_resource(self, resource: str) -> Response | None:
        if resource.rstrip("/") != self.emu.base_url:
            return self._oauth_error(400, "invalid_resource", f"AADSTS500011: The resource principal named "
                                     f"{resource} was not found in the tenant.", 500011)
        return None

    def _refresh_token_grant(self, app, form: dict, token_url: str) -> Response:
        """A user's refresh token -> a delegated access token for Graph, and a new refresh token."""
        presented = form.get("refresh_token", "")
        grant = self.emu.directory.refresh_tokens.get(presented)
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
        for resource in resources:
            refusal = self._check_resource(resource)
            if refusal:
                return refusal
        names = [s.rsplit("/", 1)[-1] for s in wanted]
        granted = sorted(grant.scopes) if names in ([], [".default"]) else names
        missing = [name for name in granted if name not in grant.scopes]
        if missing:
            return self._oauth_error(400, "invalid_grant", f"AADSTS65001: The user or administrator has not "
                                     f"consented to use the application with ID '{app.client_id}'. Send an "
                                     f"interactive authorization request for this user and resource. Missing: "
                                     f"{' '.join(missing)}", 65001)
        mailbox = self.store.find_mailbox(grant.user)
        user_id = mailbox.id if mailbox else str(uuid.uuid5(uuid.NAMESPACE_URL, grant.user))
        lifetime = self.emu.token_lifetime
        tenant_id = self.emu.tenant_id
        access = self.emu.issuer.issue({
            "aud": self.emu.base_url, "iss": f"{self.emu.base_url}/{tenant_id}/", "tid": tenant_id,
            "appid": app.client_id, "oid": user_id, "sub": user_id, "upn": grant.user, "idtyp": "user",
            "scp": " ".join(granted), "ver": "1.0"}, lifetime)
        id_token = self.emu.issuer.issue({
            "aud": app.client_id, "iss": f"{self.emu.base_url}/{tenant_id}/v2.0", "tid": tenant_id, "oid": user_id,
            "sub": user_id, "preferred_username": grant.user, "ver": "2.0"}, lifetime)
        client_info = base64.urlsafe_b64encode(json.dumps({"uid": user_id, "utid": tenant_id}).encode()).decode()
        return Response.json(200, {
            "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
            "scope": " ".join(f"{self.emu.base_url}/{name}" for name in granted) + " openid profile offline_access",
            "access_token": access, "id_token": id_token, "client_info": client_info.rstrip("="),
            "refresh_token": self.emu.directory.issue_refresh_token(grant.user, app.client_id, grant.scopes),
        })

    def _check_credential(self, app, form: dict, token_url: str) -> Response | None:
        if "client_assertion" in form:
            assertion = form["client_assertion"]
            try:
                if split_jwt(assertion)[1].get("iss") == app.client_id:  # signed with the app's own certificate
                    verify_client_assertion(assertion, app, token_url, self.emu.directory.client_ca)
                else:  # a token from another identity provider (workload identity federation)
                    verify_federated_assertion(assertion, app, self.emu.federation)
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
