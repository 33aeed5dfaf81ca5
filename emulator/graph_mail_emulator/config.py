"""The emulator's typed configuration, and the tenant's identity it keeps in its state directory.

    EmulatorConfig(state_dir=".emulator", network=Network(port=8443), limits=Limits(latency=0.2),
                   bounces=BounceConfig(rules=("full@contoso.com=5.2.2",)), senders=("alerts@contoso.com",))

Every part has Exchange Online's (or a loopback emulator's) defaults; ``GraphEmulator(config)`` builds the
tenant from it once.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from graph_mail_emulator.backend.limits import Limits
from graph_mail_emulator.private import write_private

TENANT_FILE = "emulator.json"
DEFAULT_SENDER = "airflow@contoso.com"
# The command line's port: fixed, so a connection added once keeps working after a restart.
DEFAULT_PORT = 8443


@dataclass(frozen=True)
class Network:
    """Where the emulator listens and which host names it answers to.

    ``allowed_hosts``: more names it answers to, besides its address, localhost and this machine's name (any
    other Host header is refused: DNS rebinding). ``public_hosts``: also serve login.microsoftonline.com,
    graph.microsoft.com and outlook.office.com (in the certificate and the allowed names), for clients run
    with their defaults and those names pointed here (``hosts.microsoft_hosts``, an /etc/hosts line,
    ``--add-host``)."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    allowed_hosts: tuple[str, ...] = ()
    public_hosts: bool = False

    @property
    def is_loopback(self) -> bool:
        """Whether the emulator listens on loopback only (the inspection API and viewer have no sign-in)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host.lower() == "localhost"


@dataclass(frozen=True)
class BounceConfig:
    """Non-delivery as Exchange does it: the tenant's accepted domains besides its own and its users'
    (unknown addresses there bounce 5.1.10), ``rules`` (``ADDRESS=STATUS``, * wildcards allowed), and the
    seconds a non-delivery report takes to reach the sender."""

    accepted_domains: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    ndr_delay: float = 1.0


@dataclass(frozen=True)
class EmulatorConfig:
    """``state_dir``: keep mailboxes, CA and app credentials there (None: all in memory). ``senders``: more
    users' mailboxes besides the default sender's. ``token_lifetime``: seconds an access token lasts."""

    state_dir: str | Path | None = None
    network: Network = field(default_factory=Network)
    limits: Limits = field(default_factory=Limits)
    bounces: BounceConfig = field(default_factory=BounceConfig)
    senders: tuple[str, ...] = ()
    token_lifetime: int = 3600


@dataclass(frozen=True)
class Tenant:
    """Who the emulated tenant is: made at first start, kept in ``emulator.json`` (owner-only: it holds the
    client secret) so that a connection added once keeps working after a restart."""

    tenant_id: str
    tenant_domain: str
    client_id: str
    client_secret: str
    sender: str

    @classmethod
    def load(cls, state_dir: Path | None) -> Tenant:
        """The tenant kept in ``state_dir``, or a new one (written there when there is a state directory)."""
        path = state_dir / TENANT_FILE if state_dir else None
        if path is not None and path.exists():
            return cls(**json.loads(path.read_text()))
        tenant = cls(tenant_id=str(uuid.uuid4()), tenant_domain="contoso.onmicrosoft.com",
                     client_id=str(uuid.uuid4()), client_secret=secrets.token_urlsafe(30), sender=DEFAULT_SENDER)
        if path is not None:
            write_private(path, json.dumps(asdict(tenant), indent=2).encode())
        return tenant
