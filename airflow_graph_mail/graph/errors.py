"""Graph's error answers -> the typed errors of ``airflow_graph_mail.errors``, chosen by Graph's code."""

from __future__ import annotations

from airflow_graph_mail.errors import (
    AccessDeniedError,
    GraphRequestError,
    InvalidAuthenticationTokenError,
    InvalidMimeError,
    InvalidRecipientsError,
    ItemNotFoundError,
    MailboxNotEnabledError,
    MailboxNotFoundError,
    MalformedIdError,
    MessageTooLargeError,
    ServiceUnavailableError,
    ThrottledError,
)
from airflow_graph_mail.graph.retry import retry_after_seconds
from airflow_graph_mail.redact import redact_url_secrets

_BY_CODE = {
    "InvalidAuthenticationToken": InvalidAuthenticationTokenError,
    "ErrorAccessDenied": AccessDeniedError,
    "Authorization_RequestDenied": AccessDeniedError,
    "MailboxNotEnabledForRESTAPI": MailboxNotEnabledError,
    "ErrorInvalidRecipients": InvalidRecipientsError,
    "ErrorItemNotFound": ItemNotFoundError,
    "ErrorInvalidIdMalformed": MalformedIdError,
    "ErrorInvalidUser": MailboxNotFoundError,
    "ResourceNotFound": ItemNotFoundError,
    "ErrorMessageSizeExceeded": MessageTooLargeError,
    "RequestEntityTooLarge": MessageTooLargeError,
    "ErrorMimeContentInvalidBase64String": InvalidMimeError,
    "TooManyRequests": ThrottledError,
    "ApplicationThrottled": ThrottledError,
}
_BY_STATUS = {401: InvalidAuthenticationTokenError, 403: AccessDeniedError, 404: ItemNotFoundError,
              413: MessageTooLargeError, 429: ThrottledError}


# Exchange's answer for a mailbox outside an application access policy (Microsoft documents this wording).
POLICY_DENIED = "Access to OData is disabled."


def access_hint(mailbox: str, message: str) -> str:
    """What a 403 on one mailbox most likely means, naming it."""
    if message.strip().rstrip(".").lower() == POLICY_DENIED.rstrip(".").lower():
        return (f"an application access policy keeps this app from mailbox {mailbox}: an Exchange admin adds the "
                "mailbox to the policy's group (Test-ApplicationAccessPolicy shows the result; changes take up to an "
                "hour), or send from a mailbox inside it")
    return (f"{AccessDeniedError.hint}. If it has them, it is restricted to other mailboxes than {mailbox} (Exchange "
            "RBAC for Applications' management scope, or an application access policy): add the mailbox to the "
            "scope (Test-ServicePrincipalAuthorization shows it; changes take 30 minutes to 2 hours), or send from "
            "a mailbox inside it")


def error_from_response(response, mailbox: str = "") -> GraphRequestError:
    """A requests.Response with an error status -> the matching exception (branching on code, not text); a 403
    names ``mailbox`` (the one the call acted on) and the likely cause."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    inner = error.get("innerError") or error.get("innererror") or {}
    code = error.get("code") or response.reason or "UnknownError"
    message = error.get("message") or (response.text[:300] if response.text else "")
    kwargs = {
        "status": response.status_code,
        "code": code,
        "message": redact_url_secrets(str(message)),
        "request_id": inner.get("request-id") or response.headers.get("request-id", ""),
        "client_request_id": inner.get("client-request-id") or response.headers.get("client-request-id", ""),
    }
    cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code)
    if cls is None and response.status_code >= 500:
        cls = ServiceUnavailableError
    cls = cls or GraphRequestError
    if cls is AccessDeniedError and mailbox and mailbox.lower() != "me":
        kwargs["hint"] = access_hint(mailbox, kwargs["message"])
    if cls is not ThrottledError and response.status_code < 500:
        return cls(**kwargs)
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    if cls is ThrottledError:
        return ThrottledError(retry_after=retry_after, **kwargs)
    error = cls(**kwargs)
    error.retry_after = retry_after  # a 503 may carry it too
    return error
