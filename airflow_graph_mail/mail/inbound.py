"""Inbound mail as data: which mail a watch wants (``MailFilter``), what is told about a mail (``summarize``:
plain JSON for an asset event, a DAG run's conf or XCom), and the marks this provider leaves on a mail so
that each one is handled once.

Everything here comes from strangers: a subject, a sender, attachment names are data, capped in length and
stripped of control characters, never a template, a header or a path. No HTTP, no Airflow.

The marks are single-value extended properties in this provider's namespace (invisible in Outlook, one
PATCH each), one pair per *scope* (a watch, or a sensor): ``Announced.<scope>`` is written by the watcher
before it announces a mail ("<attempt> <UTC time>", or "dead <attempt> <UTC time>" once it gave up), and
``Claimed.<scope>`` by whoever took the mail ("<dag_id>/<run_id>[/<task_id>]"). Each has one kind of
writer, so neither overwrites the other's.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import re
from dataclasses import asdict, dataclass

from airflow_graph_mail.errors import GraphConfigError
from airflow_graph_mail.mail.auth_results import authentication_results, is_authenticated
from airflow_graph_mail.mail.headers import CONTROL
from airflow_graph_mail.mail.idempotency import PROPERTY_SET

# A scope names the marks' properties: a fixed small set per deployment (each name is a MAPI named property).
_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 500  # characters of a subject or name kept in an event, a conf or XCom
MAX_NAMES = 50  # attachment names kept in an event
MAX_FILTER_LENGTH = 2000  # a raw $filter longer than this is not one a person wrote
RUN_ID_PREFIX = "mail__"
# What a listing asks Graph for: enough to filter and to say what arrived.
SUMMARY_FIELDS = ("id", "receivedDateTime", "subject", "from", "sender", "hasAttachments", "internetMessageId",
                  "conversationId", "parentFolderId", "isRead")
HEADERS_FIELD = "internetMessageHeaders"


def check_scope(field_name: str, value) -> str:
    if not isinstance(value, str) or not _SCOPE.match(value):
        raise GraphConfigError(f"{field_name}: {value!r} must be 1 to 64 letters, digits, '_', '.' or '-' "
                               "(it names the marks this provider leaves on each mail), starting with a letter "
                               "or digit")
    return value


def announced_property(scope: str) -> str:
    return f"String {PROPERTY_SET} Name AirflowGraphMailAnnounced.{check_scope('watch_name', scope)}"


def claimed_property(scope: str) -> str:
    return f"String {PROPERTY_SET} Name AirflowGraphMailClaimed.{check_scope('watch_name', scope)}"


def property_value(message: dict, property_id: str) -> str | None:
    """The value of one expanded single-value extended property (ids compared as Exchange compares them)."""
    wanted = " ".join(property_id.split()).casefold()
    for prop in message.get("singleValueExtendedProperties") or []:
        if isinstance(prop, dict) and " ".join(str(prop.get("id", "")).split()).casefold() == wanted:
            value = prop.get("value")
            return value if isinstance(value, str) else None
    return None


@dataclass(frozen=True)
class Announcement:
    """What the Announced mark says: how often the mail was announced, when last, and whether the watcher
    gave up on it (dead-lettered: announced ``max_attempts`` times and nobody claimed it)."""

    attempt: int
    at: float  # epoch seconds
    dead: bool = False

    def value(self) -> str:
        stamp = dt.datetime.fromtimestamp(self.at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{'dead ' if self.dead else ''}{self.attempt} {stamp}"

    @classmethod
    def parse(cls, value: str | None) -> Announcement | None:
        """None for no mark, or one nobody can read (a person edited it): the mail is then announced anew."""
        if not value:
            return None
        parts = value.split()
        dead = bool(parts) and parts[0] == "dead"
        parts = parts[1:] if dead else parts
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        try:
            at = dt.datetime.strptime(parts[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            return None
        return cls(min(int(parts[0]), 10**6), at, dead)


def mail_key(mailbox: str, message_id: str) -> str:
    """One mail, for good: the mailbox and the message's immutable id, hashed (Graph's ids hold '=' and '/',
    which Airflow's run ids refuse)."""
    return hashlib.sha256(f"{mailbox.strip().lower()}\0{message_id}".encode()).hexdigest()[:32]


def run_id_for(mailbox: str, message_id: str) -> str:
    """The handler run's id for this mail: the metadata database's unique (dag_id, run_id) makes it one run."""
    return RUN_ID_PREFIX + mail_key(mailbox, message_id)


def clean(value, limit: int = MAX_TEXT) -> str:
    """Text from outside as data: a string, without control characters, at most ``limit`` characters."""
    text = value if isinstance(value, str) else ""
    return CONTROL.sub(" ", text)[:limit]


def _address(person) -> tuple[str, str]:
    email = person.get("emailAddress") if isinstance(person, dict) else None
    if not isinstance(email, dict):
        return "", ""
    return clean(email.get("address"), 320).strip().lower(), clean(email.get("name"), 200)


def utc_text(value, field_name: str) -> str:
    """A time as Graph's filters take it (``2026-11-20T08:00:00Z``), from a datetime or ISO 8601 text; a time
    without a zone is UTC."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise GraphConfigError(f"{field_name}: {value!r} is not an ISO 8601 time; give e.g. "
                                   "'2026-11-20T08:00:00Z' or a datetime") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise GraphConfigError(f"{field_name}: expected a datetime or ISO 8601 text, got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str) -> float:
    """Graph's UTC time text -> epoch seconds (0 when unreadable: sorted first, never a crash)."""
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class MailFilter:
    """Which mail a sensor or watch wants. Graph applies ``received_after``, ``has_attachments`` and
    ``raw_filter``; this side applies the rest (Graph's delta query takes no other filter).

    - ``senders``: addresses, or ``@domain`` for anyone there (the ``From`` address; not authentication);
    - ``subject``: text the subject contains, any case;
    - ``attachment_name``: a glob (``*.csv``) some attachment's name matches, any case;
    - ``require_authenticated``: Exchange's Authentication-Results says DMARC or compauth passed for the
      From domain.
    """

    senders: tuple[str, ...] = ()
    subject: str | None = None
    received_after: str | None = None
    has_attachments: bool | None = None
    attachment_name: str | None = None
    raw_filter: str | None = None
    require_authenticated: bool = False

    @classmethod
    def of(cls, *, sender=None, subject=None, received_after=None, has_attachments=None, attachment_name=None,
           raw_filter=None, require_authenticated=False) -> MailFilter:
        """Every option checked, naming it: a wrong filter fails the DAG's import, not a poll at 3 a.m."""
        senders = [sender] if isinstance(sender, str) else list(sender or [])
        checked = []
        for entry in senders:
            if not isinstance(entry, str) or not entry.strip() or CONTROL.search(entry) or " " in entry.strip() \
                    or "@" not in entry:
                raise GraphConfigError(f"sender: {entry!r} is not an address or '@domain'")
            checked.append(entry.strip().lower())
        for name, value in (("subject", subject), ("attachment_name", attachment_name), ("raw_filter", raw_filter)):
            if value is not None and (not isinstance(value, str) or not value.strip() or CONTROL.search(value)):
                raise GraphConfigError(f"{name}: expected non-empty text without control characters, got {value!r}")
        if raw_filter is not None and len(raw_filter) > MAX_FILTER_LENGTH:
            raise GraphConfigError(f"raw_filter: {len(raw_filter):,} characters; at most {MAX_FILTER_LENGTH:,}")
        for name, value in (("has_attachments", has_attachments), ("require_authenticated", require_authenticated)):
            if value is not None and not isinstance(value, bool):
                raise GraphConfigError(f"{name}: expected True, False or None, got {value!r}")
        after = utc_text(received_after, "received_after") if received_after not in (None, "") else None
        return cls(tuple(checked), subject, after, has_attachments, attachment_name, raw_filter,
                   bool(require_authenticated))

    def as_kwargs(self) -> dict:
        """Plain JSON (a trigger's kwargs): the same filter comes back from ``MailFilter.of(**kwargs)``."""
        found = asdict(self)
        found["sender"] = list(found.pop("senders"))
        return found

    def server_filter(self, since: str | None) -> str:
        """Graph's ``$filter`` for the plain listing: receivedDateTime first (the order by which it sorts)."""
        since = max(filter(None, (since, self.received_after)), default="1970-01-01T00:00:00Z")
        parts = [f"receivedDateTime ge {since}"]
        if self.has_attachments is not None:
            parts.append(f"hasAttachments eq {'true' if self.has_attachments else 'false'}")
        if self.raw_filter:
            parts.append(f"({self.raw_filter})")
        return " and ".join(parts)

    @property
    def needs_attachments(self) -> bool:
        return self.attachment_name is not None

    def matches(self, message: dict) -> bool:
        """What a listing or delta page tells: received time, sender, subject, has attachments."""
        if self.received_after and str(message.get("receivedDateTime") or "") < self.received_after:
            return False
        if self.has_attachments is not None and bool(message.get("hasAttachments")) != self.has_attachments:
            return False
        if self.senders:
            address = _address(message.get("from"))[0]
            domain = "@" + address.rsplit("@", 1)[-1] if "@" in address else ""
            if not address or not any(s in (address, domain) for s in self.senders):
                return False
        return not (self.subject and self.subject.casefold() not in clean(message.get("subject")).casefold())

    def accepts(self, summary: dict) -> tuple[bool, str]:
        """What needs the message's details (attachment names, headers): (accepted, why not)."""
        if self.attachment_name and not any(fnmatch.fnmatch(n.casefold(), self.attachment_name.casefold())
                                            for n in summary.get("attachments") or []):
            return False, f"no attachment named like {self.attachment_name!r}"
        if self.require_authenticated and not is_authenticated(summary.get("authentication") or {},
                                                               summary.get("sender", "")):
            return False, ("the sender is not authenticated (Authentication-Results: "
                           f"{summary.get('authentication') or 'none'})")
        return True, ""


def summarize(message: dict, *, mailbox: str, folder: str | None, attachments: list[dict] | None = None) -> dict:
    """What is told about one mail (asset event, run conf, XCom): plain JSON, every text capped and cleaned.

    ``attachments``: the message's attachment metadata when it was listed (names kept, inline images too)."""
    sender, sender_name = _address(message.get("from"))
    headers = message.get(HEADERS_FIELD)
    names = [clean(a.get("name"), 255) for a in attachments or [] if isinstance(a, dict)]
    return {
        "message_id": clean(message.get("id"), 1024),
        "internet_message_id": clean(message.get("internetMessageId"), 998),
        "conversation_id": clean(message.get("conversationId"), 1024),
        "mailbox": mailbox,
        "folder": folder or "",
        "sender": sender,
        "sender_name": sender_name,
        "subject": clean(message.get("subject")),
        "received": clean(message.get("receivedDateTime"), 40),
        "has_attachments": bool(message.get("hasAttachments")),
        "attachments": names[:MAX_NAMES],
        "attachment_count": len(names),
        "authentication": authentication_results(headers) if isinstance(headers, list) else None,
    }
