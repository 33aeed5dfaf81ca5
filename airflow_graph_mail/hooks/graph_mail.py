"""GraphMailHook: an Airflow connection (app registration, cloud, sender) -> a GraphMailClient."""

from __future__ import annotations

import base64
import ipaddress
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import BaseHook

from airflow_graph_mail.graph.errors import GraphConfigError, GraphMailError

if TYPE_CHECKING:
    from email.message import EmailMessage

    from airflow_graph_mail.graph.client import GraphMailClient
    from airflow_graph_mail.mail.message import Message


def _check_url(field: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise GraphConfigError(f"{field}: {url!r} is not a URL; expected https://host")
    if parts.scheme == "http":
        try:
            loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise GraphConfigError(f"{field}: plain http:// is allowed only for a loopback host; use https://")
    return url.rstrip("/")


def _number(value, default: float) -> float:
    """A connection extra as a number: ``default`` when unset, NaN (failing every range check) when not one."""
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _message_size_limit(where: str, value) -> int:
    """The tenant's message size limit in MB (Exchange Online: 35 by default, up to 150) -> bytes."""
    from airflow_graph_mail.graph.client import DEFAULT_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES
    from airflow_graph_mail.mail.attachments import MB

    size = _number(value, DEFAULT_MAX_MESSAGE_BYTES / MB) * MB
    if not 0 < size <= MAX_MESSAGE_BYTES:
        raise GraphConfigError(f"{where}: extra 'max_message_size_mb' is {value!r}; give a number of MB from 1 to "
                               "150 (your tenant's limit; Exchange Online's default is 35)")
    return int(size)


def _seconds(where: str, name: str, value, default: float) -> float:
    """A number of seconds (0 or more) from a connection extra."""
    seconds = _number(value, default)
    if not seconds >= 0:
        raise GraphConfigError(f"{where}: extra {name!r} is {value!r}; give a number of seconds (0 or more)")
    return seconds


def _roles_in(token: str) -> list[str]:
    """Application roles (or delegated scopes) from an access token's claims, without verifying it."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return []
    return list(claims.get("roles") or []) + (claims.get("scp") or "").split()


class GraphMailHook(BaseHook):
    """Send mail, create and send drafts through Microsoft Graph with an app registration.

    Connection: login = client id, password = client secret (or a certificate in the extras),
    extras ``tenant_id``, ``sender``, ``cloud``, ``graph_url``, ``authority_url``, ``api_version``,
    ``ca_bundle``, ``certificate_path``, ``certificate_private_key``, ``certificate_passphrase``, ``timeout``,
    ``max_message_size_mb``, ``retry_max_wait``, ``retry_backoff``.

    :param graph_mail_conn_id: the Airflow connection to use.
    """

    conn_name_attr = "graph_mail_conn_id"
    default_conn_name = "graph_mail_default"
    conn_type = "graph_mail"
    hook_name = "Microsoft Graph Mail"

    def __init__(self, graph_mail_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(**kwargs)
        self.graph_mail_conn_id = graph_mail_conn_id

    @cached_property
    def client(self) -> GraphMailClient:
        return self.get_conn()

    def get_conn(self) -> GraphMailClient:
        """Build the client from the connection; every field is checked before any request."""
        from airflow_graph_mail.graph.auth import ClientCredential, load_certificate
        from airflow_graph_mail.graph.client import GraphMailClient
        from airflow_graph_mail.graph.clouds import get_cloud, scope_for
        from airflow_graph_mail.graph.retry import DEFAULT_BACKOFF, DEFAULT_MAX_WAIT, RetryPolicy
        from airflow_graph_mail.graph.session import build_session

        conn = self.get_connection(self.graph_mail_conn_id)
        extra = conn.extra_dejson
        where = f"connection {self.graph_mail_conn_id!r}"
        client_id = (conn.login or extra.get("client_id") or "").strip()
        tenant_id = str(extra.get("tenant_id") or "").strip()
        if not client_id:
            raise GraphConfigError(f"{where}: login (the app's client id) is empty")
        if not tenant_id:
            raise GraphConfigError(f"{where}: extra 'tenant_id' is empty; set the directory (tenant) id")
        try:
            cloud = get_cloud(extra.get("cloud"))
        except ValueError as err:
            raise GraphConfigError(f"{where}: {err}") from None
        graph_url = _check_url("graph_url", extra.get("graph_url") or cloud.graph_url)
        authority_url = _check_url("authority_url", extra.get("authority_url") or cloud.authority_url)

        certificate = None
        cert_path, cert_inline = extra.get("certificate_path"), extra.get("certificate_private_key")
        if conn.password and (cert_path or cert_inline):
            raise GraphConfigError(f"{where}: both a client secret (password) and a certificate are set; "
                                   "remove one of them")
        if cert_path and cert_inline:
            raise GraphConfigError(f"{where}: both certificate_path and certificate_private_key are set; "
                                   "remove one of them")
        if cert_path:
            path = Path(cert_path).expanduser()
            if not path.is_file():
                raise GraphConfigError(f"{where}: certificate_path {str(path)!r} is not a readable file")
            certificate = load_certificate(path.read_bytes(), extra.get("certificate_passphrase"))
        elif cert_inline:
            certificate = load_certificate(str(cert_inline).encode("ascii"), extra.get("certificate_passphrase"))
        elif not conn.password:
            raise GraphConfigError(f"{where}: no credential; set the password (client secret) or a "
                                   "certificate (certificate_path or certificate_private_key)")

        ca_bundle = extra.get("ca_bundle")
        if ca_bundle and not Path(ca_bundle).expanduser().is_file():
            raise GraphConfigError(f"{where}: ca_bundle {ca_bundle!r} is not a file")
        session = build_session(verify=str(Path(ca_bundle).expanduser()) if ca_bundle else True,
                                proxies=extra.get("proxies"))
        credential = ClientCredential(
            tenant_id=tenant_id, client_id=client_id, authority_url=authority_url, scope=scope_for(graph_url),
            session=session, client_secret=None if certificate else conn.password, certificate=certificate,
        )
        return GraphMailClient(session, credential, graph_url, api_version=extra.get("api_version") or "v1.0",
                               default_sender=extra.get("sender"), timeout=float(extra.get("timeout") or 60),
                               max_message_bytes=_message_size_limit(where, extra.get("max_message_size_mb")),
                               retry=RetryPolicy(
                                   max_wait=_seconds(where, "retry_max_wait", extra.get("retry_max_wait"),
                                                     DEFAULT_MAX_WAIT),
                                   backoff=_seconds(where, "retry_backoff", extra.get("retry_backoff"),
                                                    DEFAULT_BACKOFF)))

    # -- mail ----------------------------------------------------------------------------------------

    def send_mail(self, message: Message | dict, *, sender: str | None = None, save_to_sent_items: bool = True,
                  idempotency_key: str | None = None, check_first: bool = False) -> str:
        """sendMail with a Message or a dict in Graph's own message shape, sent at most once per key.

        :param idempotency_key: tags the message so that an unclear answer is checked, not resent blindly.
        :param check_first: look for the key in Sent Items before sending (a retried task).
        :return: "sent", or "already_sent" when ``check_first`` found it.
        """
        outcome = self.client.send_mail(message, sender=sender, save_to_sent_items=save_to_sent_items,
                                        idempotency_key=idempotency_key, check_first=check_first)
        verb = "Sent" if outcome == "sent" else "Already sent (not again):"
        self.log.info("%s %s from %s", verb, _describe(message), sender or self.client.default_sender)
        return outcome

    def send_many(self, messages: list[Message | dict], *, keys: list[str | None] | None = None,
                  sender: str | None = None, save_to_sent_items: bool = True, check_first: bool = False,
                  concurrency: int | None = None) -> list[dict]:
        """Send many messages concurrently within the mailbox's limits (4 requests at once by default).

        Each message is sent at most once per key; a failure does not stop the others.
        :return: one outcome per message, in order: position, key, to, subject, status ("sent",
            "already_sent" or "failed") and error.
        """
        from airflow_graph_mail.graph.bulk import FAILED, send_many

        outcomes = send_many(self.client, messages, keys=keys, sender=sender, save_to_sent_items=save_to_sent_items,
                             check_first=check_first, concurrency=concurrency)
        counts = {}
        for outcome in outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        log = self.log.error if counts.get(FAILED) else self.log.info
        log("%d message(s) from %s: %s", len(outcomes), sender or self.client.default_sender,
            ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none")
        return [o.as_dict() for o in outcomes]

    def send_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None) -> None:
        self.client.send_mime(mime, sender=sender)
        self.log.info("Sent a MIME message from %s", sender or self.client.default_sender)

    def create_draft(self, message: Message | dict, *, sender: str | None = None, folder: str | None = None,
                     idempotency_key: str | None = None, check_first: bool = False) -> dict[str, Any]:
        """A draft; with ``check_first``, one left by an earlier attempt with the same key is replaced."""
        draft = self.client.create_draft(message, sender=sender, folder=folder, idempotency_key=idempotency_key,
                                         check_first=check_first)
        self.log.info("Created draft %s: %s", draft.get("id"), draft.get("webLink"))
        return draft

    def create_draft_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None,
                          folder: str | None = None) -> dict[str, Any]:
        draft = self.client.create_draft_mime(mime, sender=sender, folder=folder)
        self.log.info("Created draft %s from MIME: %s", draft.get("id"), draft.get("webLink"))
        return draft

    def delete_message(self, message_id: str, *, sender: str | None = None) -> None:
        self.client.delete_message(message_id, sender=sender)
        self.log.info("Deleted message %s", message_id)

    def send_draft(self, message_id: str, *, sender: str | None = None, check_first: bool = False) -> str:
        """Send a draft once; ``check_first`` (a retried task) skips a draft that was already sent."""
        outcome = self.client.send_draft(message_id, sender=sender, check_first=check_first)
        self.log.info("%s draft %s", "Sent" if outcome == "sent" else "Already sent (not again):", message_id)
        return outcome

    def get_message(self, message_id: str, *, sender: str | None = None) -> dict[str, Any]:
        return self.client.get_message(message_id, sender=sender)

    def test_connection(self) -> tuple[bool, str]:
        """Acquire a token and report its mail permissions; touches no mailbox."""
        try:
            token = self.client.credential.get_token()
        except GraphMailError as err:
            return False, str(err)
        except OSError as err:  # requests' connection and TLS errors: name the host problem, not a traceback
            return False, f"cannot reach the authority: {err}"
        roles = _roles_in(token)
        missing = [r for r in ("Mail.Send", "Mail.ReadWrite") if r not in roles]
        granted = ", ".join(sorted(roles)) or "none"
        if missing:
            return True, (f"Token acquired; permissions granted: {granted}. Missing: {', '.join(missing)} "
                          "(Mail.Send is needed to send, Mail.ReadWrite for drafts).")
        return True, f"Token acquired; permissions granted: {granted}."


def _describe(message) -> str:
    if isinstance(message, dict):
        subject = next((v for k, v in message.items() if k.lower() == "subject"), "")
        return f"message {subject!r}"
    return f"{message.subject!r} to {message.recipient_count} recipient(s)"
