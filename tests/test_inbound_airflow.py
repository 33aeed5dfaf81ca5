"""The inbound example through Airflow: on Airflow 3 with real processes (the asset watcher in a real triggerer,
killed with SIGKILL at every point the exactly-once design names while mail keeps arriving), and on Airflow
2.11 with the sensor (`airflow dags test`).

Each mail must lead to exactly one run of the handler DAG, which saves the vendor's CSV to object storage
(a ``file://`` URI through ObjectStoragePath), counts its rows and answers in the thread.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import airflow
import pytest
from helpers import ROOT

from airflow_graph_mail.mail.inbound import mail_key, run_id_for

EXAMPLE_FILE = "inbound_vendor_files"  # its DAGs: vendor_mail_dispatch, vendor_file_load, vendor_file_by_sensor
EXAMPLE = ROOT / "example_dags" / f"{EXAMPLE_FILE}.py"
INBOX = "reports-in@contoso.com"
VENDOR = "orders@fabrikam.example"
AIRFLOW_3 = not airflow.__version__.startswith("2.")


def vendor_mail(emulator, number: int) -> dict:
    rows = "".join(f"{i},{number}\n" for i in range(number))
    (arrived,) = emulator.inbound.receive(
        to=INBOX, sender=f"Fabrikam Orders <{VENDOR}>", subject=f"Orders batch {number}", body="<p>attached</p>",
        body_type="html", attachments=[(f"orders-{number}.csv", f"id,batch\n{rows}".encode())])
    return arrived


def replies(emulator) -> dict[str, list[dict]]:
    """The answers the vendor got, by the batch number their subject names."""
    found: dict[str, list[dict]] = {}
    for mail in emulator.inspect.messages(VENDOR):
        found.setdefault(mail["subject"].rsplit(" ", 1)[-1], []).append(mail)
    return found


def check_handled(emulator, arrived: dict, number: int, store: Path) -> None:
    """The mail's file saved once to storage, its rows counted, the vendor answered once, in the thread."""
    (answer,) = replies(emulator)[str(number)]
    assert answer["subject"] == f"RE: Orders batch {number}"
    assert f"received, {number} rows." in answer["body"]["content"]
    (saved,) = store.glob(f"*/mail-{mail_key(INBOX, arrived['immutableId'])}/orders-{number}.csv")
    assert saved.read_text().count("\n") == number + 1
    original = emulator.inspect.full_message(arrived["id"])
    assert "Loaded" in original["categories"]


@pytest.mark.skipif(AIRFLOW_3, reason="Airflow 3 runs the watcher in a real triggerer (below)")
def test_the_example_waits_with_the_sensor_on_airflow_2(run_dag, graph_emulator, tmp_path):
    arrived = vendor_mail(graph_emulator, 3)
    store = tmp_path / "store"
    result = run_dag("vendor_file_by_sensor", VENDOR_STORE=f"file://{store}", VENDOR_POLL_SECONDS="1",
                     VENDOR_RETRY_SECONDS="1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_handled(graph_emulator, arrived, 3, store)


class KillPoints:
    """Kills the triggerer at a named point of the watcher's announcement, timed by the emulator seeing the
    Announced mark's PATCH (before it is processed, or after it was but before the watcher hears), or by the
    watcher's own log line (right after its yield, or 1.5 s later, once Airflow committed the event)."""

    def __init__(self, emulator, deployment):
        self.emulator, self.deployment = emulator, deployment
        self.armed: str | None = None
        self.fired = threading.Event()
        handlers = emulator.dispatcher.handlers
        self.original = handlers["update_message"]
        handlers["update_message"] = self._patch

    def restore(self) -> None:
        self.emulator.dispatcher.handlers["update_message"] = self.original

    def _patch(self, request):
        from graph_mail_emulator.http.faults import DropConnection

        announcing = b"AirflowGraphMailAnnounced" in request.body
        if announcing and self.armed == "before the announce PATCH":
            self._kill()
            raise DropConnection()  # never processed
        response = self.original(request)
        if announcing and self.armed == "after the PATCH, before the yield":
            self._kill()
        return response

    def _kill(self) -> None:
        self.armed = None
        self.deployment.kill("triggerer")
        self.fired.set()

    def at(self, point: str, timeout: float = 120) -> None:
        """Kill at ``point`` (waiting for it to come), then start the triggerer again."""
        self.fired.clear()
        if point in ("before the announce PATCH", "after the PATCH, before the yield"):
            self.armed = point
            assert self.fired.wait(timeout), f"no announcement came to kill at {point!r}"
        else:
            seen = announcements(self.deployment, "triggerer")
            if point != "while idle":
                assert self.deployment.wait_for(
                    lambda: announcements(self.deployment, "triggerer") > seen, timeout, step=0.01)
                if point == "1.5 s after the yield":
                    time.sleep(1.5)
            self.deployment.kill("triggerer")
        self.deployment.start("triggerer", "triggerer", "--skip-serve-logs")


@pytest.mark.skipif(not AIRFLOW_3, reason="asset watchers need Airflow 3")
@pytest.mark.longest
@pytest.mark.timeout(1200)  # a whole deployment, killed six times: minutes, more on a busy 2-CPU machine
def test_one_run_per_mail_through_every_kill_point_and_a_failover(graph_emulator, airflow_template_home, tmp_path):
    """One deployment (starting one costs more CPU than anything else in the suite), three acts: the example end
    to end; the triggerer killed at every point the exactly-once design names while mail keeps arriving; then
    high availability, two triggerers side by side (on 3.0-3.2.1 both run the watcher and every mail is announced
    twice), the one that announces killed while mail keeps arriving, the other taking over after Airflow's health
    check. At the end, a lease more for a late duplicate to show: still exactly one handler run per mail."""
    deployment, store = inbound_deployment(graph_emulator, airflow_template_home, tmp_path)
    arrived: dict[int, dict] = {}
    stop = threading.Event()

    def keep_mailing(every: float, most: int) -> None:
        """A mail every few seconds until the kills are done (so each point has an announcement to hit)."""
        for number in range(2, most + 1):
            if stop.wait(every):
                return
            arrived[number] = vendor_mail(graph_emulator, number)

    def handled(*numbers: int) -> bool:
        return all(replies(graph_emulator).get(str(n)) for n in numbers)

    kills = None
    started = time.monotonic()
    deployment.start_all()
    try:
        # The example end to end: the watcher runs, the mail is answered "received, N rows" in its thread.
        arrived[1] = vendor_mail(graph_emulator, 1)
        assert deployment.wait_for(lambda: replies(graph_emulator).get("1"), 180), deployment.log("triggerer")[-4000:]
        check_handled(graph_emulator, arrived[1], 1, store)
        example_seconds = time.monotonic() - started
        # Exactly once: mail keeps arriving while the triggerer is killed at each point.
        kills = KillPoints(graph_emulator, deployment)
        mailer = threading.Thread(target=keep_mailing, args=(3.0, 14), daemon=True)
        mailer.start()
        for point in ("before the announce PATCH", "after the PATCH, before the yield", "right after the yield",
                      "1.5 s after the yield"):
            kills.at(point)
        stop.set()
        mailer.join()
        done = deployment.wait_for(lambda: handled(*arrived), 480, step=1)
        assert done, (deployment.db("SELECT run_id, state FROM dag_run"), deployment.log("triggerer")[-3000:])
        kills.at("while idle")  # every mail claimed: the restarted watcher reads the marks, announces nothing
        # High availability: a second triggerer beside the first; the one announcing is killed.
        triggerers = ("triggerer", "triggerer-2")
        deployment.start("triggerer-2", "triggerer", "--skip-serve-logs")
        before = {name: announcements(deployment, name) for name in triggerers}
        for number in (101, 102):
            arrived[number] = vendor_mail(graph_emulator, number)
        assert deployment.wait_for(lambda: handled(101, 102), 240, step=1), \
            {name: deployment.log(name)[-2000:] for name in triggerers}
        holder = max(triggerers, key=lambda name: announcements(deployment, name) - before[name])
        survivor = next(name for name in triggerers if name != holder)
        before[survivor] = announcements(deployment, survivor)
        arrived[103] = vendor_mail(graph_emulator, 103)
        deployment.kill(holder)  # with the mail just arrived: announced or not, it must be handled once
        for number in (104, 105):
            arrived[number] = vendor_mail(graph_emulator, number)
        assert deployment.wait_for(lambda: handled(*arrived), 300, step=1), (
            deployment.db("SELECT run_id, state FROM dag_run"),
            {name: deployment.log(name)[-2000:] for name in triggerers})
        took_over = announcements(deployment, survivor) - before[survivor]
        time.sleep(20)  # and a lease more: a late duplicate would show now
        runs = deployment.db("SELECT run_id, state FROM dag_run WHERE dag_id = 'vendor_file_load'")
    finally:
        stop.set()
        if kills is not None:
            kills.restore()
        deployment.stop()
    summary = check_one_run_per_mail(graph_emulator, deployment, runs, arrived, store)
    assert took_over, f"{survivor} never announced: the failover was not exercised ({summary})"
    print(f"example: {example_seconds:.0f}s; {holder} killed in the failover; in all "
          f"{time.monotonic() - started:.0f}s; {summary}")


def announcements(deployment, name: str) -> int:
    return deployment.log(name).count("Announcing message")


def inbound_deployment(graph_emulator, airflow_template_home, tmp_path):
    """A deployment of the inbound example (not started) and the folder its files are saved to."""
    from airflow_deployment import Deployment

    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLE, dags)
    store = tmp_path / "store"
    deployment = Deployment(tmp_path / "airflow", airflow_template_home, graph_emulator.connection(), dags,
                            VENDOR_STORE=f"file://{store}", VENDOR_POLL_SECONDS="1", VENDOR_LEASE_SECONDS="15",
                            VENDOR_RETRY_SECONDS="2")
    return deployment, store


def check_one_run_per_mail(graph_emulator, deployment, runs: list[tuple], arrived: dict[int, dict],
                           store: Path) -> str:
    """One successful handler run per mail and no other, each mail handled once; what it took, in words."""
    by_mail = {run_id_for(INBOX, arrived[n]["immutableId"]): n for n in arrived}
    assert sorted(run_id for run_id, _ in runs) == sorted(by_mail), runs  # one run per mail, no other
    assert {state for _, state in runs} == {"success"}, runs
    for number, mail in arrived.items():
        check_handled(graph_emulator, mail, number, store)
    events = deployment.db("SELECT extra FROM asset_event")
    announced = [json.loads(extra)["payload"]["message_id"] for (extra,) in events]
    dispatches = deployment.db("SELECT count(*) FROM dag_run WHERE dag_id = 'vendor_mail_dispatch'")[0][0]
    return (f"{len(arrived)} mails, {len(announced)} asset events, {dispatches} dispatcher runs, "
            f"{len(runs)} handler runs")
