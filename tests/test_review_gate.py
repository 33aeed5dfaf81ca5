"""The review gate: GraphDraftSentSensor waits (deferred in the triggerer, or poking) until a person sends or
discards the draft; the reviewer is played through the emulator (its viewer's buttons, its inspection API)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

DAGS = Path(__file__).parent / "dags"


def reviewer(emulator, act, wait: float = 2.0):
    """A thread that waits for the first draft, lets the sensor look at it once or twice, then acts on it."""
    def run():
        for _ in range(400):
            drafts = emulator.inspect.messages(emulator.default_sender, "drafts", with_content=False)
            if drafts:
                time.sleep(wait)
                act(drafts[0])
                return
            time.sleep(0.25)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def viewer_post(emulator, path: str) -> requests.Response:
    """A click on one of the viewer's buttons (a same-origin form POST)."""
    return requests.post(emulator.base_url + path, headers={"Origin": emulator.base_url}, verify=emulator.ca_path,
                         allow_redirects=False, timeout=10)


def output(result) -> str:
    return result.stdout + result.stderr


def test_reviewed_report_defers_until_the_reviewer_sends(run_dag, graph_emulator):
    """The example DAG: the gate defers (the trigger polls with async HTTP), the reviewer adds a cc and edits
    the subject in the viewer's place, and the owner is told what finally went out."""
    edits = {"ccRecipients": [{"emailAddress": {"address": "cfo@example.com"}}], "subject": "Weekly revenue (final)"}
    reviewer(graph_emulator, lambda draft: graph_emulator.inspect.send_as_reviewer(draft["id"], edits))
    result = run_dag("reviewed_report", REVIEW_POLL_SECONDS="1")
    assert result.returncode == 0, output(result)[-4000:]
    assert "is still waiting for its reviewer" in output(result)
    assert "running trigger in line" in output(result)  # the gate deferred: Airflow ran its trigger
    (note,) = graph_emulator.inspect.messages("owner@example.com")
    assert note["subject"] == "Sent after review: Weekly revenue (final)"
    assert "to board@example.com (cc cfo@example.com)" in note["body"]["content"]
    (sent,) = graph_emulator.inspect.messages("cfo@example.com")
    assert graph_emulator.inspect.attachment_bytes(sent["id"])["revenue-2026-11-20.csv"].startswith(b"region,revenue")
    looks = [r for r in graph_emulator.inspect.request_log if r["method"] == "GET" and "/messages/" in r["path"]
             and "/messages/delta" not in r["path"]]
    assert len(looks) >= 2  # looked more than once while the draft waited


@pytest.mark.parametrize("on_discard", ["fail", "skip"])
def test_a_discarded_draft_fails_or_skips_the_gate(run_dag, graph_emulator, on_discard):
    """Discard from the mailbox viewer's button: the draft goes to Deleted Items; the owner hears nothing."""
    clicked = []

    def discard(draft):
        answer = viewer_post(graph_emulator, f"/_viewer/messages/{draft['id']}/discard")
        clicked.append(answer.status_code)

    reviewer(graph_emulator, discard)
    result = run_dag("reviewed_report", REVIEW_POLL_SECONDS="1", REVIEW_ON_DISCARD=on_discard)
    assert clicked == [303]
    assert "The reviewer discarded draft" in output(result) and "moved to Deleted Items" in output(result)
    assert (result.returncode == 0) == (on_discard == "skip"), output(result)[-3000:]
    assert graph_emulator.inspect.messages("owner@example.com") == []
    assert graph_emulator.inspect.messages("board@example.com") == []
    (discarded,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "deleteditems", with_content=False)
    assert discarded["isDraft"] is True


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_the_gate_without_the_triggerer(run_dag, graph_emulator, mode):
    """Poke and reschedule modes decide the same way; a draft deleted outright counts as discarded."""
    reviewer(graph_emulator, lambda draft: requests.post(
        f"{graph_emulator.base_url}/_emulator/messages/{draft['id']}/discard?hard=true", verify=graph_emulator.ca_path,
        timeout=10))
    result = run_dag("review_gate", DAGS, REVIEW_MODE=mode)
    assert result.returncode != 0
    assert "The reviewer discarded draft" in output(result) and "(deleted)" in output(result)


def test_a_reviewer_sending_outside_the_allow_list_fails_loudly(run_dag, graph_emulator):
    """The mail has gone: the task fails and says so, naming the recipient outside the allowed domains."""
    edits = {"toRecipients": [{"emailAddress": {"address": "board@example.com"}},
                              {"emailAddress": {"address": "press@elsewhere.org"}}]}
    reviewer(graph_emulator, lambda draft: graph_emulator.inspect.send_as_reviewer(draft["id"], edits))
    result = run_dag("review_gate", DAGS, REVIEW_MODE="deferrable",
                     connection_extra={"allowed_recipient_domains": "example.com"})
    assert result.returncode != 0
    assert "The reviewer SENT draft" in output(result)
    assert "to press@elsewhere.org, outside the connection's allowed_recipient_domains (example.com)" in output(result)
    assert len(graph_emulator.inspect.messages("press@elsewhere.org")) == 1


def test_the_trigger_serialises_ids_only_and_runs_as_the_triggerer_runs_it(graph_emulator, monkeypatch):
    """Rebuilt from its serialised form (what the triggerer stores), it polls through 429 and 503 answers
    and yields what was sent; its kwargs hold no token or secret."""
    from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger

    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_DEFAULT", json.dumps(graph_emulator.connection()))
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    draft = GraphMailHook().create_draft(Message(to="board@example.com", subject="Q3"), idempotency_key="q3")
    trigger = GraphDraftSentTrigger(graph_mail_conn_id="graph_mail_default", message_id=draft["id"], poke_interval=0.2,
                                    deadline=time.time() + 60)
    classpath, kwargs = trigger.serialize()
    assert set(kwargs) == {"graph_mail_conn_id", "message_id", "sender", "poke_interval", "deadline"}
    secret = graph_emulator.connection()["password"]
    issued = graph_emulator.entra.issuer.issued
    assert secret not in json.dumps(kwargs) and not any(t in json.dumps(kwargs) for t in issued)
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(sys.modules[module], name)(**kwargs)
    graph_emulator.faults.add("get_message", 429, retry_after=1)
    graph_emulator.faults.add("get_message", 503)
    reviewer(graph_emulator, lambda d: graph_emulator.inspect.send_as_reviewer(d["id"]), wait=1.5)

    async def first_event():
        ticks = 0

        async def ticker():  # the event loop keeps turning while the trigger waits and signs in
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.05)

        beat = asyncio.ensure_future(ticker())
        try:
            async for event in rebuilt.run():
                return event, ticks
        finally:
            beat.cancel()

    event, ticks = asyncio.run(first_event())
    assert event.payload["status"] == "sent"
    sent = event.payload["message"]
    assert sent["to"] == ["board@example.com"] and sent["subject"] == "Q3" and sent["sent_at"]
    assert sent["ref"] == GraphMailHook().client.ref_for("q3")  # the ref the draft was tagged with
    assert ticks > 10
    log = graph_emulator.inspect.request_log
    statuses = [r["status"] for r in log if r["method"] == "GET" and "/messages/" in r["path"]]
    assert 429 in statuses and 503 in statuses


def test_the_trigger_times_out_and_reports_graph_refusals(graph_emulator, monkeypatch):
    from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger

    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_DEFAULT", json.dumps(graph_emulator.connection()))
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook
    from airflow_graph_mail.mail.message import Message

    draft = GraphMailHook().create_draft(Message(to="board@example.com", subject="Q4"))

    def first(trigger):
        async def run():
            async for event in trigger.run():
                return event.payload
            return None
        return asyncio.run(run())

    waiting = GraphDraftSentTrigger(graph_mail_conn_id="graph_mail_default", message_id=draft["id"],
                                    poke_interval=0.2, deadline=time.time() + 1)
    assert first(waiting) == {"status": "timeout"}
    graph_emulator.faults.add("get_message", 403)
    refused = first(GraphDraftSentTrigger(graph_mail_conn_id="graph_mail_default", message_id=draft["id"]))
    assert refused["status"] == "error" and refused["error"].startswith("Graph answered 403")


def test_the_reviewer_can_be_a_person_signed_in_to_graph(connect, graph_emulator):
    """A delegated token (the mailbox's owner, signed in) sends the draft through /me, as Outlook would."""
    from airflow_graph_mail.mail.message import Message
    from airflow_graph_mail.mail.review import SELECT, SENT, state_of

    app_hook = connect()
    draft = app_hook.create_draft(Message(to="board@example.com", subject="By hand"))
    app = graph_emulator.entra.add_app(public_client=True)
    token = graph_emulator.entra.issue_refresh_token(graph_emulator.default_sender, app)
    person = connect("graph_mail_person", login=app.client_id, password=None,
                     extra={"refresh_token": token, "sender": None})
    person.send_draft(draft["id"], sender="me")
    assert any(r["method"] == "POST" and r["path"].startswith("/v1.0/me/messages/") and r["path"].endswith("/send")
               for r in graph_emulator.inspect.request_log)
    sent = app_hook.get_message(draft["id"], select=SELECT)
    assert state_of(sent, app_hook.client.folder_id("deleteditems")) == SENT


def test_a_page_on_another_site_cannot_press_the_buttons(graph_emulator, hook):
    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Guarded"))
    for path in (f"/_viewer/messages/{draft['id']}/send", f"/_emulator/messages/{draft['id']}/send",
                 f"/_emulator/messages/{draft['id']}/discard"):
        answer = requests.post(graph_emulator.base_url + path, headers={"Origin": "https://evil.example"},
                               verify=graph_emulator.ca_path, timeout=10)
        assert answer.status_code == 403, path
    assert graph_emulator.inspect.messages("board@example.com") == []
    assert len(graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts")) == 1


def _airflow_2() -> bool:
    import airflow

    return airflow.__version__.startswith("2.")


@pytest.mark.skipif(not _airflow_2(), reason="Airflow 3's triggerer needs the scheduler and the execution API "
                    "server beside it; there the deferral runs through `airflow dags test` (above)")
def test_a_real_triggerer_process_wakes_the_gate(graph_emulator, airflow_template_home, tmp_path, monkeypatch):
    """The task runs (as a worker runs it) until it defers; `airflow triggerer`, its own process, runs the
    trigger from the database and, once the reviewer sends, hands the task back; the resumed task returns what
    was sent. The triggerer's watchdog ("async thread was blocked") must stay silent."""
    import sqlite3
    import subprocess

    from airflow_env import AIRFLOW, airflow_env, migrate

    from airflow_graph_mail.mail.message import Message

    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_DEFAULT", json.dumps(graph_emulator.connection()))
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    draft = GraphMailHook().create_draft(Message(to="board@example.com", subject="Through the triggerer"))
    home = tmp_path / "airflow"
    migrate(home, template=airflow_template_home)
    env = {**airflow_env(home, graph_emulator.connection(), DAGS), "REVIEW_DRAFT_ID": draft["id"]}
    task = [sys.executable, str(Path(__file__).parent / "run_task_instance.py"), str(DAGS / "review_cases.py"),
            "review_gate_fixed_draft", "wait_for_review", "manual__triggerer"]

    def run_task() -> dict:
        done = subprocess.run(task, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def state() -> str:
        with sqlite3.connect(home / "airflow.db") as db:
            return db.execute("SELECT state FROM task_instance WHERE run_id = 'manual__triggerer'").fetchone()[0]

    assert run_task()["state"] == "deferred"
    with (tmp_path / "triggerer.log").open("w") as log:
        triggerer = subprocess.Popen([AIRFLOW, "triggerer"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(5)  # the trigger polls a draft nobody has sent yet
            assert state() == "deferred"
            graph_emulator.inspect.send_as_reviewer(draft["id"])
            deadline = time.monotonic() + 60
            while state() == "deferred" and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            triggerer.terminate()
            triggerer.wait(timeout=30)
    output = (tmp_path / "triggerer.log").read_text()
    assert state() == "scheduled", output[-3000:]
    assert "completed" in output and "was blocked" not in output, output[-3000:]
    resumed = run_task()
    assert resumed["state"] == "success" and resumed["next_method"] is None
    assert resumed["xcom"]["sent"]["subject"] == "Through the triggerer"
    assert resumed["xcom"]["sent"]["to"] == ["board@example.com"]


# -- a typo is not a decision (issue 23) ---------------------------------------------------------------


def gate(**kwargs):
    from airflow_graph_mail.sensors.graph_mail import GraphDraftSentSensor

    return GraphDraftSentSensor(task_id="wait_for_review", poke_interval=0.2, **kwargs)


def first_payload(trigger, limit: float = 60.0) -> dict:
    """The trigger's one event, run in an event loop as the triggerer runs it (a hang fails, not blocks)."""
    async def run():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(asyncio.wait_for(run(), limit))


def draft_trigger(message_id: str, **kwargs):
    from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger

    kwargs.setdefault("poke_interval", 0.2)
    kwargs.setdefault("deadline", time.time() + 30)
    return GraphDraftSentTrigger(graph_mail_conn_id="graph_mail_default", message_id=message_id, **kwargs)


@pytest.mark.parametrize("on_discard", ["fail", "skip"])
def test_a_draft_id_of_none_fails_the_gate_naming_it_never_as_discarded(hook, graph_emulator, on_discard):
    """What xcom_pull of a misspelled task id renders: not a decision of the reviewer, whatever on_discard says."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException) as raised:
        gate(message_id="None", on_discard=on_discard).poke({})
    assert "message_id: 'None'" in str(raised.value) and "xcom_pull" in str(raised.value)
    assert "discarded" not in str(raised.value)
    payload = first_payload(draft_trigger("None"))
    assert payload["status"] == "error" and "message_id: 'None'" in payload["error"]


@pytest.mark.parametrize("on_discard", ["fail", "skip"])
def test_an_unknown_mailbox_fails_the_gate_naming_it(hook, graph_emulator, on_discard):
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Q1"))
    with pytest.raises(AirflowFailException) as raised:
        gate(message_id=draft["id"], sender="nobody@example.com", on_discard=on_discard).poke({})
    assert "sender: Graph knows no mailbox 'nobody@example.com'" in str(raised.value)
    assert "discarded" not in str(raised.value)
    payload = first_payload(draft_trigger(draft["id"], sender="nobody@example.com"))
    assert payload["status"] == "error" and "sender: Graph knows no mailbox 'nobody@example.com'" in payload["error"]


def test_one_missing_answer_does_not_discard_a_draft_while_poking(hook, graph_emulator):
    """A replica that has not seen the draft yet answers 404 once: the gate looks again before deciding."""
    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Lagging"))
    graph_emulator.faults.add("get_message", 404)
    assert gate(message_id=draft["id"]).poke({}) is False  # still waiting for its reviewer
    log = graph_emulator.inspect.request_log
    statuses = [r["status"] for r in log if r["method"] == "GET" and "/messages/" in r["path"]]
    assert statuses == [404, 200]


def test_one_missing_answer_does_not_discard_a_draft_in_the_trigger(hook, graph_emulator):
    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Lagging"))
    graph_emulator.faults.add("get_message", 404)
    reviewer(graph_emulator, lambda d: graph_emulator.inspect.send_as_reviewer(d["id"]), wait=1.0)
    payload = first_payload(draft_trigger(draft["id"]))
    assert payload["status"] == "sent", payload


def test_a_draft_really_deleted_is_discarded_after_looking_again(hook, graph_emulator):
    from airflow.providers.common.compat.sdk import AirflowSkipException

    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Gone"))
    graph_emulator.inspect.discard_as_reviewer(draft["id"], hard=True)
    with pytest.raises(AirflowSkipException, match=r"discarded draft .* \(deleted\)"):
        gate(message_id=draft["id"], on_discard="skip").poke({})
    assert first_payload(draft_trigger(draft["id"])) == {"status": "discarded", "how": "deleted"}
    log = graph_emulator.inspect.request_log
    looks = [r["status"] for r in log if r["method"] == "GET" and "/messages/" in r["path"]
             and "/messages/delta" not in r["path"]]  # the draft's own looks, not the watch of Drafts
    assert looks == [404] * 6  # three looks each, spaced apart


def test_the_trigger_waits_when_deleted_items_answers_404(hook, graph_emulator):
    """Graph's answer without an id used to raise KeyError 'id' out of the trigger."""
    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Folder"))
    graph_emulator.faults.add("get_folder", 404)
    reviewer(graph_emulator, lambda d: graph_emulator.inspect.send_as_reviewer(d["id"]), wait=1.0)
    assert first_payload(draft_trigger(draft["id"]))["status"] == "sent"
    assert any(r["status"] == 404 and "/mailFolders/" in r["path"] for r in graph_emulator.inspect.request_log)


def test_a_retry_after_of_nan_does_not_put_the_trigger_to_sleep_forever(hook, graph_emulator):
    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="NaN"))
    graph_emulator.faults.add("get_message", 429, retry_after=float("nan"))
    reviewer(graph_emulator, lambda d: graph_emulator.inspect.send_as_reviewer(d["id"]), wait=1.0)
    assert first_payload(draft_trigger(draft["id"]), limit=20)["status"] == "sent"


def test_a_retry_after_of_inf_waits_until_the_deadline_not_ends_the_gate_at_once(hook, graph_emulator):
    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Inf"))
    graph_emulator.faults.add("get_message", 429, retry_after=float("inf"))
    started = time.monotonic()
    assert first_payload(draft_trigger(draft["id"], deadline=time.time() + 3)) == {"status": "timeout"}
    assert time.monotonic() - started > 2.5  # waited (Retry-After clamped) until the deadline


def test_a_slow_answer_cannot_carry_the_trigger_past_its_deadline(hook, graph_emulator):
    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Slow"))
    graph_emulator.faults.add("get_message", "slow", delay=5)
    started = time.monotonic()
    assert first_payload(draft_trigger(draft["id"], deadline=time.time() + 2)) == {"status": "timeout"}
    assert time.monotonic() - started < 4
    graph_emulator.dispatcher.settle()


def test_the_trigger_waits_out_throttling_on_the_loop_not_in_a_thread(hook, graph_emulator, caplog):
    """Its looks run with the client's retries off: a 429's Retry-After and a 503's backoff are the trigger's own
    asyncio.sleep (no pool thread sleeps), and each named in its log."""
    import logging

    from airflow_graph_mail.mail.message import Message

    draft = hook.create_draft(Message(to="board@example.com", subject="Throttled"))
    graph_emulator.faults.add("get_message", 429, retry_after=1)
    graph_emulator.faults.add("get_message", 503)
    reviewer(graph_emulator, lambda d: graph_emulator.inspect.send_as_reviewer(d["id"]), wait=1.0)
    with caplog.at_level(logging.INFO, logger="airflow_graph_mail"):
        assert first_payload(draft_trigger(draft["id"]))["status"] == "sent"
    waits = [r.getMessage() for r in caplog.records if r.name == "airflow_graph_mail.triggers.graph_mail"]
    assert any("429 TooManyRequests" in w and "looking again in 1.0s" in w for w in waits), waits
    assert any("503 ServiceUnavailable" in w for w in waits), waits
    transport = [r for r in caplog.records if r.name == "airflow_graph_mail.graph.transport"]
    assert not [r for r in transport if "retry" in r.getMessage()]


@pytest.mark.integration  # starts processes
def test_importing_the_trigger_on_the_event_loop_stays_cheap():
    """The triggerer imports a trigger's module on its loop's thread: no HTTP client, msal, asgiref or hook there."""
    import subprocess

    code = ("import sys, airflow.triggers.base; before = set(sys.modules); "
            "import airflow_graph_mail.triggers.graph_mail; added = set(sys.modules) - before; "
            "print(sorted(m for m in added if m.split('.')[0] in ('msal', 'requests', 'urllib3', 'httpx', 'asgiref') "
            "or m.startswith(('airflow_graph_mail.hooks', 'airflow_graph_mail.graph'))), len(added))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, added = out.rsplit(" ", 1)
    assert heavy == "[]", heavy
    assert int(added) < 10, added


def test_a_sensor_given_a_drafts_regular_id_still_sees_it_sent(hook, graph_emulator, caplog):
    """A regular id changes when the draft is sent: the sensor's pokes (and the trigger it defers to) go on by the
    immutable id the first look returned (before: the poke after the send found nothing three times and failed
    the gate as discarded)."""
    from graph_mail_emulator.backend.store import IMMUTABLE_ID

    from airflow_graph_mail.graph.review import GONE, DraftReview
    from airflow_graph_mail.mail.message import Message
    from airflow_graph_mail.mail.review import SENT

    draft = hook.create_draft(Message(to="board@example.com", subject="By its regular id"))["id"]
    (regular,) = [m["id"] for m in graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts",
                                                                  with_content=False)
                  if m.get(IMMUTABLE_ID) == draft]
    sensor = gate(message_id=regular)
    with caplog.at_level("WARNING", logger="airflow_graph_mail.graph.review"):
        assert sensor.poke({}) is False
    assert sensor.message_id == draft
    assert "following it by its immutable id" in caplog.text
    graph_emulator.inspect.send_as_reviewer(draft)
    assert DraftReview(hook.client, sensor.message_id).look().state == SENT  # what its next poke finds
    assert DraftReview(hook.client, regular).look().state == GONE  # what the id it was given finds now
