"""The Entra side of the emulated tenant: who may sign in, the tokens it issues, and the check Graph makes
on them. Reached by the HTTP face through ``EntraResponses``; knows nothing of mailboxes.

Tests use it to register apps and identities (``emulator.entra.add_app(secret=...)``), to issue what a
user's sign-in or a workload identity would leave (refresh tokens, federated tokens, client certificates),
and to look at the tokens issued (``emulator.entra.issuer.issued``)."""

from __future__ import annotations

import secrets

from graph_mail_emulator.entra.directory import FEDERATION_AUDIENCE, MAIL_ROLES, SCOPES, App, Directory
from graph_mail_emulator.entra.tokens import TokenIssuer
from graph_mail_emulator.site import Site

__all__ = ["FEDERATION_AUDIENCE", "GRAPH_APP_ID", "MAIL_ROLES", "MICROSOFT_GRAPH_HOSTS", "SCOPES", "App", "Entra"]

# Microsoft Graph as Entra knows it: its application id, and its host in each national cloud. A token is
# asked for "<resource>/.default" with any of them, and carries the resource as its audience.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
MICROSOFT_GRAPH_HOSTS = ("https://graph.microsoft.com", "https://graph.microsoft.us", "https://dod-graph.microsoft.us",
                         "https://microsoftgraph.chinacloudapi.cn")
APP_SERVICE_PATH = "/msi/token"  # App Service's managed identity endpoint (IDENTITY_ENDPOINT)


class Entra:
    """The tenant's directory and token issuers; ``default_app`` (``client_id``, ``client_secret``) is the app
    registration that ``GraphEmulator.connection()`` signs in with."""

    def __init__(self, site: Site, tenant_id: str, tenant_domain: str, client_id: str, client_secret: str,
                 token_lifetime: int = 3600):
        self.site = site
        self.tenant_id = tenant_id
        self.tenant_domain = tenant_domain
        self.tenant_names = {tenant_id.lower(), tenant_domain.lower(), "organizations"}
        self.token_lifetime = token_lifetime
        self.directory = Directory(tenant_id)
        self.issuer = TokenIssuer()  # access and id tokens
        self.federation = TokenIssuer()  # workload identity tokens, as a Kubernetes OIDC issuer would sign them
        self.identity_header = secrets.token_urlsafe(24)  # App Service's X-IDENTITY-HEADER secret
        self.default_app = self.add_app(client_id, secret=client_secret)

    # -- who may sign in -----------------------------------------------------------------------------

    def add_app(self, client_id: str | None = None, *, secret: str | None = None,
                secret_expires_at: float | None = None, certificate_pem: bytes | None = None,
                roles=MAIL_ROLES, public_client: bool = False, mailboxes=None, scope: str = "rbac") -> App:
        """An app registration with the application roles an admin consented to, and its credentials: a
        client secret (expiring at ``secret_expires_at``, epoch seconds) and/or an uploaded certificate.
        ``mailboxes`` restricts it to those mailboxes (``scope_app``)."""
        app = self.directory.add_app(client_id, roles=set(roles), public_client=public_client)
        if secret:
            app.secrets[secret] = secret_expires_at
        if certificate_pem:
            app.certificates.append(certificate_pem)
        if mailboxes is not None:
            self.scope_app(app, mailboxes, scope)
        return app

    def scope_app(self, app: App, mailboxes, scope: str = "rbac") -> None:
        """Restrict the app to ``mailboxes`` as Exchange Online does it. ``scope="rbac"`` (RBAC for Applications):
        its roles become Exchange role assignments scoped to these mailboxes, which Entra's token does not show
        (inferred: Microsoft's page does not say so, maester365/maester#920 reports it); ``"access_policy"`` (an
        application access policy): the token keeps its roles, and they reach these mailboxes only. Another
        mailbox answers 403 ErrorAccessDenied (Exchange's wording for each in ``faces/access.py``)."""
        if scope not in SCOPES:
            raise ValueError(f"scope: {scope!r}; use one of {', '.join(SCOPES)}")
        if isinstance(mailboxes, str):
            mailboxes = [mailboxes]
        app.mailboxes = frozenset(str(m).strip().lower() for m in mailboxes)
        app.mailbox_scope = scope
        if scope == "rbac":
            app.rbac_roles, app.roles = set(app.roles) | app.rbac_roles, set()

    def issue_client_certificate(self, common_name: str, app: App | None = None) -> bytes:
        """A key and certificate from the tenant's trusted CA; with ``app``, its subject is trusted there
        (subject-name/issuer sign-in: the certificate itself is never uploaded)."""
        pem = self.directory.client_ca.issue_pem(common_name)
        if app is not None:
            app.trusted_subjects.add(f"CN={common_name}")
        return pem

    def issue_refresh_token(self, user: str, app: App | None = None, scopes=MAIL_ROLES) -> str:
        """A refresh token as a user's interactive sign-in to ``app`` (default: ``default_app``) would leave
        (delegated access)."""
        return self.directory.issue_refresh_token(user, (app or self.default_app).client_id, scopes)

    def managed_identity_env(self, form: str = "imds") -> dict[str, str]:
        """Environment under which msal's ManagedIdentityClient finds this emulator: "imds" (VM, AKS) or
        "app_service" (App Service, Functions). A system-assigned identity always exists; add user-assigned
        ones with ``directory.add_managed_identity``."""
        if form == "imds":
            return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.site.base_url}
        if form == "app_service":
            return {"IDENTITY_ENDPOINT": self.site.base_url + APP_SERVICE_PATH, "IDENTITY_HEADER": self.identity_header}
        raise ValueError(f"form: {form!r} is not 'imds' or 'app_service'")

    # -- tokens --------------------------------------------------------------------------------------

    @property
    def graph_audience(self) -> str:
        """The ``aud`` of Graph tokens asked for with the emulator's own URL (as this provider's tests do)."""
        return self.site.base_url

    def graph_resource(self, resource: str) -> str | None:
        """A resource that names Graph (its URL in any cloud, the emulator's own, or its app id), as the
        token's audience; None for anything else."""
        wanted = resource.rstrip("/").lower()
        for known in (self.site.base_url, *MICROSOFT_GRAPH_HOSTS, GRAPH_APP_ID):
            if wanted == known.lower():
                return known
        return None

    @property
    def token_issuer(self) -> str:
        return f"{self.site.base_url}/{self.tenant_id}/"

    def issue_app_token(self, client_id: str, roles, object_id: str | None = None, audience: str | None = None) -> str:
        """An app-only Graph access token carrying the application roles granted, as Entra issues them."""
        return self.issuer.issue({
            "aud": audience or self.graph_audience, "iss": self.token_issuer, "tid": self.tenant_id, "appid": client_id,
            "azp": client_id, "oid": object_id or client_id, "sub": object_id or client_id, "idtyp": "app",
            "roles": sorted(roles), "ver": "1.0"}, self.token_lifetime)

    def issue_user_token(self, client_id: str, user: str, user_id: str, scopes, audience: str | None = None) -> str:
        """A delegated Graph access token for ``user`` with the consented ``scopes`` (``scp``)."""
        return self.issuer.issue({
            "aud": audience or GRAPH_APP_ID, "iss": self.token_issuer, "tid": self.tenant_id, "appid": client_id,
            "oid": user_id, "sub": user_id, "upn": user, "idtyp": "user", "scp": " ".join(scopes), "ver": "1.0"},
            self.token_lifetime)

    def verify_access_token(self, token: str) -> dict:
        """Graph's check: signed by this tenant, for Graph (any of its names), issued by this tenant, within its
        lifetime."""
        return self.issuer.verify(token, [self.site.base_url, *MICROSOFT_GRAPH_HOSTS, GRAPH_APP_ID],
                                  issuer=self.token_issuer)

    # -- workload identity ---------------------------------------------------------------------------

    @property
    def federation_issuer(self) -> str:
        return f"{self.site.base_url}/_federation"

    def add_federated_credential(self, app: App, subject: str, audiences=(FEDERATION_AUDIENCE,)) -> None:
        """Trust tokens from the emulator's federation issuer for ``subject`` (e.g. a Kubernetes service
        account, ``system:serviceaccount:airflow:worker``) as this app."""
        app.federated.append({"issuer": self.federation_issuer, "subject": subject, "audiences": list(audiences)})

    def issue_federated_token(self, subject: str, audience: str = FEDERATION_AUDIENCE, lifetime: int = 3600) -> str:
        """The token a workload identity webhook projects into AZURE_FEDERATED_TOKEN_FILE."""
        return self.federation.issue({"iss": self.federation_issuer, "sub": subject, "aud": audience}, lifetime)
