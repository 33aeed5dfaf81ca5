"""Client CPU per small send with the network taken out: `python bench/client_cpu.py SENDS ORDER`.

Both variants go through requests as usual, but the HTTPS adapter answers 202 in-process instead of
talking to a server, so what remains is the client's own work: building and checking the mail, the
request, the log line (a real task's logging). Without a server's timing in the way, this is the row that
repeats to the microsecond. Prints JSON {"hook_ms", "raw_ms"} per send.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from small_send import task_logging


def answering_adapter():
    from requests.adapters import HTTPAdapter
    from requests.models import PreparedRequest, Response

    class Answers202(HTTPAdapter):
        def send(self, request: PreparedRequest, stream=False, timeout=None, verify=True, cert=None,
                 proxies=None) -> Response:
            response = Response()
            response.status_code, response._content, response.url = 202, b"", request.url or ""
            response.request, response.connection = request, self
            response.headers["request-id"] = "bench"
            return response

    return Answers202()


def main(sends: int, order: str) -> dict:
    import requests

    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    extra = json.loads(os.environ["AIRFLOW_CONN_GRAPH_MAIL_DEFAULT"])["extra"]
    hook = GraphMailHook()
    token = hook.client.transport.credential.get_token()  # a real token, kept as the hook keeps it
    hook.client.transport.session.mount("https://", answering_adapter())
    raw = requests.Session()
    raw.mount("https://", answering_adapter())
    url = f"{extra['graph_url']}/v1.0/users/{extra['sender']}/sendMail"

    def through_hook(n: int) -> None:
        hook.send_mail(Message(to="ann@example.com", subject=f"hook {n}", body="<p>small</p>"))

    def raw_loop(n: int) -> None:
        payload = {"message": {"subject": f"raw {n}", "body": {"contentType": "html", "content": "<p>small</p>"},
                               "toRecipients": [{"emailAddress": {"address": "ann@example.com"}}]}}
        raw.post(url, json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=60, verify=extra["ca_bundle"])

    variants = {"hook": through_hook, "raw": raw_loop}
    for send in variants.values():
        for n in range(200):
            send(n)
    first, second = ("hook", "raw") if order == "hook-first" else ("raw", "hook")
    spent = dict.fromkeys(variants, 0.0)
    block = 250
    for name in (first, second, second, first) * (sends // (2 * block)):
        cpu = time.process_time()
        for n in range(block):
            variants[name](n)
        spent[name] += time.process_time() - cpu
    per_variant = block * 2 * (sends // (2 * block))
    return {f"{name}_ms": seconds / per_variant * 1000 for name, seconds in spent.items()}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        task_logging(Path(tmp))
        result = main(int(sys.argv[1]), sys.argv[2])
    print(json.dumps(result), file=sys.__stdout__, flush=True)
