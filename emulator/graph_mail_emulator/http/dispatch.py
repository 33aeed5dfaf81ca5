"""From a parsed request to a response: refusals (foreign Host, cross-site changes), routing, the mailbox's
throttle and latency, scripted faults, and the request log. Knows handlers only by route name."""

from __future__ import annotations

import collections
import ipaddress
import logging
import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import unquote

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.store import well_formed_id
from graph_mail_emulator.entra import GRAPH_APP_ID
from graph_mail_emulator.errors import GraphError
from graph_mail_emulator.http.faults import ACCEPT_504, DROP, DROP_AFTER, SLOW, DropConnection, FaultPlan
from graph_mail_emulator.http.routes import ROUTES, match, methods_for
from graph_mail_emulator.http.wire import Request, Response, graph_error
from graph_mail_emulator.site import MICROSOFT_HOSTS, Site

log = logging.getLogger(__name__)

Handler = Callable[[Request], Response]
# The error code Graph gives with each status a scripted fault answers.
FAULT_CODES = {400: "BadRequest", 404: "ErrorItemNotFound", 412: "ErrorIrresolvableConflict", 429: "TooManyRequests",
               500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}


def handler_table(*faces) -> dict[str, Handler]:
    """Each route's handler, found by name on the faces (entra, messages, attachments, inspection, viewer)."""
    table: dict[str, Handler] = {}
    for _, _, name in ROUTES:
        owners = [face for face in faces if hasattr(face, name)]
        if len(owners) != 1:
            raise RuntimeError(f"route handler {name!r} is defined {len(owners)} times")
        table[name] = getattr(owners[0], name)
    return table


class Dispatcher:
    def __init__(self, handlers: dict[str, Handler], backend: MailBackend, faults: FaultPlan,
                 allowed_hosts: set[str], request_log: collections.deque, cross_site_page: Callable[[], Response],
                 site: Site):
        self.handlers = handlers
        self.site = site
        self.backend = backend
        self.faults = faults
        self.allowed_hosts = allowed_hosts
        self.cross_site_page = cross_site_page  # the viewer's own 403 page
        self.request_log = request_log
        self._in_flight = 0
        self._idle = threading.Condition()
        self._answering = threading.local()  # set in the thread answering a request

    def dispatch(self, request: Request) -> Response:
        with self._idle:
            self._in_flight += 1
        self._answering.active = True
        try:
            return self._dispatch(request)
        finally:
            self._answering.active = False
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def error(self, err: GraphError, request: Request) -> Response:
        """Graph's error body for ``err``, dated by the backend's clock."""
        return graph_error(err, request, self.backend.clock.iso())

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until no request is being answered (a slow fault, a client that gave up); False on timeout.
        Asked while answering a request (``POST /_emulator/reset``), that request is not waited for."""
        own = 1 if getattr(self._answering, "active", False) else 0
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight <= own, timeout=timeout)

    def _dispatch(self, request: Request) -> Response:
        try:
            refusal = self._refusal(request)
            response = self._refused(request, refusal) if refusal is not None else self._route(request)
        except DropConnection:
            raise
        except GraphError as err:
            response = self.error(err, request)
        except Exception:  # an emulator bug must look like a server error, not a hung client
            log.exception("emulator failed on %s %s", request.method, request.path)
            response = self.error(GraphError(500, "InternalServerError", "The emulator failed."), request)
        response.headers.setdefault("request-id", str(uuid.uuid4()))
        if request.immutable_ids:
            applied = response.headers.get("Preference-Applied")
            response.headers["Preference-Applied"] = ", ".join(filter(None, [applied, 'IdType="ImmutableId"']))
        response.headers["client-request-id"] = request.client_request_id
        if response.status == 401 and request.params.get("version"):
            response.headers["WWW-Authenticate"] = self._challenge(request)
        self._log(request, response.status)
        return response

    def _challenge(self, request: Request) -> str:
        """Graph's answer to a request without a valid token: where to sign in, and for which resource."""
        login = "https://login.microsoftonline.com" if request.host_name in MICROSOFT_HOSTS else \
            request.origin(self.site.base_url)
        return (f'Bearer realm="", authorization_uri="{login}/common/oauth2/authorize", '
                f'client_id="{GRAPH_APP_ID}"')

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
            return self.cross_site_page()
        return self.error(refusal, request)

    def _route(self, request: Request) -> Response:
        found = match(request.method, request.path)
        if found is None:
            allowed = methods_for(request.path)
            if allowed:  # as Graph answers a method its resource does not take
                raise GraphError(405, "ErrorInvalidRequest", "The OData request is not supported.",
                                 {"Allow": ", ".join(allowed)})
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{request.path}'.")
        name, params = found
        self.backend.delivery.drain()  # mail whose slot has come has left before anyone looks
        request.params = {k: unquote(v) if v is not None else None for k, v in params.items()}
        if request.params.get("version") and request.params.get("id") is not None \
                and not well_formed_id(request.params["id"]):
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        if request.params.get("version"):
            request.system_options()  # Graph refuses a query option given twice on any of its URLs
        if params.get("user") is None:
            return self._run(name, request)
        with self.backend.throttle.slot(request.params["user"]):
            if self.backend.limits.latency:
                time.sleep(self.backend.limits.latency)
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
        response = self.handlers[name](request)
        if fault is None:
            return response
        if fault.action == DROP_AFTER:
            self._log(request, -response.status)  # processed, but the client never hears
            raise DropConnection()
        if fault.action == ACCEPT_504:  # the log's "fault" field tells it apart from a refused request
            return self.error(GraphError(504, "GatewayTimeout", "The operation has timed out."), request)
        if fault.action == SLOW:
            time.sleep(fault.delay)
        return response

    def _log(self, request: Request, status: int) -> None:
        """Every Graph, Entra and upload request (not the inspection API, not the viewer and its web links).

        status 0: dropped before processing; negative: processed with that status, then dropped."""
        if request.path.startswith(("/_emulator", "/_viewer", "/owa/")) or request.path == "/":
            return
        self.request_log.append({"time": self.backend.clock.time(), "method": request.method, "path": request.path,
                                 "status": status, "bytes": len(request.body),
                                 "content_range": request.headers.get("content-range", ""),
                                 "authorization": "authorization" in request.headers,
                                 "client_request_id": request.headers.get("client-request-id", ""),
                                 "fault": request.fault})


def _is_ip(host: str) -> bool:
    """An address typed as such cannot be a rebinding attack, which needs a name that resolves to us."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False

