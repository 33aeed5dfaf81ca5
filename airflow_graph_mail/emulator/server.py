"""GraphEmulator: assembles the tenant (Entra side and mail backend), its HTTP face and the inspection API,
and gives tests and the command line one object to start, configure, inspect and stop.

Built once, in one direction: the backend and the Entra side know nothing of HTTP; the faces reach them
through the attributes they are given; nothing reaches back into this object.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import secrets
import signal
import socket
import tempfile
import threading
import uuid
from pathlib import Path

from airflow_graph_mail.emulator.dispatch import Dispatcher, handler_table
from airflow_graph_mail.emulator.entra import FEDERATION_AUDIENCE, MAIL_ROLES, App, Entra
from airflow_graph_mail.emulator.entra.directory import ManagedIdentity
from airflow_graph_mail.emulator.entra.responses import APP_SERVICE_PATH, EntraResponses
from airflow_graph_mail.emulator.faults import FaultPlan
from airflow_graph_mail.emulator.http import HttpsServer
from airflow_graph_mail.emulator.inspection import Inspection
from airflow_graph_mail.emulator.mail.access import Access
from airflow_graph_mail.emulator.mail.attachments import AttachmentResponses
from airflow_graph_mail.emulator.mail.backend import Limits, MailBackend
from airflow_graph_mail.emulator.mail.bounces import Bounces
from airflow_graph_mail.emulator.mail.messages import MessageResponses
from airflow_graph_mail.emulator.mail.store import Mailbox, MailStore
from airflow_graph_mail.emulator.mail.uploads import MB
from airflow_graph_mail.emulator.pki import SERVER_NAMES, ensure_certificates
from airflow_graph_mail.emulator.private import write_private
from airflow_graph_mail.emulator.viewer import Viewer
from airflow_graph_mail.emulator.wire import MICROSOFT_HOSTS, Site

CONFIG_FILE = "emulator.json"
CONNECTION_FILE = "airflow-connection.json"
DEFAULT_SENDER = "airflow@contoso.com"
# The command line's port: fixed, so a connection added once keeps working after a restart.
DEFAULT_PORT = 8443
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class GraphEmulator:
    """A local Microsoft Graph mail service and Entra-like authority on https://127.0.0.1:PORT.

    With ``state_dir`` the mailboxes, CA and app credentials persist there; without it all is in memory
    (the CA still needs files, so it goes to a temporary directory). Limits default to Exchange Online's:
    35 MB messages, 150 MB uploaded per mailbox per 5 minutes, 4 concurrent requests and 10,000 requests
    per 10 minutes per mailbox; ``latency`` (seconds) is added to every mailbox request. ``allowed_hosts``:
    more names the emulator answers to, besides its address, localhost and this machine's name (any other
    Host header is refused: DNS rebinding). ``public_hosts``: also serve login.microsoftonline.com,
    graph.microsoft.com and outlook.office.com (in the certificate and the allowed names), for clients run
    with their defaults and those names pointed here (``emulator.hosts.microsoft_hosts``, an /etc/hosts
    line, ``--add-host``).
    """

    def __init__(self, state_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 token_lifetime: int = 3600, sendmail_status: int = 202, senders: tuple[str, ...] = (),
                 message_size_limit: int = 35 * MB, upload_budget_bytes: int = 150 * MB,
                 upload_budget_window: float = 300.0, upload_session_lifetime: float = 900.0,
                 mailbox_concurrency: int = 4, mailbox_requests: int = 10_000, mailbox_window: float = 600.0,
                 latency: float = 0.0, allowed_hosts: tuple[str, ...] = (), public_hosts: bool = False,
                 accepted_domains: tuple[str, ...] = (), bounce: tuple[str, ...] = (), ndr_delay: float = 1.0):
        # Absolute: the paths handed out (the CA bundle in connection()) must work from any directory.
        self.state_dir = Path(state_dir).absolute() if state_dir else None
        self._tmp = None if self.state_dir else tempfile.TemporaryDirectory(prefix="graph-emulator-")
        self.files_dir = self.state_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.site = Site(host, port)
        config = self._load_config()
        self.entra = Entra(self.site, config["tenant_id"], config["tenant_domain"], token_lifetime)
        self.default_app = self.add_app(config["client_id"], secret=config["client_secret"])
        bounces = Bounces((config["tenant_domain"], *accepted_domains), bounce, ndr_delay)
        store = MailStore(str(self.files_dir / "mail.sqlite") if self.state_dir else ":memory:", bounces=bounces,
                          tenant_domain=config["tenant_domain"])
        self.backend = MailBackend(store, self.files_dir / "uploads", Limits(
            message_size_limit=message_size_limit, upload_budget_bytes=upload_budget_bytes,
            upload_budget_window=upload_budget_window, upload_session_lifetime=upload_session_lifetime,
            mailbox_concurrency=mailbox_concurrency, mailbox_requests=mailbox_requests,
            mailbox_window=mailbox_window, latency=latency, sendmail_status=sendmail_status))
        self.default_sender = config["sender"]
        for address in (self.default_sender, *senders):
            store.add_user(address)
        self.faults = FaultPlan()
        request_log: collections.deque = collections.deque(maxlen=20000)
        access = Access(self.entra, store)
        self.inspection = Inspection(self.backend, self.site, request_log, self.reset)
        self.viewer = Viewer(self.backend, self.entra.tenant_domain, self.inspection.eml)
        self.public_hosts = public_hosts
        served = MICROSOFT_HOSTS if public_hosts else ()
        allowed = {name.lower() for name in (*_LOOPBACK_NAMES, host, socket.gethostname(), socket.getfqdn(),
                                             *allowed_hosts, *served)}
        faces = (EntraResponses(self.entra, lambda address: getattr(store.find_mailbox(address), "id", None)),
                 MessageResponses(self.backend, access, self.site),
                 AttachmentResponses(self.backend, access, self.site, self.entra.tenant_id),
                 self.inspection, self.viewer)
        self.dispatcher = Dispatcher(handler_table(*faces), self.backend, self.faults, allowed, request_log,
                                     self.viewer.cross_site_refused, self.site)
        self.ca_path, cert_path, key_path = ensure_certificates(self.files_dir / "tls", (*SERVER_NAMES, *served))
        self._server = HttpsServer(self.site, self.dispatcher, cert_path, key_path)

    def _load_config(self) -> dict:
        path = self.files_dir / CONFIG_FILE
        if self.state_dir and path.exists():
            return json.loads(path.read_text())
        config = {"tenant_id": str(uuid.uuid4()), "tenant_domain": "contoso.onmicrosoft.com",
                  "client_id": str(uuid.uuid4()), "client_secret": secrets.token_urlsafe(30),
                  "sender": DEFAULT_SENDER}
        if self.state_dir:
            write_private(path, json.dumps(config, indent=2).encode())
        return config

    # -- the tenant ----------------------------------------------------------------------------------

    @property
    def tenant_id(self) -> str:
        return self.entra.tenant_id

    @property
    def tenant_domain(self) -> str:
        return self.entra.tenant_domain

    @property
    def store(self) -> MailStore:
        return self.backend.store

    @property
    def directory(self):
        return self.entra.directory

    @property
    def issuer(self):
        return self.entra.issuer

    @property
    def apps(self) -> dict[str, App]:
        return self.entra.directory.apps

    def add_app(self, client_id: str | None = None, *, secret: str | None = None,
                secret_expires_at: float | None = None, certificate_pem: bytes | None = None,
                roles=MAIL_ROLES, public_client: bool = False) -> App:
        app = self.entra.directory.add_app(client_id, roles=set(roles), public_client=public_client)
        if secret:
            app.secrets[secret] = secret_expires_at
        if certificate_pem:
            app.certificates.append(certificate_pem)
        return app

    def add_user(self, address: str, display_name: str = "", rest_enabled: bool = True) -> Mailbox:
        return self.store.add_user(address, display_name, rest_enabled)

    def bounce(self, pattern: str, status: str = "5.1.10") -> None:
        """Mail to ``pattern`` (an address, or with * wildcards) bounces with this enhanced status code, until
        ``reset()``; its sender gets a non-delivery report after ``ndr_delay`` seconds."""
        self.store.bounces.add(pattern, status)

    def set_ndr_delay(self, seconds: float) -> None:
        """How long a non-delivery report takes to arrive, until ``reset()``."""
        self.store.bounces.delay = seconds

    def add_federated_credential(self, app: App, subject: str, audiences=(FEDERATION_AUDIENCE,)) -> None:
        self.entra.add_federated_credential(app, subject, audiences)

    @property
    def federation_issuer(self) -> str:
        return self.entra.federation_issuer

    def issue_federated_token(self, subject: str, audience: str = FEDERATION_AUDIENCE, lifetime: int = 3600) -> str:
        return self.entra.issue_federated_token(subject, audience, lifetime)

    def issue_client_certificate(self, common_name: str, app: App | None = None) -> bytes:
        """A key and certificate from the tenant's trusted CA; with ``app``, its subject is trusted there
        (subject-name/issuer sign-in: the certificate itself is never uploaded)."""
        pem = self.entra.directory.client_ca.issue_pem(common_name)
        if app is not None:
            app.trusted_subjects.add(f"CN={common_name}")
        return pem

    def issue_refresh_token(self, user: str, app: App | None = None, scopes=MAIL_ROLES) -> str:
        """A refresh token as a user's interactive sign-in to ``app`` would leave (delegated access)."""
        return self.entra.directory.issue_refresh_token(user, (app or self.default_app).client_id, scopes)

    def add_managed_identity(self, client_id: str | None = None, roles=MAIL_ROLES) -> ManagedIdentity:
        """A user-assigned managed identity attached to "this host"; a system-assigned one always exists."""
        return self.entra.directory.add_managed_identity(client_id, roles=roles)

    def managed_identity_env(self, form: str = "imds") -> dict[str, str]:
        """Environment under which msal's ManagedIdentityClient finds this emulator: "imds" (VM, AKS) or
        "app_service" (App Service, Functions)."""
        if form == "imds":
            return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.base_url}
        if form == "app_service":
            return {"IDENTITY_ENDPOINT": self.base_url + APP_SERVICE_PATH,
                    "IDENTITY_HEADER": self.entra.identity_header}
        raise ValueError(f"form: {form!r} is not 'imds' or 'app_service'")

    def issue_app_token(self, client_id: str, roles, object_id: str | None = None) -> str:
        return self.entra.issue_app_token(client_id, roles, object_id)

    def set_limits(self, **changes) -> None:
        """Change limits for a while (``reset()`` restores the ones given at start): message_size_limit,
        upload_budget_bytes, upload_budget_window, upload_session_lifetime, mailbox_concurrency,
        mailbox_requests, mailbox_window, latency, sendmail_status."""
        self.backend.set_limits(**changes)

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.site.host

    @property
    def port(self) -> int:
        return self.site.port

    @property
    def base_url(self) -> str:
        return self.site.base_url

    @property
    def viewer_url(self) -> str:
        """The mailbox viewer: a web page showing every mailbox and what arrived in it."""
        return f"{self.base_url}/"

    @property
    def is_loopback(self) -> bool:
        """Whether the emulator listens on loopback only (the inspection API and viewer have no sign-in)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host.lower() == "localhost"

    def start(self) -> GraphEmulator:
        self._server.start()
        if self.state_dir:  # it holds the client secret: owner-only, like emulator.json
            write_private(self.state_dir / CONNECTION_FILE, json.dumps(self.connection(), indent=2).encode())
        return self

    def stop(self) -> None:
        self._server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def serve_until_stopped(self) -> None:
        """Block until Ctrl-C or SIGTERM, then stop (the command line and `make demo-serve`)."""
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        self.stop()

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def connection(self, app: App | None = None, sender: str | None = None) -> dict:
        """A ready Airflow connection (the JSON form of AIRFLOW_CONN_GRAPH_MAIL_DEFAULT) for this emulator."""
        app = app or self.default_app
        return {
            "conn_type": "graphmail",
            "login": app.client_id,
            "password": next(iter(app.secrets), None),
            "extra": {"tenant_id": self.tenant_id, "sender": sender or self.default_sender,
                      "graph_url": self.base_url, "authority_url": self.base_url, "ca_bundle": str(self.ca_path)},
        }

    # -- inspection ----------------------------------------------------------------------------------

    @property
    def request_log(self):
        return self.dispatcher.request_log

    @property
    def sends(self) -> int:
        return self.backend.sends

    def full_message(self, message_id: str, with_content: bool = False) -> dict | None:
        return self.inspection.full_message(message_id, with_content)

    def messages(self, address: str, folder: str = "inbox", with_content: bool = True) -> list[dict]:
        return self.inspection.messages(address, folder, with_content)

    def attachment_bytes(self, message_id: str) -> dict[str, bytes]:
        return self.inspection.attachment_bytes(message_id)

    def send_as_reviewer(self, message_id: str, changes: dict | None = None) -> None:
        """Play the reviewer: send a draft, after editing it with ``changes`` (Graph's message properties)."""
        self.inspection.send_as_reviewer(message_id, changes)

    def discard_as_reviewer(self, message_id: str, hard: bool = False) -> None:
        """Play the reviewer: discard a draft (to Deleted Items, or deleted outright with ``hard``)."""
        self.inspection.discard_as_reviewer(message_id, hard)

    def eml(self, message_id: str) -> bytes | None:
        return self.inspection.eml(message_id)

    def export_eml(self, address: str, directory: str | Path, folder: str = "inbox") -> list[Path]:
        return self.inspection.export_eml(address, directory, folder)

    def folder_counts(self) -> dict[str, dict[str, int]]:
        """{mailbox id: {folder: messages}} for every mailbox."""
        from airflow_graph_mail.emulator.mail.queries import folder_counts

        return folder_counts(self.store)

    def deliveries(self, property_id: str) -> dict[str, int]:
        """Submissions (sendMail, or a draft sent) per value of a single-value extended property, such as
        an idempotency key: a value counted twice is a duplicate mail."""
        return self.store.submissions(property_id)

    @property
    def side_effect_requests(self) -> list[dict]:
        """Logged Graph calls that could change a mailbox (any non-GET), for 'nothing was sent' checks."""
        return [r for r in self.request_log if r["method"] != "GET" and "/oauth2/" not in r["path"]]

    def settle(self, timeout: float = 30.0) -> bool:
        return self.dispatcher.settle(timeout)

    def reset(self, settle: float = 30.0) -> None:
        """Empty mailboxes, uploads, request log and faults; limits back to those given at start.

        Requests still being answered (a slow fault, a client that gave up) finish first, so that they
        cannot land in the next test's mailboxes or log."""
        self.dispatcher.settle(settle)
        self.backend.reset()
        self.faults.clear()
        self.dispatcher.request_log.clear()
