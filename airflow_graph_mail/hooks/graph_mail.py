"""GraphMailHook: an Airflow connection (app registration, cloud, sender) -> a GraphMailClient."""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections import Counter
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook, conf, mask_secret

from airflow_graph_mail.airflow_face import DEFAULT_CONN_ID
from airflow_graph_mail.errors import GraphAuthError, GraphMailError
from airflow_graph_mail.get_provider_info import form_widgets, ui_field_behaviour
from airflow_graph_mail.outcomes import Outcome, Status

if TYPE_CHECKING:  # the client and what it imports (requests, msal) load when a hook first connects
    from collections.abc import Iterator, Sequence
    from email.message import EmailMessage

    from airflow_graph_mail.graph.client import GraphMailClient, Prepared
    from airflow_graph_mail.mail.message import Message


# Every line goes through this module's logger, not the hook's ``self.log``: in an Airflow 3 task both reach
# the task log, but a plain logging record costs a fraction of a structlog event, and a small send's own
# line would otherwise be most of what the hook adds to it (docs/benchmarks.md).
log = logging.getLogger(__name__)


class GraphMailHook(BaseHook):
    """Send mail, create and send drafts through Microsoft Graph.

    Signs in with a client secret, a certificate, workload identity, a managed identity or a user's
    refresh token (see README, "Connection fields"); reads ``msgraph`` connections of the microsoft-azure
    provider as they are.

    :param graph_mail_conn_id: the Airflow connection to use.
    """

    conn_name_attr = "graph_mail_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    # A URI scheme: Airflow writes each connection it looks up as a URI and warns on every lookup of a type
    # with '_' (RFC 3986); '-' it would read back as '_'.
    conn_type = "graphmail"
    hook_name = "Microsoft Graph Mail"

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection form's extra fields on Airflow 2.11 to 3.1 (3.2+ reads them from provider info)."""
        return form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden, relabelled and placeholder fields on Airflow 2.11 to 3.1, as provider info says for 3.2+."""
        behaviour = ui_field_behaviour()
        return {"hidden_fields": behaviour["hidden-fields"], "relabeling": behaviour["relabeling"],
                "placeholders": behaviour["placeholders"]}

    def __init__(self, graph_mail_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(**kwargs)
        self.graph_mail_conn_id = graph_mail_conn_id

    @classmethod
    def get_connection(cls, conn_id: str):
        """Airflow's lookup, and where the Task SDK's finds nothing, Airflow core's own.

        On Airflow 3.1+ a process that is neither a task nor a server (``airflow dags test``, which runs a
        DAG's callbacks itself) reads connections from the environment and secrets backends only, never
        from the metadata database where ``airflow connections add`` put them. Core's lookup reads the
        database there, and in a task asks the task's supervisor as the Task SDK does.
        """
        try:
            return super().get_connection(conn_id)
        except AirflowNotFoundException:
            found = _core_connection(conn_id)
            if found is None:
                raise
            return found

    @cached_property
    def client(self) -> GraphMailClient:
        return self.get_conn()

    def get_conn(self) -> GraphMailClient:
        """Build the client from the connection; every field is checked before any request."""
        from airflow_graph_mail.graph.client import GraphMailClient
        from airflow_graph_mail.graph.config import ConnectionFields, read_config

        conn = self.get_connection(self.graph_mail_conn_id)
        config = read_config(ConnectionFields(
            conn_id=self.graph_mail_conn_id, conn_type=conn.conn_type or "", login=conn.login, password=conn.password,
            host=conn.host, schema=conn.schema, extra=dict(conn.extra_dejson)))
        client = GraphMailClient.from_config(config, ref_secret=lambda: _ref_secret(config.ref_secret))
        client.transport.credential.on_secret = mask_secret
        log.info("Graph %s, signing in with %s", config.graph_url, client.transport.credential.describe())
        return client

    # -- mail ----------------------------------------------------------------------------------------

    def send_mail(self, message: Message | dict | Prepared, *, sender: str | None = None,
                  save_to_sent_items: bool = True, idempotency_key: str | None = None,
                  check_first: bool = False) -> Status:
        """sendMail with a Message or a dict in Graph's own message shape, sent at most once per key.

        :param idempotency_key: tags the message so that an unclear answer is checked, not resent blindly.
        :param check_first: look for the key in Sent Items before sending (a retried task).
        :return: "sent", or "already_sent" when ``check_first`` found it.
        """
        prepared = self.client.prepare(message)
        outcome = self.client.send_mail(prepared, sender=sender, save_to_sent_items=save_to_sent_items,
                                        idempotency_key=idempotency_key, check_first=check_first)
        verb = "Sent" if outcome is Status.SENT else "Already sent (not again):"
        log.info("%s %s from %s", verb, prepared.describe(), sender or self.client.default_sender)
        return outcome

    def send_many(self, messages: Sequence[Message | dict], *, keys: Sequence[str | None] | None = None,
                  sender: str | None = None, save_to_sent_items: bool = True, check_first: bool = False,
                  concurrency: int | None = None, label: str = "message {position}: {field}",
                  over_limit: str = "fail") -> list[dict]:
        """Send many messages concurrently within the mailbox's limits (4 requests at once by default).

        Each message is sent at most once per key; a failure does not stop the others. Every message is
        checked first; ``label`` names a bad one's field in the error (e.g. "rows[{position}].{field}").
        ``messages`` may be any sequence, including one that builds each message when it is indexed. The batch
        is planned against the mailbox's 24-hour window first: over it, ``over_limit="fail"`` raises
        SendingLimitError before any send, ``"defer"`` sends what fits and returns the rest as "deferred".

        :return: one outcome per message, in order, as plain dicts (what XCom stores): position, key, to,
            cc, bcc, subject, ref, status ("sent", "already_sent", "failed", "unknown": the answer was lost,
            a retry with check_first looks it up, "deferred", or "not_resent"), error, permanent (a retry cannot
            fix the failure), accepted_at and leaves_at (when it leaves the Outbox, or is planned to).
        """
        return [outcome.as_dict() for outcome in self.send_outcomes(
            messages, keys=keys, sender=sender, save_to_sent_items=save_to_sent_items, check_first=check_first,
            concurrency=concurrency, label=label, over_limit=over_limit)]

    def send_outcomes(self, messages: Sequence[Message | dict], *, keys: Sequence[str | None] | None = None,
                      sender: str | None = None, save_to_sent_items: bool = True, check_first: bool = False,
                      concurrency: int | None = None, label: str = "message {position}: {field}",
                      over_limit: str = "fail", first_position: int = 0) -> list[Outcome]:
        """``send_many``, its outcomes typed (``outcomes.Outcome``); ``first_position`` numbers the messages of a
        batch resumed part way (``graph.bulk.send_many``)."""
        from airflow_graph_mail.graph.bulk import send_many

        outcomes = send_many(self.client, messages, keys=keys, sender=sender, save_to_sent_items=save_to_sent_items,
                             check_first=check_first, concurrency=concurrency, label=label, over_limit=over_limit,
                             first_position=first_position)
        counts = Counter(outcome.status for outcome in outcomes)
        report = log.error if counts[Status.FAILED] or counts[Status.UNKNOWN] else log.info
        report("%d message(s) from %s: %s", len(outcomes), sender or self.client.default_sender,
               ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none")
        return outcomes

    def send_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None) -> None:
        self.client.send_mime(mime, sender=sender)
        log.info("Sent a MIME message from %s", sender or self.client.default_sender)

    def create_draft(self, message: Message | dict, *, sender: str | None = None, folder: str | None = None,
                     idempotency_key: str | None = None, check_first: bool = False) -> dict[str, Any]:
        """A draft; with ``check_first``, one left by an earlier attempt with the same key is replaced."""
        draft = self.client.create_draft(message, sender=sender, folder=folder, idempotency_key=idempotency_key,
                                         check_first=check_first)
        log.info("Created draft %s: %s", draft.get("id"), draft.get("webLink"))
        return draft

    def create_draft_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None,
                          folder: str | None = None) -> dict[str, Any]:
        draft = self.client.create_draft_mime(mime, sender=sender, folder=folder)
        log.info("Created draft %s from MIME: %s", draft.get("id"), draft.get("webLink"))
        return draft

    def delete_message(self, message_id: str, *, sender: str | None = None) -> None:
        self.client.delete_message(message_id, sender=sender)
        log.info("Deleted message %s", message_id)

    def send_draft(self, message_id: str, *, sender: str | None = None, check_first: bool = False) -> Status:
        """Send a draft once; ``check_first`` (a retried task) skips a draft that was already sent."""
        outcome = self.client.send_draft(message_id, sender=sender, check_first=check_first)
        log.info("%s draft %s", "Sent" if outcome is Status.SENT else "Already sent (not again):", message_id)
        return outcome

    def get_message(self, message_id: str, *, sender: str | None = None,
                    select: Sequence[str] = ()) -> dict[str, Any]:
        return self.client.get_message(message_id, sender=sender, select=select)

    def list_messages(self, *, sender: str | None = None, folder: str | None = None, filter: str | None = None,
                      select: Sequence[str] = (), order_by: str | None = None) -> Iterator[dict[str, Any]]:
        """Messages matching an OData ``filter`` in a folder (or the whole mailbox), every page followed."""
        return self.client.list_messages(sender=sender, folder=folder, filter=filter, select=select,
                                         order_by=order_by)

    def get_mime(self, message_id: str, *, sender: str | None = None) -> bytes:
        """A message's MIME, as Graph's ``$value`` gives it."""
        return self.client.get_mime(message_id, sender=sender)

    def test_connection(self) -> tuple[bool, str]:
        """Sign in, then say from the token's claims what this connection can and cannot do, and from one read
        of the sender's Sent Items whether a retry can look for what an earlier try sent (exactly once needs a
        read permission) and whether a scope leaves the mailbox out.

        Changes nothing. Succeeds when a token is obtained and lists what is missing: Exchange RBAC for
        Applications grants Mail.Send without putting it in the token, so a missing claim is reported,
        not judged. The report is also logged, since `airflow connections test` prints only
        "Connection success!" for a success.
        """
        status, report = self._permissions_report()
        if status:
            from airflow_graph_mail.graph.mailbox_access import report_access  # with the client, loaded by now

            report = f"{report} {report_access(self.client)}"
        # A module logger, not the hook's: outside a task Airflow routes "airflow.task.*" nowhere visible.
        log.info("Connection test of %s: %s", self.graph_mail_conn_id, report)
        return status, report

    def _permissions_report(self) -> tuple[bool, str]:
        from airflow_graph_mail.graph.auth import granted_permissions

        try:
            client = self.client
            token = client.transport.credential.get_token()
        except GraphAuthError as err:
            if err.error in ("connection_error", "tls_error"):  # name the host problem, not a traceback
                return False, f"cannot reach the sign-in endpoint: {err.description}"
            return False, str(err)
        except GraphMailError as err:
            return False, str(err)
        delegated, granted = granted_permissions(token) or (False, [])
        kind = "delegated scopes" if delegated else "application permissions"
        who = (f"Signed in with {client.transport.credential.describe()}; {kind} granted: "
               f"{', '.join(granted) or 'none'}.")
        consent = ("ask the user to consent to it" if delegated else
                   "add it under API permissions > Microsoft Graph > Application permissions and grant admin "
                   "consent")
        lacking = [(name, effect) for name, effect in _PERMISSION_EFFECTS
                   if name not in granted and not any(wider in granted for wider in _IMPLIED_BY.get(name, ()))]
        if not lacking:
            return True, who + " Sending, drafts, large attachments and received mail will work."
        notes = " ".join(f"Missing {name}: {effect}; {consent}." for name, effect in lacking)
        rbac = ("" if delegated else " (A permission granted through Exchange RBAC for Applications does not "
                "show in the token; with one, sending works as its scope allows.)")
        return True, f"{who} {notes}{rbac}"


# What each permission is needed for, as test_connection reports it when missing (least privilege: an app
# that only reads received mail needs Mail.Read alone).
_PERMISSION_EFFECTS = (
    ("Mail.Send", "no mail can be sent (sendMail and send draft are refused with 403), nor received mail answered"),
    ("Mail.ReadWrite", "drafts, attachments over 3 MB and the check against duplicate mail on retry will fail "
                       "(small single-request sends still work), and received mail cannot be marked, moved, "
                       "claimed or answered (the asset watcher, GraphMailSensor's claim mode, "
                       "GraphMarkMailOperator, GraphReplyOperator)"),
    ("Mail.Read", "received mail cannot be read (GraphMailSensor, the asset watcher, "
                  "GraphSaveAttachmentsOperator)"),
)
_IMPLIED_BY = {"Mail.Read": ("Mail.ReadWrite",)}  # Mail.ReadWrite reads too



# An unset secret reads as its template's placeholder on Airflow 3's task side ("{SECRET_KEY}"): public text.
_PLACEHOLDER = re.compile(r"^\{[A-Z_]+\}$")


def _ref_secret(own: str | None) -> str | None:
    """The key of the bounce refs this deployment's mails carry: the connection's ``ref_secret``, else the
    secret Airflow needs identical on every component (it signs the log requests a worker answers):
    ``[api] secret_key`` on Airflow 3, ``[webserver] secret_key`` on 2.x. Handed to Airflow's log masker
    (common-compat 1.22+ has it for every supported Airflow), as every token we obtain is; None,
    with one warning per process, when neither is set (the client then keys refs per process)."""
    from airflow_graph_mail.graph.config import MIN_REF_SECRET  # loaded with the client, which asks for this

    if own:
        mask_secret(own)
        return own
    section = "api" if conf.has_option("api", "secret_key") else "webserver"  # no deprecated name on 3.x
    value = conf.get(section, "secret_key", fallback="") or ""
    if len(value) >= MIN_REF_SECRET and not _PLACEHOLDER.match(value):
        mask_secret(value)
        return value
    _warn_no_ref_secret(section, "not set" if not value or _PLACEHOLDER.match(value) else "too short")
    return None


@functools.cache
def _warn_no_ref_secret(section: str, state: str) -> None:
    log.warning("[%s] secret_key is %s, so this process keys the bounce ref of its mails with a secret of its own: a "
                "bounce report still matches them, except mails that a retry in another process found already "
                "sent. Set [%s] secret_key to the same random value on every Airflow component (Airflow needs that "
                "for its logs too), or ref_secret in the connection's extras", section, state, section)


def _core_connection(conn_id: str):
    """The connection as Airflow core finds it, where the hook's lookup is the Task SDK's (3.1+): None when
    core is not installed (a worker with the Task SDK alone) or does not find it either."""
    if not BaseHook.__module__.startswith("airflow.sdk"):  # 2.11, 3.0: the lookup was core's already
        return None
    try:
        from airflow.models.connection import Connection
    except ImportError:
        return None
    with warnings.catch_warnings():  # inside a task core says to use the Task SDK, which it then does
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return Connection.get_connection_from_secrets(conn_id)
        except AirflowNotFoundException:
            return None
