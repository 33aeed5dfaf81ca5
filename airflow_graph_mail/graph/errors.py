"""One hierarchy a caller can catch at the level they care about; types chosen by Graph's error code."""

from __future__ import annotations

import re

# Credentials that travel in URLs (Outlook's upload URLs carry an authtoken): hidden in every message.
_URL_SECRET = re.compile(r"(?i)\b(authtoken|access_token|refresh_token|client_secret|client_assertion|sig)="
                         r"[^&\s'\")]+")


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):[^/\s@]+@")


def redact_url_secrets(text: str) -> str:
    """Error text that may quote a URL (requests does) -> the same text without the URL's credentials
    (query tokens, and the password of a proxy URL such as http://user:pass@proxy:3128)."""
    return _URL_USERINFO.sub(r"\1:***@", _URL_SECRET.sub(lambda m: f"{m.group(1)}=***", text))


class GraphMailError(Exception):
    """Anything this provider raises about talking to Graph."""


class GraphConfigError(GraphMailError, ValueError):
    """The connection or call is set up wrong; nothing was sent."""


class GraphAuthError(GraphMailError):
    """Entra refused the token request (wrong secret, unknown app, bad tenant...)."""

    def __init__(self, error: str, description: str, hint: str = ""):
        self.error = error
        self.description = description
        first_line = (description or "").splitlines()[0] if description else ""
        text = f"token request failed: {error}: {first_line}"
        super().__init__(text + (f" ({hint})" if hint else ""))


class GraphRequestError(GraphMailError):
    """Graph answered with an error body; carries Graph's code, message and request-id."""

    hint = ""

    def __init__(self, status: int, code: str, message: str, request_id: str = "", client_request_id: str = ""):
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.client_request_id = client_request_id
        text = f"Graph answered {status} {code}: {message}"
        if self.hint:
            text += f" -- {self.hint}"
        if request_id:
            text += f" (request-id {request_id})"
        super().__init__(text)


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


class OutcomeUnknownError(GraphMailError):
    """A request that changes a mailbox got no clear answer (5xx, timeout, dropped connection): it may or
    may not have taken effect, so it is not repeated blindly."""

    def __init__(self, method: str, path: str, cause: Exception, hint: str = ""):
        self.method, self.path, self.cause = method, path.split("?")[0], cause
        text = f"{method} {self.path}: no clear answer from Graph ({cause}); it may or may not have taken effect"
        super().__init__(text + (f" -- {hint}" if hint else ""))


_BY_CODE = {
    "InvalidAuthenticationToken": InvalidAuthenticationTokenError,
    "ErrorAccessDenied": AccessDeniedError,
    "Authorization_RequestDenied": AccessDeniedError,
    "MailboxNotEnabledForRESTAPI": MailboxNotEnabledError,
    "ErrorInvalidRecipients": InvalidRecipientsError,
    "ErrorItemNotFound": ItemNotFoundError,
    "ErrorInvalidUser": ItemNotFoundError,
    "ResourceNotFound": ItemNotFoundError,
    "ErrorMessageSizeExceeded": MessageTooLargeError,
    "RequestEntityTooLarge": MessageTooLargeError,
    "ErrorMimeContentInvalidBase64String": InvalidMimeError,
    "TooManyRequests": ThrottledError,
    "ApplicationThrottled": ThrottledError,
}
_BY_STATUS = {401: InvalidAuthenticationTokenError, 403: AccessDeniedError, 404: ItemNotFoundError,
              413: MessageTooLargeError, 429: ThrottledError}


def error_from_response(response) -> GraphRequestError:
    """A requests.Response with an error status -> the matching exception (branching on code, not text)."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    inner = error.get("innerError") or error.get("innererror") or {}
    code = error.get("code") or response.reason or "UnknownError"
    message = error.get("message") or (response.text[:300] if response.text else "")
    kwargs = dict(
        status=response.status_code,
        code=code,
        message=message,
        request_id=inner.get("request-id") or response.headers.get("request-id", ""),
        client_request_id=inner.get("client-request-id") or response.headers.get("client-request-id", ""),
    )
    cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code)
    if cls is None and response.status_code >= 500:
        cls = ServiceUnavailableError
    cls = cls or GraphRequestError
    if cls is ThrottledError:
        from airflow_graph_mail.graph.retry import retry_after_seconds

        return ThrottledError(retry_after=retry_after_seconds(response.headers.get("Retry-After")), **kwargs)
    return cls(**kwargs)

