"""HTTP on the wire: the request as the handlers see it, the response they give, Graph's error body."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from graph_mail_emulator.backend.text import has_control
from graph_mail_emulator.errors import GraphError, bad_request

_SLASHES = re.compile(r"/{2,}")
# obs-fold: a header value continued on the next line; RFC 9112 lets a server replace it with a space.
_FOLD = re.compile(r"\r?\n[ \t]*")
# A Host header: a name or an address, then an optional port.
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^\s:\[\]/@]+))(?::[0-9]{1,5})?$")


@dataclass
class Request:
    method: str
    path: str
    query: dict  # the last non-empty value of each name
    headers: dict  # lower-cased names
    body: bytes
    query_pairs: list = field(default_factory=list)  # every (name, value), in order
    params: dict = field(default_factory=dict)
    oversize: bool = False
    fault: int | str | None = None  # the injected fault this request met, for the request log
    generated_id: str = ""  # the client-request-id made for a client that sent none

    @classmethod
    def build(cls, method: str, target: str, headers, body: bytes) -> Request:
        path, _, query = target.partition("?")
        path = _SLASHES.sub("/", path)  # Graph reads ".../v1.0//users/..." (msgraph-sdk sends it) as one slash
        pairs = parse_qsl(query, keep_blank_values=True)
        headers = {k.lower(): _FOLD.sub(" ", v) for k, v in headers.items()}
        return cls(method, path, {k: v for k, v in pairs if v}, headers, body, pairs)

    def system_options(self) -> dict[str, str]:
        """The OData system query options ($select, $top, ...) by lower-cased name. One given twice, in any
        case, is refused as OData refuses it."""
        options: dict[str, str] = {}
        for name, value in self.query_pairs:
            if name.startswith("$"):
                if name.lower() in options:
                    raise bad_request("BadRequest", f"Query option '{name.lower()}' was specified more than once, "
                                      "but it must be specified at most once.")
                options[name.lower()] = value
        return options

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: arrays nested 100,000 deep
            raise bad_request("BadRequest", "Unable to read JSON request payload. Please ensure Content-Type "
                              "header is set and payload is of valid JSON format.") from None

    @property
    def immutable_ids(self) -> bool:
        """Prefer: IdType="ImmutableId" -- ids that survive a move between folders."""
        prefer = self.headers.get("prefer", "").replace(" ", "").lower()
        return 'idtype="immutableid"' in prefer

    @property
    def same_origin(self) -> bool:
        """False for a request a page on another site made a browser send (a form or fetch POST): browsers
        say where a request comes from in Sec-Fetch-Site and Origin. Clients other than browsers send
        neither and are allowed."""
        site, origin = self.headers.get("sec-fetch-site"), self.headers.get("origin")
        if site is not None and site not in ("same-origin", "none"):
            return False
        return origin is None or origin == f"https://{self.headers.get('host', '')}"

    @property
    def client_request_id(self) -> str:
        """The client's id for this request, or one made for it, as Graph makes one (echoed in the answer's
        header and in an error's innerError)."""
        given = self.headers.get("client-request-id")
        if given is not None and not has_control(given) and given.isascii():  # echoed in a header
            return given
        if not self.generated_id:
            self.generated_id = str(uuid.uuid4())
        return self.generated_id

    def origin(self, default: str) -> str:
        """https://{the Host the client asked for}: the emulator's address, or a Microsoft name pointed here."""
        host = self.headers.get("host")
        return f"https://{host}" if host else default

    @property
    def host_name(self) -> str | None:
        """The name in the Host header, without its port (None when there is no Host header); a malformed
        header is returned whole, so that it matches no allowed name."""
        host = self.headers.get("host")
        if host is None:
            return None
        host = host.strip().lower()
        found = _HOST.match(host)
        return (found.group("v6") or found.group("name")) if found else host

    @property
    def is_mime(self) -> bool:
        return self.headers.get("content-type", "").split(";")[0].strip().lower() == "text/plain"


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    # A large body (an attachment's $value) written piece by piece instead of ``body``: its pieces and length.
    stream: Iterable[bytes] | None = None
    stream_length: int = 0

    @classmethod
    def json(cls, status: int, obj, headers: dict | None = None) -> Response:
        return cls(status, json.dumps(obj).encode("utf-8"),
                   {"Content-Type": "application/json; odata.metadata=minimal", **(headers or {})})


def graph_error(err: GraphError, request: Request, stamp: str) -> Response:
    """Graph's error body; ``stamp`` (now, from the backend's clock) is its innerError's date."""
    inner = {"date": stamp, "request-id": str(uuid.uuid4()),
             "client-request-id": request.client_request_id}
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    return Response.json(err.status, body, {"request-id": inner["request-id"], **err.headers})
