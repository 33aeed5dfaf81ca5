"""GraphEmulator: the HTTPS server, its tenant configuration, and the inspection helpers tests use."""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import signal
import ssl
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from airflow_graph_mail.emulator import mime as mime_io
from airflow_graph_mail.emulator.faults import ACCEPT_504, DROP, DROP_AFTER, SLOW, DropConnection, FaultPlan
from airflow_graph_mail.emulator.directory import FEDERATION_AUDIENCE, MAIL_ROLES, App, Directory, ManagedIdentity
from airflow_graph_mail.emulator.managed_identity import APP_SERVICE_PATH
from airflow_graph_mail.emulator.models import MailStore
from airflow_graph_mail.emulator.responses import Handlers, attachment_json
from airflow_graph_mail.emulator.routes import VIEWER_PREFIX, match
from airflow_graph_mail.emulator.rules import GraphError
from airflow_graph_mail.emulator.throttle import MailboxThrottle
from airflow_graph_mail.emulator.tls import ensure_certificates
from airflow_graph_mail.emulator.tokens import TokenIssuer
from airflow_graph_mail.emulator.uploads import MB, UploadBudget, UploadSessions
from airflow_graph_mail.emulator.viewer import Viewer
from airflow_graph_mail.emulator.wire import Request, Response, graph_error

log = logging.getLogger(__name__)
CONFIG_FILE = "emulator.json"
CONNECTION_FILE = "airflow-connection.json"
DEFAULT_SENDER = "airflow@contoso.com"
# The command line's port: fixed, so a connection added once keeps working after a restart.
DEFAULT_PORT = 8443
_DRAIN_CHUNK = 1024 * 1024
# Upload URLs carry their token in the query; request lines in the emulator's own log hide it.
_QUERY_SECRET = re.compile(r"(?i)\b(authtoken|access_token|client_secret|code)=[^&\s\"]+")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# The error code Graph gives with each status a scripted fault answers.
FAULT_CODES = {400: "BadRequest", 404: "ErrorItemNotFound", 429: "TooManyRequests", 500: "InternalServerError",
               502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GraphMailEmulator/1.0"

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        emulator = self.server.emulator
        oversize = length > emulator.max_request_bytes
        if oversize:  # read it all so the connection stays usable; the handler refuses it
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(_DRAIN_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
            body = b""
        else:
            body = self.rfile.read(length) if length else b""
        request = Request.build(self.command, self.path, self.headers, body)
        request.oversize = oversize
        try:
            response = emulator.dispatch(request)
        except DropConnection:  # a scripted fault: the client sees the connection close, no answer
            self.close_connection = True
            return
        self.send_response(response.status)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("%s - %s", self.address_string(), _QUERY_SECRET.sub(r"\1=***", format % args))


class GraphEmulator:
    """A local Microsoft Graph mail service and Entra-like authority on https://127.0.0.1:PORT.

    With ``state_dir`` the mailboxes, CA and app credentials persist there; without it all is in memory
    (the CA still needs files, so it goes to a temporary directory).
    """

    max_request_bytes = 4 * 1024 * 1024

    def __init__(self, state_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 token_lifetime: int = 3600, sendmail_status: int = 202, senders: tuple[str, ...] = (),
                 message_size_limit: int = 35 * MB, upload_budget_bytes: int = 150 * MB,
                 upload_budget_window: float = 300.0, upload_session_lifetime: float = 900.0,
                 mailbox_concurrency: int = 4, mailbox_requests: int = 10_000, mailbox_window: float = 600.0,
                 latency: float = 0.0, allowed_hosts: tuple[str, ...] = ()):
        """Limits default to Exchange Online's: 35 MB messages, 150 MB uploaded per mailbox per 5 minutes,
        4 concurrent requests and 10,000 requests per 10 minutes per mailbox. ``latency`` (seconds) is
        added to every mailbox request. ``allowed_hosts``: more names the emulator answers to, besides its
        address, localhost and this machine's name (any other Host header is refused: DNS rebinding)."""
        self.state_dir = Path(state_dir) if state_dir else None
        self._tmp = None if self.state_dir else tempfile.TemporaryDirectory(prefix="graph-emulator-")
        self.files_dir = self.state_dir or Path(self._tmp.name)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port
        self.allowed_hosts = {name.lower() for name in (*_LOOPBACK_NAMES, host, socket.gethostname(),
                                                          socket.getfqdn(), *allowed_hosts)}
        self.token_lifetime = token_lifetime
        self.sendmail_status = sendmail_status
        self.issuer = TokenIssuer()
        config = self._load_config()
        self.tenant_id = config["tenant_id"]
        self.tenant_domain = config["tenant_domain"]
        self.tenant_names = {self.tenant_id.lower(), self.tenant_domain.lower(), "organizations"}
        self.directory = Directory(self.tenant_id)
        self.federation = TokenIssuer()  # signs workload identity tokens, as a Kubernetes OIDC issuer would
        self.identity_header = secrets.token_urlsafe(24)
        self.default_app = self.add_app(config["client_id"], secret=config["client_secret"])
        self.store = MailStore(str(self.files_dir / "mail.sqlite") if self.state_dir else ":memory:")
        self.default_sender = config["sender"]
        for address in (self.default_sender, *senders):
            self.store.add_user(address)
        self._limits = {"message_size_limit": message_size_limit, "upload_session_lifetime": upload_session_lifetime,
                        "upload_budget_bytes": upload_budget_bytes, "upload_budget_window": upload_budget_window,
                        "mailbox_concurrency": mailbox_concurrency, "mailbox_requests": mailbox_requests,
                        "mailbox_window": mailbox_window, "latency": latency}
        self.uploads = UploadSessions(self.files_dir / "uploads")
        self.faults = FaultPlan()
        self.set_limits()
        self.request_log: collections.deque = collections.deque(maxlen=20000)
        self.sends = 0
        self._sends_lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition()
        self.handlers = Handlers(self)
        self.viewer = Viewer(self)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_path, self._cert_path, self._key_path = ensure_certificates(self.files_dir / "tls")

    def _load_config(self) -> dict:
        path = self.files_dir / CONFIG_FILE
        if self.state_dir and path.exists():
            return json.loads(path.read_text())
        config = {"tenant_id": str(uuid.uuid4()), "tenant_domain": "contoso.onmicrosoft.com",
                  "client_id": str(uuid.uuid4()), "client_secret": secrets.token_urlsafe(30),
                  "sender": DEFAULT_SENDER}
        if self.state_dir:
            path.write_text(json.dumps(config, indent=2))
            path.chmod(0o600)
        return config

    # -- configuration -------------------------------------------------------------------------------

    @property
    def apps(self) -> dict[str, App]:
        return self.directory.apps

    def add_app(self, client_id: str | None = None, *, secret: str | None = None,
                secret_expires_at: float | None = None, certificate_pem: bytes | None = None,
                roles=MAIL_ROLES, public_client: bool = False) -> App:
        app = self.directory.add_app(client_id, roles=set(roles), public_client=public_client)
        if secret:
            app.secrets[secret] = secret_expires_at
        if certificate_pem:
            app.certificates.append(certificate_pem)
        return app

    # -- other ways to sign in -----------------------------------------------------------------------

    @property
    def federation_issuer(self) -> str:
        return f"{self.base_url}/_federation"

    def add_federated_credential(self, app: App, subject: str, audiences=(FEDERATION_AUDIENCE,)) -> None:
        """Trust tokens from the emulator's federation issuer for ``subject`` (e.g. a Kubernetes service
        account, ``system:serviceaccount:airflow:worker``) as this app."""
        app.federated.append({"issuer": self.federation_issuer, "subject": subject, "audiences": list(audiences)})

    def issue_federated_token(self, subject: str, audience: str = FEDERATION_AUDIENCE, lifetime: int = 3600) -> str:
        """The token a workload identity webhook projects into AZURE_FEDERATED_TOKEN_FILE."""
        return self.federation.issue({"iss": self.federation_issuer, "sub": subject, "aud": audience}, lifetime)

    def issue_client_certificate(self, common_name: str, app: App | None = None) -> bytes:
        """A key and certificate from the tenant's trusted CA; with ``app``, its subject is trusted there
        (subject-name/issuer sign-in: the certificate itself is never uploaded)."""
        pem = self.directory.client_ca.issue(common_name)
        if app is not None:
            app.trusted_subjects.add(f"CN={common_name}")
        return pem

    def issue_refresh_token(self, user: str, app: App | None = None, scopes=MAIL_ROLES) -> str:
        """A refresh token as a user's interactive sign-in to ``app`` would leave (delegated access)."""
        return self.directory.issue_refresh_token(user, (app or self.default_app).client_id, scopes)

    def add_managed_identity(self, client_id: str | None = None, roles=MAIL_ROLES) -> ManagedIdentity:
        """A user-assigned managed identity attached to "this host"; a system-assigned one always exists."""
        return self.directory.add_managed_identity(client_id, roles=roles)

    def managed_identity_env(self, form: str = "imds") -> dict[str, str]:
        """Environment under which msal's ManagedIdentityClient finds this emulator: "imds" (VM, AKS) or
        "app_service" (App Service, Functions)."""
        if form == "imds":
            return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.base_url}
        if form == "app_service":
            return {"IDENTITY_ENDPOINT": self.base_url + APP_SERVICE_PATH, "IDENTITY_HEADER": self.identity_header}
        raise ValueError(f"form: {form!r} is not 'imds' or 'app_service'")

    def issue_app_token(self, client_id: str, roles, object_id: str | None = None) -> str:
        """An app-only Graph access token carrying the application roles granted, as Entra issues them."""
        return self.issuer.issue({
            "aud": self.base_url, "iss": f"{self.base_url}/{self.tenant_id}/", "tid": self.tenant_id,
            "appid": client_id, "azp": client_id, "oid": object_id or client_id, "sub": object_id or client_id,
            "idtyp": "app", "roles": sorted(roles), "ver": "1.0"}, self.token_lifetime)

    def set_limits(self, **changes) -> None:
        """Change limits for a while (``reset()`` restores the ones given at start): message_size_limit,
        upload_budget_bytes, upload_budget_window, upload_session_lifetime, mailbox_concurrency,
        mailbox_requests, mailbox_window, latency."""
        unknown = set(changes) - set(self._limits)
        if unknown:
            raise TypeError(f"unknown limit(s): {', '.join(sorted(unknown))}")
        limits = {**self._limits, **changes}
        self.message_size_limit = limits["message_size_limit"]
        self.upload_session_lifetime = limits["upload_session_lifetime"]
        self.upload_budget = UploadBudget(limits["upload_budget_bytes"], limits["upload_budget_window"])
        self.throttle = MailboxThrottle(limits["mailbox_concurrency"], limits["mailbox_requests"],
                                        limits["mailbox_window"])
        self.latency = limits["latency"]

    def add_user(self, address: str, display_name: str = "", rest_enabled: bool = True):
        return self.store.add_user(address, display_name, rest_enabled)

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def viewer_url(self) -> str:
        """The mailbox viewer: a web page showing every mailbox and what arrived in it."""
        return f"{self.base_url}/"

    def start(self) -> GraphEmulator:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._cert_path, self._key_path)
        server = ThreadingHTTPServer((self.host, self.port), _Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.emulator = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="graph-emulator", daemon=True)
        self._thread.start()
        if self.state_dir:  # it holds the client secret: owner-only, like emulator.json
            path = self.state_dir / CONNECTION_FILE
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(self.connection(), indent=2))
            path.chmod(0o600)
        return self

    @property
    def is_loopback(self) -> bool:
        """Whether the emulator listens on loopback only (the inspection API and viewer have no sign-in)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host.lower() == "localhost"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
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
            "conn_type": "graph_mail",
            "login": app.client_id,
            "password": next(iter(app.secrets), None),
            "extra": {"tenant_id": self.tenant_id, "sender": sender or self.default_sender,
                      "graph_url": self.base_url, "authority_url": self.base_url, "ca_bundle": str(self.ca_path)},
        }

    # -- requests ------------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        with self._idle:
            self._in_flight += 1
        try:
            return self._dispatch(request)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _refusal(self, request: Request) -> GraphError | None:
        """A request from a name that is not the emulator's (a DNS rebinding page), or a change to the
        emulator's state that a page on another site made a browser send."""
        host = request.host_name
        if host is not None and host not in self.allowed_hosts and not _is_ip(host):
            return GraphError(403, "HostNotAllowed", f"The emulator does not answer to the host name '{host}'; "
                              "start it with --allow-host NAME to add one.")
        if request.method not in ("GET", "HEAD") and request.path.startswith(("/_emulator", "/_viewer")) \
                and not request.same_origin:
            return GraphError(403, "CrossSiteRequestRefused", "Changes to the emulator's state are accepted only "
                              "from its own pages or from clients that are not browsers.")
        return None

    def _refused(self, request: Request, refusal: GraphError) -> Response:
        if request.path.startswith("/_viewer") and refusal.code == "CrossSiteRequestRefused":
            return self.viewer.cross_site_refused()
        return graph_error(refusal, request)

    def _dispatch(self, request: Request) -> Response:
        try:
            refusal = self._refusal(request)
            response = self._refused(request, refusal) if refusal is not None else self._route(request)
        except DropConnection:
            raise
        except GraphError as err:
            response = graph_error(err, request)
        except Exception:  # an emulator bug must look like a server error, not a hung client
            log.exception("emulator failed on %s %s", request.method, request.path)
            response = graph_error(GraphError(500, "InternalServerError", "The emulator failed."), request)
        response.headers.setdefault("request-id", str(uuid.uuid4()))
        if request.immutable_ids:
            response.headers["Preference-Applied"] = 'IdType="ImmutableId"'
        if "client-request-id" in request.headers:
            response.headers["client-request-id"] = request.headers["client-request-id"]
        self._log(request, response.status)
        return response

    def _route(self, request: Request) -> Response:
        found = match(request.method, request.path)
        if found is None:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{request.path}'.")
        name, params = found
        request.params = {k: unquote(v) if v is not None else None for k, v in params.items()}
        if params.get("user") is None:
            return self._run(name, request)
        with self.throttle.slot(request.params["user"]):
            if self.latency:
                time.sleep(self.latency)
            return self._run(name, request)

    def _run(self, name: str, request: Request) -> Response:
        """The handler, with any scripted fault due for this route applied around it."""
        fault = self.faults.take(name)
        request.fault = fault.action if fault is not None else None
        if fault is not None and fault.action == DROP:
            self._log(request, 0)
            raise DropConnection()
        if fault is not None and isinstance(fault.action, int):
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            raise GraphError(fault.action, FAULT_CODES.get(fault.action, "InjectedFault"), "Injected fault.",
                             headers)
        response = getattr(self.viewer if name.startswith(VIEWER_PREFIX) else self.handlers, name)(request)
        if fault is None:
            return response
        if fault.action == DROP_AFTER:
            self._log(request, -response.status)  # processed, but the client never hears
            raise DropConnection()
        if fault.action == ACCEPT_504:  # the log's "fault" field tells it apart from a refused request
            return graph_error(GraphError(504, "GatewayTimeout", "The operation has timed out."), request)
        if fault.action == SLOW:
            time.sleep(fault.delay)
        return response

    def _log(self, request: Request, status: int) -> None:
        """Every Graph, Entra and upload request (not the inspection API, not the viewer and its web links).

        status 0: dropped before processing; negative: processed with that status, then dropped."""
        if request.path.startswith(("/_emulator", "/_viewer", "/owa/")) or request.path == "/":
            return
        self.request_log.append({"time": time.time(), "method": request.method, "path": request.path,
                                 "status": status, "bytes": len(request.body),
                                 "content_range": request.headers.get("content-range", ""),
                                 "authorization": "authorization" in request.headers,
                                 "client_request_id": request.headers.get("client-request-id", ""),
                                 "fault": request.fault})

    def count_send(self) -> None:
        with self._sends_lock:
            self.sends += 1

    # -- inspection ----------------------------------------------------------------------------------

    def full_message(self, message_id: str, with_content: bool = False) -> dict | None:
        found = self.store.find_message(message_id)
        if found is None:
            return None
        mailbox, message, folder = found
        return self._inspected(mailbox.address, folder, message, with_content)

    def _inspected(self, address: str, folder: str, message: dict, with_content: bool) -> dict:
        """A stored message as the inspection API shows it: where it is, its link, its attachments."""
        attachments = self.store.attachments(message["id"], with_content=with_content)
        return {**message, "mailbox": address, "folder": folder,
                "webLink": self.store.web_link(self.base_url, message["id"]),
                "attachments": [attachment_json(a, with_content) for a in attachments]}

    def messages(self, address: str, folder: str = "inbox", with_content: bool = True) -> list[dict]:
        mailbox = self.store.find_mailbox(address)
        if mailbox is None:
            return []
        return [self._inspected(mailbox.address, folder, m, with_content)
                for m in self.store.list_folder(mailbox, folder)]

    def attachment_bytes(self, message_id: str) -> dict[str, bytes]:
        found = self.store.find_message(message_id)
        attachments = self.store.attachments(found[1]["id"], with_content=True) if found else []
        return {a["name"]: a["content"] for a in attachments}

    def eml(self, message_id: str) -> bytes | None:
        """The original MIME when the message arrived as MIME, else one built from what was stored."""
        found = self.store.find_message(message_id)
        if found is None:
            return None
        message_id = found[1]["id"]
        raw = self.store.raw_mime(message_id)
        return raw or mime_io.build_eml(found[1], self.store.attachments(message_id, with_content=True))

    def export_eml(self, address: str, directory: str | Path, folder: str = "inbox") -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, message in enumerate(reversed(self.messages(address, folder, with_content=False)), 1):
            path = directory / f"{index:04d}-{message['id'][-12:]}.eml"
            path.write_bytes(self.eml(message["id"]))
            paths.append(path)
        return paths

    def deliveries(self, property_id: str) -> dict[str, int]:
        """Submissions (sendMail, or a draft sent) per value of a single-value extended property, such as
        an idempotency key: a value counted twice is a duplicate mail."""
        return self.store.submissions(property_id)

    @property
    def side_effect_requests(self) -> list[dict]:
        """Logged Graph calls that could change a mailbox (any non-GET), for 'nothing was sent' checks."""
        return [r for r in self.request_log if r["method"] != "GET" and "/oauth2/" not in r["path"]]

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until no request is being answered (a slow fault, a client that gave up); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    def reset(self, settle: float = 30.0) -> None:
        """Empty mailboxes, uploads, request log and faults; limits back to those given at start.

        Requests still being answered (a slow fault, a client that gave up) finish first, so that they
        cannot land in the next test's mailboxes or log."""
        self.settle(settle)
        self.store.clear()
        self.uploads.clear()
        self.faults.clear()
        self.set_limits()
        self.request_log.clear()
        self.sends = 0


def _is_ip(host: str) -> bool:
    """An address typed as such cannot be a rebinding attack, which needs a name that resolves to us."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
