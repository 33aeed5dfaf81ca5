"""Save one received mail's 100 MB attachment in a fresh process:
`python bench/save_attachment.py ours|plain|naive MESSAGE_ID FOLDER`, connection in the env.

ours: ``graph.saving.save_attachments`` (streamed, 1 MB chunks, safe names, limits, sha256); plain: what a
careful user writes with requests alone (list the attachments, stream each ``$value`` in 1 MB chunks);
naive: the same reading each ``$value`` whole (``response.content``), for scale.
Prints JSON {"seconds", "rss_growth"}, as large_send.py does.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from peak_memory import print_peak_of
from small_send import task_logging

MAILBOX = "reports-in@contoso.com"
CHUNK = 1024 * 1024


def plain_save(session, base: str, token: str, message_id: str, folder: Path, whole: bool = False) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    listed = session.get(f"{base}/messages/{message_id}/attachments?$select=id,name", headers=auth).json()
    for attachment in listed["value"]:
        with session.get(f"{base}/messages/{message_id}/attachments/{attachment['id']}/$value", headers=auth,
                         stream=not whole) as response, (folder / attachment["name"]).open("wb") as out:
            if whole:
                out.write(response.content)
                continue
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)


def main(mode: str, message_id: str, folder: str) -> None:
    from airflow_graph_mail.graph.inbound import MailboxReader
    from airflow_graph_mail.graph.saving import SaveOptions, save_attachments
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    client = GraphMailHook().client
    reader = MailboxReader(client, MAILBOX)
    target = Path(folder)
    token = client.transport.credential.get_token()
    base = f"{client.transport.base_url}/users/{MAILBOX}"
    reader.attachments(message_id)  # warm up: imports, token, TLS connection
    if mode == "ours":
        def save():
            save_attachments(reader, message_id, target, SaveOptions(chunk_bytes=CHUNK))
    else:
        target.mkdir(parents=True, exist_ok=True)

        def save():
            plain_save(client.transport.session, base, token, message_id, target, whole=mode == "naive")
    print_peak_of(save)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        task_logging(Path(tmp))
        main(*sys.argv[1:4])
