"""Request handlers: parse what arrives, apply the tenant's rules, render what Graph and Entra answer."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from airflow_graph_mail.emulator import mime as mime_io
from airflow_graph_mail.emulator.models import MailStore, Mailbox, now_iso
from airflow_graph_mail.emulator.rules import GraphError, bad_request, boolean, canonical_keys, message_from_json
from airflow_graph_mail.emulator.tokens import TokenInvalid, verify_client_assertion

MAX_REQUEST_BYTES = 4 * 1024 * 1024
# The message properties Graph returns by default (internetMessageHeaders only on $select).
DEFAULT_PROPERTIES = [
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "receivedDateTime",
    "sentDateTime", "hasAttachments", "internetMessageId", "subject", "bodyPreview", "importance",
    "parentFolderId", "conversationId", "isDeliveryReceiptRequested", "isReadReceiptRequested", "isRead",
    "isDraft", "webLink", "inferenceClassification", "body", "sender", "from", "toRecipients",
    "ccRecipients", "bccRecipients", "replyTo", "flag",
]


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict  # lower-cased names
    body: bytes
    params: dict = field(default_factory=dict)
    oversize: bool = False

    @classmethod
    def build(cls, method: str, target: str, headers, body: bytes) -> Request:
        path, _, query = target.partition("?")
        return cls(method, path, {k: v[-1] for k, v in parse_qs(query).items()},
                   {k.lower(): v for k, v in headers.items()}, body)

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError):
            raise bad_request("BadRequest", "Unable to read JSON request payload. Please ensure Content-Type "
                              "header is set and payload is of valid JSON format.") from None

    @property
    def is_mime(self) -> bool:
        return self.headers.get("content-type", "").split(";")[0].strip().lower() == "text/plain"


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj, headers: dict | None = None) -> Response:
        return cls(status, json.dumps(obj).encode("utf-8"),
                   {"Content-Type": "application/json; odata.metadata=minimal", **(headers or {})})


def graph_error(err: GraphError, request: Request) -> Response:
    inner = {"date": now_iso(), "request-id": str(uuid.uuid4()),
             "client-request-id": request.headers.get("client-request-id", str(uuid.uuid4()))}
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    return Response.json(err.status, body, {"request-id": inner["request-id"], **err.headers})


def body_preview(body: dict) -> str:
    text = re.sub(r"<[^>]+>", " ", body.get("content", "")) if body.get("contentType") == "html" else \
        body.get("content", "")
    return " ".join(text.split())[:255]


class Handlers:
    """Entra-like token service, Graph mail endpoints and the inspection API, over one MailStore."""

    def __init__(self, emulator):
        self.emu = emulator
        self.store: MailStore = emulator.store

    # -- Entra ---------------------------------------------------------------------------------------

    def _tenant(self, name: str) -> str | None:
        return self.emu.tenant_id if name.lower() in self.emu.tenant_names else None

    def openid_configuration(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        if self._tenant(tenant) is None:
            return self._oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.", 90002)
        base = f"{self.emu.base_url}/{tenant}"
        return Response.json(200, {
            "issuer": f"{self.emu.base_url}/{self.emu.tenant_id}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "EU",
        })

    def _oauth_error(self, status: int, error: str, description: str, code: int) -> Response:
        trace = str(uuid.uuid4())
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        return Response.json(status, {
            "error": error,
            "error_description": f"{description} Trace ID: {trace} Correlation ID: {uuid.uuid4()} Timestamp: {stamp}",
            "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": str(uuid.uuid4()),
        })

    def token(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        tenant_id = self._tenant(tenant)
        if tenant_id is None:
            return self._oauth_error(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.", 90002)
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8")).items()}
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error(400, "unsupported_grant_type",
                                     "AADSTS70003: The app requested an unsupported grant type.", 70003)
        client_id = form.get("client_id", "")
        app = self.emu.apps.get(client_id)
        if app is None or app.tenant_id != tenant_id:
            return self._oauth_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                     f"'{client_id}' was not found in the directory '{tenant}'.", 700016)
        refusal = self._check_credential(app, form, f"{self.emu.base_url}/{tenant}/oauth2/v2.0/token")
        if refusal:
            return refusal
        scope = form.get("scope", "")
        resource = scope.split()[0][: -len("/.default")] if scope.endswith("/.default") else None
        if resource is None:
            return self._oauth_error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope {scope} "
                                     "is not valid. Client credential flows must have a scope value with "
                                     "/.default suffixed to the resource identifier.", 1002012)
        if resource.rstrip("/") != self.emu.base_url:
            return self._oauth_error(400, "invalid_resource", f"AADSTS500011: The resource principal named "
                                     f"{resource} was not found in the tenant.", 500011)
        lifetime = self.emu.token_lifetime
        token = self.emu.issuer.issue({
            "aud": self.emu.base_url, "iss": f"{self.emu.base_url}/{tenant_id}/", "tid": tenant_id,
            "appid": client_id, "azp": client_id, "oid": app.client_id, "sub": app.client_id,
            "idtyp": "app", "roles": sorted(app.roles), "ver": "1.0",
        }, lifetime)
        return Response.json(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                                   "access_token": token})

    def _check_credential(self, app, form: dict, token_url: str) -> Response | None:
        if "client_assertion" in form:
            try:
                verify_client_assertion(form["client_assertion"], app.certificates, app.client_id, token_url)
            except TokenInvalid as err:
                return self._oauth_error(401, "invalid_client", str(err), 700027)
            return None
        secret = form.get("client_secret")
        if secret is None:
            return self._oauth_error(401, "invalid_client", "AADSTS7000218: The request body must contain the "
                                     "following parameter: 'client_assertion' or 'client_secret'.", 7000218)
        if secret not in app.secrets:
            return self._oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. "
                                     "Ensure the secret being sent in the request is the client secret value, "
                                     f"not the client secret ID, for a secret added to app '{app.client_id}'.",
                                     7000215)
        expiry = app.secrets[secret]
        if expiry is not None and expiry < time.time():
            return self._oauth_error(401, "invalid_client", "AADSTS7000222: The provided client secret keys for "
                                     f"app '{app.client_id}' are expired.", 7000222)
        return None

    # -- Graph ---------------------------------------------------------------------------------------

    def _authorize(self, request: Request, role: str | tuple[str, ...]) -> Mailbox:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self.emu.issuer.verify(header[7:].strip(), self.emu.base_url)
        except TokenInvalid as err:
            raise GraphError(401, "InvalidAuthenticationToken", str(err)) from None
        if request.params["user"] is None:
            raise bad_request("BadRequest", "/me request is only valid with delegated authentication flow.")
        roles = (role,) if isinstance(role, str) else role
        if not set(roles) & set(claims.get("roles", [])):
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return self.store.user(request.params["user"])

    def _check_size(self, request: Request) -> None:
        if request.oversize or len(request.body) > MAX_REQUEST_BYTES:
            raise GraphError(413, "RequestEntityTooLarge", "The maximum request length supported is 4MB.")

    def _incoming(self, request: Request, obj=None) -> tuple[dict, list[dict], bytes | None]:
        """Either base64 MIME (text/plain) or a JSON message -> (message, attachments, raw MIME)."""
        if request.is_mime:
            raw = mime_io.decode_body(request.body)
            message, attachments = mime_io.message_from_mime(raw)
        else:
            message, attachments = message_from_json(obj if obj is not None else request.json(),
                                                     request.params["version"])
            raw = None
        message.setdefault("body", {"contentType": "text", "content": ""})
        message["bodyPreview"] = body_preview(message["body"])
        return message, attachments, raw

    def send_mail(self, request: Request) -> Response:
        self._check_size(request)
        mailbox = self._authorize(request, "Mail.Send")
        save = True
        if request.is_mime:
            message, attachments, raw = self._incoming(request)
        else:
            payload = request.json()
            if not isinstance(payload, dict):
                raise bad_request("ErrorInvalidParameter", "The request body must be a JSON object.")
            params = {k.lower(): v for k, v in payload.items()}
            if "message" in params:
                payload = canonical_keys(payload, ["message", "saveToSentItems"], "sendMail")
                save = boolean(payload.get("saveToSentItems", True), "saveToSentItems")
                target = payload["message"]
            else:  # Microsoft's flagged-message example posts the message's properties unwrapped.
                target = payload
            message, attachments, raw = self._incoming(request, target)
        self.store.send_new(mailbox, message, attachments, save, raw)
        self.emu.count_send()
        return Response(self.emu.sendmail_status)

    def create_message(self, request: Request) -> Response:
        self._check_size(request)
        mailbox = self._authorize(request, "Mail.ReadWrite")
        folder = self.store.resolve_folder(mailbox, request.params.get("folder") or "drafts")
        message, attachments, raw = self._incoming(request)
        message_id = self.store.create_draft(mailbox, folder, message, attachments, raw)
        return Response.json(201, self._render(request, mailbox, message_id))

    def send_draft(self, request: Request) -> Response:
        mailbox = self._authorize(request, "Mail.Send")
        if request.body:
            raise bad_request("ErrorInvalidParameter", "The send action takes no request body.")
        self.store.send_draft(mailbox, request.params["id"])
        return Response(202)

    def get_message(self, request: Request) -> Response:
        mailbox = self._authorize(request, ("Mail.ReadWrite", "Mail.Read"))
        return Response.json(200, self._render(request, mailbox, request.params["id"]))

    def list_messages(self, request: Request) -> Response:
        mailbox = self._authorize(request, ("Mail.ReadWrite", "Mail.Read"))
        folder = request.params.get("folder")
        folders = [self.store.resolve_folder(mailbox, folder)] if folder else ["inbox", "drafts", "sentitems"]
        top = int(request.query.get("$top", 10))
        messages = [m for f in folders for m in self.store.list_folder(mailbox, f, top)][:top]
        return Response.json(200, {"value": [self._project(request, m) for m in messages]})

    def _render(self, request: Request, mailbox: Mailbox, message_id: str) -> dict:
        message, _ = self.store.load(mailbox, message_id)
        return self._project(request, message)

    def _project(self, request: Request, message: dict) -> dict:
        message = {**message, "webLink": self.store.web_link(self.emu.base_url, message["id"]),
                   "changeKey": message["lastModifiedDateTime"], "categories": message.get("categories", [])}
        for name in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
            message.setdefault(name, [])
        select = request.query.get("$select")
        names = [n.strip() for n in select.split(",")] if select else DEFAULT_PROPERTIES
        out = {"@odata.etag": f'W/"{message["changeKey"]}"'}
        out.update({n: message[n] for n in names if n in message})
        return out

    # -- inspection ----------------------------------------------------------------------------------

    def inspect_mailboxes(self, request: Request) -> Response:
        return Response.json(200, {"value": [
            {"id": m.id, "address": m.address, "displayName": m.display_name, "isUser": m.is_user,
             "folders": self.store.folder_counts(m)} for m in self.store.mailboxes()]})

    def inspect_folder(self, request: Request) -> Response:
        mailbox = self.store.find_mailbox(request.params["mailbox"])
        if mailbox is None:
            raise GraphError(404, "ErrorItemNotFound", "No such mailbox.")
        folder = self.store.resolve_folder(mailbox, request.params["folder"])
        return Response.json(200, {"value": self.emu.messages(mailbox.address, folder,
                                                              request.query.get("content") == "true")})

    def inspect_message(self, request: Request) -> Response:
        found = self.emu.full_message(request.params["id"], request.query.get("content") == "true")
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "No such message.")
        return Response.json(200, found)

    def inspect_eml(self, request: Request) -> Response:
        eml = self.emu.eml(request.params["id"])
        if eml is None:
            raise GraphError(404, "ErrorItemNotFound", "No such message.")
        return Response(200, eml, {"Content-Type": "message/rfc822",
                                   "Content-Disposition": f'attachment; filename="{request.params["id"]}.eml"'})

    def inspect_requests(self, request: Request) -> Response:
        return Response.json(200, {"value": list(self.emu.request_log)})

    def reset(self, request: Request) -> Response:
        self.emu.reset()
        return Response(204)

    def web_link(self, request: Request) -> Response:
        item = request.query.get("ItemID", "")
        return Response(302, b"", {"Location": f"/_emulator/messages/{item}"})


def attachment_json(att: dict, with_content: bool) -> dict:
    out = {k: v for k, v in att.items() if k != "content"}
    if with_content:
        out["contentBytes"] = base64.b64encode(att["content"]).decode("ascii")
    return out
