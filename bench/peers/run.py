"""`make bench-peers`: the same work through us and each peer, against one emulator, in one run.

The emulator runs here (the project's virtualenv); each peer runs in a fresh process from .venv-peers,
where the peers are installed (never in ours); we run from .venv. Results go to docs/benchmarks.md,
between the peers markers, with the machine and the versions. `--quick` shrinks every count for a
trial run; its numbers are not written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "worker.py"
PEERS = [("ours", "airflow-graph-mail"), ("azure", "microsoft-azure `MSGraphMailHook`"), ("o365", "O365"),
         ("msgraph-sdk", "msgraph-sdk"), ("smtp", "smtp `EmailOperator` (SmtpHook)")]
# What a DAG file imports to declare a mail task: an operator module. O365 and msgraph-sdk have none: a
# DAG imports them inside a @task, at run time, so theirs is an import cost in the task, not parse cost.
PARSE_MODULES = {"ours": "airflow_graph_mail.operators.graph_mail",
                 "azure": "airflow.providers.microsoft.azure.operators.msgraph",
                 "o365": "O365", "msgraph-sdk": "msgraph", "smtp": "airflow.providers.smtp.operators.smtp"}
IMPORTED_IN_TASK = {"o365", "msgraph-sdk"}
SMALL_COUNT = 200
BULK_COUNT = 400
SEQUENTIAL_COUNT = 100
SHARED_COUNT = 200  # per process; two processes share the mailbox
LATENCY = 0.2
SIZES_MB = [1, 3, 10, 35, 100]
# The delivery issue's plan: 24% of sendMail answered with a fault, and 15% of the lookups.
FAULTS = {429: 0.05, 503: 0.04, 504: 0.02, "accept_504": 0.04, "drop": 0.03, "drop_after": 0.04, "slow": 0.02}
TO = "ann@example.com"
MARK_START, MARK_END = "<!-- peers:start -->", "<!-- peers:end -->"
# Why a peer cannot do a scenario, or behaves as it does: from its own code (versions in the report).
NOTES = {
    ("azure", "attachments"): "MSGraphMailHook sends sendMail only, MAX_ATTACHMENTS_SIZE = 3 MB of attachments, "
                              "base64 in one request that Graph caps at 4 MB",
    ("o365", "small"): "O365's Connection waits requests_delay = 200 ms between requests by default",
    ("o365", "attachments"): "attachments up to UPLOAD_SIZE_LIMIT_SIMPLE = 3 MB go in one POST, which base64 "
                             "takes past Graph's 4 MB; larger ones use an upload session",
    ("msgraph-sdk", "attachments"): "msgraph-core's LargeFileUploadTask, driven as its docs show (open file, "
                                    "10 x 320 KiB chunks): a file that fits one chunk is sent again after the "
                                    "upload completed, which Outlook answers with 404; a larger one fails after "
                                    "its first chunk, reading Outlook's nextExpectedRanges ('N') as OneDrive's "
                                    "('N-M'): microsoftgraph/msgraph-sdk-python-core#691",
}
NOTES_FAULTS = {
    "azure": "kiota's RetryHandler retries POST sendMail on 429, 503 and 504; no lookup before a resend",
    "msgraph-sdk": "the same kiota RetryHandler",
    "o365": "urllib3 Retry without POST in allowed_methods: an unclear answer is raised, not resent",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Bench:
    def __init__(self, peers_python: str | None, install_error: str, quick: bool, work: Path):
        from graph_mail_emulator import EmulatorConfig, GraphEmulator, Limits

        self.quick, self.work = quick, work
        self.pythons = {name: (sys.executable if name == "ours" else peers_python) for name, _ in PEERS}
        self.install_error = install_error
        limits = Limits(message_size_limit=150 * 2**20, upload_budget_bytes=10**12)
        self.emulator = GraphEmulator(EmulatorConfig(work / "emulator", limits=limits)).start()
        self.smtp_port, self.smtp = 0, None
        if peers_python:
            self.smtp_port = free_port()
            self.smtp = subprocess.Popen([peers_python, str(Path(__file__).parent / "smtp_sink.py"),
                                          str(self.smtp_port)], stdout=subprocess.PIPE, text=True)
            assert self.smtp.stdout is not None
            self.smtp.stdout.readline()

    def close(self):
        if self.smtp:
            self.smtp.terminate()
        self.emulator.stop()

    def run(self, peer: str, scenario: str, timeout: float = 1800, **config) -> dict:
        python = self.pythons[peer]
        if python is None:
            return {"error": f"not installed: {self.install_error}"}
        connection = self.emulator.connection()
        connection["extra"]["max_message_size_mb"] = "150"  # the tenant's limit, raised like the emulator's
        config = {"connection": connection, "smtp_port": self.smtp_port, "to": TO, **config}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "REQUESTS_CA"))}
        env["AIRFLOW_HOME"] = str(self.work / f"airflow-{peer}")
        try:
            done = subprocess.run([python, str(WORKER), peer, scenario, json.dumps(config)], check=False,
                                  capture_output=True, text=True, timeout=timeout, env=env, cwd=str(self.work))
        except subprocess.TimeoutExpired:
            return {"error": f"no answer in {timeout:.0f} s"}
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}
        return json.loads(lines[-1])

    # -- scenarios -----------------------------------------------------------------------------------

    def small(self, peer: str) -> dict:
        self.emulator.reset()
        return self.run(peer, "small", count=20 if self.quick else SMALL_COUNT)

    def bulk(self, peer: str, concurrency: int) -> dict:
        """Mails at 200 ms latency: ``concurrency`` 4 as a careful user would (send_many, an async gather with
        a semaphore, or a pool of 4 threads), or 1, as the peers' docs show it."""
        self.emulator.reset()
        self.emulator.backend.set_limits(latency=LATENCY)
        count = (BULK_COUNT if concurrency > 1 else SEQUENTIAL_COUNT) // (10 if self.quick else 1)
        try:
            result = self.run(peer, "bulk", count=count, concurrency=concurrency)
            return {**result, "count": count}
        finally:
            self.emulator.reset()

    def shared(self, peer: str) -> dict:
        """Two tasks at once on one mailbox (an Airflow pool done wrong): two processes, 4 at a time each, so
        8 requests for a mailbox that takes 4, under the delivery fault plan. Who stays within the limit
        (the 429s the mailbox had to answer), who loses or duplicates mail, and how long it takes."""
        if peer == "smtp":
            return {"unsupported": "SMTP, not Graph: no mailbox limit or Graph faults to meet"}
        python = self.pythons[peer]
        if python is None:
            return {"error": f"not installed: {self.install_error}"}
        self.emulator.reset()
        self.emulator.backend.set_limits(latency=LATENCY)
        self.emulator.faults.add_rates(["send_mail"], FAULTS, retry_after=0.05, delay=1.3, seed=20261130)
        self.emulator.faults.add_rates(["list_messages"], {503: 0.1, 429: 0.05}, retry_after=0.05, seed=11)
        count = SHARED_COUNT // (10 if self.quick else 1)
        import time

        start_at = time.time() + 15  # both processes warmed up and waiting
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = list(pool.map(lambda prefix: self.run(peer, "bulk", count=count, concurrency=4, prefix=prefix,
                                                          start_at=start_at), ("shared-a", "shared-b")))
        self.emulator.dispatcher.settle()
        errors = [r for r in runs if "error" in r or "unsupported" in r]
        if errors:
            return errors[0]
        subjects = [m["subject"] for m in self.emulator_store_messages()]
        copies = {f"{p} {i}": subjects.count(f"{p} {i}") for p in ("shared-a", "shared-b") for i in range(count)}
        result = {"seconds": max(r["seconds"] for r in runs), "count": 2 * count,
                  "over_limit": self.emulator.backend.throttle.throttled,
                  "requests": sum(1 for r in self.emulator.inspect.request_log if r["path"].endswith("/sendMail")),
                  "delivered": sum(1 for n in copies.values() if n), "lost": sum(1 for n in copies.values() if n == 0),
                  "duplicated": sum(1 for n in copies.values() if n > 1)}
        self.emulator.reset()
        return result

    def attachments(self, peer: str) -> list[dict]:
        results = []
        for size in SIZES_MB if not self.quick else SIZES_MB[:3]:
            path = self.work / f"report-{size}mb.bin"
            if not path.exists():
                with path.open("wb") as handle:
                    for _ in range(size):
                        handle.write(os.urandom(2**20))
            self.emulator.reset()
            result = self.run(peer, "attachment", path=str(path))
            if "seconds" in result and peer != "smtp":
                arrived = [a["size"] for m in self.emulator.inspect.messages(TO, with_content=False)
                           if m["subject"] == "attachment" for a in m["attachments"]]
                if arrived != [size * 2**20]:
                    result = {"error": f"the emulator received {arrived}, not {size} MB"}
            results.append({"size_mb": size, **result})
        return results

    def faults(self, peer: str) -> dict:
        if peer == "smtp":
            return {"unsupported": "the fault plan is Graph's (sendMail answers); SMTP fails differently"}
        self.emulator.reset()
        self.emulator.faults.add_rates(["send_mail"], FAULTS, retry_after=0.05, delay=1.3, seed=20261122)
        self.emulator.faults.add_rates(["list_messages"], {503: 0.1, 429: 0.05}, retry_after=0.05, seed=7)
        count = 60 if self.quick else 300
        result = self.run(peer, "faults", count=count)
        if "raised" not in result:
            return result
        self.emulator.dispatcher.settle()  # slow answers still in flight land first
        subjects = [m["subject"] for m in self.emulator_store_messages()]
        copies = {f"fault {i}": subjects.count(f"fault {i}") for i in range(count)}
        return {**result, "count": count, "delivered": sum(1 for n in copies.values() if n),
                "lost": sum(1 for n in copies.values() if n == 0),
                "duplicated": sum(1 for n in copies.values() if n > 1)}

    def emulator_store_messages(self) -> list[dict]:
        return self.emulator.inspect.messages(TO, with_content=False)

    def parse(self, peer: str) -> dict:
        python = self.pythons[peer]
        if python is None:
            return {"error": "not installed"}
        # Airflow itself is loaded first: a DAG file is parsed inside Airflow, so only the module's own cost counts.
        code = ("import sys, time, airflow.sdk; before = set(sys.modules); start = time.perf_counter(); "
                f"import {PARSE_MODULES[peer]}; print(time.perf_counter() - start, len(set(sys.modules) - before))")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
        env["AIRFLOW_HOME"] = str(self.work / f"airflow-{peer}")
        runs = []
        for _ in range(2 if self.quick else 5):
            done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=False)
            if done.returncode:
                return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
            seconds, modules = done.stdout.split()
            runs.append((float(seconds), int(modules)))
        return {"ms": statistics.median(r[0] for r in runs) * 1000, "modules": runs[-1][1],
                "in_task": peer in IMPORTED_IN_TASK, "module": PARSE_MODULES[peer]}


def short(error: str) -> str:
    """Graph's error code and message rather than a whole JSON body or URL."""
    code = re.search(r"""['"]code['"]: ?['"]([A-Za-z]+)['"]""", error)
    status = re.search(r"\b(4\d\d|5\d\d)\b", error)
    if code:
        return f"{status.group(1) + ' ' if status else ''}{code.group(1)}"
    return error.split(" for url:")[0].split(" | ")[0][:120]


def cell(result: dict, value: str, peer: str = "", scenario: str = "") -> str:
    why = NOTES.get((peer, scenario), "")
    if "unsupported" in result:
        return f"cannot: {result['unsupported']}"
    if "error" in result:
        return f"failed: {short(result['error'])}" + (f" ({why})" if why else "")
    return value + (f" ({why})" if why and scenario in ("small", "bulk") else "")


def attachment_cell(results: list[dict], peer: str) -> str:
    """Each size's own outcome: time and peak memory, or why it failed."""
    parts = []
    for a in results:
        if "seconds" in a:
            parts.append(f"{a['size_mb']} MB: {a['seconds']:.1f} s, peak {a['peak_mb']:.0f} MB")
        else:
            parts.append(f"{a['size_mb']} MB: " + cell(a, ""))
    why = NOTES.get((peer, "attachments"))
    return "; ".join(parts) + (f" ({why})" if why and any("seconds" not in a for a in results) else "")


def table(results: dict) -> list[str]:
    lines = [f"| peer | per message ({SMALL_COUNT}, sequential) | bulk: {BULK_COUNT} at {LATENCY * 1000:.0f} ms "
             f"latency, 4 at a time | one at a time, as the docs show ({SEQUENTIAL_COUNT}) | two tasks on one mailbox: "
             f"{2 * SHARED_COUNT} mails, 8 requests for a limit of 4, with faults | faults, sequential: "
             "delivered / lost / duplicated of 300 | attachments, each size | DAG parsing: modules, ms |",
             "|---|---|---|---|---|---|---|---|"]
    for peer, label in PEERS:
        r = results[peer]
        small = cell(r["small"], f"{r['small'].get('ms_per_message', 0):.1f} ms", peer, "small")
        bulk = cell(r["bulk"], f"{r['bulk'].get('seconds', 0):.1f} s ({r['bulk'].get('failed', 0)} failed)", peer,
                    "bulk")
        one = r["sequential"]
        sequential = cell(one, f"{one.get('seconds', 0) / max(one.get('count', 1), 1) * 1000:.0f} ms per mail", peer,
                          "bulk")
        sh = r["shared"]
        shared = cell(sh, f"{sh.get('seconds', 0):.1f} s; {sh.get('delivered')} / {sh.get('lost')} / "
                          f"{sh.get('duplicated')} delivered / lost / duplicated; {sh.get('over_limit')} answered "
                          f"429 for the mailbox's limit ({sh.get('requests')} sendMail requests)")
        f = r["faults"]
        faults = cell(f, f"{f.get('delivered')} / {f.get('lost')} / {f.get('duplicated')}", peer, "faults")
        if peer in NOTES_FAULTS and "delivered" in f:
            faults += f" ({NOTES_FAULTS[peer]})"
        p = r["parse"]
        parse = cell(p, f"{p.get('modules')}, {p.get('ms', 0):.0f} ms", peer, "parse")
        if p.get("in_task"):
            parse = f"none (imported inside a task; that import: {p.get('modules')} modules, {p.get('ms', 0):.0f} ms)"
        elif "module" in p:
            parse += f" (`{p['module']}`)"
        lines.append(f"| {label} | {small} | {bulk} | {sequential} | {shared} | {faults} | "
                     f"{attachment_cell(r['attachments'], peer)} | {parse} |")
    return lines


def versions(peers_python: str | None) -> str:
    names = ["apache-airflow", "apache-airflow-providers-microsoft-azure", "apache-airflow-providers-smtp", "O365",
             "msgraph-sdk", "azure-identity", "msal"]
    if not peers_python:
        return "peers not installed"
    code = (f"import importlib.metadata as m\nfor n in {names!r}:\n    try: print(n, m.version(n))\n"
            "    except Exception: print(n, 'missing')")
    out = subprocess.run([peers_python, "-c", code], capture_output=True, text=True, check=False).stdout.split("\n")
    return ", ".join(line for line in out if line)


def write(lines: list[str], peers_python: str | None) -> None:
    import airflow_graph_mail

    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    section = "\n".join([
        MARK_START, "## Side by side with the peers", "",
        "Produced by `make bench-peers` (bench/peers/run.py): one emulator, each peer in its own process from "
        "its own virtualenv (.venv-peers), pointed at the emulator through its own settings. Lower is better "
        "for times; faults use the delivery plan (24% of sendMail answered with 429, 503, 504, a 504 after "
        "processing, a dropped connection before or after processing, or a 1.3 s delay). Each peer is driven as "
        "a careful user would drive it: 4 at a time means `send_many` for us, an async gather with a semaphore "
        "of 4 for the async peers (MSGraphMailHook, msgraph-sdk), a pool of 4 threads with an Account each for "
        "O365. DAG parsing counts what a DAG file imports to declare a mail task (an operator module), with "
        "Airflow already loaded.", "",
        f"Machine: {machine}. Ours: airflow-graph-mail {getattr(airflow_graph_mail, '__version__', '')}. "
        f"Peers: {versions(peers_python)}.", "", *lines, "", MARK_END])
    if MARK_START in text:
        head, rest = text.split(MARK_START, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--install-log", default=str(ROOT / ".venv-peers" / "install.log"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated peers to run (a trial; nothing is written)")
    args = parser.parse_args(argv)
    peers_python = args.peers_python if Path(args.peers_python).exists() else None
    install_error = ""
    if Path(args.install_log).exists() and (ROOT / ".venv-peers" / "install-failed").exists():
        install_error = (Path(args.install_log).read_text().strip().splitlines() or ["install failed"])[-1][:200]
        peers_python = None
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        bench = Bench(peers_python, install_error or "the peers' virtualenv is missing", args.quick, Path(tmp))
        results = {}
        try:
            for peer, label in PEERS:
                if args.only and peer not in args.only.split(","):
                    continue
                print(f"{label} ...", flush=True)
                results[peer] = {"small": bench.small(peer), "bulk": bench.bulk(peer, 4),
                                 "sequential": bench.bulk(peer, 1), "shared": bench.shared(peer),
                                 "attachments": bench.attachments(peer), "faults": bench.faults(peer),
                                 "parse": bench.parse(peer)}
                print(json.dumps(results[peer]), flush=True)
        finally:
            bench.close()
    if args.only:
        return 0
    lines = table(results)
    print("\n".join(lines))
    if not args.quick:
        write(lines, peers_python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
