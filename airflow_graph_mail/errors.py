"""Every error this provider raises, in one tree: ``except GraphMailError`` catches all of them.

Each error says whether a retry can help (``permanent``): bad input, bad configuration, a refused sign-in
or a 403 stay wrong however often the task runs, while throttling, 5xx and lost answers may pass. The
operators fail a task without using its retries for a permanent error.

No Airflow and no HTTP library here: ``mail/`` and ``graph/`` raise these from plain Python.
"""

from __future__ import annotations

from airflow_graph_mail.outcomes import Outcome, Status
from airflow_graph_mail.redact import redact_url_secrets

__all__ = ["AccessDeniedError", "AttachmentReadError", "BatchFailedError", "GraphAuthError", "GraphConfigError",
           "GraphConnectionError", "GraphMailError", "GraphRequestError", "InboundLimitError",
           "InvalidAuthenticationTokenError",
           "InvalidMimeError", "InvalidRecipientsError", "ItemNotFoundError", "MailboxNotEnabledError",
           "MailboxNotFoundError", "MalformedIdError", "MessageSizeError", "MessageTooLargeError",
           "MessageValidationError", "NoLookupError", "OutcomeUnknownError", "RenderTimeoutError",
           "SendingLimitError", "ServiceUnavailableError",
           "ThrottledError", "UnexpectedAnswerError", "UnreadableReportError", "UploadFailedError"]


class GraphMailError(Exception):
    """Anything this provider raises."""

    permanent = False


# -- before any request ------------------------------------------------------------------------------


class GraphConfigError(GraphMailError, ValueError):
    """The connection or the call is set up wrong; nothing was sent."""

    permanent = True


class MessageValidationError(GraphMailError, ValueError):
    """A message field is wrong; ``field`` names it so the caller knows what to fix. Nothing was sent."""

    permanent = True

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class MessageSizeError(MessageValidationError):
    """The message or request is larger than Graph or the tenant accepts; found before sending it."""


class RenderTimeoutError(GraphMailError):
    """A template did not finish rendering within the time allowed (an endless loop, say)."""

    permanent = True

    def __init__(self, field: str, seconds: float):
        self.field = field
        self.seconds = seconds
        super().__init__(f"{field}: the template did not finish rendering within {seconds:g}s; look for an "
                         "endless loop or recursion in it (the limit is the operator's render_timeout or the "
                         "task's execution_timeout, whichever is shorter)")


# -- signing in --------------------------------------------------------------------------------------

# Token endpoint errors that a later try may not meet (RFC 6749 and Entra's own).
_TRANSIENT_AUTH_ERRORS = {"temporarily_unavailable", "server_error", "connection_error"}


class GraphAuthError(GraphMailError):
    """Entra refused the token request (wrong secret, unknown app, bad tenant...)."""

    def __init__(self, error: str, description: str, hint: str = ""):
        self.error = error
        self.description = description
        self.permanent = error not in _TRANSIENT_AUTH_ERRORS
        first_line = (description or "").splitlines()[0] if description else ""
        text = f"token request failed: {error}: {first_line}"
        super().__init__(text + (f" ({hint})" if hint else ""))


# -- no answer ---------------------------------------------------------------------------------------


class GraphConnectionError(GraphMailError, OSError):
    """No answer from Graph or Entra (network, TLS, timeout) for a call that changed nothing."""

    def __init__(self, method: str, url: str, cause: Exception):
        self.method, self.url, self.cause = method, redact_url_secrets(url.split("?")[0]), cause
        super().__init__(f"{method} {self.url}: no answer ({redact_url_secrets(str(cause))})")


class OutcomeUnknownError(GraphMailError):
    """A request that changes a mailbox got no clear answer (5xx, timeout, dropped connection), and the
    retry budget is spent: it may or may not have taken effect. A retried task looks it up first."""

    def __init__(self, method: str, path: str, cause: Exception, hint: str = ""):
        self.method, self.path, self.cause = method, path.split("?")[0], cause
        text = (f"{method} {self.path}: no clear answer from Graph ({redact_url_secrets(str(cause))}); it may or "
                "may not have taken effect")
        super().__init__(text + (f" -- {hint}" if hint else ""))


# -- Graph answered with an error --------------------------------------------------------------------


class GraphRequestError(GraphMailError):
    """Graph answered with an error body; carries Graph's code, message and request-id."""

    hint = ""
    retry_after: float | None = None  # seconds Graph asked to wait (429, 5xx), read into a sane range

    def __init__(self, status: int, code: str, message: str, request_id: str = "", client_request_id: str = "",
                 hint: str | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.client_request_id = client_request_id
        if hint is not None:  # this answer's own advice (a mailbox named), instead of the class's
            self.hint = hint
        text = f"Graph answered {status} {code}: {message}"
        if self.hint:
            text += f" -- {self.hint}"
        if request_id:
            text += f" (request-id {request_id})"
        super().__init__(text)

    @property
    def permanent(self) -> bool:  # type: ignore[override]
        """4xx other than 408/429: the same request meets the same answer (a 401 was renewed once already)."""
        return 400 <= self.status < 500 and self.status not in (408, 429)


class InvalidAuthenticationTokenError(GraphRequestError):
    hint = "the access token was missing, expired or for another resource"


class AccessDeniedError(GraphRequestError):
    hint = (
        "the app registration lacks an application permission: grant Mail.Send (sending) and "
        "Mail.ReadWrite (drafts) in Entra, then an admin must grant consent (or, with Exchange RBAC for "
        "Applications, assign the role with a scope that covers this mailbox)"
    )


class MailboxNotEnabledError(GraphRequestError):
    hint = "the sender has no Exchange Online mailbox (no licence, or an on-premises mailbox): pick another sender"


class InvalidRecipientsError(GraphRequestError):
    pass


class ItemNotFoundError(GraphRequestError):
    hint = "the message or mailbox does not exist (a draft already sent, or the wrong sender)"


class MalformedIdError(ItemNotFoundError):
    """Graph cannot read the id at all (400 ErrorInvalidIdMalformed): a typo, never a message that is gone.

    An ItemNotFoundError for callers that only ask "is it there?"; the review gate tells the two apart."""

    hint = "this is not an id Graph gave: pass the message's id as Graph returned it"


class MailboxNotFoundError(ItemNotFoundError):
    """No such user or mailbox in the tenant (404 ErrorInvalidUser): the sender is wrong, not the message."""

    hint = "no such mailbox in the tenant: check the sender (or the connection's sender)"


class MessageTooLargeError(GraphRequestError):
    pass


class InvalidMimeError(GraphRequestError):
    pass


class ThrottledError(GraphRequestError):
    def __init__(self, *args, retry_after: float | None = None, **kwargs):
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ServiceUnavailableError(GraphRequestError):
    pass


class AttachmentReadError(GraphMailError):
    """An attachment's source changed or vanished while it was being sent (a file rewritten meanwhile)."""


class InboundLimitError(GraphMailError):
    """A received mail goes beyond a limit the task set (attachments too many or too large, a destination file
    already there): mail comes from strangers, so nothing is taken past the limits. Permanent: the same mail
    meets the same limit on every try."""

    permanent = True


class NoLookupError(GraphMailError):
    """A retry (or an unclear answer) needs to look in the mailbox for what an earlier attempt sent, and the app
    may not read it (Mail.Send only): exactly once is not possible, so nothing is sent. The message names the
    missing permission and the connection's two other choices (``delivery_guarantee``)."""

    permanent = True


class SendingLimitError(GraphMailError):
    """A batch does not fit the mailbox's sending limits (Exchange Online's recipients per 24 hours); nothing was
    sent. ``plan`` holds the numbers (``graph.planning.Plan``)."""

    permanent = True

    def __init__(self, text: str, plan=None):
        self.plan = plan
        super().__init__(text)


class UnexpectedAnswerError(GraphMailError):
    """Graph answered in a shape this client cannot read (a service change, or something in between)."""


class UnreadableReportError(GraphMailError, ValueError):
    """A non-delivery report the email package could not read at all; the bounce report skips it with a
    warning."""


# -- larger operations -------------------------------------------------------------------------------


class UploadFailedError(GraphMailError):
    """An attachment could not be uploaded; ``cause`` is the last error seen."""

    def __init__(self, name: str, offset: int, size: int, attempts: int, cause: Exception):
        self.name, self.offset, self.size, self.attempts, self.cause = name, offset, size, attempts, cause
        self.permanent = bool(getattr(cause, "permanent", False))
        super().__init__(f"attachment {name!r}: upload stopped at byte {offset:,} of {size:,} after "
                         f"{attempts} attempt(s): {redact_url_secrets(str(cause))}")


class BatchFailedError(GraphMailError):
    """Some messages of a batch were not sent, or their outcome is unknown; ``failed`` holds those outcomes.

    Permanent only when every one of them failed for a reason a retry cannot fix."""

    def __init__(self, failed: list[Outcome], total: int, shown: int = 10):
        self.failed = failed
        self.permanent = all(o.status is Status.FAILED and o.permanent for o in failed)
        lines = [f"#{o.position} to {', '.join(o.to) or '?'} (key {o.key!r}) {o.status}: {o.error}"
                 for o in failed[:shown]]
        more = f"\n... and {len(failed) - shown} more" if len(failed) > shown else ""
        super().__init__(f"{len(failed)} of {total} message(s) not sent or not known to be sent; the others were "
                         "sent, and a retry looks up the unknown ones and sends only what did not go out (with "
                         "idempotency keys on):\n" + "\n".join(lines) + more)
