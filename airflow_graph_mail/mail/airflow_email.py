"""Airflow's e-mail conventions (smtp provider, ``[email]`` backend) -> a mail sent through GraphMailHook.

``to``/``cc``/``bcc`` as a list or a comma- or semicolon-separated string; ``files`` as paths;
``custom_headers`` as a dict; ``from_email`` as the mailbox to send from.
"""

from __future__ import annotations

from email import message_from_bytes
from email.policy import SMTP
from email.utils import parseaddr

from airflow_graph_mail.mail.errors import MessageValidationError
from airflow_graph_mail.mail.message import Message

# Airflow's fallback when [email] from_email is unset: not a mailbox, so the connection's sender is used.
PLACEHOLDER_FROM = "airflow@airflow"


def sending_mailbox(from_email: str | None) -> str | None:
    """The mailbox named by ``from_email`` ("Name <addr>" or "addr"); None means the connection's sender."""
    address = parseaddr(from_email or "")[1]
    return None if not address or address.lower() == PLACEHOLDER_FROM else address


def build(to, subject: str, html_content: str, *, files=None, cc=None, bcc=None,
          custom_headers: dict | None = None) -> tuple[Message, dict[str, str]]:
    """The Message, and the headers Graph's JSON cannot carry (not ``x-``), which need MIME."""
    headers = {str(k): str(v) for k, v in (custom_headers or {}).items()}
    reply_to = next((v for k, v in headers.items() if k.lower() == "reply-to"), None)
    custom = {k: v for k, v in headers.items() if k.lower().startswith("x-")}
    other = {k: v for k, v in headers.items() if k not in custom and k.lower() != "reply-to"}
    for name, value in other.items():
        if "\r" in value or "\n" in value:
            raise MessageValidationError(f"custom_headers[{name}]", "must not contain a line break (CR or LF)")
    message = Message(to=to, cc=cc or [], bcc=bcc or [], reply_to=reply_to or [], subject=subject,
                      body=html_content or "", body_type="html", attachments=list(files or []), headers=custom)
    return message, other


def send(hook, to, subject: str, html_content: str, *, files=None, cc=None, bcc=None,
         custom_headers: dict | None = None, from_email: str | None = None, dryrun: bool = False) -> str:
    """Send (or with ``dryrun`` only check) the mail; returns "sent", "already_sent" or "dryrun"."""
    message, other_headers = build(to, subject, html_content, files=files, cc=cc, bcc=bcc,
                                   custom_headers=custom_headers)
    sender = sending_mailbox(from_email)
    if dryrun:
        hook.log.info("Dry run: would send %r to %d recipient(s)", message.subject, message.recipient_count)
        return "dryrun"
    if not other_headers:
        return hook.send_mail(message, sender=sender)
    mime = message_from_bytes(message.to_mime(), policy=SMTP)  # standard headers exist only in MIME
    for name, value in other_headers.items():
        del mime[name]
        mime[name] = value
    hook.send_mime(mime, sender=sender)
    return "sent"
