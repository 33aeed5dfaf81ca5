"""Small sends in a fresh process, with the logging a real Airflow task has: our hook vs a raw requests loop.

`python bench/small_send.py MESSAGES ORDER`, connection in the env; ORDER is "hook-first" or "raw-first".
Both variants warm up (imports, token, TLS connection), then run in short blocks of 25 sends that
alternate ABBA ABBA ... in the given order, so that drift within the run (this machine's speed varies
by a third from minute to minute) falls on both alike. Prints JSON: per variant, wall and process CPU
milliseconds per send.

The raw loop is what a careful user writes without us: a requests.Session, the same token and CA, the
same JSON, one POST per mail.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def task_logging(directory: Path) -> None:
    """Airflow 3's task runner logs JSON lines at INFO to the supervisor; here, to a file the same way."""
    output = (directory / "task.log").open("wb", buffering=0)
    try:
        from airflow.sdk.log import configure_logging
    except ImportError:  # Airflow 2: the task's file handler at INFO
        import logging

        logging.basicConfig(level=logging.INFO, stream=open(directory / "task.log", "w"), force=True)  # noqa: SIM115
        return
    configure_logging(json_output=True, output=output, sending_to_supervisor=True)


def main(count: int, order: str) -> dict:
    import requests

    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    connection = json.loads(os.environ["AIRFLOW_CONN_GRAPH_MAIL_DEFAULT"])
    extra = connection["extra"]
    hook = GraphMailHook()
    token = hook.client.transport.credential.get_token()
    raw = requests.Session()
    url = f"{extra['graph_url']}/v1.0/users/{extra['sender']}/sendMail"
    headers = {"Authorization": f"Bearer {token}"}

    def through_hook(n: int) -> None:
        hook.send_mail(Message(to="ann@example.com", subject=f"hook {n}", body="<p>small</p>"))

    def raw_loop(n: int) -> None:
        payload = {"message": {"subject": f"raw {n}", "body": {"contentType": "html", "content": "<p>small</p>"},
                               "toRecipients": [{"emailAddress": {"address": "ann@example.com"}}]}}
        response = raw.post(url, json=payload, headers=headers, timeout=60, verify=extra["ca_bundle"])
        assert response.status_code == 202, response.text

    variants = {"hook": through_hook, "raw": raw_loop}
    for send in variants.values():
        for n in range(20):
            send(n)
    first, second = ("hook", "raw") if order == "hook-first" else ("raw", "hook")
    spent = {name: [0.0, 0.0] for name in variants}
    block = 25
    for name in (first, second, second, first) * (count // (2 * block)):
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(block):
            variants[name](n)
        spent[name][0] += time.perf_counter() - wall
        spent[name][1] += time.process_time() - cpu
    sends = block * 2 * (count // (2 * block))
    return {name: {"wall_ms": w / sends * 1000, "cpu_ms": c / sends * 1000} for name, (w, c) in spent.items()}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        task_logging(Path(tmp))
        result = main(int(sys.argv[1]), sys.argv[2])
    print(json.dumps(result), file=sys.__stdout__, flush=True)
