"""Many triggers in one triggerer loop: `python bench/trigger_loop.py [--triggers 200] [--poke 5] [--seconds 40]`.

What a triggerer holding N deferred GraphDraftSentSensors does: N GraphDraftSentTrigger.run() generators in one
asyncio loop, each polling its own draft, against an emulator in its own process (with Graph-like latency, and
TCP_NODELAY as Graph's servers answer). The drafts are spread over mailboxes of ``--per-mailbox`` gates each, so
that Graph's limits per mailbox (4 requests at once, 10,000 per 10 minutes) hold for all the gates together.

- Lag: a ticker asks to wake every 10 ms and records how late it wakes (median, p99, max); the largest lag whose
  window holds no full (generation 2) garbage collection, which gc.callbacks mark; and of that, the part not
  spent waiting for a CPU (the loop thread's run-queue wait, /proc/thread-self/schedstat: other processes).
- CPU per poll: this process's CPU time (every thread) over the looks the emulator logged in the same window;
  per gate poke: the same CPU over (triggers x window / poke), what each gate's poke interval costs however
  few requests serve it (the gates share a watch of each mailbox's Drafts); and, measured after it in the same
  process, the CPU of one plain requests GET of a draft (this machine's price of the HTTP alone).
- Garbage collections per minute of each generation in that window.
- Connections: TLS connections the triggers' shared client opened, and looks that failed (connect failures
  among them; the triggers log each).
- Then a reviewer, in a process of its own, sends every draft through the emulator (its inspection API, as the
  viewer's button does): the time from each send to its trigger's event, against the poke interval.

``--idle`` runs N coroutines that only sleep instead (the same loop, ticker and imports, no Graph): the
baseline for lag and collections "without our triggers". ``--watchers`` runs N GraphMailEventTrigger asset
watchers instead of gates (no send phase), on Inboxes holding ``--fill`` mails received before they start.
The first ``--warmup`` seconds (imports, sign-in, TLS handshakes, every trigger's first look) are left out of
the window. ``--trigger`` measures another gate class (e.g. an older copy on PYTHONPATH). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import stop

TICK = 0.01
CONN_ID = "graph_mail_default"
# The emulator with TCP_NODELAY on its connections, as Graph's servers answer: without it, an answer's body waits
# for the client's delayed ACK of its headers (40 ms on Linux) on every busy keep-alive connection, which a
# triggerer sharing a few connections meets at every look and one connection per trigger rarely does.
_NO_DELAY = ("import runpy; from graph_mail_emulator.http import server; "
             "server._Handler.disable_nagle_algorithm = True; "
             "runpy.run_module('graph_mail_emulator', run_name='__main__', alter_sys=True)")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Collections:
    """Every garbage collection's generation and time (monotonic, as the loop's clock), from gc.callbacks."""

    def __init__(self):
        self.done: list[tuple[int, float, float]] = []  # (generation, start, end)
        self._started = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.monotonic()
        else:
            self.done.append((info["generation"], self._started, time.monotonic()))

    def close(self) -> None:
        gc.callbacks.remove(self._note)

    def between(self, start: float, end: float) -> list[tuple[int, float, float]]:
        return [c for c in self.done if start <= c[1] <= end]


def _run_queue_wait() -> float:
    """Seconds this thread has waited for a CPU (Linux schedstat): time the machine, not the loop, lost."""
    try:
        with open("/proc/thread-self/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except OSError:
        return 0.0


async def ticker(ticks: list[tuple[float, float, float, float]]) -> None:
    """(asked, woke, the loop thread's CPU, its wait for a CPU) over every 10 ms sleep: how late the loop turns
    and why."""
    loop = asyncio.get_running_loop()
    asked, cpu, waited = loop.time(), time.thread_time(), _run_queue_wait()
    while True:
        await asyncio.sleep(TICK)
        woke, cpu_now, waited_now = loop.time(), time.thread_time(), _run_queue_wait()
        ticks.append((asked, woke, cpu_now - cpu, waited_now - waited))
        asked, cpu, waited = woke, cpu_now, waited_now


def lag_summary(ticks: list[tuple[float, float, float, float]], full: list[tuple[int, float, float]]) -> dict:
    """Median, p99 and max lag in ms; ``max_not_gc``: the largest whose window holds no full collection;
    ``max_ours``: the largest that neither a full collection nor the machine (the loop thread waiting for a
    CPU, other processes running) explains; ``worst``: the 3 largest with the loop thread's CPU and wait."""
    lags = [((woke - asked - TICK) * 1000, asked, woke, cpu * 1000, waited * 1000)
            for asked, woke, cpu, waited in ticks]
    values = [lag[0] for lag in lags]
    clean = [lag for lag in lags if not any(start < lag[2] and end > lag[1] for _, start, end in full)]
    ours = [lag[0] - lag[4] for lag in clean]
    worst = sorted(lags, reverse=True)[:3]
    return {"median": round(statistics.median(values), 2), "p99": round(percentile(values, 0.99), 2),
            "max": round(max(values), 2), "max_not_gc": round(max([lag[0] for lag in clean] or [0.0]), 2),
            "max_ours": round(max(ours or [0.0]), 2), "ticks": len(values),
            "worst": [{"lag": round(lag, 1), "loop_cpu": round(cpu, 1), "cpu_wait": round(waited, 1)}
                      for lag, _, _, cpu, waited in worst]}


def per_minute(collections: list[tuple[int, float, float]], seconds: float) -> dict:
    counts = [sum(1 for c in collections if c[0] == generation) for generation in range(3)]
    full = [(end - start) * 1000 for generation, start, end in collections if generation == 2]
    return {"gen0": round(counts[0] * 60 / seconds, 1), "gen1": round(counts[1] * 60 / seconds, 1),
            "gen2": round(counts[2] * 60 / seconds, 1), "gen2_max_ms": round(max(full or [0.0]), 1)}


# -- the other processes -----------------------------------------------------------------------------------


def start_emulator(state: Path, *options: str, no_delay: bool = True) -> tuple[subprocess.Popen, dict]:
    """bench/run.py's emulator (limits raised: we measure the client, not throttling), with TCP_NODELAY."""
    state.mkdir(parents=True, exist_ok=True)
    start = ["-c", _NO_DELAY] if no_delay else ["-m", "graph_mail_emulator"]
    process = subprocess.Popen([sys.executable, *start, "--state-dir", str(state), "--port", "0",
                                "--mailbox-requests", "100000000", *options], stdout=subprocess.PIPE, text=True)
    process.stdout.readline()  # type: ignore[union-attr]  # "Graph mail emulator on ..." once it listens
    return process, json.loads((state / "airflow-connection.json").read_text())


def seed(state: str, count: int, mailboxes: list[str]) -> dict:
    """``count`` mails from outside in each mailbox's Inbox, written in-process to the emulator's state directory
    before it starts (run in a helper process: the emulator's package never loads in the triggerer's)."""
    from graph_mail_emulator import GraphEmulator

    emulator = GraphEmulator(Path(state))
    try:
        for mailbox in mailboxes:
            emulator.backend.store.add_user(mailbox)
            for n in range(count):
                emulator.inbound.receive(to=mailbox, sender="someone@elsewhere.example", subject=f"earlier {n}")
    finally:
        emulator.stop()
    return {"seeded": count * len(mailboxes)}


def make_drafts(mailboxes: list[str], count: int) -> list[list[str]]:
    """[mailbox, draft id] for ``count`` drafts spread over ``mailboxes`` (run in a helper process)."""
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    client = GraphMailHook().client

    def one(n: int) -> list[str]:
        mailbox = mailboxes[n % len(mailboxes)]
        return [mailbox, client.create_draft(Message(to="board@example.com", subject=f"gate {n}"),
                                             sender=mailbox)["id"]]

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def review(draft_ids: list[str]) -> dict[str, float]:
    """The reviewer sends every draft (the emulator's inspection API, as its viewer's button does), 8 at a time;
    epoch time of each send's answer (run in a helper process)."""
    import requests

    connection = json.loads(os.environ["AIRFLOW_CONN_GRAPH_MAIL_DEFAULT"])
    base, ca = connection["extra"]["graph_url"], connection["extra"]["ca_bundle"]
    session = requests.Session()
    session.trust_env = False

    def send(draft_id: str) -> tuple[str, float]:
        answer = session.post(f"{base}/_emulator/messages/{draft_id}/send", verify=ca, timeout=60)
        answer.raise_for_status()
        return draft_id, time.time()

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(send, draft_ids))


def plain_get_cpu(connection: dict, mailbox: str, draft: str, count: int = 100) -> float:
    """CPU ms of one plain requests GET of a draft (the gate's URL and fields, one thread, a kept-alive
    connection): what this machine charges for the HTTP alone, measured in the same process after the window."""
    import requests

    from airflow_graph_mail.mail.review import SELECT

    extra = connection["extra"]
    session = requests.Session()
    session.trust_env, session.verify = False, extra["ca_bundle"]
    token = session.post(f"{extra['authority_url']}/{extra['tenant_id']}/oauth2/v2.0/token", timeout=60, data={
        "grant_type": "client_credentials", "client_id": connection["login"], "client_secret": connection["password"],
        "scope": f"{extra['graph_url']}/.default"}).json()["access_token"]
    url = f"{extra['graph_url']}/v1.0/users/{mailbox}/messages/{draft}?$select={','.join(SELECT)}"
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(10):
        session.get(url, headers=headers, timeout=60).json()
    start = time.process_time()
    for _ in range(count):
        session.get(url, headers=headers, timeout=60).json()
    return round((time.process_time() - start) / count * 1000, 3)


def helper(role: str, *args: str) -> object:
    """Run ``role`` in a fresh process (its CPU is not the triggerer's); its stdout's last line is JSON."""
    done = subprocess.run([sys.executable, __file__, "--role", role, *args], capture_output=True, text=True,
                          check=False, env=os.environ)
    if done.returncode:
        raise RuntimeError(f"{role} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the loop ----------------------------------------------------------------------------------------------


async def run_loop(triggers: list, args, fire) -> dict:
    """Run the triggers with the ticker: warm-up, the measured window, then ``fire()`` (the reviewer) and the
    wait for every event."""
    loop = asyncio.get_running_loop()
    lags: list[tuple[float, float, float, float]] = []
    events: dict[int, tuple[float, dict]] = {}

    async def drain(n: int, trigger) -> None:
        async for event in trigger.run():
            events[n] = (time.time(), event.payload)
            if not args.watchers:
                return

    began = time.time()
    tasks = [asyncio.ensure_future(drain(n, t)) for n, t in enumerate(triggers)]
    beat = asyncio.ensure_future(ticker(lags))
    await asyncio.sleep(args.warmup)
    if events:
        raise RuntimeError(f"{len(events)} trigger(s) ended before anything was sent; the first: "
                           f"{next(iter(events.values()))[1]}")
    window: dict[str, Any] = {"start": loop.time(), "epoch_start": time.time(), "cpu": time.process_time(),
                              "loop_cpu": time.thread_time(), "ticks": len(lags)}
    await asyncio.sleep(args.seconds)
    window.update(end=loop.time(), epoch_end=time.time(), cpu=time.process_time() - window["cpu"],
                  loop_cpu=time.thread_time() - window["loop_cpu"], lags=lags[window["ticks"]:])
    sent: dict = {}
    if fire is not None:
        sent = await loop.run_in_executor(None, fire)
        limit = time.monotonic() + 2 * args.poke + 60
        while len(events) < len(triggers) and time.monotonic() < limit:
            await asyncio.sleep(0.1)
    for task in [*tasks, beat]:
        task.cancel()
    await asyncio.gather(*tasks, beat, return_exceptions=True)
    return {**window, "began": began, "events": events, "sent": sent}


def idle_triggers(count: int, poke: float) -> list:
    """The baseline: coroutines that only sleep, as many as the triggers (no Graph, nothing allocated per poll)."""
    class Sleeper:
        async def run(self):
            while True:
                await asyncio.sleep(poke)
                if False:  # an async generator, as a trigger's run() is
                    yield None

    return [Sleeper() for _ in range(count)]


def shared_connections() -> int | None:
    """TLS connections the triggers' shared clients opened (urllib3 counts them per pool)."""
    try:
        from airflow_graph_mail.triggers import pool
    except ImportError:  # an older copy, with a client per trigger
        return None
    adapters = {id(adapter): adapter for client in list(pool._clients.values())
                for adapter in client.transport.session.adapters.values()}  # one adapter serves https and http
    return sum(adapter.poolmanager.pools[key].num_connections for adapter in adapters.values()
               for key in list(adapter.poolmanager.pools.keys()))


class FailedLooks:
    """Counts the warnings our triggers log for a look that failed (throttled, 5xx, no answer, connect failure)."""

    def __init__(self):
        import logging

        self.count = 0
        self.connect = 0
        handler = logging.Handler(logging.WARNING)
        handler.emit = self._emit  # type: ignore[method-assign]
        for name in ("airflow_graph_mail.triggers.graph_mail", "airflow_graph_mail.triggers.inbound"):
            logging.getLogger(name).addHandler(handler)

    def _emit(self, record) -> None:
        from airflow_graph_mail.errors import GraphConnectionError

        self.count += 1
        self.connect += any(isinstance(arg, GraphConnectionError) for arg in record.args or ())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triggers", type=int, default=200)
    parser.add_argument("--poke", type=float, default=5.0, help="each trigger's poke_interval (poll_interval)")
    parser.add_argument("--seconds", type=float, default=40.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=None, help="default: 2 poke intervals + 5 s")
    parser.add_argument("--per-mailbox", type=int, default=50, help="gates (or watchers) per mailbox")
    parser.add_argument("--latency-ms", type=int, default=50, help="the emulator's added latency per request")
    parser.add_argument("--idle", action="store_true", help="sleeping coroutines instead of triggers")
    parser.add_argument("--watchers", action="store_true", help="GraphMailEventTrigger watchers, not gates")
    parser.add_argument("--fill", type=int, default=0,
                        help="mails from outside each watched Inbox holds, received before the watches start")
    parser.add_argument("--emulator-nagle", action="store_true",
                        help="the emulator as it is, its answers' bodies held back by Nagle's algorithm")
    parser.add_argument("--trigger", default="airflow_graph_mail.triggers.graph_mail:GraphDraftSentTrigger",
                        help="module:Class of the gate (e.g. an older copy) with the same constructor")
    parser.add_argument("--threads", type=int, default=None, help="the triggers' pool size (default: ours)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "drafts":
        return {"drafts": make_drafts(args.rest[1:], int(args.rest[0]))}
    if args.role == "review":
        return review(json.loads(Path(args.rest[0]).read_text()))
    if args.role == "seed":
        return seed(args.rest[0], int(args.rest[1]), args.rest[2:])
    if args.warmup is None:
        args.warmup = 2 * args.poke + 5
    mailboxes = [f"gate-{k}@contoso.com" for k in range(math.ceil(args.triggers / args.per_mailbox))]
    with tempfile.TemporaryDirectory() as tmp:
        if args.fill:
            helper("seed", str(Path(tmp) / "emulator"), str(args.fill), *mailboxes)
        process, connection = start_emulator(
            Path(tmp) / "emulator", "--latency-ms", str(args.latency_ms), "--no-exchange-limits",
            *[option for mailbox in mailboxes for option in ("--sender", mailbox)], no_delay=not args.emulator_nagle)
        try:
            os.environ.update(AIRFLOW_HOME=str(Path(tmp) / "airflow"),
                              AIRFLOW_CONN_GRAPH_MAIL_DEFAULT=json.dumps(connection))
            return measure(args, mailboxes, connection, Path(tmp))
        finally:
            stop(process)


def measure(args, mailboxes: list[str], connection: dict, tmp: Path) -> dict:
    import airflow.triggers.base  # noqa: F401  (what a triggerer has loaded before any trigger)

    try:
        from airflow_graph_mail.triggers import pool
    except ImportError:  # an older copy of the provider (PYTHONPATH), for a before/after
        pool = None  # type: ignore[assignment]
    if args.threads and pool is not None:
        pool.POOL_SIZE = args.threads

    drafts: list[list[str]] = []
    fire = None
    if args.idle:
        triggers = idle_triggers(args.triggers, args.poke)
    elif args.watchers:
        from airflow_graph_mail.triggers.inbound import GraphMailEventTrigger

        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # the mail held is old news to the watches
        triggers = [GraphMailEventTrigger(watch_name=f"bench-{n}", mailbox=mailboxes[n % len(mailboxes)],
                                          received_after=started, poll_interval=args.poke, graph_mail_conn_id=CONN_ID)
                    for n in range(args.triggers)]
    else:
        module, _, name = args.trigger.partition(":")
        gate = getattr(importlib.import_module(module), name)
        drafts = helper("drafts", str(args.triggers), *mailboxes)["drafts"]  # type: ignore[index]
        triggers = [gate(graph_mail_conn_id=CONN_ID, message_id=draft, sender=mailbox,
                                          poke_interval=args.poke, deadline=time.time() + 3600)
                    for mailbox, draft in drafts]
        listing = tmp / "drafts.json"
        listing.write_text(json.dumps([draft for _, draft in drafts]))
        fire = lambda: helper("review", str(listing))  # noqa: E731
    failed = FailedLooks()
    collections = Collections()
    tracked = len(gc.get_objects())
    try:
        run = asyncio.run(run_loop(triggers, args, fire))
    finally:
        collections.close()
    window = run["end"] - run["start"]
    import requests

    log = requests.get(f"{connection['extra']['graph_url']}/_emulator/requests",
                       verify=connection["extra"]["ca_bundle"], timeout=60).json()["value"]
    looks = [r for r in log if r["method"] == "GET" and "/users/" in r["path"]]
    polls = [r for r in looks if run["epoch_start"] <= r["time"] <= run["epoch_end"]]
    inside = collections.between(run["start"], run["end"])
    result = {
        "kind": "idle" if args.idle else "watchers" if args.watchers else "gates", "triggers": args.triggers,
        "fill": args.fill,
        "poke_s": args.poke, "threads": getattr(pool, "POOL_SIZE", None), "mailboxes": len(mailboxes),
        "latency_ms": args.latency_ms,
        "window_s": round(window, 1), "polls": len(polls), "polls_per_s": round(len(polls) / window, 1),
        "non_200": sum(1 for r in looks if r["status"] != 200), "failed_looks": failed.count,
        "connect_failures": failed.connect, "cpu_ms_per_poll": round(run["cpu"] / max(1, len(polls)) * 1000, 3),
        "loop_cpu_ms_per_poll": round(run["loop_cpu"] / max(1, len(polls)) * 1000, 3),
        # What a gate's poke costs, whether it looks for itself or a shared watch looks for many.
        "cpu_ms_per_gate_poke": round(run["cpu"] / max(1e-9, args.triggers * window / args.poke) * 1000, 3),
        "requests_per_gate_poke": round(len(polls) / max(1e-9, args.triggers * window / args.poke), 3),
        "cpu_share": round(run["cpu"] / window, 3), "tracked_objects": tracked,
        "lag_ms": lag_summary(run["lags"], [c for c in inside if c[0] == 2]),
        "gc_per_min": per_minute(inside, window)}
    if not args.idle:
        result["connections"] = shared_connections()
    if drafts:
        firsts: dict[str, float] = {}
        for r in looks:
            firsts.setdefault(r["path"].split("?")[0].split("/messages/")[-1], r["time"])
        result["all_first_looks_s"] = round(max(firsts.values()) - run["began"], 1) if firsts else None
    if run["sent"]:
        by_id = {draft: n for n, (_, draft) in enumerate(drafts)}
        delays = [run["events"][by_id[d]][0] - at for d, at in run["sent"].items() if by_id[d] in run["events"]]
        statuses = sorted({payload["status"] for _, payload in run["events"].values()})
        result["fire"] = {"sent": len(run["sent"]), "fired": len(delays), "statuses": statuses,
                          "median_s": round(statistics.median(delays), 2) if delays else None,
                          "max_s": round(max(delays), 2) if delays else None,
                          "within_poke": sum(1 for d in delays if d <= args.poke)}
    if drafts:
        mailbox, draft = drafts[0]
        result["plain_get_ms"] = plain_get_cpu(connection, mailbox, draft)
    return result


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()  # a crash says where, on stderr (bench/run.py shows its end)
    print(json.dumps(main()))
