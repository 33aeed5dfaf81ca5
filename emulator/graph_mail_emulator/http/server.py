"""HTTPS on the wire: a threading server whose handler reads a request (Content-Length or chunked), hands
it to the dispatcher, and writes the response."""

from __future__ import annotations

import logging
import re
import ssl
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from graph_mail_emulator.backend.limits import INBOUND_REQUEST_BYTES, MAX_REQUEST_BYTES
from graph_mail_emulator.errors import GraphError
from graph_mail_emulator.http.dispatch import Dispatcher
from graph_mail_emulator.http.faults import DropConnection
from graph_mail_emulator.http.wire import Request, Response
from graph_mail_emulator.site import Site

log = logging.getLogger(__name__)
_DRAIN_CHUNK = 1024 * 1024
# Upload URLs carry their token in the query; request lines in the emulator's own log hide it.
_QUERY_SECRET = re.compile(r"(?i)\b(authtoken|access_token|client_secret|code)=[^&\s\"]+")
# What may be written as a response header (RFC 9110): a token for the name; visible ASCII, spaces and tabs
# for the value. Never a CR or LF, whoever made the response.
_FIELD_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_VALUE = re.compile(r"^[\t\x20-\x7e]*$")
_DIGITS = re.compile(r"^[0-9]+$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


class _BadFraming(Exception):
    """A request whose body cannot be delimited (a Content-Length or chunk size that is not a number)."""


def _writable(headers: dict) -> bool:
    return all(isinstance(name, str) and isinstance(value, str) and _FIELD_NAME.match(name)
               and _FIELD_VALUE.match(value) for name, value in headers.items())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GraphMailEmulator/1.0"
    # The headers and the body leave in two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers (40 ms on Linux) on a kept-alive connection. Graph answers without that wait.
    disable_nagle_algorithm = True

    @property
    def dispatcher(self) -> Dispatcher:
        return self.server.dispatcher  # type: ignore[attr-defined]

    def _handle(self) -> None:
        try:
            body, oversize = self._read_body()
        except _BadFraming as err:  # the rest of the stream cannot be read as requests: answer, then close
            self.close_connection = True
            request = Request.build(self.command, self.path, self.headers, b"")
            self._write(self.dispatcher.error(GraphError(400, "BadRequest", str(err)), request), request)
            return
        request = Request.build(self.command, self.path, self.headers, body)
        request.oversize = oversize
        try:
            response = self.dispatcher.dispatch(request)
        except DropConnection:  # a scripted fault: the client sees the connection close, no answer
            self.close_connection = True
            return
        self._write(response, request)

    def _write(self, response: Response, request: Request) -> None:
        """Send the response; one whose headers would hold a line break or a control character (an emulator
        bug) is never written: a 500 goes instead."""
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not _writable(response.headers):
            log.error("emulator bug: refused to write the response headers %r", list(response.headers))
            failed = self.dispatcher.error(GraphError(500, "InternalServerError", "The emulator failed."), request)
            response = Response(500, failed.body, {**failed.headers, "X-Content-Type-Options": "nosniff"})
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        streamed = response.stream is not None and response.status < 300
        self.send_header("Content-Length", str(response.stream_length if streamed else len(response.body)))
        self.end_headers()
        if streamed:  # piece by piece: a 100 MB attachment is never held whole
            for piece in response.stream:  # type: ignore[union-attr]
                self.wfile.write(piece)
        elif response.body:
            self.wfile.write(response.body)

    def _read_body(self) -> tuple[bytes, bool]:
        """The request body, or (b"", True) past the limit (4 MB; read to its end, so the connection stays
        usable for the 413 answer)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        given = (self.headers.get("Content-Length") or "0").strip()
        if not _DIGITS.match(given):
            raise _BadFraming(f"The Content-Length header '{given[:40]}' is not a number of bytes.")
        length = int(given)
        if length <= self._limit:
            return (self.rfile.read(length) if length else b""), False
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(_DRAIN_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
        return b"", True

    def _read_chunked(self) -> tuple[bytes, bool]:
        parts, size = [], 0
        while True:
            line = self.rfile.readline(65537)
            size_text = line.split(b";", 1)[0].strip().decode("latin-1")
            if not _HEX.match(size_text) or len(size_text) > 16:
                raise _BadFraming(f"The chunk size '{size_text[:40]}' is not a hexadecimal number.")
            chunk_size = int(size_text, 16)
            if chunk_size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                break
            while chunk_size > 0:  # in pieces: a chunk past the limit is drained, never held
                data = self.rfile.read(min(_DRAIN_CHUNK, chunk_size))
                if not data:
                    raise _BadFraming("The request body ended inside a chunk.")
                chunk_size -= len(data)
                size += len(data)
                if size <= self._limit:
                    parts.append(data)
            self.rfile.readline(65537)  # the CRLF after the chunk
        return (b"", True) if size > self._limit else (b"".join(parts), False)

    @property
    def _limit(self) -> int:
        """Graph's 4 MB; mail from outside, given to the inspection API, may be as large as a message can be."""
        return INBOUND_REQUEST_BYTES if self.path.startswith("/_emulator/inbound") else MAX_REQUEST_BYTES

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def date_time_string(self, timestamp=None) -> str:
        """The Date header from the backend's clock (a client reads the server's time from it: a moved clock
        moves what the client plans against)."""
        return formatdate(self.dispatcher.backend.clock.time() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format, *args):
        log.debug("%s - %s", self.address_string(), _QUERY_SECRET.sub(r"\1=***", format % args))


# Connections the kernel may queue before the accept loop takes them (listen's backlog; Linux caps it at
# net.core.somaxconn): a whole test suite or a triggerer full of gates connects at once.
LISTEN_BACKLOG = 4096
# A client that connects and never completes its TLS handshake holds one thread this long, no more.
HANDSHAKE_TIMEOUT = 30.0


class _TlsServer(ThreadingHTTPServer):
    """A threading server whose accept loop only accepts: each connection's TLS handshake runs in that
    connection's own thread, so one slow or silent client never holds up the others' connects."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def __init__(self, address, handler, context: ssl.SSLContext):
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request, client_address) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:  # a port scan, a plain-HTTP client, a client that gave up
            log.debug("TLS handshake with %s failed: %s", client_address[0], err)
            return
        tls.settimeout(None)
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            self.shutdown_request(tls)


class HttpsServer:
    """Serves ``dispatcher`` on ``site`` over TLS, in a daemon thread."""

    def __init__(self, site: Site, dispatcher: Dispatcher, cert_path: Path, key_path: Path):
        self.site = site
        self.dispatcher = dispatcher
        self.cert_path, self.key_path = cert_path, key_path
        self._server: _TlsServer | None = None

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        server = _TlsServer((self.site.host, self.site.port), _Handler, context)
        server.dispatcher = self.dispatcher  # type: ignore[attr-defined]
        self._server = server
        self.site.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="graph-emulator", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
