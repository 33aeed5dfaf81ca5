"""Who may act on which mailbox: Graph's check of a bearer token, then of its roles or scopes, and of the
mailboxes an app is restricted to.

Graph's answers: a missing permission is 403 ErrorAccessDenied "Access is denied. Check credentials and try
again." (seen in many reports, not quoted by Microsoft's pages); a mailbox outside an application access
policy is 403 ErrorAccessDenied "Access to OData is disabled." (Microsoft's "Limiting application permissions
to specific Exchange Online mailboxes"); a mailbox outside an RBAC for Applications scope is answered as a
missing permission (inferred: Microsoft documents no wording for it).
"""

from __future__ import annotations

from graph_mail_emulator.backend.store import Mailbox, MailStore
from graph_mail_emulator.entra import App, Entra
from graph_mail_emulator.entra.tokens import TokenInvalid
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.http.wire import Request

DENIED = "Access is denied. Check credentials and try again."
POLICY_DENIED = "Access to OData is disabled."


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
        granted = set((claims.get("scp") or "").split() if delegated else claims.get("roles", []))
        user = request.params["user"]
        app = None if delegated else self.entra.directory.apps.get(claims.get("appid", ""))
        if app is not None and app.mailboxes is not None:
            return self._scoped(app, user, set(roles), granted)
        if not set(roles) & granted:
            raise GraphError(403, "ErrorAccessDenied", DENIED)
        if not delegated:
            if user is None:
                raise bad_request("BadRequest", "/me request is only valid with delegated authentication flow.")
            return self.store.user(user)
        me = self.store.user(claims["upn"])
        if user is not None and self.store.user(user).id != me.id:  # delegated: the signed-in user's mailbox only
            raise GraphError(403, "ErrorAccessDenied", DENIED)
        return me

    def _scoped(self, app: App, user: str | None, roles: set[str], granted: set[str]) -> Mailbox:
        """An app restricted to some mailboxes (``Entra.scope_app``): its RBAC roles count on those only; an
        application access policy keeps its token's roles from every other mailbox."""
        if user is None:
            raise bad_request("BadRequest", "/me request is only valid with delegated authentication flow.")
        mailbox = self.store.user(user)
        inside = app.reaches(mailbox.address, mailbox.id, user)
        if not inside and app.mailbox_scope == "access_policy":
            raise GraphError(403, "ErrorAccessDenied", POLICY_DENIED)
        if inside:
            granted = granted | app.rbac_roles
        if not roles & granted:
            raise GraphError(403, "ErrorAccessDenied", DENIED)
        return mailbox
