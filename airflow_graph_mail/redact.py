"""Secrets that travel in URLs, hidden from error text and from every log line, at any level.

Outlook's upload URLs carry an ``authtoken`` in their query, and a proxy URL may carry a password.
urllib3 prints every request line at DEBUG: ``RedactUrlSecrets`` rewrites those records before any
handler sees them.
"""

from __future__ import annotations

import logging
import re

_URL_SECRET = re.compile(r"(?i)\b(authtoken|access_token|refresh_token|client_secret|client_assertion|sig)="
                         r"[^&\s'\")]+")
# A URL's user:password@ (the password up to the authority's last '@', which may hold more of them).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):[^/\s]*@")
# Loggers that print request lines or URLs of the requests we make.
URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "requests")


def redact_url_secrets(text: str) -> str:
    """Error text that may quote a URL (requests does) -> the same text without the URL's credentials
    (query tokens, and the password of a URL such as http://user:pass@proxy:3128 or s3://key:secret@bucket).
    The one place that hides them: every error, log line and attachment source goes through it."""
    return _URL_USERINFO.sub(r"\1:***@", _URL_SECRET.sub(lambda m: f"{m.group(1)}=***", text))


class RedactUrlSecrets(logging.Filter):
    """A logging filter that hides URL credentials in the formatted message; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record that cannot be formatted is left to the handler
            return True
        redacted = redact_url_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_FILTER = RedactUrlSecrets()


def install_url_redaction() -> None:
    """Add the filter to the loggers that print our request URLs (once; adding it again changes nothing)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
