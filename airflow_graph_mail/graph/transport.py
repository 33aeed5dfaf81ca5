"""GraphTransport: authenticated Graph requests, paced per mailbox and retried when that is safe."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from email.utils import parsedate_to_datetime

import requests

from airflow_graph_mail.errors import (
    GraphConnectionError,
    GraphMailError,
    GraphRequestError,
    MessageSizeError,
    OutcomeUnknownError,
    ThrottledError,
)
from airflow_graph_mail.graph.body import StreamingJson
from airflow_graph_mail.graph.call import Call
from airflow_graph_mail.graph.errors import error_from_response
from airflow_graph_mail.graph.pacing import DEFAULT_CONCURRENCY, MailboxPacer
from airflow_graph_mail.graph.retry import RetryPolicy, never_sent, retry_after_seconds
from airflow_graph_mail.redact import redact_url_secrets

log = logging.getLogger(__name__)

# Graph refuses request bodies over 4 MB (base64 included); keep a margin for headers and framing.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
REQUEST_SAFETY_MARGIN = 64 * 1024
# Bodies up to this size are joined before sending; larger ones are streamed piece by piece.
SMALL_BODY_BYTES = 512 * 1024
# Message ids that stay the same when a draft moves to Sent Items.
PREFER_IMMUTABLE_IDS = 'IdType="ImmutableId"'
# Bodiless GETs whose preparation is kept, by URL: a trigger asks for the same URL at every poll.
PREPARED_GETS = 1024


def fits_one_request(body) -> bool:
    return len(body) <= MAX_REQUEST_BYTES - REQUEST_SAFETY_MARGIN


def check_request_size(what: str, body) -> None:
    """Graph refuses a request body over 4 MB with 413; say so before sending, naming the field."""
    if not fits_one_request(body):
        raise MessageSizeError(
            what, f"the request would be {len(body):,} bytes; Graph accepts at most 4 MB per request "
            "(attachments count about 4/3 of their size once base64-encoded). MIME and Graph-shaped dicts "
            "go in one request; give a Message with attachments to send large files")


class GraphTransport:
    """The session, the token source and the retry policy; one pacer per mailbox, shared by threads."""

    def __init__(self, session, credential, base_url: str, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None, concurrency: int = DEFAULT_CONCURRENCY):
        self.session = session
        self.credential = credential
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self._pacers: dict[str, MailboxPacer] = {}
        self._pacers_lock = threading.Lock()
        self._server_time: tuple[float, float] | None = None  # (the server's Date, our monotonic clock then)
        self._prepared: dict[str, tuple[requests.PreparedRequest, dict]] = {}

    def server_time(self) -> float | None:
        """The server's clock now (epoch seconds), from the Date header of its latest answer (any answer, an
        error too); None before the first. Sending windows are Exchange's, so they are planned on its clock."""
        if self._server_time is None:
            return None
        stamp, seen = self._server_time
        return stamp + (time.monotonic() - seen)

    def _note_server_time(self, response: requests.Response) -> None:
        stamp = _date_stamp(response.headers.get("Date", ""))
        if stamp is not None:
            self._server_time = (stamp, time.monotonic())

    def call(self, mailbox: str) -> Call:
        """A new operation on ``mailbox``, with a fresh retry budget."""
        return Call(mailbox, self.retry.budget())

    def pacer(self, call: Call) -> MailboxPacer:
        with self._pacers_lock:
            return self._pacers.setdefault(call.pacer_key, MailboxPacer(self.concurrency))

    def request(self, call: Call, method: str, path: str, *, json_body=None,
                data: bytes | StreamingJson | None = None, content_type: str | None = None, expect=(200,),
                idempotent: bool | None = None, what: str = "message", stream: bool = False) -> requests.Response:
        """One authenticated call, retried within the call's budget when that is safe.

        A 401 renews the token once. 429 waits for Retry-After. 5xx and network errors are retried for
        idempotent calls (GET, DELETE by default); for others they raise OutcomeUnknownError, unless the
        connection was never made. Other errors become typed exceptions. ``what`` names the field a
        request body too large for Graph comes from. ``stream``: the body is read by the caller, piece by
        piece (an attachment's bytes), never held whole.
        """
        data, content_type = self._body(json_body, data, content_type, what)
        headers = self._headers(data, content_type)
        idempotent = method in ("GET", "DELETE") if idempotent is None else idempotent
        pacer = self.pacer(call)
        url = self.base_url + path
        renewed = False
        while True:
            try:
                response = self._send(pacer, method, url, data, headers, stream)
                self._note_server_time(response)
            except requests.RequestException as err:
                failure: GraphMailError = self._no_answer(method, path, url, err, idempotent)
            else:
                if response.status_code in expect:
                    pacer.succeeded()
                    return response
                if response.status_code == 401 and not renewed:
                    self._renew(method, path, response)
                    renewed = True
                    continue
                failure = self._refusal(method, path, response, idempotent, call.mailbox)
            self._wait_or_raise(call, pacer, method, path, failure)

    # -- the steps of one request ----------------------------------------------------------------------

    @staticmethod
    def _body(json_body, data, content_type: str | None, what: str) -> tuple[bytes | StreamingJson | None, str | None]:
        """The request body and its type; a body too large for Graph is refused here, naming ``what``."""
        if isinstance(data, StreamingJson):
            content_type = "application/json"
            if len(data) <= SMALL_BODY_BYTES:  # one send() for headers and body: no per-piece round trips
                data = b"".join(data)
        elif json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            content_type = "application/json"
        if data is not None:
            check_request_size(what, data)
        return data, content_type

    @staticmethod
    def _headers(data, content_type: str | None) -> dict[str, str]:
        headers = {"client-request-id": str(uuid.uuid4()), "Prefer": PREFER_IMMUTABLE_IDS,
                   "Content-Length": "0" if data is None else str(len(data))}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _send(self, pacer: MailboxPacer, method: str, url: str, data, headers: dict,
              stream: bool = False) -> requests.Response:
        """One try, with the current token, in one of the mailbox's slots."""
        headers["Authorization"] = "Bearer " + self.credential.get_token()
        with pacer.slot():
            if method == "GET" and data is None and not stream and not self.session.cookies:
                return self._get(url, headers)
            return self.session.request(method, url, data=data, headers=headers, timeout=self.timeout, stream=stream)

    def _get(self, url: str, headers: dict) -> requests.Response:
        """``session.request("GET", url)`` with the preparation (the URL checked, the session's headers, proxies
        from the environment) done once per URL: a trigger asks for the same URL at every poll, and preparing it
        costs a sixth of a small GET's CPU."""
        found = self._prepared.get(url)
        if found is None:
            if len(self._prepared) >= PREPARED_GETS:
                self._prepared.clear()
            prepared = self.session.prepare_request(requests.Request("GET", url))
            settings = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
            found = self._prepared[url] = (prepared, settings)
        request = found[0].copy()
        request.headers.update(headers)
        return self.session.send(request, timeout=self.timeout, allow_redirects=True, **found[1])

    def _renew(self, method: str, path: str, response: requests.Response) -> None:
        log.info("Graph answered 401 to %s %s; renewing the token once (request-id %s)",
                 method, path, response.headers.get("request-id", ""))
        self.credential.invalidate()

    @staticmethod
    def _no_answer(method: str, path: str, url: str, err: requests.RequestException,
                   idempotent: bool) -> GraphConnectionError:
        """No answer: worth another try when the request changes nothing or never left; else unknown."""
        if not (idempotent or never_sent(err)):
            raise OutcomeUnknownError(method, path, err) from err
        return GraphConnectionError(method, url, err)

    @staticmethod
    def _refusal(method: str, path: str, response: requests.Response, idempotent: bool,
                 mailbox: str = "") -> GraphRequestError:
        """Graph's error answer, typed: returned when another try may pass (429, 5xx), raised otherwise."""
        error = error_from_response(response, mailbox)
        if isinstance(error, ThrottledError) or response.status_code == 429:
            if error.retry_after is None:
                error.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            return error
        if response.status_code >= 500:
            if not idempotent:
                raise OutcomeUnknownError(method, path, error) from error
            return error
        raise error

    def _wait_or_raise(self, call: Call, pacer: MailboxPacer, method: str, path: str,
                       failure: GraphMailError) -> None:
        """Wait before the next try, within the call's budget; raise ``failure`` when the budget is spent."""
        retry_after = getattr(failure, "retry_after", None)
        delay = call.budget.delay(retry_after)
        if delay is None:
            raise failure
        if isinstance(failure, GraphRequestError):
            reason = f"{failure.status} {failure.code} (request-id {failure.request_id or 'none'})"
            if failure.status == 429:
                pacer.throttled(delay)
        else:
            cause = getattr(failure, "cause", failure)
            reason = f"{type(cause).__name__}: {cause}"
        log.warning("Graph %s %s: %s; retry %d in %.1fs", method, path.split("?")[0], redact_url_secrets(reason),
                    call.budget.retries + 1, delay)
        call.budget.wait(delay)


@functools.lru_cache(maxsize=8)
def _date_stamp(date: str) -> float | None:
    """An answer's Date header as epoch seconds (None when unreadable); parsed once per distinct second."""
    try:
        return parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
