"""`make bench`: our send path against a plain requests loop, in the same run, as a ratio.

The emulator runs in its own process so that the client under test has the interpreter to itself.
Results are printed and written to docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_memory import reset_peak, status

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 500
ROUNDS = 3
LARGE_BYTES = 100 * 1024 * 1024
LARGE_ROUNDS = 5  # the emulator's disk writes dominate a 100 MB send and vary from run to run
CHUNK_BYTES = 12 * 320 * 1024
VIEWER_ROUNDS = 5
BULK_MESSAGES = 1000
BULK_LATENCY = 0.2  # seconds the emulator adds to every mailbox request
MAILBOX_CONCURRENCY = 4
STORED_SENDS = 10_000  # sent before measuring: 20,000 stored messages (Sent Items and the Inboxes)
STORE_ROUNDS = 5
STORE_BLOCK = 50  # sends per block; blocks alternate between the empty and the full emulator
STORE_BLOCKS = 4
PEERS_START = "<!-- peers:start -->"  # where bench/peers/run.py writes its section of the same page


def start_emulator(state: Path, *options: str) -> tuple[subprocess.Popen, dict]:
    """Limits raised (150 MB messages, no upload budget in the way): we measure the client, not throttling."""
    state.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "airflow_graph_mail.emulator", "--state-dir", str(state),
                                "--port", "0", "--message-size-limit-mb", "150", "--upload-budget-mb", "100000", *options],
                               stdout=subprocess.PIPE, text=True)
    process.stdout.readline()  # "Graph mail emulator on ..." once it listens
    connection = json.loads((state / "airflow-connection.json").read_text())
    return process, connection


def small_messages(hook, url: str) -> dict:
    from airflow_graph_mail.mail.message import Message

    client = hook.client
    session, token = client.transport.session, client.transport.credential.get_token()

    def through_hook():
        for i in range(MESSAGES):
            hook.send_mail(Message(to="ann@example.com", subject=f"hook {i}", body="<p>small</p>"))

    def plain_loop():
        headers = {"Authorization": f"Bearer {token}"}
        for i in range(MESSAGES):
            payload = {"message": {"subject": f"plain {i}", "body": {"contentType": "html", "content": "<p>small</p>"},
                                   "toRecipients": [{"emailAddress": {"address": "ann@example.com"}}]}}
            response = session.post(url, json=payload, headers=headers, timeout=60)
            assert response.status_code == 202, response.text

    through_hook()  # warm up: token, connections, caches
    timings = {"hook": [], "plain": []}
    for _ in range(ROUNDS):
        for name, run in (("hook", through_hook), ("plain", plain_loop)):
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    hook_s, plain_s = statistics.median(timings["hook"]), statistics.median(timings["plain"])
    return {"hook_ms": hook_s / MESSAGES * 1000, "plain_ms": plain_s / MESSAGES * 1000, "ratio": hook_s / plain_s}


def viewer_pages(connection: dict) -> dict:
    """The mailbox viewer on the Inbox small_messages filled: its list page (newest 200), a search through
    every message, and the inspection API's JSON of the same Inbox as the baseline."""
    import requests

    session = requests.Session()
    session.verify, session.trust_env = connection["extra"]["ca_bundle"], False
    base, mailbox = connection["extra"]["graph_url"], "ann@example.com"
    urls = {"list": f"{base}/?mailbox={mailbox}&folder=inbox", "search": f"{base}/?mailbox={mailbox}&q=hook+17",
            "json": f"{base}/_emulator/mailboxes/{mailbox}/inbox"}
    timings = {}
    for name, url in urls.items():
        session.get(url).raise_for_status()
        rounds = []
        for _ in range(VIEWER_ROUNDS):
            start = time.perf_counter()
            session.get(url).raise_for_status()
            rounds.append(time.perf_counter() - start)
        timings[name] = statistics.median(rounds) * 1000
    count = len(session.get(urls["json"]).json()["value"])
    return {"messages": count, **timings}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed_store(state: Path, sends: int) -> None:
    """A state directory whose store already holds ``sends`` sent mails (each in Sent Items and an Inbox),
    written straight into the store: sending them over HTTPS would take minutes."""
    from airflow_graph_mail.emulator.server import GraphEmulator

    emulator = GraphEmulator(state)
    store = emulator.store
    sender = store.find_mailbox(emulator.default_sender)
    with store.transaction():
        for n in range(sends):
            store.send_new(sender, {"subject": f"earlier {n}", "body": {"contentType": "text", "content": "x"},
                                    "toRecipients": [{"emailAddress": {"address": f"customer{n % 100}@example.com"}}]},
                           [], True)
    emulator.stop()


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


def emulator_store_cost(directory: Path) -> dict:
    """The emulator's CPU per sendMail on a store already holding 10,000 sent mails vs an empty one.

    Each round starts both emulators afresh (the full one from a copy of the seeded store), warms both
    up, then alternates blocks of sends between them."""
    import shutil

    seeded = directory / "seeded"
    seed_store(seeded, STORED_SENDS)
    per_send: dict[str, list[float]] = {"empty": [], "full": []}
    for round_number in range(STORE_ROUNDS):
        states = {"empty": directory / f"empty-{round_number}", "full": directory / f"full-{round_number}"}
        shutil.copytree(seeded, states["full"])
        started = {name: start_emulator(state, "--mailbox-requests", "1000000") for name, state in states.items()}
        try:
            loops = {name: SendLoop(*pair) for name, pair in started.items()}
            for loop in loops.values():
                loop.block(20)  # warm up: TLS connection, caches
            spent = dict.fromkeys(loops, 0.0)
            order = list(loops) if round_number % 2 == 0 else list(reversed(list(loops)))
            for _ in range(STORE_BLOCKS):
                for name in order:
                    spent[name] += loops[name].block(STORE_BLOCK)
            for name in loops:
                per_send[name].append(spent[name] / (STORE_BLOCK * STORE_BLOCKS) * 1000)
        finally:
            for process, _ in started.values():
                process.terminate()
                process.wait()
    ratios = [full / empty for full, empty in zip(per_send["full"], per_send["empty"])]
    return {"empty_ms": statistics.median(per_send["empty"]), "full_ms": statistics.median(per_send["full"]),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def large_attachment(connection: dict, directory: Path, emulator_pid: int) -> dict:
    """One 100 MB attachment, hook vs a plain chunk loop, each send in a fresh process (memory is per process);
    the emulator's own peak memory is read around each send too."""
    path = directory / "report-100MB.bin"
    with path.open("wb") as file:
        for _ in range(LARGE_BYTES // (4 * 1024 * 1024)):
            file.write(os.urandom(4 * 1024 * 1024))
    connection = {**connection, "extra": {**connection["extra"], "max_message_size_mb": 150}}
    env = {**os.environ, "AIRFLOW_CONN_GRAPH_MAIL_DEFAULT": json.dumps(connection)}
    runs: dict[str, list[dict]] = {"hook": [], "plain": []}
    emulator_growth = []
    for _ in range(LARGE_ROUNDS):
        for mode in runs:
            before = reset_peak(emulator_pid)
            out = subprocess.run([sys.executable, str(ROOT / "bench" / "large_send.py"), mode, str(path)], env=env,
                                 capture_output=True, text=True, check=True).stdout
            emulator_growth.append(status("VmHWM", emulator_pid) - before)
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
    result = {"emulator_mb": max(emulator_growth) / 1024 / 1024}
    for mode, samples in runs.items():
        result[f"{mode}_s"] = statistics.median(s["seconds"] for s in samples)
        result[f"{mode}_mb"] = max(s["rss_growth"] for s in samples) / 1024 / 1024
    result["ratio"] = result["hook_s"] / result["plain_s"]
    return result


def bulk(directory: Path) -> dict:
    """1,000 messages with 200 ms of latency per request: send_many (4 at a time, the mailbox's limit,
    idempotency keys on) vs a sequential plain loop. Ideal: 1,000 x 0.2 s / 4."""
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    process, connection = start_emulator(directory, "--latency-ms", str(BULK_LATENCY * 1000),
                                         "--mailbox-concurrency", str(MAILBOX_CONCURRENCY))
    try:
        os.environ["AIRFLOW_CONN_GRAPH_MAIL_BULK"] = json.dumps(connection)
        hook = GraphMailHook("graph_mail_bulk")
        session, token = hook.client.transport.session, hook.client.transport.credential.get_token()
        messages = [Message(to=f"customer{i}@example.com", subject=f"Statement {i}", body=f"<p>Dear {i}</p>")
                    for i in range(BULK_MESSAGES)]
        start = time.perf_counter()
        outcomes = hook.send_many(messages, keys=[f"bench/{i}" for i in range(BULK_MESSAGES)])
        bulk_s = time.perf_counter() - start
        assert all(o["status"] == "sent" for o in outcomes), [o for o in outcomes if o["status"] != "sent"][:3]
        url = f"{connection['extra']['graph_url']}/v1.0/users/{connection['extra']['sender']}/sendMail"
        headers = {"Authorization": f"Bearer {token}"}
        start = time.perf_counter()
        for i in range(BULK_MESSAGES):
            payload = {"message": {"subject": f"Statement {i}", "body": {"contentType": "html",
                                                                          "content": f"<p>Dear {i}</p>"},
                                   "toRecipients": [{"emailAddress": {"address": f"customer{i}@example.com"}}]}}
            response = session.post(url, json=payload, headers=headers, timeout=60)
            assert response.status_code == 202, response.text
        plain_s = time.perf_counter() - start
    finally:
        process.terminate()
        process.wait()
    ideal = BULK_MESSAGES * BULK_LATENCY / MAILBOX_CONCURRENCY
    return {"bulk_s": bulk_s, "plain_s": plain_s, "ideal_s": ideal, "of_ideal": bulk_s / ideal,
            "speedup": plain_s / bulk_s}


def main() -> int:
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # one log line per send is noise here
    with tempfile.TemporaryDirectory() as tmp:
        process, connection = start_emulator(Path(tmp))
        try:
            os.environ["AIRFLOW_CONN_GRAPH_MAIL_DEFAULT"] = json.dumps(connection)
            from airflow_graph_mail.hooks.graph_mail import GraphMailHook

            hook = GraphMailHook()
            url = f"{connection['extra']['graph_url']}/v1.0/users/{connection['extra']['sender']}/sendMail"
            result = small_messages(hook, url)
            viewer = viewer_pages(connection)
            large = large_attachment(connection, Path(tmp), process.pid)
        finally:
            process.terminate()
            process.wait()
        many = bulk(Path(tmp) / "bulk")
        store = emulator_store_cost(Path(tmp) / "store")
    chunk_mb = CHUNK_BYTES / 1024 / 1024
    lines = [
        f"| {MESSAGES} small messages, sequential (median of {ROUNDS}) | {result['hook_ms']:.2f} ms/message | "
        f"{result['plain_ms']:.2f} ms/message | {result['ratio']:.2f}x |",
        f"| one 100 MB attachment (draft, upload session, send; median of {LARGE_ROUNDS}) | {large['hook_s']:.2f} s | "
        f"{large['plain_s']:.2f} s | {large['ratio']:.2f}x |",
        f"| peak memory growth of the sender during that send (max of {LARGE_ROUNDS}; chunk {chunk_mb:.2f} MB) | "
        f"{large['hook_mb']:.1f} MB ({large['hook_mb'] / chunk_mb:.1f}x chunk) | {large['plain_mb']:.1f} MB "
        f"({large['plain_mb'] / chunk_mb:.1f}x chunk) | |",
        f"| {BULK_MESSAGES:,} messages, {BULK_LATENCY * 1000:.0f} ms latency per request: `send_many` (4 at a time, "
        f"keys on) vs a sequential loop; ideal {many['ideal_s']:.0f} s | {many['bulk_s']:.1f} s "
        f"({many['of_ideal']:.2f}x ideal) | {many['plain_s']:.1f} s | {1 / many['speedup']:.2f}x "
        f"({many['speedup']:.1f}x faster) |",
        f"| mailbox viewer, an Inbox of {viewer['messages']:,} messages (median of {VIEWER_ROUNDS}); baseline: the "
        f"inspection API's JSON of that Inbox | list page (newest 200) {viewer['list']:.0f} ms; a search through all "
        f"{viewer['search']:.0f} ms | {viewer['json']:.0f} ms | {viewer['list'] / viewer['json']:.2f}x; "
        f"{viewer['search'] / viewer['json']:.2f}x |",
        f"| the emulator's CPU per sendMail with {STORED_SENDS:,} mails sent before ({2 * STORED_SENDS:,} stored), "
        f"baseline an empty store ({STORE_ROUNDS} rounds of fresh emulators, {STORE_BLOCKS} x {STORE_BLOCK} sends "
        f"each, interleaved; median, ratio range) | {store['full_ms']:.2f} ms | {store['empty_ms']:.2f} ms | "
        f"{store['ratio']:.2f}x ({store['ratio_min']:.2f}-{store['ratio_max']:.2f}) |",
        f"| the emulator's peak memory growth during a 100 MB attachment's upload and send (max of "
        f"{2 * LARGE_ROUNDS}); baseline the attachment | {large['emulator_mb']:.1f} MB | 100 MB | "
        f"{large['emulator_mb'] / 100:.2f}x |",
    ]
    print("\n".join(lines))
    write_report(lines)
    return 0


def write_report(rows: list[str], path: Path = ROOT / "docs" / "benchmarks.md") -> None:
    import airflow
    import msal
    import requests

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    versions = f"Airflow {airflow.__version__}, msal {msal.__version__}, requests {requests.__version__}"
    text = "\n".join([
        "# Benchmarks",
        "",
        "Produced by `make bench` (bench/run.py) against the local emulator running in its own process.",
        "Each row compares our path with the baseline in the same run; the ratio is ours / baseline.",
        "",
        f"Machine: {machine}. Versions: {versions}.",
        "",
        "| scenario | through GraphMailHook | plain `requests` loop (same session, same token) | ratio |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    existing = path.read_text() if path.exists() else ""
    if PEERS_START in existing:  # make bench-peers' section stays as that run left it
        text += "\n" + PEERS_START + existing.split(PEERS_START, 1)[1]
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
