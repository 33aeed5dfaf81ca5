"""GraphEmulator: builds the tenant from its configuration (the Entra side, the mail backend, their HTTP
faces, the inspection API) and gives tests and the command line one object to start, inspect and stop.

Built once, in one direction: the backend and the Entra side know nothing of HTTP; the faces reach them
through the attributes they are given; nothing reaches back into this object. Callers use the object that
owns what they want: ``emulator.backend`` (mailboxes, delivery, bounces, limits), ``emulator.entra`` (apps,
identities, tokens), ``emulator.inspect`` (what arrived where, the request log), ``emulator.inbound`` (mail
from outside: ``receive``, ``receive_eml``, ``expire_delta_links``), ``emulator.faults``.
"""

from __future__ import annotations

import collections
import json
import signal
import socket
import tempfile
import threading
from pathlib import Path

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.bounces import Bounces
from graph_mail_emulator.config import EmulatorConfig, Tenant
from graph_mail_emulator.entra import App, Entra
from graph_mail_emulator.entra.responses import EntraResponses
from graph_mail_emulator.faces.access import Access
from graph_mail_emulator.faces.attachment_reads import AttachmentReads
from graph_mail_emulator.faces.attachments import AttachmentResponses
from graph_mail_emulator.faces.delta import DeltaResponses
from graph_mail_emulator.faces.inbound import InboundResponses
from graph_mail_emulator.faces.inspection import Inspection
from graph_mail_emulator.faces.messages import MessageResponses
from graph_mail_emulator.faces.replies import ReplyResponses
from graph_mail_emulator.faces.viewer import Viewer
from graph_mail_emulator.http.dispatch import Dispatcher, handler_table
from graph_mail_emulator.http.faults import FaultPlan
from graph_mail_emulator.http.server import HttpsServer
from graph_mail_emulator.pki import SERVER_NAMES, ensure_certificates
from graph_mail_emulator.private import write_private
from graph_mail_emulator.site import MICROSOFT_HOSTS, Site

CONNECTION_FILE = "airflow-connection.json"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class GraphEmulator:
    """A local Microsoft Graph mail service and Entra-like authority on https://127.0.0.1:PORT.

    ``config``: an ``EmulatorConfig``, or just a state directory (``GraphEmulator(".emulator")``). With a
    state directory the mailboxes, CA and app credentials persist there; without one all is in memory (the
    CA still needs files, so it goes to a temporary directory).
    """

    def __init__(self, config: EmulatorConfig | str | Path | None = None):
        self.config = config if isinstance(config, EmulatorConfig) else EmulatorConfig(state_dir=config)
        # Absolute: the paths handed out (the CA bundle in connection()) must work from any directory.
        self.state_dir = Path(self.config.state_dir).absolute() if self.config.state_dir else None
        self._tmp = None if self.state_dir else tempfile.TemporaryDirectory(prefix="graph-emulator-")
        files = self.state_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        files.mkdir(parents=True, exist_ok=True)
        network = self.config.network
        self.site = Site(network.host, network.port)
        tenant = Tenant.load(self.state_dir)
        self.default_sender = tenant.sender
        self.entra = Entra(self.site, tenant.tenant_id, tenant.tenant_domain, tenant.client_id, tenant.client_secret,
                           self.config.token_lifetime)
        bouncing = self.config.bounces
        bounces = Bounces((tenant.tenant_domain, *bouncing.accepted_domains), bouncing.rules, bouncing.ndr_delay)
        self.backend = MailBackend(str(files / "mail.sqlite") if self.state_dir else ":memory:", files / "uploads",
                                   self.config.limits, bounces, tenant.tenant_domain)
        store = self.backend.store
        self.inbound = self.backend.inbound  # mail from outside: receive(...), receive_eml(...)
        for address in (self.default_sender, *self.config.senders):
            store.add_user(address)
        self.start_users = {m.address for m in store.mailboxes() if m.is_user}  # what a reset keeps
        self.faults = FaultPlan()
        request_log: collections.deque = collections.deque(maxlen=20000)
        self.inspect = Inspection(self.backend, self.site, request_log, self.reset)
        viewer = Viewer(self.backend, tenant.tenant_domain, self.inspect.eml)
        served = MICROSOFT_HOSTS if network.public_hosts else ()
        allowed = {name.lower() for name in (*_LOOPBACK_NAMES, network.host, socket.gethostname(), socket.getfqdn(),
                                             *network.allowed_hosts, *served)}
        access = Access(self.entra, store)
        faces = (EntraResponses(self.entra, lambda address: getattr(store.find_mailbox(address), "id", None)),
                 MessageResponses(self.backend, access, self.site),
                 AttachmentResponses(self.backend, access, self.site, tenant.tenant_id),
                 DeltaResponses(self.backend, access, self.site), AttachmentReads(self.backend, access, self.site),
                 ReplyResponses(self.backend, access, self.site),
                 self.inspect, InboundResponses(self.backend.inbound), viewer)
        self.dispatcher = Dispatcher(handler_table(*faces), self.backend, self.faults, allowed, request_log,
                                     viewer.cross_site_refused, self.site)
        self.ca_path, cert_path, key_path = ensure_certificates(files / "tls", (*SERVER_NAMES, *served))
        self._server = HttpsServer(self.site, self.dispatcher, cert_path, key_path)

    @property
    def base_url(self) -> str:
        """https://HOST:PORT, Graph's and Entra's base URL alike (the viewer is at its root)."""
        return self.site.base_url

    # -- lifecycle -----------------------------------------------------------------------------------

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
        """Block until Ctrl-C or SIGTERM, then stop (the command line and `make demo-serve`). Ctrl-C's handler
        is set here: a process started in the background by a script inherits SIGINT ignored."""
        stop = threading.Event()
        for stopping in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stopping, lambda *_: stop.set())
        stop.wait()
        self.stop()

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def connection(self, app: App | None = None, sender: str | None = None) -> dict:
        """A ready Airflow connection (the JSON form of AIRFLOW_CONN_GRAPH_MAIL_DEFAULT) for this emulator."""
        app = app or self.entra.default_app
        return {
            "conn_type": "graphmail",
            "login": app.client_id,
            "password": next(iter(app.secrets), None),
            "extra": {"tenant_id": self.entra.tenant_id, "sender": sender or self.default_sender,
                      "graph_url": self.base_url, "authority_url": self.base_url, "ca_bundle": str(self.ca_path)},
        }

    def reset(self, settle: float = 30.0) -> None:
        """Empty mailboxes, uploads, request log and faults; users, limits and bounce rules back to those at start.

        Requests still being answered (a slow fault, a client that gave up) finish first, so that they
        cannot land in the next test's mailboxes or log."""
        self.dispatcher.settle(settle)
        self.backend.reset()
        self.backend.store.keep_users(self.start_users)
        self.faults.clear()
        self.dispatcher.request_log.clear()
