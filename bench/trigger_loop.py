"""Many review gates in one triggerer loop: `python bench/trigger_loop.py [--triggers 100] [--seconds 20]`.

What a triggerer holding N deferred GraphDraftSentSensors does: N GraphDraftSentTrigger.run() generators in
one asyncio loop, each polling its own draft, against an emulator in its own process (with Graph-like
latency, and no throttling in the way). A ticker coroutine asks to wake every 10 ms and records how late it
wakes: the loop's lag (median, p99, max). CPU per poll is this process's CPU time (every thread) over the
GETs of a draft the emulator logged in the same window. The first seconds (imports, sign-in, first TLS
handshakes) are left out. Prints one JSON line.

``--trigger module:Class`` measures another trigger class with the same constructor (e.g. an older copy).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import start_emulator, stop

TICK = 0.01


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(triggers: list, warmup: float, seconds: float) -> dict:
    lags: list[float] = []
    window: dict[str, float] = {}

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            asked = loop.time()
            await asyncio.sleep(TICK)
            now = loop.time()
            if now - start > warmup:
                if not window:
                    window.update(start=time.time(), cpu=time.process_time())
                lags.append(now - asked - TICK)

    async def drain(trigger) -> None:
        async for event in trigger.run():
            raise RuntimeError(f"a gate ended during the bench: {event.payload}")

    tasks = [asyncio.ensure_future(drain(t)) for t in triggers]
    beat = asyncio.ensure_future(ticker())
    await asyncio.sleep(warmup + seconds)
    window.update(end=time.time(), cpu=time.process_time() - window["cpu"])
    ended = [task for task in tasks if task.done()]
    for task in [*tasks, beat]:
        task.cancel()
    await asyncio.gather(*tasks, beat, return_exceptions=True)
    if ended:
        raise RuntimeError(f"{len(ended)} gate(s) ended during the bench; the first: {ended[0].exception()}")
    return {"lags": lags, **window}


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triggers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--poke", type=float, default=1.0, help="each trigger's poke_interval")
    parser.add_argument("--latency-ms", type=int, default=50, help="the emulator's added latency per request")
    parser.add_argument("--trigger", default="airflow_graph_mail.triggers.graph_mail:GraphDraftSentTrigger")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, connection = start_emulator(Path(tmp) / "emulator", "--latency-ms", str(args.latency_ms),
                                             "--mailbox-concurrency", "100000")
        try:
            os.environ.update(AIRFLOW_HOME=str(Path(tmp) / "airflow"),
                              AIRFLOW_CONN_GRAPH_MAIL_DEFAULT=json.dumps(connection))
            from airflow_graph_mail.hooks.graph_mail import GraphMailHook
            from airflow_graph_mail.mail.message import Message

            hook = GraphMailHook()
            drafts = [hook.create_draft(Message(to="board@example.com", subject=f"gate {n}"))["id"]
                      for n in range(args.triggers)]
            module, _, name = args.trigger.partition(":")
            trigger_class = getattr(importlib.import_module(module), name)
            triggers = [trigger_class(graph_mail_conn_id="graph_mail_default", message_id=draft,
                                      poke_interval=args.poke, deadline=time.time() + 3600) for draft in drafts]
            run = asyncio.run(measure(triggers, args.warmup, args.seconds))
            import requests

            log = requests.get(f"{connection['extra']['graph_url']}/_emulator/requests",
                               verify=connection["extra"]["ca_bundle"], timeout=60).json()["value"]
        finally:
            stop(process)
    polls = [r for r in log if r["method"] == "GET" and "/messages/" in r["path"]
             and run["start"] <= r["time"] <= run["end"]]
    lags_ms = [lag * 1000 for lag in run["lags"]]
    return {"trigger": args.trigger, "triggers": args.triggers, "poke_s": args.poke, "latency_ms": args.latency_ms,
            "seconds": round(run["end"] - run["start"], 1), "polls": len(polls),
            "polls_per_s": round(len(polls) / (run["end"] - run["start"]), 1),
            "non_200": sum(1 for r in polls if r["status"] != 200),
            "cpu_ms_per_poll": round(run["cpu"] / max(1, len(polls)) * 1000, 3),
            "lag_ms": {"median": round(statistics.median(lags_ms), 2), "p99": round(percentile(lags_ms, 0.99), 2),
                       "max": round(max(lags_ms), 2), "ticks": len(lags_ms)}}


if __name__ == "__main__":
    print(json.dumps(main()))
