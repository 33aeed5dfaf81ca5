"""Who may sign in to the emulated tenant: app registrations, managed identities and users' refresh tokens."""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass, field

from graph_mail_emulator.pki import CertificateAuthority

FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
MAIL_ROLES = ("Mail.Send", "Mail.ReadWrite")
# How an app is restricted to some mailboxes: Exchange RBAC for Applications (a management scope; Microsoft's
# current way) or an application access policy (the older way it replaces).
SCOPES = ("rbac", "access_policy")


@dataclass
class App:
    """An app registration: its tenant, credentials and the application roles an admin consented to.

    ``federated`` holds federated identity credentials (issuer, subject, audiences) for workload identity;
    ``trusted_subjects`` the certificate subject names trusted for subject-name/issuer (SNI) sign-in;
    ``public_client`` lets a refresh token be redeemed without a client secret.

    ``mailboxes`` (addresses, lower-case) restricts the app to those mailboxes, as Exchange Online does it
    (``SCOPES``): through an RBAC for Applications role assignment (``rbac_roles``: granted in Exchange for
    these mailboxes only, never in the token), or through an application access policy (the token's ``roles``
    reach these mailboxes only).
    """

    tenant_id: str
    client_id: str
    secrets: dict[str, float | None] = field(default_factory=dict)  # value -> expiry (epoch) or None
    certificates: list[bytes] = field(default_factory=list)
    roles: set[str] = field(default_factory=lambda: set(MAIL_ROLES))
    federated: list[dict] = field(default_factory=list)
    trusted_subjects: set[str] = field(default_factory=set)
    public_client: bool = False
    mailboxes: frozenset[str] | None = None
    rbac_roles: set[str] = field(default_factory=set)
    mailbox_scope: str = "rbac"

    def reaches(self, *names: str) -> bool:
        """Whether a mailbox (by any of its names: address, id) is in the app's scope (every one without a scope)."""
        return self.mailboxes is None or any(name.lower() in self.mailboxes for name in names)


@dataclass
class ManagedIdentity:
    """A system-assigned identity (one per host) or a user-assigned one, found by client id or object id."""

    client_id: str
    object_id: str
    system_assigned: bool
    roles: set[str] = field(default_factory=lambda: set(MAIL_ROLES))


@dataclass
class RefreshGrant:
    """What a refresh token stands for: a user who consented to delegated scopes for one app."""

    user: str
    client_id: str
    scopes: tuple[str, ...]
    revoked: bool = False


class Directory:
    """The tenant's identities; thread-safe for the few writes (new refresh tokens)."""

    def __init__(self, tenant_id: str):
        self.tenant_id = tenant_id
        self.apps: dict[str, App] = {}
        self.identities: list[ManagedIdentity] = []
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        # The CA the tenant trusts for subject-name/issuer sign-in: certificates it issues need no upload.
        self.client_ca = CertificateAuthority("airflow-graph-mail emulator client CA", rsa_keys=True, days=30)
        self._lock = threading.Lock()
        self.system_identity = self.add_managed_identity(system_assigned=True)

    def add_app(self, client_id: str | None = None, **fields) -> App:
        app = App(self.tenant_id, client_id or str(uuid.uuid4()), **fields)
        self.apps[app.client_id] = app
        return app

    def add_managed_identity(self, client_id: str | None = None, *, system_assigned: bool = False,
                             roles=MAIL_ROLES) -> ManagedIdentity:
        identity = ManagedIdentity(client_id or str(uuid.uuid4()), str(uuid.uuid4()), system_assigned, set(roles))
        self.identities.append(identity)
        return identity

    def find_identity(self, client_id: str | None = None, object_id: str | None = None) -> ManagedIdentity | None:
        """None asks for the host's system-assigned identity, as IMDS does without an id parameter."""
        for identity in self.identities:
            if client_id is None and object_id is None and identity.system_assigned:
                return identity
            if client_id and identity.client_id == client_id and not identity.system_assigned:
                return identity
            if object_id and identity.object_id == object_id and not identity.system_assigned:
                return identity
        return None

    def issue_refresh_token(self, user: str, client_id: str, scopes=MAIL_ROLES) -> str:
        token = "0.A" + secrets.token_urlsafe(60)
        with self._lock:
            self.refresh_tokens[token] = RefreshGrant(user, client_id, tuple(scopes))
        return token

