"""One 100 MB send in a fresh process: `python bench/large_send.py hook|plain FILE`, connection in the env.

Prints JSON {"seconds", "rss_growth"}: wall time of the send, and how far the process's peak resident
memory rose above where it stood just before (Linux: VmHWM reset through /proc/self/clear_refs).
Both modes warm up first (imports, token, TLS connection) so that only the send is measured.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from peak_memory import print_peak_of
from small_send import task_logging

CHUNK = 12 * 320 * 1024  # the same chunk size the hook uses


def plain_send(session, base: str, token: str, path: str) -> None:
    """What a careful user writes with requests alone: draft, upload session, chunk loop, send."""
    auth = {"Authorization": f"Bearer {token}"}
    draft = session.post(f"{base}/messages", headers=auth, json={
        "subject": "plain", "body": {"contentType": "text", "content": "x"},
        "toRecipients": [{"emailAddress": {"address": "ann@example.com"}}]}).json()
    size = os.path.getsize(path)
    upload = session.post(f"{base}/messages/{draft['id']}/attachments/createUploadSession", headers=auth, json={
        "AttachmentItem": {"attachmentType": "file", "name": os.path.basename(path), "size": size}}).json()
    with open(path, "rb") as file:
        offset = 0
        while offset < size:
            data = file.read(CHUNK)
            response = session.put(upload["uploadUrl"], data=data, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{size}"})
            assert response.status_code in (200, 201), response.text
            offset += len(data)
    assert session.post(f"{base}/messages/{draft['id']}/send", headers=auth).status_code == 202


def main(mode: str, path: str) -> None:
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    hook = GraphMailHook()
    client = hook.client
    base = f"{client.transport.base_url}/users/{client.default_sender}"
    if mode == "hook":
        def send():
            hook.send_mail(Message(to="ann@example.com", subject="hook", body="x", attachments=[path]))
        hook.send_mail(Message(to="ann@example.com", subject="warm-up", body="x"))
    else:
        token = client.transport.credential.get_token()
        session = client.transport.session  # same TLS settings and connection pool as the hook

        def send():
            plain_send(session, base, token, path)
        session.get(f"{base}/messages?$top=1", headers={"Authorization": f"Bearer {token}"})
    print_peak_of(send)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        task_logging(Path(tmp))
        main(sys.argv[1], sys.argv[2])
