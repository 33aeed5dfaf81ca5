"""Asking Graph where a draft under review stands: one look at a time, the same for the sensor's poke and for its
trigger (which runs it in a thread), through the client's one road (typed errors, token renewal, TLS, proxies).

A draft counts as discarded only when it is found in Deleted Items, or when CONFIRM_LOOKS looks in a row, spaced
apart, find nothing (a replica that has not seen the draft yet answers 404 once). An id Graph cannot
read, a mailbox it does not know or a permission it refuses are errors that name the id or the mailbox, never
the reviewer's decision. No Airflow here.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from airflow_graph_mail.errors import (
    GraphConfigError,
    GraphMailError,
    ItemNotFoundError,
    MailboxNotFoundError,
    MalformedIdError,
    UnexpectedAnswerError,
)
from airflow_graph_mail.graph.retry import RetryPolicy
from airflow_graph_mail.mail.headers import CONTROL
from airflow_graph_mail.mail.review import DISCARDED, SELECT, WAITING, state_of

log = logging.getLogger(__name__)

GONE = "gone"  # the id found nothing this time; DISCARDED once CONFIRM_LOOKS looks in a row agree
CONFIRM_LOOKS = 3
# Graph's message ids are about 150 characters; anything far longer is not one.
MAX_ID_LENGTH = 1024
_NOTHING_RENDERED = ("none", "null")  # what a template renders when xcom_pull finds nothing
_TAKE_THE_DRAFT_ID = "pass the draft id GraphDraftOperator pushes as XCom draft_id"
# For looks whose waits belong to the caller (the trigger sleeps without holding a thread).
NO_RETRIES = RetryPolicy(max_retries=0)


def confirm_delay(poke_interval: float) -> float:
    """Seconds between the looks that confirm a draft is gone: the poke interval, within 2 to 10 s."""
    return min(max(poke_interval, 2.0), 10.0)


def check_message_id(message_id) -> str:
    """The draft id as rendered, refused before any request when it cannot be one of Graph's ids."""
    if not isinstance(message_id, str):
        raise GraphConfigError(f"message_id: expected the draft's id as text, got {type(message_id).__name__}")
    if not message_id.strip():
        raise GraphConfigError(f"message_id: empty draft id; {_TAKE_THE_DRAFT_ID}")
    if message_id.lower() in _NOTHING_RENDERED:
        raise GraphConfigError(f"message_id: {message_id!r} is what a template renders when xcom_pull finds nothing "
                               f"(a misspelled task id or key?); {_TAKE_THE_DRAFT_ID}")
    if CONTROL.search(message_id) or any(c.isspace() for c in message_id):
        raise GraphConfigError(f"message_id: {message_id[:80]!r} holds a space, line break or control character; "
                               f"Graph's ids have none ({_TAKE_THE_DRAFT_ID})")
    if len(message_id) > MAX_ID_LENGTH:
        raise GraphConfigError(f"message_id: {len(message_id):,} characters; Graph's message ids are a few hundred at "
                               f"most ({_TAKE_THE_DRAFT_ID})")
    return message_id


@dataclass
class Look:
    state: str  # WAITING, SENT, DISCARDED or GONE
    message: dict | None = None


class DraftReview:
    """Where one draft stands, asked of Graph one look at a time; Deleted Items' id is asked for once.

    ``retries=False``: a look that meets throttling, 5xx or no answer raises at once (the typed error carries
    Graph's Retry-After), for a caller that waits on its own terms."""

    def __init__(self, client, message_id, sender: str | None = None, *, retries: bool = True):
        self.client = client
        self.message_id = check_message_id(message_id)
        call = client.call(sender)
        self.call = call if retries else dataclasses.replace(call, budget=NO_RETRIES.budget())
        self.mailbox = self.call.mailbox
        self._deleted_items = ""
        self._gone = 0

    def look(self) -> Look:
        try:
            message = self.client.get_message(self.message_id, call=self.call, select=SELECT)
        except (MalformedIdError, MailboxNotFoundError):
            raise
        except ItemNotFoundError:
            self._gone += 1
            return Look(DISCARDED if self._gone >= CONFIRM_LOOKS else GONE)
        self._gone = 0
        if not isinstance(message, dict):
            raise UnexpectedAnswerError(f"Graph answered draft {self.message_id!r} with {type(message).__name__}, "
                                        "not a message")
        self._follow(message.get("id"))
        if message.get("isDraft") is not False and not self._deleted_items:
            try:
                self._deleted_items = self.client.folder_id("deleteditems", call=self.call)
            except (MalformedIdError, MailboxNotFoundError):
                raise
            except ItemNotFoundError as err:  # cannot tell whether it was discarded: not a decision either
                log.warning("Draft %s: Deleted Items could not be found (%s); looking again later", self.message_id,
                            err)
                return Look(WAITING, message)
        return Look(state_of(message, self._deleted_items), message)

    def _follow(self, found) -> None:
        """Go on by the immutable id Graph names the draft with (every request asks for those): a regular id, which
        Graph reads as well, changes when the draft is sent, and the next look would take the send for a
        discard."""
        if not isinstance(found, str) or not found or found == self.message_id:
            return
        try:
            check_message_id(found)
        except GraphConfigError:
            return  # not an id to ask for: keep the one we were given
        log.warning("Draft %s: following it by its immutable id %s from now on: a regular id changes when the draft "
                    "is sent (a sensor in mode='reschedule' starts each poke from the id it was given and would take "
                    "the send for a discard); pass the id GraphDraftOperator pushes", self.message_id, found)
        self.message_id = found

    def failure(self, err: GraphMailError) -> str:
        """What a failed look means for the gate, naming the id or the mailbox, and the fix."""
        if not isinstance(err, (MalformedIdError, MailboxNotFoundError)):
            return f"{err} (draft {self.message_id!r} in mailbox {self.mailbox!r})"
        answer = f"{err.status} {err.code}, request-id {err.request_id or 'none'}"
        if isinstance(err, MalformedIdError):
            return (f"message_id: Graph cannot read {self.message_id!r} as a message id ({answer}); "
                    f"{_TAKE_THE_DRAFT_ID}")
        return (f"sender: Graph knows no mailbox {self.mailbox!r} ({answer}); name the mailbox that holds draft "
                f"{self.message_id!r} (the sensor's sender, or the connection's)")


def failure_text(err: GraphMailError, review: DraftReview | None) -> str:
    """The gate's words for an error: the review's when it got as far as asking Graph, else the error's own."""
    return review.failure(err) if review is not None else str(err)
