"""Plain-HTTP helpers for tests that check the emulator without any client code."""

from __future__ import annotations


def get_token(http, emu, client_id=None, secret=None, scope=None):
    app = emu.default_app
    return http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id or app.client_id,
        "client_secret": secret or next(iter(app.secrets)), "scope": scope or f"{emu.base_url}/.default"})


def simple(to="ann@example.com", **extra):
    return {"subject": "Hi", "body": {"contentType": "Text", "content": "x"},
            "toRecipients": [{"emailAddress": {"address": to}}], **extra}
