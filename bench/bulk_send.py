"""Many mails in a fresh process with a real task's logging: `python bench/bulk_send.py MODE COUNT`.

MODE is ``ours`` (GraphMailHook.send_many, 4 at a time, idempotency keys on), ``pool`` (what a careful
user writes without us: a 4-thread pool of requests sessions, one POST per mail) or ``sequential`` (one
POST after another). Prints JSON {"seconds", "failed"}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from small_send import task_logging

WORKERS = 4  # Exchange's concurrent requests per mailbox


def ours(count: int) -> int:
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    messages = [Message(to=f"customer{n}@example.com", subject=f"Statement {n}", body=f"<p>Dear {n}</p>")
                for n in range(count)]
    outcomes = GraphMailHook().send_many(messages, keys=[f"bench/{n}" for n in range(count)])
    return sum(o["status"] != "sent" for o in outcomes)


def raw(count: int, workers: int) -> int:
    import requests

    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    extra = json.loads(os.environ["AIRFLOW_CONN_GRAPH_MAIL_DEFAULT"])["extra"]
    token = GraphMailHook().client.transport.credential.get_token()  # the same token; only sending differs
    url = f"{extra['graph_url']}/v1.0/users/{extra['sender']}/sendMail"
    local = threading.local()

    def send(n: int) -> bool:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body = {"contentType": "html", "content": f"<p>Dear {n}</p>"}
        payload = {"message": {"subject": f"Statement {n}", "body": body,
                               "toRecipients": [{"emailAddress": {"address": f"customer{n}@example.com"}}]}}
        response = local.session.post(url, json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                      verify=extra["ca_bundle"])
        return response.status_code == 202

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(not ok for ok in pool.map(send, range(count)))


def main(mode: str, count: int) -> dict:
    start = time.perf_counter()
    failed = ours(count) if mode == "ours" else raw(count, WORKERS if mode == "pool" else 1)
    return {"seconds": time.perf_counter() - start, "failed": failed}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        task_logging(Path(tmp))
        result = main(sys.argv[1], int(sys.argv[2]))
    print(json.dumps(result), file=sys.__stdout__, flush=True)
