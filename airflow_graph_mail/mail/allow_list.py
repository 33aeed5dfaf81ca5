"""A recipient allow-list: report pipelines can promise that no mail leaves the listed domains."""

from __future__ import annotations

from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default
from email.utils import getaddresses

from airflow_graph_mail.mail.errors import MessageValidationError
from airflow_graph_mail.mail.recipients import parse_recipients

_FIELDS = (("to", "toRecipients", "To"), ("cc", "ccRecipients", "Cc"), ("bcc", "bccRecipients", "Bcc"))


class AllowedDomains:
    """``contoso.com`` allows that domain only; ``*.contoso.com`` allows its subdomains too."""

    def __init__(self, domains: list[str]):
        self.exact: set[str] = set()
        self.suffixes: set[str] = set()
        for domain in domains:
            name = domain.strip().lower()
            wildcard = name.startswith("*.")
            name = name[2:] if wildcard else name
            if not name or "@" in name or "." not in name:
                raise MessageValidationError("allowed_recipient_domains", f"{domain!r} is not a domain; give "
                                             "domains like contoso.com or *.contoso.com")
            self.exact.add(name)
            if wildcard:
                self.suffixes.add("." + name)
        self.listed = ", ".join(sorted(d.strip() for d in domains))

    def allows(self, address: str) -> bool:
        domain = address.rpartition("@")[2].lower()
        return domain in self.exact or any(domain.endswith(suffix) for suffix in self.suffixes)

    def check(self, message) -> None:
        """Every to/cc/bcc address of a Message, a Graph message dict or MIME must be in a listed domain."""
        for field, address in recipients_of(message):
            if not self.allows(address):
                raise MessageValidationError(field, f"{address!r} is outside the allowed recipient domains "
                                             f"({self.listed}): remove it, or add its domain to the "
                                             "connection's allowed_recipient_domains")


def recipients_of(message) -> list[tuple[str, str]]:
    """(field, address) for to, cc and bcc of any message form the client sends."""
    if isinstance(message, (bytes, str)):
        data = message.encode("utf-8") if isinstance(message, str) else message
        message = BytesHeaderParser(policy=default).parsebytes(data)
    if isinstance(message, EmailMessage) or hasattr(message, "get_all"):
        return [(field, address) for field, _, header in _FIELDS
                for _, address in getaddresses(message.get_all(header, [])) if address]
    if isinstance(message, dict):
        keys = {key.lower(): key for key in message}
        return [(graph, r.address) for _, graph, _ in _FIELDS if graph.lower() in keys
                for r in parse_recipients(message[keys[graph.lower()]], field=graph)]
    return [(field, r.address) for field, _, _ in _FIELDS for r in getattr(message, field)]
