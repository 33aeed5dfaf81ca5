"""Idle polls of a watched mailbox in a fresh process: `python bench/inbound_poll.py POLLS`, connection in the env.

The asset watcher's doorbell (MailWatch over change tracking) watches reports-in@contoso.com for a vendor's
mail. Its first round reads the folder once (the look back after a start); then each poll of the idle
folder is measured. Prints JSON {"first_round_s", "poll_ms" (median), "requests_per_poll"}.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from small_send import task_logging

MAILBOX = "reports-in@contoso.com"


def main(polls: int) -> None:
    from airflow_graph_mail.graph.inbound import MailboxReader
    from airflow_graph_mail.graph.watch import MailWatch
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.inbound import MailFilter

    client = GraphMailHook().client
    session = client.transport.session
    sent = [0]
    send = session.send  # every request, prepared afresh or reused (the transport's GETs)

    def counted(*args, **kwargs):
        sent[0] += 1
        return send(*args, **kwargs)

    session.send = counted
    bell = MailWatch(MailboxReader(client, MAILBOX, "inbox"), MailFilter.of(sender="@fabrikam.example"), "bench",
                     lookback=7 * 86400)
    start = time.perf_counter()
    assert bell.poll() == []
    first = time.perf_counter() - start
    timings, before = [], sent[0]
    for _ in range(polls):
        start = time.perf_counter()
        assert bell.poll() == []
        timings.append((time.perf_counter() - start) * 1000)
    print(json.dumps({"first_round_s": first, "poll_ms": statistics.median(timings),
                      "requests_per_poll": (sent[0] - before) / polls}), file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        task_logging(Path(tmp))
        main(int(sys.argv[1]))
