"""A recipient allow-list: report pipelines can promise that no mail leaves the listed domains."""

from __future__ import annotations

from collections.abc import Iterable

from airflow_graph_mail.errors import MessageValidationError
from airflow_graph_mail.mail.recipients import ascii_domain


class AllowedDomains:
    """``contoso.com`` allows that domain only; ``*.contoso.com`` allows its subdomains too.

    Domains are compared in their ASCII (IDNA) form, so bücher.example and xn--bcher-kva.example match."""

    def __init__(self, domains: list[str]):
        self.exact: set[str] = set()
        self.suffixes: set[str] = set()
        for domain in domains:
            name = domain.strip().lower()
            wildcard = name.startswith("*.")
            name = name[2:] if wildcard else name
            try:
                name = ascii_domain(name) if name else name
            except UnicodeError:
                name = ""
            if not name or "@" in name or "." not in name:
                raise MessageValidationError("allowed_recipient_domains", f"{domain!r} is not a domain; give "
                                             "domains like contoso.com or *.contoso.com")
            self.exact.add(name)
            if wildcard:
                self.suffixes.add("." + name)
        self.listed = ", ".join(sorted(d.strip() for d in domains))

    def allows(self, address: str) -> bool:
        try:
            domain = ascii_domain(address.rpartition("@")[2])
        except UnicodeError:
            return False
        return domain in self.exact or any(domain.endswith(suffix) for suffix in self.suffixes)

    def check(self, addresses: Iterable[tuple[str, str]]) -> None:
        """Every (field, address) a message goes to, or that a reply to it reaches (Reply-To), must be in a
        listed domain; the error names the field."""
        for field, address in addresses:
            if not self.allows(address):
                raise MessageValidationError(field, f"{address!r} is outside the allowed recipient domains "
                                             f"({self.listed}): remove it, or add its domain to the "
                                             "connection's allowed_recipient_domains")
