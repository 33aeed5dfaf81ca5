"""Airflow's e-mail conventions (smtp provider, ``[email]`` backend) -> a mail sent through GraphMailHook.

``to``/``cc``/``bcc`` as a list or a comma- or semicolon-separated string; ``files`` as paths;
``custom_headers`` as a dict; ``from_email`` as the mailbox to send from.
"""

from __future__ import annotations

from email import message_from_bytes
from email.policy import SMTP

from airflow_graph_mail.errors import MessageValidationError
from airflow_graph_mail.mail.headers import check_custom_mime_header, check_headers, is_custom_header
from airflow_graph_mail.mail.message import Message
from airflow_graph_mail.mail.recipients import check_sender, parse_recipients

# Airflow's fallback when [email] from_email is unset: not a mailbox, so the connection's sender is used.
PLACEHOLDER_FROM = "airflow@airflow"


def sending_mailbox(from_email: str | None) -> str | None:
    """The mailbox named by ``from_email`` ("Name <addr>" or "addr"); None means the connection's sender."""
    if from_email in (None, ""):
        return None
    if not isinstance(from_email, str):
        raise MessageValidationError("from_email", f"expected an address, got {type(from_email).__name__}")
    if from_email.strip().lower().removesuffix(">").endswith(PLACEHOLDER_FROM):
        return None
    found = parse_recipients(from_email, field="from_email")
    if len(found) != 1:
        raise MessageValidationError("from_email", "give one mailbox to send from")
    return check_sender("from_email", found[0].address)


def build(to, subject: str, html_content: str, *, files=None, cc=None, bcc=None,
          custom_headers: dict | None = None) -> tuple[Message, dict[str, str]]:
    """The Message, and the headers Graph's JSON cannot carry (not ``x-``), which need MIME."""
    headers = check_headers("custom_headers", custom_headers)
    reply_to = next((v for k, v in headers.items() if k.lower() == "reply-to"), None)
    custom = {k: v for k, v in headers.items() if is_custom_header(k)}
    other = {k: v for k, v in headers.items() if k not in custom and k.lower() != "reply-to"}
    for name in other:
        check_custom_mime_header("custom_headers", name)
    message = Message(to=to, cc=cc or [], bcc=bcc or [], reply_to=reply_to or [], subject=subject,
                      body=html_content or "", body_type="html", attachments=files, headers=custom)
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
