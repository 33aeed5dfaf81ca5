"""A connection's fields -> checked, typed settings for the client: where Graph is, how to sign in, limits.

Pure: no Airflow, no files, no environment, no network. ``read_config`` takes the connection as plain
fields (the hook reads them from Airflow) and checks every one, so that an error names the field and the
fix before any request. Reads this provider's ``graph_mail`` connections and, unchanged, the
microsoft-azure provider's ``msgraph`` ones. ``graph.credentials`` turns ``CredentialConfig`` into a
token source.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_graph_mail.errors import GraphConfigError, MessageValidationError
from airflow_graph_mail.graph.clouds import cloud_for_graph_url, get_cloud
from airflow_graph_mail.graph.limits import (
    DELIVERY_GUARANTEES,
    EXACTLY_ONCE,
    MESSAGES_PER_MINUTE,
    MOST_RECIPIENTS_PER_MESSAGE,
    RECIPIENTS_PER_DAY,
    RECIPIENTS_PER_MESSAGE,
    MailboxLimits,
)
from airflow_graph_mail.graph.retry import DEFAULT_BACKOFF, DEFAULT_MAX_WAIT
from airflow_graph_mail.mail.allow_list import AllowedDomains
from airflow_graph_mail.mail.attachments import MB
from airflow_graph_mail.mail.recipients import check_sender

SECRET = "secret"  # noqa: S105 - the name of a kind of credential
CERTIFICATE = "certificate"
WORKLOAD_IDENTITY = "workload_identity"
MANAGED_IDENTITY = "managed_identity"
REFRESH_TOKEN = "refresh_token"  # noqa: S105 - the name of a kind of credential
CREDENTIALS = (SECRET, CERTIFICATE, WORKLOAD_IDENTITY, MANAGED_IDENTITY, REFRESH_TOKEN)
# The fields that carry each kind of credential; a field of another kind is a conflict to remove.
_CREDENTIAL_FIELDS = {
    "password": (SECRET, REFRESH_TOKEN),  # a confidential app may redeem a refresh token with its secret
    "certificate_path": (CERTIFICATE,),
    "certificate_private_key": (CERTIFICATE,),
    "federated_token_file": (WORKLOAD_IDENTITY,),
    "refresh_token": (REFRESH_TOKEN,),
}
API_VERSIONS = ("v1.0", "beta")
# Extras that must be text when set (paths, URLs, names, secrets): a number or a list there is a mistake.
_TEXT_EXTRAS = ("tenant_id", "sender", "cloud", "graph_url", "authority_url", "api_version", "ca_bundle",
                "credential", "certificate_path", "certificate_private_key", "certificate_passphrase",
                "certificate_thumbprint", "federated_token_file", "refresh_token", "token_cache_path", "client_id",
                "ref_secret", "delivery_guarantee")
# Exchange Online's default message size limit; an admin can raise it to 150 MB.
DEFAULT_MAX_MESSAGE_BYTES = 35 * MB
MAX_MESSAGE_BYTES = 150 * MB
DEFAULT_TIMEOUT = 60.0
# The shortest ref_secret taken: refs are public, so a short secret could be found by trying them all.
MIN_REF_SECRET = 16


@dataclass(frozen=True)
class ConnectionFields:
    """An Airflow connection as plain data (the hook reads it; nothing here knows Airflow)."""

    conn_id: str
    conn_type: str
    login: str | None = None
    password: str | None = None
    host: str | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CredentialConfig:
    """How to sign in; ``graph.credentials.build_credential`` makes the token source."""

    kind: str
    authority_url: str
    tenant_id: str
    client_id: str
    scopes: tuple[str, ...]
    secret: str | None = None
    certificate_path: str | None = None
    certificate_pem: str | None = None
    certificate_passphrase: str | None = None
    certificate_thumbprint: str | None = None
    certificate_send_x5c: bool = False
    federated_token_file: str | None = None
    refresh_token: str | None = None
    token_cache_path: str | None = None

    def __repr__(self) -> str:  # never a secret
        return f"CredentialConfig(kind={self.kind!r}, client_id={self.client_id!r}, tenant_id={self.tenant_id!r})"


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client needs, checked."""

    where: str  # "connection 'graph_mail_default'", for messages
    graph_url: str
    api_version: str
    sender: str | None
    timeout: float
    max_message_bytes: int
    retry_max_wait: float
    retry_backoff: float
    verify: bool | str
    proxies: dict[str, str] | None
    allowed_recipients: AllowedDomains | None
    credential: CredentialConfig = field(repr=False)
    ref_secret: str | None = field(default=None, repr=False)  # keys bounce refs; else the deployment's
    limits: MailboxLimits = field(default_factory=MailboxLimits)
    delivery_guarantee: str = EXACTLY_ONCE


def read_config(fields: ConnectionFields) -> ClientConfig:
    """Check every field; the first wrong one raises GraphConfigError naming it and the fix."""
    where = f"connection {fields.conn_id!r}"
    extra = dict(fields.extra or {})
    if fields.conn_type == "msgraph":
        extra = _from_msgraph(fields, extra)
    for name in _TEXT_EXTRAS:
        if extra.get(name) not in (None, "") and not isinstance(extra[name], str):
            raise GraphConfigError(f"{where}: extra {name!r} is {type(extra[name]).__name__}; give text")
    kind = credential_type(where, fields.password, extra)
    try:
        cloud = get_cloud(extra.get("cloud")) if extra.get("cloud") else None
    except GraphConfigError as err:
        raise GraphConfigError(f"{where}: {err}") from None
    graph_url = check_url("graph_url", extra.get("graph_url") or (cloud or get_cloud(None)).graph_url)
    cloud = cloud or cloud_for_graph_url(graph_url) or get_cloud(None)
    authority_url = check_url("authority_url", extra.get("authority_url") or cloud.authority_url)
    api_version = str(extra.get("api_version") or "v1.0")
    if api_version not in API_VERSIONS:
        raise GraphConfigError(f"{where}: extra 'api_version' is {api_version!r}; use v1.0 or beta")
    sender = extra.get("sender") or ("me" if kind == REFRESH_TOKEN else None)
    if sender is not None:
        try:
            sender = check_sender("sender", sender)
        except MessageValidationError as err:
            raise GraphConfigError(f"{where}: extra {err}") from None
    return ClientConfig(
        where=where, graph_url=graph_url, api_version=api_version, sender=sender,
        timeout=seconds(where, "timeout", extra.get("timeout"), DEFAULT_TIMEOUT, positive=True),
        max_message_bytes=message_size_limit(where, extra.get("max_message_size_mb")),
        retry_max_wait=seconds(where, "retry_max_wait", extra.get("retry_max_wait"), DEFAULT_MAX_WAIT),
        retry_backoff=seconds(where, "retry_backoff", extra.get("retry_backoff"), DEFAULT_BACKOFF),
        verify=_verify(where, extra), proxies=_proxies(where, extra.get("proxies")),
        allowed_recipients=_allowed_domains(where, extra.get("allowed_recipient_domains")),
        credential=_credential_config(where, kind, fields, extra, authority_url, _scopes(extra, graph_url, kind)),
        ref_secret=_ref_secret(where, extra.get("ref_secret")), limits=_limits(where, extra),
        delivery_guarantee=_delivery_guarantee(where, extra.get("delivery_guarantee")))


# The mailbox's limits a connection may state: (extra, least, most, default, what it is and where it comes from).
_LIMITS = (
    ("recipient_limit", 1, MOST_RECIPIENTS_PER_MESSAGE, RECIPIENTS_PER_MESSAGE,
     "recipients per message (Exchange Online's default is 500; an admin can set 1 to 1000)"),
    ("daily_recipient_limit", 1, RECIPIENTS_PER_DAY, RECIPIENTS_PER_DAY,
     "recipients per 24 hours (Exchange Online's limit is 10,000 and cannot be raised; give less where an "
     "outbound spam policy sets less)"),
    ("message_rate_limit", 1, MESSAGES_PER_MINUTE, MESSAGES_PER_MINUTE,
     "messages per minute (Exchange Online's limit is 30 and cannot be raised)"),
)


def _limits(where: str, extra: dict) -> MailboxLimits:
    values = []
    for name, least, most, default, what in _LIMITS:
        value = number(extra.get(name), default)
        if not (least <= value <= most and value == int(value)):
            raise GraphConfigError(f"{where}: extra {name!r} is {extra.get(name)!r}; give a whole number from {least} "
                                   f"to {most:,}: the mailbox's {what}")
        values.append(int(value))
    return MailboxLimits(*values)


def _delivery_guarantee(where: str, value) -> str:
    chosen = str(value or EXACTLY_ONCE).strip().lower().replace("-", "_")
    if chosen not in DELIVERY_GUARANTEES:
        raise GraphConfigError(f"{where}: extra 'delivery_guarantee' is {value!r}; use exactly_once (the default: a "
                               "retry looks in the mailbox first, which needs a read permission), at_least_once (a "
                               "retry that cannot look sends again) or at_most_once (it does not)")
    return chosen


def _ref_secret(where: str, value) -> str | None:
    """The connection's own key for bounce refs (checked as text already); its length, never its value, in
    an error."""
    if value in (None, ""):
        return None
    if len(value) < MIN_REF_SECRET:
        raise GraphConfigError(f"{where}: extra 'ref_secret' is {len(value)} characters; give at least "
                               f"{MIN_REF_SECRET} random ones (python -c \"import secrets; "
                               "print(secrets.token_urlsafe(32))\"), or remove it to use Airflow's [api] secret_key")
    return value


def check_url(field_name: str, url) -> str:
    if not isinstance(url, str):
        raise GraphConfigError(f"{field_name}: expected a URL such as https://host, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise GraphConfigError(f"{field_name}: {url!r} is not a URL; expected https://host")
    if parts.scheme == "http":
        try:
            loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise GraphConfigError(f"{field_name}: plain http:// is allowed only for a loopback host; use https://")
    return url.rstrip("/")


def number(value, default: float) -> float:
    """A connection extra as a finite number: ``default`` when unset, NaN (failing every range check) when
    not one (text that is not a number, a bool, infinity)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return float("nan")
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")
    return result if math.isfinite(result) else float("nan")


def seconds(where: str, name: str, value, default: float, *, positive: bool = False) -> float:
    """A number of seconds from a connection extra: 0 or more, or more than 0 with ``positive``."""
    result = number(value, default)
    if not (result > 0 if positive else result >= 0):
        least = "more than 0" if positive else "0 or more"
        raise GraphConfigError(f"{where}: extra {name!r} is {value!r}; give a number of seconds ({least})")
    return result


def message_size_limit(where: str, value) -> int:
    """The tenant's message size limit in MB (Exchange Online: 35 by default, up to 150) -> bytes."""
    size = number(value, DEFAULT_MAX_MESSAGE_BYTES / MB) * MB
    if not 0 < size <= MAX_MESSAGE_BYTES:
        raise GraphConfigError(f"{where}: extra 'max_message_size_mb' is {value!r}; give a number of MB from 1 to "
                               "150 (your tenant's limit; Exchange Online's default is 35)")
    return int(size)


def flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _from_msgraph(fields: ConnectionFields, extra: dict) -> dict:
    """The microsoft-azure provider's msgraph connection, restated in our extras' names."""
    ours = {k: v for k, v in extra.items() if k in ("sender", "timeout", "max_message_size_mb", "retry_max_wait",
                                                    "retry_backoff", "cloud", "credential", "ref_secret",
                                                    "recipient_limit", "daily_recipient_limit", "message_rate_limit",
                                                    "delivery_guarantee")}
    ours["tenant_id"] = extra.get("tenant_id") or extra.get("tenantId")
    ours["api_version"] = extra.get("api_version")
    base_url = str(extra.get("base_url") or "").strip().rstrip("/")
    if base_url:
        head, _, last = base_url.rpartition("/")
        if last in API_VERSIONS:
            base_url, ours["api_version"] = head, last  # as there, the base URL wins over api_version
        ours["graph_url"] = base_url
    elif fields.host:
        ours["graph_url"] = fields.host if "://" in fields.host else f"{fields.schema or 'https'}://{fields.host}"
    authority = str(extra.get("authority") or "").strip()
    if authority:
        ours["authority_url"] = authority if "://" in authority else f"https://{authority}"
    ours["certificate_path"] = extra.get("certificate_path")
    ours["certificate_private_key"] = extra.get("certificate_data")
    ours["proxies"] = extra.get("proxies")
    ours["scopes"] = extra.get("scopes")
    verify = extra.get("verify", True)
    if isinstance(verify, str) and verify.strip().lower() not in ("true", "false", "1", "0", ""):
        ours["ca_bundle"] = verify  # httpx's verify also takes a CA file
    elif not flag(verify) and verify not in (True, "", None):
        ours["tls_verify"] = False
    return {k: v for k, v in ours.items() if v not in (None, "")}


def _proxies(where: str, value) -> dict[str, str] | None:
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise GraphConfigError(f"{where}: extra 'proxies' is not JSON; give "
                                   '{"https": "http://proxy:3128"}') from None
    if not isinstance(value, dict):
        raise GraphConfigError(f"{where}: extra 'proxies' must map a scheme to a proxy URL")
    for scheme, url in value.items():
        if not isinstance(url, str) or not urlsplit(url).scheme or not urlsplit(url).hostname:
            shown = repr(url) if not isinstance(url, str) else "text that is not a URL"  # it may hold a password
            raise GraphConfigError(f"{where}: extra 'proxies' maps {scheme!r} to {shown}; give a proxy URL such "
                                   "as http://proxy.contoso.com:3128")
    return {str(k): v for k, v in value.items()}


def _verify(where: str, extra: dict) -> bool | str:
    """A CA bundle path, True (the system's CAs), or False for an explicit ``tls_verify: false`` only."""
    value = extra.get("tls_verify")
    if value in (None, "", True) or str(value).strip().lower() == "true":
        ca_bundle = extra.get("ca_bundle")
        return ca_bundle or True
    if value is False or str(value).strip().lower() == "false":
        return False
    raise GraphConfigError(f"{where}: extra 'tls_verify' is {value!r}; leave it unset (verified), or give false "
                           "to turn certificate checks off (unsafe; prefer ca_bundle)")


def credential_type(where: str, password: str | None, extra: dict) -> str:
    """The one way this connection signs in: the ``credential`` extra, or the only credential field set."""
    present = [name for name in _CREDENTIAL_FIELDS if (password if name == "password" else extra.get(name))]
    chosen = str(extra.get("credential") or "").strip().lower().replace("-", "_")
    if chosen and chosen not in CREDENTIALS:
        raise GraphConfigError(f"{where}: extra 'credential' is {chosen!r}; use one of {', '.join(CREDENTIALS)}")
    if not chosen:
        # A refresh token may come with its app's secret; otherwise each field names its own kind.
        kinds = {REFRESH_TOKEN} if "refresh_token" in present else {_CREDENTIAL_FIELDS[n][0] for n in present}
        if not kinds:
            raise GraphConfigError(f"{where}: no credential; set the password (client secret), a certificate "
                                   "(certificate_path or certificate_private_key), federated_token_file, "
                                   "refresh_token, or credential=managed_identity")
        if len(kinds) > 1:
            raise GraphConfigError(f"{where}: several credentials are set ({', '.join(present)}); keep one "
                                   "and remove the others, or name the one to use in extra 'credential'")
        chosen = kinds.pop()
    conflicts = [name for name in present if chosen not in _CREDENTIAL_FIELDS[name]]
    if conflicts:
        field_name = "the password (client secret)" if conflicts == ["password"] else ", ".join(conflicts)
        raise GraphConfigError(f"{where}: credential is {chosen} but {field_name} is also set; remove it")
    if chosen == CERTIFICATE and extra.get("certificate_path") and extra.get("certificate_private_key"):
        raise GraphConfigError(f"{where}: both certificate_path and certificate_private_key are set; "
                               "remove one of them")
    return chosen


def _scopes(extra: dict, graph_url: str, kind: str) -> tuple[str, ...]:
    given = extra.get("scopes")
    if given:
        items = given if isinstance(given, list) else str(given).replace(",", " ").split()
        return tuple(str(s).strip() for s in items if str(s).strip())
    if kind == REFRESH_TOKEN:  # named delegated scopes, so MSAL's cache finds the token again
        return (f"{graph_url}/Mail.Send", f"{graph_url}/Mail.ReadWrite")
    return (f"{graph_url}/.default",)


def _allowed_domains(where: str, value) -> AllowedDomains | None:
    if value in (None, "", []):
        return None
    items = value if isinstance(value, list) else str(value).replace(";", ",").replace(" ", ",").split(",")
    try:
        return AllowedDomains([str(item) for item in items if str(item).strip()])
    except MessageValidationError as err:
        raise GraphConfigError(f"{where}: extra {err}") from None


def check_app_ids(where: str, client_id: str, tenant_id: str) -> None:
    """An app signs in with its client id in its directory (tenant); workload identity may read both from
    the environment first (``graph.credentials``)."""
    if not client_id:
        raise GraphConfigError(f"{where}: login (the app's client id) is empty")
    if not tenant_id:
        raise GraphConfigError(f"{where}: extra 'tenant_id' is empty; set the directory (tenant) id")


def _credential_config(where: str, kind: str, fields: ConnectionFields, extra: dict, authority_url: str,
                       scopes: tuple[str, ...]) -> CredentialConfig:
    """What the credential needs; the workload identity webhook's environment fills gaps later."""
    client_id = (fields.login or extra.get("client_id") or "").strip()
    tenant_id = str(extra.get("tenant_id") or "").strip()
    if kind not in (MANAGED_IDENTITY, WORKLOAD_IDENTITY):
        check_app_ids(where, client_id, tenant_id)
    return CredentialConfig(
        kind=kind, authority_url=authority_url, tenant_id=tenant_id, client_id=client_id, scopes=scopes,
        secret=fields.password or None, certificate_path=extra.get("certificate_path") or None,
        certificate_pem=extra.get("certificate_private_key") or None,
        certificate_passphrase=extra.get("certificate_passphrase") or None,
        certificate_thumbprint=extra.get("certificate_thumbprint") or None,
        certificate_send_x5c=flag(extra.get("certificate_send_x5c")),
        federated_token_file=extra.get("federated_token_file") or None,
        refresh_token=extra.get("refresh_token") or None, token_cache_path=extra.get("token_cache_path") or None)
