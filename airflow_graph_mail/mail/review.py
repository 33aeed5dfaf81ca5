"""Where a draft under review stands, read from the message Graph returns for its immutable id.

A person reviews a draft in Outlook and either sends it (Graph then finds, under the same immutable id, a
message that is no longer a draft, in Sent Items) or discards it (the id finds nothing, or a draft in
Deleted Items). No HTTP and no Airflow here: ``graph/review.py`` asks Graph (and confirms that an id which
finds nothing is really gone), for the sensor and its trigger alike.
"""

from __future__ import annotations

from airflow_graph_mail.mail.idempotency import ref_of

WAITING, SENT, DISCARDED = "waiting", "sent", "discarded"
# What the sensor asks Graph for: enough to tell the state and say what was finally sent.
SELECT = ("id", "isDraft", "parentFolderId", "subject", "toRecipients", "ccRecipients", "bccRecipients",
          "sentDateTime", "internetMessageId", "internetMessageHeaders", "webLink")


def state_of(message: dict, deleted_items_id: str) -> str:
    """WAITING, SENT or DISCARDED (a draft in Deleted Items) for the message the draft's id found."""
    if message.get("isDraft") is False:
        return SENT
    if deleted_items_id and message.get("parentFolderId") == deleted_items_id:
        return DISCARDED
    return WAITING


def sent_summary(message: dict) -> dict:
    """What was finally sent (the reviewer may have changed recipients or subject), in plain JSON types."""
    def addresses(field: str) -> list[str]:
        return [str((r.get("emailAddress") or {}).get("address", "")) for r in message.get(field) or []]

    return {"id": message.get("id", ""), "sent_at": message.get("sentDateTime", ""),
            "subject": message.get("subject", ""), "to": addresses("toRecipients"), "cc": addresses("ccRecipients"),
            "bcc": addresses("bccRecipients"), "internet_message_id": message.get("internetMessageId", ""),
            "web_link": message.get("webLink", ""), "ref": ref_of(message.get("internetMessageHeaders"))}
