"""Which of a run's mails still wait to leave the mailbox: Exchange lets 30 a minute go and reports a bounce only
after a mail left, so a bounce report's settle time starts once they have.

Waiting mail is in the Outbox (as Outlook on the web shows it) or, by Graph's own account of sendMail, in Drafts
no longer a draft; both are listed once per look, each message with its idempotency key (``$expand`` of the
extended property), whatever the number of keys asked about.
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow_graph_mail.mail.idempotency import PROPERTY_ID

_EXPAND = f"singleValueExtendedProperties($filter=id eq '{PROPERTY_ID}')"


def waiting(client, keys: Iterable[str], sender: str | None = None) -> set[str]:
    """The keys among ``keys`` whose mail has not left the mailbox yet."""
    wanted = set(keys)
    found: set[str] = set()
    for folder, only in (("outbox", None), ("drafts", "isDraft eq false")):
        for message in client.list_messages(sender=sender, folder=folder, filter=only, select=("id",),
                                            expand=_EXPAND, page_size=1000):
            for prop in message.get("singleValueExtendedProperties") or []:
                if isinstance(prop, dict) and prop.get("value") in wanted:
                    found.add(prop["value"])
    return found


def last_to_leave(outcomes: Iterable, most: int = 50) -> list[str]:
    """The keys of the mails that leave last (planned latest, then accepted latest, then the highest position):
    the Outbox lets a mailbox's mail go in the order it came, so once these left, all did."""
    keyed = [o for o in outcomes if o.key]
    keyed.sort(key=lambda o: (o.leaves_at, o.accepted_at, o.position), reverse=True)
    return [o.key for o in keyed[:most]]
