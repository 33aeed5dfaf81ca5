"""Accepted and delivered, for bulk mail from one mailbox: `python bench/accepted_delivered.py COUNT`.

Graph's 202 says a mail was accepted; Exchange lets a mailbox's mail leave its Outbox at 30 a minute. Against an
emulator at Exchange Online's default limits (and Graph-like latency), ``send_many`` sends COUNT mails with a
real task's logging; then the emulator's clock is moved until its Outbox is empty, and Sent Items says when each
mail left. Prints JSON: ``accepted_s`` (wall seconds until the last 202), ``delivered_s`` (the emulator's time
from the first mail leaving to the last), ``planned_s`` (what the outcomes said the last would leave, from the
first accept), ``sent`` (mails in Sent Items) and ``failed``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from small_send import task_logging


def when(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main(count: int) -> dict:
    import requests

    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    extra = json.loads(os.environ["AIRFLOW_CONN_GRAPH_MAIL_DEFAULT"])["extra"]
    messages = [Message(to=f"customer{n}@example.com", subject=f"Statement {n}", body=f"<p>Dear {n}</p>")
                for n in range(count)]
    start = time.perf_counter()
    outcomes = GraphMailHook().send_many(messages, keys=[f"bench/{n}" for n in range(count)])
    accepted = time.perf_counter() - start
    first_accept = min(when(o["accepted_at"]) for o in outcomes if o["accepted_at"])
    planned = max(when(o["leaves_at"]) for o in outcomes if o["leaves_at"]) - first_accept

    # The emulator's Outbox drains on its own clock: move it past the last mail's slot, then read Sent Items.
    inspect = f"{extra['graph_url']}/_emulator"
    session, ca = requests.Session(), extra["ca_bundle"]  # verify per request: requests lets the environment's win
    budget = session.get(f"{inspect}/mailboxes/{extra['sender']}/budget", verify=ca).json()
    if budget.get("lastLeavesAt"):
        ahead = when(budget["lastLeavesAt"]) - when(session.get(f"{inspect}/clock", verify=ca).json()["now"]) + 60
        session.post(f"{inspect}/clock", json={"advance": max(0.0, ahead)}, verify=ca).raise_for_status()
    sent = session.get(f"{inspect}/mailboxes/{extra['sender']}/sentitems", verify=ca).json()["value"]
    left = sorted(when(m["sentDateTime"]) for m in sent)
    return {"accepted_s": accepted, "delivered_s": left[-1] - left[0] if left else 0.0, "planned_s": planned,
            "sent": len(sent), "failed": sum(o["status"] != "sent" for o in outcomes)}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        task_logging(Path(tmp))
        try:
            result = main(int(sys.argv[1]))
        except BaseException:  # the task's logging took stderr: say why to the bench's runner
            traceback.print_exc(file=sys.__stderr__)
            raise
    print(json.dumps(result), file=sys.__stdout__, flush=True)
