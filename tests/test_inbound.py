"""Inbound mail against the emulator: the sensor (claim and window modes), the watcher's doorbell (marks, leases,
dead letters, change tracking restarts), the trigger as the triggerer runs it, attachments to storage, marking
done, replies in the thread, and the connection test's permissions. Mail arrives from outside through the
emulator's inbound API (``graph_emulator.inbound.receive``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

INBOX = "reports-in@contoso.com"
VENDOR = "Orders <orders@fabrikam.example>"


def receive(emulator, subject="Orders", attachments=(("orders.csv", b"id,qty\n1,5\n2,7\n"),), **kwargs):
    kwargs.setdefault("to", INBOX)
    kwargs.setdefault("sender", VENDOR)
    (arrived,) = emulator.inbound.receive(subject=subject, attachments=list(attachments), **kwargs)
    return arrived


class TaskInstance:
    """What a sensor reads of its task instance: ids and XCom."""

    def __init__(self, run_id="manual__1", dag_id="vendor", task_id="wait", map_index=-1, try_number=1):
        self.run_id, self.dag_id, self.task_id, self.map_index, self.try_number = \
            run_id, dag_id, task_id, map_index, try_number
        self.xcom: dict = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


def context(**ti):
    return {"ti": TaskInstance(**ti)}


def sensor(**kwargs):
    from airflow_graph_mail.sensors.inbound import GraphMailSensor

    kwargs.setdefault("mailbox", INBOX)
    return GraphMailSensor(task_id="wait", poke_interval=0.2, **kwargs)


# -- names, headers, filters: pure -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "safe"), [
    ("../../etc/passwd", "passwd"), ("..\\..\\boot.ini", "boot.ini"), ("C:\\Windows\\evil.dll", "evil.dll"),
    ("CON.txt", "_CON.txt"), ("nul", "_nul"), (".bashrc", "bashrc"), ("..", "attachment-1"), ("", "attachment-1"),
    ("a\r\nb\x00.csv", "a__b_.csv"), ("re<port>?.csv", "re_port__.csv"), ("  data.csv. ", "data.csv"),
    ("Cafe\u0301.csv", "Caf\u00e9.csv"),
])
def test_attachment_names_become_one_safe_component(name, safe):
    from airflow_graph_mail.mail.safe_names import safe_file_name

    assert safe_file_name(name, "attachment-1") == safe


def test_duplicate_and_long_names_stay_unique_and_short():
    from airflow_graph_mail.mail.safe_names import MAX_NAME_BYTES, safe_file_name, unique_names

    assert unique_names(["data.csv", "Data.csv", "data.csv", "x"]) == ["data.csv", "Data (2).csv", "data (3).csv",
                                                                       "x"]
    long = safe_file_name("é" * 300 + ".csv", "f")
    assert long.endswith(".csv") and len(long.encode()) <= MAX_NAME_BYTES
    assert all(len(n.encode()) <= MAX_NAME_BYTES for n in unique_names([long, long]))


@given(st.lists(st.text(max_size=300), max_size=8))
def test_any_names_give_distinct_safe_components(names):
    from airflow_graph_mail.mail.safe_names import MAX_NAME_BYTES, safe_file_name, unique_names

    safe = unique_names([safe_file_name(n, f"attachment-{i}") for i, n in enumerate(names, 1)])
    assert len({s.casefold() for s in safe}) == len(safe)
    for name in safe:
        assert name and "/" not in name and "\\" not in name and name not in (".", "..")
        assert not name.startswith(".") and len(name.encode()) <= MAX_NAME_BYTES
        assert not any(ord(c) < 32 for c in name)


MICROSOFT = ("spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=fabrikam.example; dkim=pass (signature was verified) "
             "header.d=fabrikam.example;dmarc=pass action=none header.from=fabrikam.example;compauth=pass reason=100")


def test_authentication_results_are_read_from_the_top_most_header():
    from airflow_graph_mail.mail.auth_results import authentication_results, is_authenticated, parse

    found = parse(MICROSOFT)
    assert found["spf"] == found["dkim"] == found["dmarc"] == found["compauth"] == "pass"
    assert found["header_from"] == "fabrikam.example"
    assert is_authenticated(found, "orders@fabrikam.example")
    assert not is_authenticated(found, "ceo@contoso.com")  # a pass for another domain says nothing
    rfc = parse("mx.example.org; spf=fail smtp.mailfrom=x.example (nested (comment) here); dmarc=fail "
                "header.from=x.example")
    assert rfc["spf"] == "fail" and rfc["dmarc"] == "fail" and not is_authenticated(rfc, "a@x.example")
    forged = [{"name": "Authentication-Results", "value": "spf=fail; dmarc=fail header.from=fabrikam.example"},
              {"name": "Authentication-Results", "value": MICROSOFT}]
    below = authentication_results(forged)
    assert below is not None and below["dmarc"] == "fail"  # below the receiver's own: ignored
    assert authentication_results([{"name": "Received", "value": "x"}]) is None
    assert parse("(" * 10_000 + "dmarc=pass") == {}  # hostile: bounded, never raises
    assert parse("dmarc=pass;" * 5000)["dmarc"] == "pass"


@pytest.mark.parametrize(("options", "error"), [
    ({"sender": "not an address"}, "sender: 'not an address' is not an address or '@domain'"),
    ({"sender": ["a@x.example", 5]}, "sender: 5 is not an address"),
    ({"subject": ""}, "subject: expected non-empty text"),
    ({"received_after": "yesterday"}, "received_after: 'yesterday' is not an ISO 8601 time"),
    ({"has_attachments": "yes"}, "has_attachments: expected True, False or None"),
    ({"raw_filter": "x" * 3000}, "raw_filter: 3,000 characters"),
    ({"attachment_name": "a\nb"}, "attachment_name: expected non-empty text without control characters"),
])
def test_a_wrong_filter_names_the_option(options, error):
    from airflow_graph_mail.errors import GraphConfigError
    from airflow_graph_mail.mail.inbound import MailFilter

    with pytest.raises(GraphConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        MailFilter.of(**options)


def test_the_filter_keeps_received_time_first_for_graph():
    from airflow_graph_mail.mail.inbound import MailFilter

    mail_filter = MailFilter.of(received_after="2026-11-20T08:00:00+01:00", has_attachments=True,
                                raw_filter="importance eq 'high'")
    assert mail_filter.server_filter("2026-11-01T00:00:00Z") == (
        "receivedDateTime ge 2026-11-20T07:00:00Z and hasAttachments eq true and (importance eq 'high')")
    assert MailFilter.of(**mail_filter.as_kwargs()) == mail_filter


def test_announcement_marks_read_back_and_refuse_garbage():
    from airflow_graph_mail.mail.inbound import Announcement

    mark = Announcement(3, 1_794_000_000.0)
    assert Announcement.parse(mark.value()) == mark
    dead = Announcement.parse(Announcement(4, 1_794_000_000.0, dead=True).value())
    assert dead is not None and dead.dead
    for garbage in ("", "x", "3", "three 2026-11-20T00:00:00Z", "3 tomorrow", "dead"):
        assert Announcement.parse(garbage) is None


# -- the sensor ----------------------------------------------------------------------------------------------


def test_the_sensor_claims_each_mail_once_and_a_retry_recognises_its_own(hook, graph_emulator):
    first = receive(graph_emulator, subject="Orders 1")
    receive(graph_emulator, subject="Someone else", sender="spam@elsewhere.example")
    second = receive(graph_emulator, subject="Orders 2", attachments=[("notes.txt", b"x")])
    wait = sensor(sender="@fabrikam.example", attachment_name="*.csv")
    run1 = context(run_id="scheduled__1")
    assert wait.poke(run1) is True
    assert [m["message_id"] for m in wait._found] == [first["immutableId"]]
    summary = wait._found[0]
    assert summary["sender"] == "orders@fabrikam.example" and summary["attachments"] == ["orders.csv"]
    assert summary["authentication"]["dmarc"] == "pass" and summary["mailbox"] == INBOX
    assert run1["ti"].xcom["message_ids"] == [first["immutableId"]]
    assert sensor(sender="@fabrikam.example", attachment_name="*.csv").poke(context(run_id="scheduled__2")) is False
    retry = sensor(sender="@fabrikam.example", attachment_name="*.csv")
    assert retry.poke(context(run_id="scheduled__1", try_number=2)) is True  # its own claim
    assert [m["message_id"] for m in retry._found] == [first["immutableId"]]
    other_task = sensor(sender="@fabrikam.example")  # another scope: claims of its own
    assert other_task.poke(context(run_id="scheduled__2", task_id="other")) is True
    assert {m["message_id"] for m in other_task._found} == {first["immutableId"], second["immutableId"]}


def test_the_sensor_requires_an_authenticated_sender_when_asked(hook, graph_emulator):
    receive(graph_emulator, subject="Spoofed", authentication="fail")
    assert sensor(require_authenticated=True, exactly_once="off").poke(context()) is False
    real = receive(graph_emulator, subject="Real")
    wait = sensor(require_authenticated=True, exactly_once="off")
    assert wait.poke(context()) is True and [m["message_id"] for m in wait._found] == [real["immutableId"]]


def test_a_raw_filter_is_applied_by_graph_on_the_plain_listing(hook, graph_emulator):
    receive(graph_emulator, subject="Normal")
    wait = sensor(raw_filter="subject eq 'Urgent orders'", exactly_once="off")
    assert wait.poke(context()) is False
    urgent = receive(graph_emulator, subject="Urgent orders")
    assert wait.poke(context()) is True and [m["message_id"] for m in wait._found] == [urgent["immutableId"]]
    assert not any("/delta" in r["path"] for r in graph_emulator.inspect.request_log)  # delta takes no such filter


def test_window_mode_takes_the_interval_once_it_has_ended(hook, graph_emulator):
    from airflow.providers.common.compat.sdk import AirflowSkipException

    now = dt.datetime.now(dt.timezone.utc)
    arrived = receive(graph_emulator)
    window = {"data_interval_start": now - dt.timedelta(minutes=5),
              "data_interval_end": now + dt.timedelta(seconds=1.5)}
    wait = sensor(exactly_once="window", window_grace=0)
    assert wait.poke({**context(), **window}) is False  # the interval has not ended
    time.sleep(2)
    assert wait.poke({**context(), **window}) is True
    assert [m["message_id"] for m in wait._found] == [arrived["immutableId"]]
    assert not any(r["method"] == "PATCH" for r in graph_emulator.inspect.request_log)  # read-only
    before = {"data_interval_start": now - dt.timedelta(hours=2), "data_interval_end": now - dt.timedelta(hours=1)}
    with pytest.raises(AirflowSkipException, match="No matching mail was received"):
        sensor(exactly_once="window", window_grace=0).poke({**context(), **before})


def test_the_sensor_refuses_bad_options_when_the_dag_is_parsed():
    from airflow_graph_mail.errors import GraphConfigError

    with pytest.raises(GraphConfigError, match="exactly_once: 'twice' is not one of claim, window, off"):
        sensor(exactly_once="twice")
    with pytest.raises(GraphConfigError, match="claim_scope: 'a b'"):
        sensor(claim_scope="a b")


# -- the watcher's doorbell ----------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = dt.datetime.now(dt.timezone.utc).timestamp()

    def __call__(self):
        return self.now


def watch(hook, clock, **kwargs):
    from airflow_graph_mail.graph.inbound import MailboxReader
    from airflow_graph_mail.graph.watch import MailWatch
    from airflow_graph_mail.mail.inbound import MailFilter

    mail_filter = MailFilter.of(**kwargs.pop("filter", {"sender": "@fabrikam.example"}))
    return MailWatch(MailboxReader(hook.client, INBOX, "inbox"), mail_filter, kwargs.pop("scope", "vendor"),
                     clock=clock, **{"lease": 60.0, "max_attempts": 3, **kwargs})


def announce_all(bell) -> list[dict]:
    return [p for p in (bell.announce(item, "graph_mail_default") for item in bell.poll()) if p]


@pytest.mark.parametrize("use_delta", [True, False], ids=["delta", "listing"])
def test_the_doorbell_announces_once_per_lease_and_stops_once_claimed(hook, graph_emulator, use_delta):
    from airflow_graph_mail.graph.inbound import MailboxReader
    from airflow_graph_mail.mail.inbound import announced_property, run_id_for

    graph_emulator.backend.store.add_user(INBOX)  # the watched mailbox exists before its first mail
    clock = Clock()
    bell = watch(hook, clock, use_delta=use_delta)
    assert announce_all(bell) == []
    a = receive(graph_emulator, subject="A")
    receive(graph_emulator, subject="Not ours", sender="x@elsewhere.example")
    (event,) = announce_all(bell)
    assert event["message_id"] == a["immutableId"] and event["attempt"] == 1 and event["watch"] == "vendor"
    assert event["run_id"] == run_id_for(INBOX, a["immutableId"]) and event["attachments"] == ["orders.csv"]
    json.dumps(event)  # plain JSON: an asset event's extra
    (mark,) = [p for p in graph_emulator.inspect.full_message(a["id"])["singleValueExtendedProperties"]
               if p["id"].endswith("AirflowGraphMailAnnounced.vendor")]
    assert mark["value"].startswith("1 ") and announced_property("vendor").endswith(".vendor")
    assert announce_all(bell) == []  # within the lease
    restarted = watch(hook, clock, use_delta=use_delta)  # a new triggerer: reads the marks, not its memory
    assert announce_all(restarted) == []
    clock.now += 61
    (again,) = announce_all(restarted)
    assert again["message_id"] == a["immutableId"] and again["attempt"] == 2
    MailboxReader(hook.client, INBOX).claim(a["immutableId"], "vendor", "vendor_file_load/mail__x")
    clock.now += 61
    assert announce_all(restarted) == [] and announce_all(watch(hook, clock, use_delta=use_delta)) == []


def test_an_unclaimed_mail_is_dead_lettered_after_max_attempts(hook, graph_emulator, caplog):
    import logging

    clock = Clock()
    bell = watch(hook, clock, max_attempts=2)
    a = receive(graph_emulator)
    attempts = []
    with caplog.at_level(logging.ERROR, logger="airflow_graph_mail"):
        for _ in range(4):
            attempts += [e["attempt"] for e in announce_all(bell)]
            clock.now += 61
    assert attempts == [1, 2]
    assert "announced 2 times and no run claimed it: dead-lettered" in caplog.text
    (mark,) = [p["value"] for p in graph_emulator.inspect.full_message(a["id"])["singleValueExtendedProperties"]
               if p["id"].endswith("Announced.vendor")]
    assert mark.startswith("dead 2 ")
    assert announce_all(watch(hook, clock, max_attempts=2)) == []  # a restart leaves it too


def test_a_lost_delta_link_restarts_change_tracking_without_announcing_twice(hook, graph_emulator):
    clock = Clock()
    bell = watch(hook, clock)
    a = receive(graph_emulator, subject="A")
    assert [e["message_id"] for e in announce_all(bell)] == [a["immutableId"]]
    graph_emulator.inbound.expire_delta_links(status=410)
    b = receive(graph_emulator, subject="B")
    assert [e["message_id"] for e in announce_all(bell)] == [b["immutableId"]]  # A's mark kept it quiet
    graph_emulator.inbound.expire_delta_links(status=400)
    assert announce_all(bell) == []
    statuses = [r["status"] for r in graph_emulator.inspect.request_log if "/delta" in r["path"]]
    assert 410 in statuses and 400 in statuses


def test_an_idle_poll_costs_one_request(hook, graph_emulator):
    clock = Clock()
    bell = watch(hook, clock)
    receive(graph_emulator)
    announce_all(bell)
    before = len(graph_emulator.inspect.request_log)
    assert announce_all(bell) == []
    assert [r["path"] for r in list(graph_emulator.inspect.request_log)[before:]] == [
        f"/v1.0/users/{INBOX}/mailFolders/inbox/messages/delta"]


# -- the trigger, as the triggerer runs it ---------------------------------------------------------------------


def events_of(trigger, count: int, limit: float = 60.0) -> list[dict]:
    """The first ``count`` events of a trigger that never ends, run in an event loop as the triggerer runs it."""
    async def run():
        found = []
        async for event in trigger.run():
            found.append(event.payload)
            if len(found) == count:
                return found
        raise AssertionError("the watcher's run() returned: the triggerer would restart it at once")

    return asyncio.run(asyncio.wait_for(run(), limit))


def test_the_event_trigger_serialises_json_only_and_survives_graph_failures(hook, graph_emulator, caplog):
    import logging

    from airflow_graph_mail.triggers.inbound import GraphMailEventTrigger

    trigger = GraphMailEventTrigger(watch_name="vendor", mailbox=INBOX, sender="@fabrikam.example",
                                    poll_interval=1)
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert graph_emulator.connection()["password"] not in json.dumps(kwargs)
    assert kwargs == GraphMailEventTrigger(**kwargs).serialize()[1]  # the same kwargs each parse: one trigger row
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(sys.modules[module], name)(**kwargs)
    arrived = receive(graph_emulator)
    graph_emulator.faults.add("delta_messages", 429, retry_after=1)
    graph_emulator.faults.add("delta_messages", 503)
    graph_emulator.faults.add("update_message", 503)  # the mark could not be written: not announced yet
    with caplog.at_level(logging.WARNING, logger="airflow_graph_mail"):
        (event,) = events_of(rebuilt, 1)
    assert event["message_id"] == arrived["immutableId"] and event["attempt"] == 1
    assert "polling again in 1.0s" in caplog.text and "503" in caplog.text
    fired = graph_emulator.faults.fired
    assert ("delta_messages", 429) in fired and ("update_message", 503) in fired


def test_a_watcher_without_its_connection_waits_instead_of_returning(hook, caplog, monkeypatch):
    """run() must never return or raise: the triggerer would restart it at once, for ever. What it logs at
    each poll is one line naming the connection, as for any other setup error, not a traceback."""
    import logging

    from airflow_graph_mail.triggers.inbound import GraphMailEventTrigger

    # A process's first connection lookup sets up Airflow's logging, which drops the handler caplog added to
    # the root logger: done here first, alone, the test sees the trigger's log whatever ran before it.
    hook.get_connection(hook.graph_mail_conn_id)
    monkeypatch.delenv("AIRFLOW_CONN_GRAPH_MAIL_NOWHERE", raising=False)
    trigger = GraphMailEventTrigger(watch_name="vendor", mailbox=INBOX, graph_mail_conn_id="graph_mail_nowhere",
                                    poll_interval=1)

    async def run_until_it_waited_twice(deadline: float = 120) -> str:
        """Until the watch has failed and waited twice (so it went round its loop), not for a fixed time: a
        busy machine may take seconds to import and look the connection up."""
        step = asyncio.ensure_future(trigger.run().__anext__())
        try:
            for _ in range(int(deadline / 0.05)):
                if step.done():
                    return "yielded" if step.exception() is None else f"raised {step.exception()!r}"
                if caplog.text.count("polling again in") >= 2:
                    return "still running"
                await asyncio.sleep(0.05)
            return "no warning came"
        finally:
            step.cancel()

    with caplog.at_level(logging.WARNING, logger="airflow_graph_mail"):
        assert asyncio.run(run_until_it_waited_twice()) == "still running", caplog.text
    waits = [record for record in caplog.records if "polling again in" in record.getMessage()]
    assert all("graph_mail_nowhere" in record.getMessage() for record in waits), caplog.text
    assert {(record.levelname, record.exc_info) for record in waits} == {("WARNING", None)}, caplog.text


def test_the_trigger_modules_stay_cheap_for_the_event_loop():
    code = ("import sys, airflow.triggers.base; "
            "from airflow.providers.common.compat.sdk import BaseOperator, BaseSensorOperator; "  # Airflow's own
            "before = set(sys.modules); "
            "import airflow_graph_mail.triggers.inbound, airflow_graph_mail.sensors.inbound, "
            "airflow_graph_mail.operators.inbound, airflow_graph_mail.operators.mail_runs; "
            "added = set(sys.modules) - before; "
            "print(sorted(m for m in added if m.split('.')[0] in ('msal', 'requests', 'urllib3', 'fsspec', 'upath') "
            "or m.startswith(('airflow_graph_mail.graph', 'graph_mail_emulator'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


# -- attachments to storage ----------------------------------------------------------------------------------


def save(hook, message_id, folder, **options):
    from airflow_graph_mail.graph.inbound import MailboxReader
    from airflow_graph_mail.graph.saving import SaveOptions, save_attachments

    return save_attachments(MailboxReader(hook.client, INBOX), message_id, folder, SaveOptions(**options))


def test_attachments_are_saved_under_safe_names_and_a_retry_writes_the_same(hook, graph_emulator, tmp_path):
    attached = b"From: a@b.example\r\nSubject: original\r\n\r\nhello\r\n"
    arrived = receive(graph_emulator, attachments=[
        ("../../etc/passwd", b"root"), ("report.csv", b"a\n1\n"), ("report.csv", b"a\n2\n"),
        {"name": "logo.png", "content": b"\x89PNG", "contentType": "image/png", "isInline": True, "contentId": "logo"},
        {"name": "Original request", "item": attached}])
    target = tmp_path / "in"
    saved = save(hook, arrived["immutableId"], target)
    names = sorted(f.file_name for f in saved)
    assert names == ["Original request.eml", "passwd", "report (2).csv", "report.csv"]
    assert sorted(p.name for p in target.iterdir()) == names  # nothing outside, no .part left
    assert {(target / n).read_bytes() for n in ("report.csv", "report (2).csv")} == {b"a\n1\n", b"a\n2\n"}
    assert b"Subject: original" in (target / "Original request.eml").read_bytes()
    assert (target / "passwd").read_bytes() == b"root" and not (tmp_path / "etc").exists()
    for file in saved:
        assert file.sha256 == hashlib.sha256((target / file.file_name).read_bytes()).hexdigest()
    again = save(hook, arrived["immutableId"], target)
    assert [(f.file_name, f.sha256) for f in again] == [(f.file_name, f.sha256) for f in saved]
    with_inline = save(hook, arrived["immutableId"], tmp_path / "all", include_inline=True, name_patterns=("*.png",))
    assert [f.file_name for f in with_inline] == ["logo.png"]


def test_attachment_limits_fail_before_anything_is_written(hook, graph_emulator, tmp_path):
    from airflow_graph_mail.errors import InboundLimitError

    arrived = receive(graph_emulator, attachments=[(f"f{i}.csv", b"x" * 2000) for i in range(5)])
    for options, error in (({"max_attachments": 4}, "max_attachments: the mail has 5 attachments"),
                           ({"max_attachment_bytes": 1000}, "max_attachment_bytes: attachment 'f"),
                           ({"max_total_bytes": 5000}, "max_total_bytes: the attachments to save are")):
        with pytest.raises(InboundLimitError, match=error):
            save(hook, arrived["immutableId"], tmp_path / "out", **options)
        assert not (tmp_path / "out").exists()
    from airflow_graph_mail.graph.inbound import MailboxReader
    from airflow_graph_mail.graph.saving import SaveOptions, save_attachments

    save(hook, arrived["immutableId"], tmp_path / "flat")
    with pytest.raises(InboundLimitError, match=r"overwrite: .* already exist"):
        save_attachments(MailboxReader(hook.client, INBOX), arrived["immutableId"], tmp_path / "flat", SaveOptions(),
                         overwrite=False)


def test_a_large_attachment_streams_in_chunks_to_object_storage(hook, graph_emulator, tmp_path):
    from upath import UPath

    graph_emulator.backend.set_limits(message_size_limit=150 * 2**20)
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for i in range(24):
            handle.write(bytes([i]) * 2**20)
    arrived = receive(graph_emulator, attachments=[("big.bin", big, "application/octet-stream")])
    (saved,) = save(hook, arrived["immutableId"], UPath(f"file://{tmp_path}/store"), chunk_bytes=2**20)
    assert saved.path.startswith("file://") and saved.size == 24 * 2**20
    assert saved.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert (tmp_path / "store" / "big.bin").read_bytes() == big.read_bytes()


def test_a_connection_broken_in_the_middle_downloads_the_file_again(hook, graph_emulator, tmp_path):
    arrived = receive(graph_emulator, attachments=[("orders.csv", b"id\n" * 50_000)])
    graph_emulator.faults.add("attachment_value", "drop")
    (saved,) = save(hook, arrived["immutableId"], tmp_path / "in")
    assert (tmp_path / "in" / "orders.csv").read_bytes() == b"id\n" * 50_000 and saved.size == 150_000


# -- marking done, answering ---------------------------------------------------------------------------------


def test_marking_done_adds_to_the_persons_categories_and_moves_keeping_the_id(hook, graph_emulator):
    from airflow_graph_mail.graph.inbound import MailboxReader

    arrived = receive(graph_emulator)
    reader = MailboxReader(hook.client, INBOX)
    reader.client.transport.request(reader.call(), "PATCH", reader.call().message_path(arrived["immutableId"]),
                                    json_body={"categories": ["Red"]})
    graph_emulator.faults.add("update_message", 412)  # a person categorised it meanwhile
    moved = reader.mark_done(arrived["immutableId"], move_to="archive", categories=["Loaded", "red"], read=True)
    assert moved == arrived["immutableId"]
    found = reader.message(moved)
    assert found["isRead"] is True
    assert graph_emulator.inspect.full_message(found["id"])["categories"] == ["Red", "Loaded"]
    assert found["parentFolderId"] == reader.folder_id("archive")
    assert reader.mark_done(moved, move_to="archive", categories=["Loaded"]) == moved  # again: nothing changes


def test_a_reply_in_the_thread_with_a_large_attachment_is_sent_once(hook, graph_emulator, tmp_path):
    from airflow_graph_mail.graph.reply import respond
    from airflow_graph_mail.mail.attachments import Attachment
    from airflow_graph_mail.outcomes import Status

    arrived = receive(graph_emulator, body="<p>see attached</p>", body_type="html")
    report = tmp_path / "summary.csv"
    report.write_bytes(b"r" * 4_000_000)
    status = respond(hook.client, arrived["immutableId"], action="reply", body="received, {{ 2 }} rows <b>",
                     body_type="text", attachments=[Attachment.from_path(report)], sender=INBOX,
                     idempotency_key="reply-1")
    assert status is Status.SENT
    (answer,) = graph_emulator.inspect.messages("orders@fabrikam.example")
    assert answer["subject"].lower().startswith("re: orders")
    assert "received, {{ 2 }} rows &lt;b&gt;" in answer["body"]["content"]  # data, escaped, never rendered here
    assert graph_emulator.inspect.attachment_bytes(answer["id"])["summary.csv"] == report.read_bytes()
    again = respond(hook.client, arrived["immutableId"], action="reply", body="x", sender=INBOX,
                    idempotency_key="reply-1", check_first=True)
    assert again is Status.ALREADY_SENT and len(graph_emulator.inspect.messages("orders@fabrikam.example")) == 1


def test_a_reply_outside_the_allowed_domains_is_refused_and_leaves_no_draft(connect, graph_emulator):
    from airflow_graph_mail.errors import GraphMailError
    from airflow_graph_mail.graph.reply import respond

    hook = connect(extra={"allowed_recipient_domains": "contoso.com"})
    arrived = receive(graph_emulator)
    with pytest.raises(GraphMailError, match=r"orders@fabrikam\.example"):
        respond(hook.client, arrived["immutableId"], action="reply", body="hi", sender=INBOX, idempotency_key="r")
    assert graph_emulator.inspect.messages("orders@fabrikam.example") == []
    assert graph_emulator.inspect.messages(INBOX, "drafts") == []


def test_a_reply_to_all_reaches_the_sender_and_the_others_but_not_ourselves(hook, graph_emulator):
    from airflow_graph_mail.graph.reply import respond

    graph_emulator.backend.store.add_user("finance@contoso.com")
    (arrived,) = [copy for copy in graph_emulator.inbound.receive(to=INBOX, cc="finance@contoso.com", sender=VENDOR,
                                                                  subject="Orders") if copy["mailbox"] == INBOX]
    respond(hook.client, arrived["immutableId"], action="reply_all", body="<p>Thanks</p>", sender=INBOX,
            idempotency_key="all")
    for person in ("orders@fabrikam.example", "finance@contoso.com"):
        answers = [m for m in graph_emulator.inspect.messages(person) if m["subject"].lower().startswith("re")]
        assert len(answers) == 1 and "<p>Thanks</p>" in answers[0]["body"]["content"], person
    assert not [m for m in graph_emulator.inspect.messages(INBOX) if m["subject"].lower().startswith("re")]


def test_a_forward_goes_to_the_given_recipients(hook, graph_emulator):
    from airflow_graph_mail.graph.reply import respond
    from airflow_graph_mail.mail.recipients import parse_recipients

    graph_emulator.backend.store.add_user("finance@contoso.com")
    arrived = receive(graph_emulator)
    respond(hook.client, arrived["immutableId"], action="forward", body="<p>FYI</p>",
            to=parse_recipients("finance@contoso.com"), sender=INBOX, idempotency_key="fwd")
    (forwarded,) = graph_emulator.inspect.messages("finance@contoso.com")
    assert forwarded["subject"].lower().startswith("fw") and "<p>FYI</p>" in forwarded["body"]["content"]
    assert "orders.csv" in graph_emulator.inspect.attachment_bytes(forwarded["id"])


# -- permissions ---------------------------------------------------------------------------------------------


def test_a_read_only_app_reads_mail_and_the_connection_test_says_what_it_cannot_do(connect, graph_emulator):
    from airflow.providers.common.compat.sdk import AirflowFailException

    app = graph_emulator.entra.add_app(secret="ro", roles=["Mail.Read"])
    hook = connect("graph_mail_reader", login=app.client_id, password="ro")
    receive(graph_emulator)
    wait = sensor(exactly_once="off", graph_mail_conn_id="graph_mail_reader")
    assert wait.poke(context()) is True  # Mail.Read is enough to read
    ok, report = hook.test_connection()
    assert ok and "application permissions granted: Mail.Read." in report
    assert "Missing Mail.ReadWrite:" in report
    assert "received mail cannot be marked, moved, claimed or answered" in report
    assert "Missing Mail.Read:" not in report
    with pytest.raises(AirflowFailException, match="AccessDeniedError"):  # claiming writes: refused at once
        sensor(graph_mail_conn_id="graph_mail_reader").poke(context())
    none = graph_emulator.entra.add_app(secret="no", roles=["Mail.Send"])
    ok, report = connect("graph_mail_sender", login=none.client_id, password="no").test_connection()
    assert "Missing Mail.Read: received mail cannot be read" in report


# -- the operators through Airflow ----------------------------------------------------------------------------


def test_the_operators_through_airflow(run_dag, graph_emulator, hook, airflow_home, tmp_path):
    import sqlite3
    import threading

    from helpers import TEST_DAGS

    mail = receive(graph_emulator, subject="Case 1", attachments=[(f"f{i}.csv", b"x") for i in range(3)])
    gone = receive(graph_emulator, subject="Gone")
    hook.delete_message(gone["immutableId"], sender=INBOX)
    graph_emulator.backend.store.add_user("finance@contoso.com")
    def after_the_first_look():  # the sensor finds nothing, defers; the mail comes while its trigger polls
        listing = f"/v1.0/users/{INBOX}/mailFolders/inbox/messages"
        for _ in range(600):
            if any(r["path"] == listing for r in list(graph_emulator.inspect.request_log)):
                break
            time.sleep(0.1)
        time.sleep(2)
        receive(graph_emulator, subject="Late case")

    late = threading.Thread(target=after_the_first_look, daemon=True)
    late.start()
    result = run_dag("inbound_cases", TEST_DAGS, INBOUND_MAIL=mail["immutableId"], INBOUND_GONE=gone["immutableId"],
                     INBOUND_STORE=str(tmp_path / "store"))
    late.join()
    output = result.stdout + result.stderr
    assert "max_attachments: the mail has 3 attachments to save, more than 2" in output
    assert "not in mailbox 'reports-in@contoso.com' (moved away or deleted)" in output
    assert "message_id: not given, and the run's conf has no 'message_id'" in output
    assert "No matching mail in reports-in@contoso.com/inbox yet" in output  # then it deferred, and woke
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        states = {t: (s, n) for t, s, n in db.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = 'inbound_cases'")}
    assert states == {"wait_deferred": ("success", 1), "forward": ("success", 1), "mark": ("success", 1),
                      "too_many": ("failed", 1), "gone": ("skipped", 1), "no_mail_named": ("failed", 1)}, states
    (forwarded,) = graph_emulator.inspect.messages("finance@contoso.com")
    assert "FYI: 2026-11-20" in forwarded["body"]["content"]
    original = graph_emulator.inspect.full_message(mail["id"]) or graph_emulator.inspect.full_message(
        mail["immutableId"])
    assert original["isRead"] is True and original["categories"] == ["Loaded"] and original["folder"] == "archive"
    assert not (tmp_path / "store").exists()
