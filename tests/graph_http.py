"""A token from the emulator over plain HTTP, for tests that check a request without any client code."""

from __future__ import annotations


def get_token(http, emu, client_id=None, secret=None, scope=None):
    app = emu.entra.default_app
    return http.post(f"{emu.base_url}/{emu.entra.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id or app.client_id,
        "client_secret": secret or next(iter(app.secrets)), "scope": scope or f"{emu.base_url}/.default"})

