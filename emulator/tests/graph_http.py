"""Plain-HTTP helpers for the emulator's tests: a token, messages as Graph takes them, an upload session."""

from __future__ import annotations


def get_token(http, emu, client_id=None, secret=None, scope=None):
    app = emu.entra.default_app
    return http.post(f"{emu.base_url}/{emu.entra.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id or app.client_id,
        "client_secret": secret or next(iter(app.secrets)), "scope": scope or f"{emu.base_url}/.default"})


def simple(to="ann@example.com", **extra):
    return {"subject": "Hi", "body": {"contentType": "Text", "content": "x"},
            "toRecipients": [{"emailAddress": {"address": to}}], **extra}


# The property a client tags its mail with to find it again (this one is airflow-graph-mail's idempotency key,
# which the viewer names as such).
IDEMPOTENCY_PROPERTY = "String {CEF3C9B9-3E6A-4EA4-9224-11AEE7E01B3C} Name AirflowGraphMailIdempotencyKey"


def person(address: str, name: str = "") -> dict:
    return {"emailAddress": {"address": address, **({"name": name} if name else {})}}


def file(name: str, content: bytes, content_type: str = "application/octet-stream", cid: str | None = None) -> dict:
    """A fileAttachment as Graph takes it; with ``cid``, an inline one (``<img src="cid:...">``)."""
    import base64

    return {"@odata.type": "#microsoft.graph.fileAttachment", "name": name, "contentType": content_type,
            "contentBytes": base64.b64encode(content).decode(), "isInline": cid is not None,
            **({"contentId": cid} if cid else {})}


def keyed(key: str) -> dict:
    """The message properties that tag a message with an idempotency key."""
    return {"singleValueExtendedProperties": [{"id": IDEMPOTENCY_PROPERTY, "value": key}]}


def send(graph, subject: str, to, body: str = "x", body_type: str = "text", **extra) -> None:
    """sendMail, asserting 202; ``to``: addresses or recipients."""
    recipients = [person(r) if isinstance(r, str) else r for r in ([to] if isinstance(to, str) else to)]
    answer = graph("POST", "/sendMail", json={"message": {"subject": subject, "toRecipients": recipients,
                                                          "body": {"contentType": body_type, "content": body},
                                                          **extra}})
    assert answer.status_code == 202, answer.text


def upload(graph, http, draft_id: str, name: str, data: bytes, chunk: int = 4 * 1024 * 1024) -> None:
    """Attach ``data`` (3 MB or more) to a draft through an upload session, in ranges of ``chunk`` bytes."""
    session = graph("POST", f"/messages/{draft_id}/attachments/createUploadSession", json={"AttachmentItem": {
        "attachmentType": "file", "name": name, "size": len(data)}}).json()
    for start in range(0, len(data), chunk):
        part = data[start:start + chunk]
        answer = http.put(session["uploadUrl"], data=part, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"})
        assert answer.status_code in (200, 201), answer.text
