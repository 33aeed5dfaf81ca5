"""`make bench`: our paths against what a careful user writes without us, as ratios from the same run.

How it measures, so that a rerun in a fresh clone gets the same ratios:
- every round starts a fresh emulator (in its own process) and fresh client processes, so no variant
  pays for a store another one filled;
- the variants alternate within a round (ABBA) and the order flips between rounds;
- clients log as an Airflow task does (JSON lines at INFO), our per-send log line included;
- each row gives the median over the rounds and the range of the per-round ratios.

Results are printed and written to docs/benchmarks.md (the peers' section, from `make bench-peers`, is
kept as it was).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import reset_peak, status

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SMALL_MESSAGES = 800  # per variant per round
SMALL_ROUNDS = 9
CLIENT_SENDS = 5000  # per variant per round, network taken out
CLIENT_ROUNDS = 5
LARGE_BYTES = 100 * 1024 * 1024
LARGE_ROUNDS = 5
CHUNK_BYTES = 12 * 320 * 1024
BULK_MESSAGES = 400
BULK_LATENCY = 0.2  # seconds the emulator adds to every mailbox request: closer to Graph than 5 ms
BULK_ROUNDS = 3
SEQUENTIAL_MESSAGES = 100
DELIVERED_MESSAGES = 1000  # from one mailbox, at Exchange Online's default limits
DELIVERED_ROUNDS = 3
VIEWER_MESSAGES = 3500
VIEWER_ROUNDS = 7
STORED_SENDS = 10_000  # sent before measuring: 20,000 stored messages (Sent Items and the Inboxes)
STORE_ROUNDS = 5
STORE_BLOCK = 50  # sends per block; blocks alternate between the empty and the full emulator
STORE_BLOCKS = 8
MERGE_ROWS = (5_000, 100_000)
MERGE_ROUNDS = 3
INBOUND_MAILBOX = "reports-in@contoso.com"
INBOUND_STORED = 20_000  # mails from outside in the watched Inbox
INBOUND_POLLS = 50  # idle polls per client process
INBOUND_ROUNDS = 3
TRIGGER_GATES = ((50, 2.0), (200, 2.0), (1000, 10.0))  # review gates in one triggerer loop, their poke (s)
TRIGGER_SECONDS = 30  # measured per run, after the warm-up (every trigger's first look)
TRIGGER_WATCHERS = 200  # asset watchers in one loop, polling every TRIGGER_WATCH_POLL seconds
TRIGGER_WATCH_POLL = 5.0
TRIGGER_WATCH_FILL = 1000  # mails each watched Inbox holds, against empty ones
PEERS_START = "<!-- peers:start -->"  # where bench/peers/run.py writes its section of the same page


def start_emulator(state: Path, *options: str, exchange_limits: bool = False) -> tuple[subprocess.Popen, dict]:
    """A fresh emulator on a free port; limits raised (150 MB messages, no upload budget or request quota in
    the way) and, unless asked for, no Outbox pace: we measure the client, not throttling."""
    state.mkdir(parents=True, exist_ok=True)
    limits = () if exchange_limits else ("--no-exchange-limits",)
    process = subprocess.Popen([sys.executable, "-m", "graph_mail_emulator", "--state-dir", str(state),
                                "--port", "0", "--message-size-limit-mb", "150", "--upload-budget-mb", "100000",
                                "--mailbox-requests", "100000000", *limits, *options], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    process.stdout.readline()  # "Graph mail emulator on ..." once it listens
    connection = json.loads((state / "airflow-connection.json").read_text())
    return process, connection


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait()


def client_env(connection: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    return {**env, "AIRFLOW_CONN_GRAPH_MAIL_DEFAULT": json.dumps(connection)}


def run_json(script: str, *args: str, env: dict) -> dict:
    """A bench script in a fresh process; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, str(BENCH / script), *args], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def median(values) -> float:
    return statistics.median(list(values))


# -- scenarios ---------------------------------------------------------------------------------------


def small_messages(work: Path) -> dict:
    rounds = []
    for n in range(SMALL_ROUNDS):
        process, connection = start_emulator(work / f"small-{n}")
        try:
            order = "hook-first" if n % 2 == 0 else "raw-first"
            rounds.append(run_json("small_send.py", str(SMALL_MESSAGES), order, env=client_env(connection)))
        finally:
            stop(process)
    wall = [r["hook"]["wall_ms"] / r["raw"]["wall_ms"] for r in rounds]
    cpu = [r["hook"]["cpu_ms"] / r["raw"]["cpu_ms"] for r in rounds]
    return {"hook_wall": median(r["hook"]["wall_ms"] for r in rounds),
            "raw_wall": median(r["raw"]["wall_ms"] for r in rounds),
            "hook_cpu": median(r["hook"]["cpu_ms"] for r in rounds),
            "raw_cpu": median(r["raw"]["cpu_ms"] for r in rounds),
            "cpu_extra": median(r["hook"]["cpu_ms"] - r["raw"]["cpu_ms"] for r in rounds),
            "wall_ratio": median(wall), "wall_spread": spread(wall), "cpu_ratio": median(cpu),
            "cpu_spread": spread(cpu)}


def client_cpu(work: Path) -> dict:
    """Our client's own CPU per send (the HTTPS adapter answers in-process), fresh processes, alternating."""
    process, connection = start_emulator(work / "client")  # for the connection and a real token only
    try:
        rounds = [run_json("client_cpu.py", str(CLIENT_SENDS), "hook-first" if n % 2 == 0 else "raw-first",
                           env=client_env(connection)) for n in range(CLIENT_ROUNDS)]
    finally:
        stop(process)
    ratios = [r["hook_ms"] / r["raw_ms"] for r in rounds]
    return {"hook_ms": median(r["hook_ms"] for r in rounds), "raw_ms": median(r["raw_ms"] for r in rounds),
            "extra_ms": median(r["hook_ms"] - r["raw_ms"] for r in rounds), "ratio": median(ratios),
            "spread": spread(ratios)}


def large_attachment(work: Path) -> dict:
    """One 100 MB attachment: hook vs a plain chunk loop, each send in a fresh process (memory is per
    process), a fresh emulator per round whose own peak memory is read around each send."""
    path = work / "report-100MB.bin"
    with path.open("wb") as file:
        for _ in range(LARGE_BYTES // (4 * 1024 * 1024)):
            file.write(os.urandom(4 * 1024 * 1024))
    runs: dict[str, list[dict]] = {"hook": [], "plain": []}
    emulator_growth = []
    for n in range(LARGE_ROUNDS):
        process, connection = start_emulator(work / f"large-{n}")
        try:
            connection["extra"]["max_message_size_mb"] = 150
            for mode in ("hook", "plain") if n % 2 == 0 else ("plain", "hook"):
                before = reset_peak(process.pid)
                runs[mode].append(run_json("large_send.py", mode, str(path), env=client_env(connection)))
                emulator_growth.append(status("VmHWM", process.pid) - before)
        finally:
            stop(process)
    ratios = [h["seconds"] / p["seconds"] for h, p in zip(runs["hook"], runs["plain"], strict=True)]
    return {"hook_s": median(s["seconds"] for s in runs["hook"]),
            "plain_s": median(s["seconds"] for s in runs["plain"]), "ratio": median(ratios), "spread": spread(ratios),
            "hook_mb": max(s["rss_growth"] for s in runs["hook"]) / 2**20,
            "plain_mb": max(s["rss_growth"] for s in runs["plain"]) / 2**20,
            "emulator_mb": max(emulator_growth) / 2**20}


def bulk(work: Path) -> dict:
    """send_many vs a 4-thread requests pool (the fair baseline), fresh emulators, alternating order; and
    one sequential loop for scale. 200 ms of latency per mailbox request."""
    def one(mode: str, count: int, tag: str) -> dict:
        process, connection = start_emulator(work / f"bulk-{tag}", "--latency-ms", str(BULK_LATENCY * 1000),
                                             "--mailbox-concurrency", "4")
        try:
            return run_json("bulk_send.py", mode, str(count), env=client_env(connection))
        finally:
            stop(process)

    runs: dict[str, list[dict]] = {"ours": [], "pool": []}
    for n in range(BULK_ROUNDS):
        for mode in ("ours", "pool") if n % 2 == 0 else ("pool", "ours"):
            runs[mode].append(one(mode, BULK_MESSAGES, f"{mode}-{n}"))
    sequential = one("sequential", SEQUENTIAL_MESSAGES, "sequential")
    ratios = [o["seconds"] / p["seconds"] for o, p in zip(runs["ours"], runs["pool"], strict=True)]
    ideal = BULK_MESSAGES * BULK_LATENCY / 4
    ours_s, pool_s = median(r["seconds"] for r in runs["ours"]), median(r["seconds"] for r in runs["pool"])
    return {"ours_s": ours_s, "pool_s": pool_s, "ratio": median(ratios), "spread": spread(ratios), "ideal_s": ideal,
            "failed": sum(r["failed"] for rs in runs.values() for r in rs),
            "sequential_per_message": sequential["seconds"] / SEQUENTIAL_MESSAGES}


def accepted_delivered(work: Path) -> dict:
    """Accepted (Graph's 202s, at Graph-like latency, 4 at a time) and delivered (the emulator's Outbox at
    Exchange Online's 30 a minute, its clock moved) for DELIVERED_MESSAGES mails from one mailbox, fresh
    emulators, each against its ideal."""
    runs = []
    for n in range(DELIVERED_ROUNDS):
        process, connection = start_emulator(work / f"delivered-{n}", "--latency-ms", str(BULK_LATENCY * 1000),
                                             "--mailbox-concurrency", "4", exchange_limits=True)
        try:
            runs.append(run_json("accepted_delivered.py", str(DELIVERED_MESSAGES), env=client_env(connection)))
        finally:
            stop(process)
    accepted = [r["accepted_s"] for r in runs]
    return {"accepted_s": median(accepted), "accepted_spread": spread(accepted),
            "accepted_ideal_s": DELIVERED_MESSAGES * BULK_LATENCY / 4,
            "delivered_min": median(r["delivered_s"] for r in runs) / 60,
            "planned_min": median(r["planned_s"] for r in runs) / 60,
            "delivered_ideal_min": (DELIVERED_MESSAGES - 1) // 30,  # 30 leave each minute, the first at once
            "sent": min(r["sent"] for r in runs), "failed": sum(r["failed"] for r in runs)}


def seed_store(state: Path, sends: int, subject: str = "earlier",
               recipient=lambda n: f"customer{n % 100}@example.com", body: dict | None = None) -> None:
    """A state directory whose store already holds ``sends`` sent mails (each in Sent Items and an Inbox),
    written straight into the store: sending them over HTTPS would take minutes. Exchange's pace is off, or
    all but 30 would wait in the Outbox."""
    from graph_mail_emulator import EmulatorConfig, GraphEmulator, Limits

    emulator = GraphEmulator(EmulatorConfig(state, limits=Limits(exchange_limits=False)))
    store, delivery = emulator.backend.store, emulator.backend.delivery
    sender = store.find_mailbox(emulator.default_sender)
    with store.transaction():
        for n in range(sends):
            delivery.send_new(sender, {"subject": f"{subject} {n}",
                                       "body": body or {"contentType": "text", "content": "x"},
                                       "toRecipients": [{"emailAddress": {"address": recipient(n)}}]}, [], True)
    emulator.stop()


def viewer_pages(work: Path) -> dict:
    """The viewer on an Inbox of 3,500 messages: its list page (newest 200) and a search through all, with
    the inspection API's JSON of that Inbox as the baseline; requests interleaved, a fresh emulator."""
    import requests

    state = work / "viewer"
    seed_store(state, VIEWER_MESSAGES, subject="report", recipient=lambda n: "ann@example.com",
               body={"contentType": "html", "content": "<p>x</p>"})
    process, connection = start_emulator(state)
    try:
        session = requests.Session()
        base = connection["extra"]["graph_url"]
        urls = {"list": f"{base}/?mailbox=ann@example.com&folder=inbox", "search": f"{base}/?q=report+1717",
                "json": f"{base}/_emulator/mailboxes/ann@example.com/inbox"}
        timings: dict[str, list[float]] = {name: [] for name in urls}
        for n in range(VIEWER_ROUNDS + 1):
            for name in list(urls) if n % 2 == 0 else list(reversed(list(urls))):
                start = time.perf_counter()
                session.get(urls[name], verify=connection["extra"]["ca_bundle"]).raise_for_status()
                if n:  # the first round warms up
                    timings[name].append((time.perf_counter() - start) * 1000)
        count = len(session.get(urls["json"], verify=connection["extra"]["ca_bundle"]).json()["value"])
    finally:
        stop(process)
    return {"messages": count, **{name: median(values) for name, values in timings.items()}}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SendLoop:
    """Plain sendMail requests to one emulator process, whose CPU time is read around each block."""

    def __init__(self, process: subprocess.Popen, connection: dict):
        import requests

        self.process, extra = process, connection["extra"]
        self.session = requests.Session()
        self.session.verify, self.session.trust_env = extra["ca_bundle"], False
        token = self.session.post(f"{extra['authority_url']}/{extra['tenant_id']}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": connection["login"],
            "client_secret": connection["password"], "scope": f"{extra['graph_url']}/.default"}).json()
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}
        self.url = f"{extra['graph_url']}/v1.0/users/{extra['sender']}/sendMail"
        self.sent = 0

    def block(self, count: int) -> float:
        """CPU seconds the emulator spent on ``count`` sends."""
        before = cpu_seconds(self.process.pid)
        for _ in range(count):
            self.sent += 1
            payload = {"message": {"subject": f"now {self.sent}", "body": {"contentType": "text", "content": "x"},
                                   "toRecipients": [{"emailAddress": {"address": "ann@example.com"}}]}}
            response = self.session.post(self.url, json=payload, headers=self.headers, timeout=60)
            assert response.status_code == 202, response.text
        return cpu_seconds(self.process.pid) - before


def emulator_store_cost(work: Path) -> dict:
    """The emulator's CPU per sendMail on a store already holding 10,000 sent mails vs an empty one.

    Each round starts both emulators afresh (the full one from a copy of the seeded store), warms both
    up, then alternates blocks of sends between them."""
    seeded = work / "seeded"
    seed_store(seeded, STORED_SENDS)
    per_send: dict[str, list[float]] = {"empty": [], "full": []}
    for n in range(STORE_ROUNDS):
        states = {"empty": work / f"empty-{n}", "full": work / f"full-{n}"}
        shutil.copytree(seeded, states["full"])
        started = {name: start_emulator(state) for name, state in states.items()}
        try:
            loops = {name: SendLoop(*pair) for name, pair in started.items()}
            for loop in loops.values():
                loop.block(20)  # warm up: TLS connection, caches
            spent = dict.fromkeys(loops, 0.0)
            order = list(loops) if n % 2 == 0 else list(reversed(list(loops)))
            for _ in range(STORE_BLOCKS):
                for name in order:
                    spent[name] += loops[name].block(STORE_BLOCK)
            for name in loops:
                per_send[name].append(spent[name] / (STORE_BLOCK * STORE_BLOCKS) * 1000)
        finally:
            for process, _ in started.values():
                stop(process)
    ratios = [full / empty for full, empty in zip(per_send["full"], per_send["empty"], strict=True)]
    return {"empty_ms": median(per_send["empty"]), "full_ms": median(per_send["full"]), "ratio": median(ratios),
            "spread": spread(ratios)}


def mail_merge(work: Path) -> dict:
    """GraphMailMergeOperator checking every row (check_only) vs plain Jinja rendering the same templates,
    5,000 and 100,000 rows from a .csv, each run in a fresh process, alternating."""
    process, connection = start_emulator(work / "merge")
    result = {}
    try:
        env = client_env(connection)
        for rows in MERGE_ROWS:
            runs: dict[str, list[dict]] = {"ours": [], "jinja": []}
            for n in range(MERGE_ROUNDS):
                for mode in ("ours", "jinja") if n % 2 == 0 else ("jinja", "ours"):
                    runs[mode].append(run_json("merge_check.py", mode, str(rows), env=env))
            ratios = [o["cpu_seconds"] / j["cpu_seconds"] for o, j in zip(runs["ours"], runs["jinja"], strict=True)]
            result[rows] = {"ours_ms": median(r["cpu_seconds"] for r in runs["ours"]) / rows * 1000,
                            "jinja_ms": median(r["cpu_seconds"] for r in runs["jinja"]) / rows * 1000,
                            "ours_s": median(r["seconds"] for r in runs["ours"]),
                            "ours_bytes": max(r["rss_growth"] for r in runs["ours"]) / rows,
                            "jinja_bytes": max(r["rss_growth"] for r in runs["jinja"]) / rows,
                            "ratio": median(ratios), "spread": spread(ratios)}
    finally:
        stop(process)
    return result


def seed_inbound(state: Path, count: int, attachment: Path | None = None) -> str:
    """A state directory whose watched Inbox holds ``count`` mails from outside, written through the emulator's
    inbound API in-process; with ``attachment``, one more mail carrying it (its immutable id returned)."""
    from graph_mail_emulator import GraphEmulator

    emulator = GraphEmulator(state)
    try:
        emulator.backend.store.add_user(INBOUND_MAILBOX)
        emulator.backend.set_limits(message_size_limit=150 * 2**20)
        for n in range(count):
            emulator.inbound.receive(to=INBOUND_MAILBOX, sender="someone@elsewhere.example", subject=f"earlier {n}")
        if attachment is None:
            return ""
        (arrived,) = emulator.inbound.receive(to=INBOUND_MAILBOX, sender="orders@fabrikam.example", subject="big",
                                              attachments=[("report.bin", attachment, "application/octet-stream")])
        return arrived["immutableId"]
    finally:
        emulator.stop()


def inbound_mail(work: Path) -> dict:
    """The asset watcher's idle poll on an Inbox of 20,000 mails vs an empty one (fresh emulators and client
    processes, alternating); then saving one 100 MB attachment, ours vs a plain streaming loop, memory read
    per process."""
    seeded = work / "seeded"
    seed_inbound(seeded, INBOUND_STORED)
    polls: dict[str, list[dict]] = {"empty": [], "full": []}
    for n in range(INBOUND_ROUNDS):
        states = {"empty": work / f"empty-{n}", "full": work / f"full-{n}"}
        seed_inbound(states["empty"], 0)
        shutil.copytree(seeded, states["full"])
        for name in ("full", "empty") if n % 2 == 0 else ("empty", "full"):
            process, connection = start_emulator(states[name])
            try:
                polls[name].append(run_json("inbound_poll.py", str(INBOUND_POLLS), env=client_env(connection)))
            finally:
                stop(process)
    path = work / "attachment-100MB.bin"
    with path.open("wb") as file:
        for _ in range(LARGE_BYTES // (4 * 1024 * 1024)):
            file.write(os.urandom(4 * 1024 * 1024))
    message_id = seed_inbound(work / "attachment", 0, path)
    saves: dict[str, list[dict]] = {"ours": [], "plain": []}
    process, connection = start_emulator(work / "attachment")
    try:
        for n in range(LARGE_ROUNDS):
            for mode in ("ours", "plain") if n % 2 == 0 else ("plain", "ours"):
                folder = work / f"saved-{mode}-{n}"
                saves[mode].append(run_json("save_attachment.py", mode, message_id, str(folder),
                                            env=client_env(connection)))
                shutil.rmtree(folder)
        naive = run_json("save_attachment.py", "naive", message_id, str(work / "saved-naive"),
                         env=client_env(connection))
    finally:
        stop(process)
    ratios = [f["poll_ms"] / e["poll_ms"] for f, e in zip(polls["full"], polls["empty"], strict=True)]
    return {"full_ms": median(r["poll_ms"] for r in polls["full"]),
            "empty_ms": median(r["poll_ms"] for r in polls["empty"]), "ratio": median(ratios),
            "spread": spread(ratios), "full_requests": max(r["requests_per_poll"] for r in polls["full"]),
            "empty_requests": max(r["requests_per_poll"] for r in polls["empty"]),
            "first_round_s": median(r["first_round_s"] for r in polls["full"]),
            "ours_mb": max(r["rss_growth"] for r in saves["ours"]) / 2**20,
            "plain_mb": max(r["rss_growth"] for r in saves["plain"]) / 2**20,
            "ours_s": median(r["seconds"] for r in saves["ours"]),
            "plain_s": median(r["seconds"] for r in saves["plain"]), "naive_mb": naive["rss_growth"] / 2**20}


def triggers_in_one_loop(work: Path) -> dict:
    """Many triggers in one triggerer loop against an emulator (bench/trigger_loop.py, a fresh process each): N
    review gates, then the reviewer's sends; 200 sleeping coroutines as the baseline; 200 asset watchers on empty
    and on full Inboxes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    window = ("--seconds", str(TRIGGER_SECONDS))
    gates = {count: run_json("trigger_loop.py", "--triggers", str(count), "--poke", str(poke), *window, env=env)
             for count, poke in TRIGGER_GATES}
    idle = run_json("trigger_loop.py", "--idle", "--triggers", "200", "--poke", "2", *window, env=env)
    watchers = {fill: run_json("trigger_loop.py", "--watchers", "--triggers", str(TRIGGER_WATCHERS), "--poke",
                               str(TRIGGER_WATCH_POLL), "--fill", str(fill), *window, env=env)
                for fill in (TRIGGER_WATCH_FILL, 0)}
    return {"gates": gates, "idle": idle, "watchers": watchers}


# -- the page ----------------------------------------------------------------------------------------


def small_rows(small: dict) -> list[str]:
    return [
        f"| small sendMail, {SMALL_MESSAGES} per variant per round, {SMALL_ROUNDS} rounds: wall time per send | "
        f"{small['hook_wall']:.2f} ms | {small['raw_wall']:.2f} ms | {small['wall_ratio']:.2f}x "
        f"({small['wall_spread']}) |",
        f"| the same sends: client CPU per send (ours includes the INFO log line) | {small['hook_cpu']:.3f} ms | "
        f"{small['raw_cpu']:.3f} ms | {small['cpu_ratio']:.2f}x ({small['cpu_spread']}); "
        f"{small['cpu_extra']:+.3f} ms |"]


def client_rows(client: dict) -> list[str]:
    return [
        f"| client CPU per small send with the network taken out (requests' HTTPS adapter answers 202 "
        f"in-process), {CLIENT_ROUNDS} rounds of {CLIENT_SENDS:,} | {client['hook_ms']:.3f} ms | "
        f"{client['raw_ms']:.3f} ms | {client['ratio']:.2f}x ({client['spread']}); {client['extra_ms']:+.3f} ms |"]


def large_rows(large: dict) -> list[str]:
    chunk_mb = CHUNK_BYTES / 2**20
    return [
        f"| one 100 MB attachment (draft, upload session, send), {LARGE_ROUNDS} rounds | {large['hook_s']:.2f} s | "
        f"{large['plain_s']:.2f} s | {large['ratio']:.2f}x ({large['spread']}) |",
        f"| peak memory growth of the sender during that send (max; chunk {chunk_mb:.2f} MB) | "
        f"{large['hook_mb']:.1f} MB | {large['plain_mb']:.1f} MB | {large['hook_mb'] / large['plain_mb']:.2f}x |",
        f"| the emulator's peak memory growth during a 100 MB attachment's upload and send (max of "
        f"{2 * LARGE_ROUNDS}); baseline the attachment | {large['emulator_mb']:.1f} MB | 100 MB | "
        f"{large['emulator_mb'] / 100:.2f}x |"]


def many_rows(many: dict) -> list[str]:
    return [
        f"| {BULK_MESSAGES} mails at {BULK_LATENCY * 1000:.0f} ms latency per request, {BULK_ROUNDS} rounds: "
        f"`send_many` (4 at a time, keys on) vs a 4-thread requests pool; ideal {many['ideal_s']:.0f} s | "
        f"{many['ours_s']:.1f} s | {many['pool_s']:.1f} s | {many['ratio']:.2f}x ({many['spread']}) |",
        f"| for scale: a sequential requests loop at that latency | | {many['sequential_per_message'] * 1000:.0f} ms "
        f"per mail ({BULK_MESSAGES * many['sequential_per_message']:.0f} s for {BULK_MESSAGES}) | |"]


def delivered_rows(delivered: dict) -> list[str]:
    return [
        f"| {DELIVERED_MESSAGES:,} mails from one mailbox at Exchange Online's limits, {DELIVERED_ROUNDS} rounds: "
        f"accepted (Graph's 202s, {BULK_LATENCY * 1000:.0f} ms latency, 4 at a time) | {delivered['accepted_s']:.1f} s "
        f"({delivered['accepted_spread']}) | ideal {delivered['accepted_ideal_s']:.0f} s | "
        f"{delivered['accepted_s'] / delivered['accepted_ideal_s']:.2f}x |",
        f"| the same mails delivered: first to last leaving the Outbox (30 a minute, the emulator's clock moved); "
        f"{delivered['sent']:,} in Sent Items, {delivered['failed']} failed; planned by the outcomes "
        f"{delivered['planned_min']:.1f} min | {delivered['delivered_min']:.1f} min | ideal "
        f"{delivered['delivered_ideal_min']} min | "
        f"{delivered['delivered_min'] / delivered['delivered_ideal_min']:.2f}x |"]


def merge_rows(merge: dict) -> list[str]:
    return [
        f"| mail merge, {rows:,} rows from a .csv: `GraphMailMergeOperator(check_only=True)` renders and checks "
        f"each mail; baseline plain Jinja renders the same templates ({MERGE_ROUNDS} rounds) | "
        f"{m['ours_ms']:.3f} ms/row ({m['ours_s']:.1f} s), {m['ours_bytes']:.0f} bytes/row | {m['jinja_ms']:.3f} "
        f"ms/row, {m['jinja_bytes']:.0f} bytes/row | {m['ratio']:.2f}x ({m['spread']}) |"
        for rows, m in merge.items()]


def viewer_rows(viewer: dict) -> list[str]:
    return [
        f"| mailbox viewer, an Inbox of {viewer['messages']:,} messages ({VIEWER_ROUNDS} rounds); baseline the "
        f"inspection API's JSON of that Inbox | list page (newest 200) {viewer['list']:.0f} ms; search through all "
        f"{viewer['search']:.0f} ms | {viewer['json']:.0f} ms | {viewer['list'] / viewer['json']:.2f}x; "
        f"{viewer['search'] / viewer['json']:.2f}x |"]


def store_rows(store: dict) -> list[str]:
    return [
        f"| the emulator's CPU per sendMail with {STORED_SENDS:,} mails sent before ({2 * STORED_SENDS:,} stored), "
        f"baseline an empty store ({STORE_ROUNDS} rounds, {STORE_BLOCKS} x {STORE_BLOCK} sends each) | "
        f"{store['full_ms']:.2f} ms | {store['empty_ms']:.2f} ms | {store['ratio']:.2f}x ({store['spread']}) |"]


def inbound_rows(inbound: dict) -> list[str]:
    return [
        f"| one poll of an idle watched Inbox holding {INBOUND_STORED:,} mails (the asset watcher, change tracking; "
        f"{INBOUND_POLLS} polls x {INBOUND_ROUNDS} rounds); baseline the same watch of an empty Inbox | "
        f"{inbound['full_ms']:.2f} ms, {inbound['full_requests']:.0f} request | {inbound['empty_ms']:.2f} ms, "
        f"{inbound['empty_requests']:.0f} request | {inbound['ratio']:.2f}x ({inbound['spread']}) |",
        f"| for scale: the watcher's first round after a start, reading those {INBOUND_STORED:,} (its look back) | "
        f"{inbound['first_round_s']:.1f} s | | |",
        f"| peak memory growth saving one 100 MB attachment to a folder (`save_attachments`, 1 MB chunks, sha256); "
        f"baseline a plain requests streaming loop ({LARGE_ROUNDS} rounds, max) | {inbound['ours_mb']:.1f} MB, "
        f"{inbound['ours_s']:.2f} s | {inbound['plain_mb']:.1f} MB, {inbound['plain_s']:.2f} s | "
        f"{max(inbound['ours_mb'], 0.1) / max(inbound['plain_mb'], 0.1):.2f}x |",
        f"| for scale: the same save reading the attachment whole (`response.content`) | | "
        f"{inbound['naive_mb']:.1f} MB | |"]


def trigger_rows(result: dict) -> list[str]:
    rows = []
    idle = result["idle"]
    for count, gate in result["gates"].items():
        lag, fire, gc = gate["lag_ms"], gate["fire"], gate["gc_per_min"]
        rows += [
            f"| {count:,} review gates in one triggerer loop (poke {gate['poke_s']:g} s, {gate['mailboxes']} "
            f"mailbox{'es' if gate['mailboxes'] != 1 else ''}, {gate['latency_ms']} ms latency, "
            f"{gate['window_s']:.0f} s measured): loop lag median / p99 / "
            f"max / largest outside a full collection / of it, not the loop waiting for a CPU; CPU per gate per "
            f"poke (all threads, the bench's ticker included: the gates share a watch of each mailbox's Drafts); "
            f"Graph requests per gate per poke; full collections | {lag['median']:.1f} / {lag['p99']:.1f} / "
            f"{lag['max']:.0f} / {lag['max_not_gc']:.0f} / {lag['max_ours']:.0f} ms; "
            f"{gate['cpu_ms_per_gate_poke']:.2f} ms; "
            f"{gate['requests_per_gate_poke']:.3f}; {gc['gen2']:g}/min (longest {gc['gen2_max_ms']:.0f} ms) | "
            f"goals: p99 10 ms, no stall of ours over 50 ms, 1 ms per poll; here a plain requests GET of a draft "
            f"(what a gate looking for itself pays each poke) costs {gate['plain_get_ms']:.2f} ms | CPU "
            f"{gate['cpu_ms_per_gate_poke'] / gate['plain_get_ms']:.2f}x the plain GET |",
            f"| the same {count:,} gates: the reviewer sends every draft through the emulator; send to event; TLS "
            f"connections opened; failed looks (connect failures) | median {fire['median_s']:.1f} s, max "
            f"{fire['max_s']:.1f} s, {fire['within_poke']:,}/{count:,} within the poke; {gate['connections']} "
            f"connections; {gate['failed_looks']} ({gate['connect_failures']}) | goal: within the poke, 0 failed; a "
            f"client per trigger would open {count:,} | |"]
    gates = result["gates"][200]
    ours, base = gates["gc_per_min"], idle["gc_per_min"]
    rows += [
        f"| collections per minute, gen0 / gen1 / gen2 (longest full one), with 200 review gates polling every 2 s; "
        f"baseline 200 coroutines that only sleep in the same loop (lag p99 {idle['lag_ms']['p99']:.1f} ms) | "
        f"{ours['gen0']:g} / {ours['gen1']:g} / {ours['gen2']:g} ({ours['gen2_max_ms']:.0f} ms) | {base['gen0']:g} / "
        f"{base['gen1']:g} / {base['gen2']:g} ({base['gen2_max_ms']:.0f} ms) | |",
        f"| for scale: that idle loop's CPU (the bench's 10 ms ticker, 200 sleeping coroutines), one run | | "
        f"{idle['cpu_share'] * 1000:.0f} ms per second | |"]
    full, empty = result["watchers"][TRIGGER_WATCH_FILL], result["watchers"][0]

    def requests_per_poll(run: dict) -> float:
        return run["polls_per_s"] * run["poke_s"] / run["triggers"]

    rows.append(
        f"| {TRIGGER_WATCHERS} asset watchers (`GraphMailEventTrigger`) in one loop, polling every "
        f"{TRIGGER_WATCH_POLL:g} s, Inboxes holding {TRIGGER_WATCH_FILL:,} mails each: CPU per poll; requests per "
        f"poll; lag p99 / largest outside a full collection; baseline the same watchers on empty Inboxes | "
        f"{full['cpu_ms_per_poll']:.2f} ms; {requests_per_poll(full):.2f}; {full['lag_ms']['p99']:.1f} / "
        f"{full['lag_ms']['max_not_gc']:.0f} ms | {empty['cpu_ms_per_poll']:.2f} ms; {requests_per_poll(empty):.2f}; "
        f"{empty['lag_ms']['p99']:.1f} / {empty['lag_ms']['max_not_gc']:.0f} ms | "
        f"{full['cpu_ms_per_poll'] / empty['cpu_ms_per_poll']:.2f}x |")
    return rows


# Each scenario: what it measures, and its rows on the page, in the page's order.
SCENARIOS = {
    "small": (small_messages, small_rows), "client": (client_cpu, client_rows),
    "large": (large_attachment, large_rows), "many": (bulk, many_rows),
    "delivered": (accepted_delivered, delivered_rows), "merge": (mail_merge, merge_rows),
    "viewer": (viewer_pages, viewer_rows), "store": (emulator_store_cost, store_rows),
    "inbound": (inbound_mail, inbound_rows), "triggers": (triggers_in_one_loop, trigger_rows),
}


def table_rows(existing: str) -> list[str]:
    """The rows of the page's own table (not the peers' section)."""
    own = existing.split(PEERS_START, 1)[0]
    return [line for line in own.splitlines() if line.startswith("| ") and not line.startswith("| scenario |")]


def merged_rows(fresh: dict[str, list[str]], existing: str) -> list[str]:
    """The page's rows with the scenarios just run in place of their earlier rows. A row is a scenario's when
    its first 40 characters (constant words, before any number measured) are those of one of its fresh rows;
    rows of scenarios not run stay as they were; a scenario new to the page goes at the end."""
    owner = {line[:40]: name for name, lines in fresh.items() for line in lines}
    fresh = dict(fresh)
    rows: list[str] = []
    for line in table_rows(existing):
        name = owner.get(line[:40])
        if name is None:
            rows.append(line)
        elif name in fresh:  # its first row on the page: all its fresh rows go here
            rows += fresh.pop(name)
    for lines in fresh.values():
        rows += lines
    return rows


def write_report(rows: list[str], path: Path = ROOT / "docs" / "benchmarks.md") -> None:
    import airflow
    import msal
    import requests

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    versions = f"Airflow {airflow.__version__}, msal {msal.__version__}, requests {requests.__version__}"
    text = "\n".join([
        "# Benchmarks",
        "",
        "Produced by `make bench` (bench/run.py) against the local emulator, which answers in a few",
        "milliseconds where Graph takes 100-300: wall ratios here magnify client costs that Graph's latency",
        "would hide, so the CPU rows say what a send costs the worker.",
        "",
        "Each round starts a fresh emulator and fresh client processes; variants alternate within a round and",
        "swap order between rounds; clients log as an Airflow task does (JSON lines at INFO). Values are",
        "medians over the rounds; a ratio is ours / baseline with the range of the per-round ratios.",
        "",
        f"Machine: {machine}. Versions: {versions}.",
        "",
        "| scenario | ours | baseline (what you would write without us) | ratio (range) |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    existing = path.read_text() if path.exists() else ""
    if PEERS_START in existing:  # make bench-peers' section stays as that run left it
        text += "\n" + PEERS_START + existing.split(PEERS_START, 1)[1]
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="make bench: the project's benchmarks, written to docs/benchmarks.md")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), metavar="SCENARIO",
                        help="run these scenarios and replace their rows, keeping the others'")
    args = parser.parse_args(argv)
    chosen = args.only or list(SCENARIOS)
    fresh: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in chosen:
            measure, rows = SCENARIOS[name]
            started = time.perf_counter()
            (work / name).mkdir()
            result = measure(work / name)
            print(f"{name}: {time.perf_counter() - started:.0f} s {result}", flush=True)
            fresh[name] = rows(result)
    page = ROOT / "docs" / "benchmarks.md"
    lines = merged_rows(fresh, page.read_text()) if args.only and page.exists() else \
        [line for name in SCENARIOS for line in fresh[name]]
    print("\n".join(lines))
    write_report(lines, page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
