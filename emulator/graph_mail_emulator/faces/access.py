"""Who may act on which mailbox: Graph's check of a bearer token, then of its roles or scopes."""

from __future__ import annotations

from graph_mail_emulator.backend.store import Mailbox, MailStore
from graph_mail_emulator.entra import Entra
from graph_mail_emulator.entra.tokens import TokenInvalid
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.http.wire import Request


class Access:
    def __init__(self, entra: Entra, store: MailStore):
        self.entra = entra
        self.store = store

    def mailbox(self, request: Request, role: str | tuple[str, ...]) -> Mailbox:
        """The mailbox the request may act on: a valid token with ``role`` (an app's role, or a delegated
        scope for the signed-in user's own mailbox only)."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self.entra.verify_access_token(header[7:].strip())
        except TokenInvalid as err:
            raise GraphError(401, "InvalidAuthenticationToken", str(err)) from None
        roles = (role,) if isinstance(role, str) else role
        delegated = claims.get("idtyp") == "user"
        granted = (claims.get("scp") or "").split() if delegated else claims.get("roles", [])
        if not set(roles) & set(granted):
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        user = request.params["user"]
        if not delegated:
            if user is None:
                raise bad_request("BadRequest", "/me request is only valid with delegated authentication flow.")
            return self.store.user(user)
        me = self.store.user(claims["upn"])
        if user is not None and self.store.user(user).id != me.id:  # delegated: the signed-in user's mailbox only
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return me
