"""Exchange Online's transport behind Graph's 202, at its default limits: the Outbox and the message rate, the
mailbox's 24-hour recipient window (5.1.90), the recipients-per-message limit (5.5.3), the tenant's external
recipient cap (TERRL: 5.7.233, 5.7.232), a clock tests move, apps restricted to some mailboxes, and every new
setting's bad values.

Messages go through plain HTTPS where Graph's answer is the point, and through ``backend.delivery`` (the one
road HTTP takes too) where thousands of recipients are needed quickly: one message of 500 Bcc recipients
spends 500 of the window at the cost of one request.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time

import pytest
import requests
from graph_http import get_token, keyed, person, simple

from graph_mail_emulator import EmulatorConfig, GraphEmulator, Limits
from graph_mail_emulator.__main__ import config, main
from graph_mail_emulator.backend.limits import external_recipient_limit

DAY = 24 * 3600


def when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def about(delta: dt.timedelta, expected: dt.timedelta) -> bool:
    """Within the two seconds that stamps to the second and the test's own work may take."""
    return abs(delta - expected) <= dt.timedelta(seconds=2)


def bulk(emulator, count: int, recipients: int = 1, domain: str = "example.com", subject: str = "m") -> None:
    """``count`` messages straight into delivery, each to ``recipients`` addresses (one To, the rest Bcc)."""
    store = emulator.backend.store
    sender = store.user(emulator.default_sender)
    for n in range(count):
        people = [person(f"r{n}-{i}@{domain}") for i in range(recipients)]
        emulator.backend.delivery.send_new(sender, {"subject": f"{subject}{n}", "body": {"contentType": "text",
                                                    "content": "x"}, "toRecipients": people[:1],
                                                    "bccRecipients": people[1:]}, [], True)


def reports(emulator) -> list[dict]:
    return [m for m in emulator.inspect.messages(emulator.default_sender) if m["subject"].startswith("Undeliverable")]


def fields(emulator, report: dict, name: str) -> set[str]:
    """The values of one field of the report's delivery-status blocks (Status, Final-Recipient)."""
    text = emulator.inspect.eml(report["id"]).decode()
    return {line.split(":", 1)[1].strip().removeprefix("rfc822;") for line in text.splitlines()
            if line.startswith(f"{name}:")}


def statuses(emulator, report: dict) -> set[str]:
    return fields(emulator, report, "Status")


# -- the Outbox and the message rate ------------------------------------------------------------------------


def test_past_30_a_minute_mail_waits_in_the_outbox_and_leaves_in_later_minutes(graph, graph_emulator):
    started = time.monotonic()
    for n in range(33):
        assert graph("POST", "/sendMail", json={"message": simple(subject=f"m{n}", **keyed(f"k{n}"))}).status_code \
            == 202
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 30
    waiting = graph("GET", "/mailFolders/outbox/messages", params={"$select": "subject,isDraft"}).json()["value"]
    assert sorted(m["subject"] for m in waiting) == ["m30", "m31", "m32"] and not any(m["isDraft"] for m in waiting)
    sent = graph("GET", "/mailFolders/sentitems/messages", params={"$top": "100"}).json()["value"]
    assert len(sent) == 30  # "sent" only once it leaves the Outbox
    budget = graph_emulator.inspect.budget(graph_emulator.default_sender)
    assert (budget["queued"], budget["queuedRecipients"], budget["recipientsUsed"]) == (3, 3, 30)
    took = dt.timedelta(seconds=time.monotonic() - started + 1)  # the clock runs in real time; stamps to 1 s
    assert dt.timedelta(minutes=1) - took <= when(budget["nextLeavesAt"]) - when(budget["now"]) \
        <= dt.timedelta(minutes=1, seconds=1)
    assert graph_emulator.inspect.deliveries(keyed("x")["singleValueExtendedProperties"][0]["id"])["k32"] == 1
    # The clock runs in real time besides what a test adds: stop 5 s short of the next minute, reckoned from
    # the clock's now (59 s from the first send left a second, which a busy machine's sends used up), then go
    # past it.
    clock = graph_emulator.backend.clock
    clock.advance(max(when(budget["nextLeavesAt"]).timestamp() - clock.time() - 5, 0))
    assert len(graph_emulator.inspect.outbox(graph_emulator.default_sender)) == 3
    clock.advance(10)
    assert graph_emulator.inspect.outbox(graph_emulator.default_sender) == []
    left = {m["subject"]: when(m["sentDateTime"]) for m in graph_emulator.inspect.messages(
        graph_emulator.default_sender, "sentitems")}
    # the first to wait leaves when the budget said; the others in order (a second later when the sends they
    # wait on crossed a second)
    assert left["m30"] == when(budget["nextLeavesAt"]) and left["m30"] <= left["m31"] <= left["m32"]
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 33


def test_1000_mails_accepted_at_once_leave_over_33_minutes(graph_emulator):
    bulk(graph_emulator, 1000)
    budget = graph_emulator.inspect.budget(graph_emulator.default_sender)
    assert budget["queued"] == 970
    first = min(when(m["sentDateTime"]) for m in graph_emulator.inspect.messages(graph_emulator.default_sender,
                                                                                 "sentitems"))
    assert about(when(budget["lastLeavesAt"]) - first, dt.timedelta(minutes=33))  # 1000 / 30 a minute
    graph_emulator.backend.clock.advance(33 * 60)
    assert graph_emulator.inspect.budget(graph_emulator.default_sender)["queued"] == 0
    assert graph_emulator.inspect.folder_counts()[graph_emulator.backend.store.user(
        graph_emulator.default_sender).id] == {"sentitems": 1000}


def test_waiting_mail_waits_in_order_in_the_folder_chosen_and_survives_a_restart(tmp_path):
    state = tmp_path / "state"
    with GraphEmulator(EmulatorConfig(state, limits=Limits(queue_folder="drafts", message_rate=2))) as emulator:
        bulk(emulator, 4)
        waiting = emulator.inspect.messages(emulator.default_sender, "drafts")
        assert sorted(m["subject"] for m in waiting) == ["m2", "m3"] and not any(m["isDraft"] for m in waiting)
    with GraphEmulator(EmulatorConfig(state, limits=Limits(queue_folder="drafts", message_rate=2))) as emulator:
        assert [q["subject"] for q in emulator.inspect.outbox(emulator.default_sender)] == ["m2", "m3"]
        emulator.backend.clock.advance(60)
        assert emulator.inspect.outbox(emulator.default_sender) == []
        assert len(emulator.inspect.messages(emulator.default_sender, "sentitems")) == 4


def test_without_exchanges_limits_mail_leaves_at_once(graph_emulator):
    graph_emulator.backend.set_limits(exchange_limits=False)
    bulk(graph_emulator, 40)
    bulk(graph_emulator, 1, recipients=600, subject="many")
    budget = graph_emulator.inspect.budget(graph_emulator.default_sender)
    assert budget["queued"] == 0 and budget["recipientLimit"] is None and budget["externalLimit"] is None
    assert reports(graph_emulator) == []


# -- the mailbox's 24-hour recipient window -----------------------------------------------------------------


def test_beyond_10000_recipients_in_24_hours_mail_bounces_5_1_90_until_the_window_frees(graph_emulator):
    """At Exchange Online's own numbers: 20 messages of 500 fill the window; the next one bounces whole."""
    bulk(graph_emulator, 20, recipients=500)
    budget = graph_emulator.inspect.budget(graph_emulator.default_sender)
    assert (budget["recipientsUsed"], budget["recipientsLeft"]) == (10_000, 0)
    bulk(graph_emulator, 1, recipients=2, subject="one more")
    graph_emulator.backend.clock.advance(1)  # the report's delay
    (report,) = reports(graph_emulator)
    assert report["subject"] == "Undeliverable: one more0" and statuses(graph_emulator, report) == {"5.1.90"}
    text = " ".join(graph_emulator.inspect.eml(report["id"]).decode().split())  # header fields unfolded
    assert "550 5.1.90 Your message can't be sent because you've reached your daily limit for message recipients" \
        in text
    assert "r0-1@example.com" in text  # every recipient of the refused message
    assert graph_emulator.inspect.messages("r0-0@example.com")[-1]["subject"] == "m0"  # not "one more0"
    assert not [m for m in graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
                if m["subject"] == "one more0"]
    assert graph_emulator.inspect.budget(graph_emulator.default_sender)["recipientsUsed"] == 10_000
    first = min(when(m["sentDateTime"]) for m in graph_emulator.inspect.messages(graph_emulator.default_sender,
                                                                                 "sentitems"))
    assert about(when(budget["windowFreesAt"]) - first, dt.timedelta(days=1))  # the oldest mail turns 24 hours old
    graph_emulator.backend.clock.advance(DAY)
    bulk(graph_emulator, 1, recipients=2, subject="next day")
    assert graph_emulator.inspect.messages("r0-1@example.com")[0]["subject"] == "next day0"


def test_the_recipient_window_is_checked_when_mail_leaves_the_outbox(graph_emulator):
    graph_emulator.backend.set_limits(recipient_rate=40, recipient_rate_status="5.2.2")
    bulk(graph_emulator, 35)  # 30 leave now, 5 wait a minute; 5 more would fit now but not then
    bulk(graph_emulator, 1, recipients=8, subject="big")
    graph_emulator.backend.clock.advance(61)
    (report,) = reports(graph_emulator)
    assert report["subject"] == "Undeliverable: big0" and statuses(graph_emulator, report) == {"5.2.2"}
    assert "SubmissionQuotaExceededException" in "".join(graph_emulator.inspect.eml(report["id"]).decode().split())


# -- recipients per message ---------------------------------------------------------------------------------


def test_over_500_recipients_is_accepted_then_bounces_5_5_3_to_everyone(graph, graph_emulator):
    many = simple(bccRecipients=[person(f"u{i}@example.com") for i in range(500)])
    assert graph("POST", "/sendMail", json={"message": many}).status_code == 202
    graph_emulator.backend.clock.advance(1)
    (report,) = reports(graph_emulator)
    text = " ".join(graph_emulator.inspect.eml(report["id"]).decode().split())
    assert statuses(graph_emulator, report) == {"5.5.3"} and "RESOLVER.ADR.RecipLimit; too many recipients" in text
    assert "The limit is 500. This message has 501 recipients." in report["body"]["content"]
    assert graph_emulator.inspect.messages("u7@example.com") == []
    graph_emulator.backend.set_limits(recipient_limit=1000)  # an admin's raised limit
    assert graph("POST", "/sendMail", json={"message": many}).status_code == 202
    assert len(graph_emulator.inspect.messages("u7@example.com")) == 1
    graph_emulator.backend.set_limits(recipient_limit_answer="400", recipient_limit=10)
    refused = graph("POST", "/sendMail", json={"message": many})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ErrorTooManyRecipients"


# -- the tenant's external recipient cap (TERRL) ------------------------------------------------------------


def test_terrl_bounces_external_recipients_only_and_scales_with_licences(graph, graph_emulator):
    assert [external_recipient_limit(n) for n in (1, 10, 100, 1000)] == [10_000, 12_006, 22_059, 72_446]
    assert graph_emulator.inspect.budget(graph_emulator.default_sender)["externalLimit"] == 22_059
    graph_emulator.backend.store.add_user("bob@contoso.com")
    graph_emulator.backend.set_limits(external_limit=3)
    people = [person(f"x{i}@fabrikam.example") for i in range(5)] + [person("bob@contoso.com")]
    assert graph("POST", "/sendMail", json={"message": simple(toRecipients=people)}).status_code == 202
    graph_emulator.backend.clock.advance(1)
    (report,) = reports(graph_emulator)
    assert statuses(graph_emulator, report) == {"5.7.233"}
    assert fields(graph_emulator, report, "Final-Recipient") == {"x3@fabrikam.example", "x4@fabrikam.example"}
    assert len(graph_emulator.inspect.messages("bob@contoso.com")) == 1  # inside the tenant: not counted
    graph_emulator.backend.set_limits(trial_tenant=True)
    assert graph_emulator.inspect.budget(graph_emulator.default_sender)["externalLimit"] == 5000
    graph_emulator.backend.set_limits(trial_tenant=True, external_limit=3)
    assert graph("POST", "/sendMail", json={"message": simple(to="y@fabrikam.example")}).status_code == 202
    graph_emulator.backend.clock.advance(1)
    assert statuses(graph_emulator, reports(graph_emulator)[0]) == {"5.7.232"}


def test_terrl_does_not_bite_before_the_mailbox_window_at_the_defaults(graph_emulator):
    """A 25,000-recipient merge from one mailbox meets the mailbox's 10,000 first, never TERRL's 22,059."""
    limits = graph_emulator.backend.limits
    assert limits.daily_external_recipients > limits.daily_recipients


# -- the clock ------------------------------------------------------------------------------------------------


def test_the_clock_moves_graphs_date_header_and_the_inspection_api_moves_it(graph, graph_emulator, http):
    base = graph_emulator.base_url
    before = email.utils.parsedate_to_datetime(graph("GET", "/mailFolders/inbox").headers["Date"])
    moved = http.post(base + "/_emulator/clock", json={"advance": DAY})
    assert moved.status_code == 200 and moved.json()["offsetSeconds"] == DAY
    after = email.utils.parsedate_to_datetime(graph("GET", "/mailFolders/inbox").headers["Date"])
    assert dt.timedelta(hours=23, minutes=59) < after - before < dt.timedelta(hours=24, minutes=1)
    assert http.get(base + "/_emulator/clock").json()["now"] == graph_emulator.backend.clock.iso()
    token = get_token(http, graph_emulator).json()["access_token"]  # Entra stays on real time
    assert graph("GET", "/mailFolders/inbox", token_override=token).status_code == 200
    graph_emulator.reset()
    assert graph_emulator.backend.clock.offset == 0


def test_the_budget_over_http(graph, graph_emulator, http):
    bulk(graph_emulator, 31)
    answer = http.get(f"{graph_emulator.base_url}/_emulator/mailboxes/{graph_emulator.default_sender}/budget")
    assert answer.status_code == 200
    budget = answer.json()
    assert budget["queued"] == 1 and budget["outbox"][0]["subject"] == "m30" and budget["recipientsUsed"] == 30


# -- apps restricted to some mailboxes ------------------------------------------------------------------------


@pytest.mark.parametrize(("scope", "message"), [("rbac", "Access is denied. Check credentials and try again."),
                                                ("access_policy", "Access to OData is disabled.")])
def test_an_app_scoped_to_some_mailboxes_is_refused_elsewhere(graph, graph_emulator, http, scope, message):
    store = graph_emulator.backend.store
    store.add_user("reports@contoso.com")
    app = graph_emulator.entra.add_app(secret="s3cret-value-long-enough", mailboxes=["Reports@contoso.com"],
                                       scope=scope)
    answer = get_token(http, graph_emulator, app.client_id, "s3cret-value-long-enough")
    token = answer.json()["access_token"]
    claims = graph_emulator.entra.verify_access_token(token)
    assert claims["roles"] == ([] if scope == "rbac" else ["Mail.ReadWrite", "Mail.Send"])  # RBAC: not in the token
    inside = graph("POST", "/sendMail", user="reports@contoso.com", token_override=token,
                   json={"message": simple()})
    assert inside.status_code == 202
    outside = graph("POST", "/sendMail", token_override=token, json={"message": simple()})
    assert outside.status_code == 403
    assert (outside.json()["error"]["code"], outside.json()["error"]["message"]) == ("ErrorAccessDenied", message)
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1


def test_a_mail_send_only_app_cannot_read_sent_items(graph, graph_emulator, http):
    app = graph_emulator.entra.add_app(secret="s3cret-value-long-enough", roles=["Mail.Send"])
    token = get_token(http, graph_emulator, app.client_id, "s3cret-value-long-enough").json()["access_token"]
    assert graph("POST", "/sendMail", token_override=token, json={"message": simple()}).status_code == 202
    answer = graph("GET", "/mailFolders/sentitems/messages", token_override=token)
    assert answer.status_code == 403
    assert answer.json()["error"] == {**answer.json()["error"], "code": "ErrorAccessDenied",
                                      "message": "Access is denied. Check credentials and try again."}


# -- bad settings ---------------------------------------------------------------------------------------------


def cli(*args: str):
    return lambda: main([*args, "--export-eml", "/nonexistent-never-reached"])


SETTINGS = [
    ("recipient limit over 1000", lambda: Limits(recipient_limit=1001), ValueError,
     "recipient_limit: 1001; Exchange Online takes 1 to 1000 recipients per message (0 turns the limit off)"),
    ("negative message rate", lambda: Limits(message_rate=-1), ValueError,
     "message_rate: -1; give a whole number, 0 or more (0: no limit)"),
    ("recipient rate as text", lambda: Limits(recipient_rate="10000"), ValueError,
     "recipient_rate: '10000'; give a whole number"),
    ("no licences", lambda: Limits(licenses=0), ValueError, "licenses: 0; a tenant has at least 1 licence"),
    ("negative external limit", lambda: Limits(external_limit=-5), ValueError,
     "external_limit: -5; give a whole number of external recipients per 24 hours"),
    ("unknown queue folder", lambda: Limits(queue_folder="sentitems"), ValueError,
     "queue_folder: 'sentitems'; use one of outbox, drafts"),
    ("unknown answer to too many recipients", lambda: Limits(recipient_limit_answer="413"), ValueError,
     "recipient_limit_answer: '413'; use one of ndr, 400"),
    ("unknown recipient rate status", lambda: Limits(recipient_rate_status="5.1.10"), ValueError,
     "recipient_rate_status: '5.1.10'; use one of 5.1.90, 5.2.2"),
    ("limits switch as text", lambda: Limits(exchange_limits="false"), ValueError,
     "exchange_limits: 'false'; give True or False"),
    ("the clock moved back", lambda: GraphEmulator().backend.clock.advance(-1), ValueError,
     "advance: -1 is not a number of seconds (0 or more): the clock only moves forward"),
    ("the clock moved by infinity", lambda: GraphEmulator().backend.clock.advance(float("inf")), ValueError,
     "advance: inf is not a number of seconds"),
    ("an unknown scope", lambda: GraphEmulator().entra.add_app(mailboxes=["a@contoso.com"], scope="all"),
     ValueError, "scope: 'all'; use one of rbac, access_policy"),
    ("an unknown limit", lambda: GraphEmulator().backend.set_limits(recipients_per_day=5), TypeError,
     "unknown limit(s): recipients_per_day"),
    ("set_limits over 1000", lambda: GraphEmulator().backend.set_limits(recipient_limit=5000), ValueError,
     "recipient_limit: 5000; Exchange Online takes 1 to 1000"),
    ("command line recipient limit over 1000", cli("--recipient-limit", "1001"), SystemExit,
     "--recipient-limit: 1001; Exchange Online takes 1 to 1000 recipients per message"),
    ("command line negative message rate", cli("--message-rate", "-3"), SystemExit,
     "--message-rate: -3; give a whole number, 0 or more (0: no limit)"),
    ("command line no licences", cli("--licenses", "0"), SystemExit, "--licenses: 0; a tenant has at least 1"),
    ("command line queue folder", cli("--queue-folder", "inbox"), SystemExit,
     "argument --queue-folder: invalid choice: 'inbox'"),
    ("command line scope kind", cli("--scope-kind", "tenant"), SystemExit,
     "argument --scope-kind: invalid choice: 'tenant'"),
]


@pytest.mark.parametrize(("case", "action", "error", "text"), SETTINGS, ids=[row[0] for row in SETTINGS])
def test_a_bad_setting_is_refused_naming_it_and_the_fix(case, action, error, text, capsys):
    with pytest.raises(error) as raised:
        action()
    said = str(raised.value) if error is not SystemExit else capsys.readouterr().err
    assert text in said


def test_the_command_line_sets_every_limit():
    import argparse

    args = argparse.Namespace(
        state_dir=None, token_lifetime=3600, sender=[], message_size_limit_mb=35, upload_budget_mb=150,
        upload_budget_window=300, mailbox_concurrency=4, mailbox_requests=10_000, latency_ms=0, host="127.0.0.1",
        port=0, allow_host=[], microsoft_hosts=False, accepted_domain=[], bounce=[], ndr_delay=1.0,
        no_exchange_limits=True, message_rate=10, recipient_rate=500, recipient_rate_status="5.2.2",
        recipient_limit=1000, recipient_limit_answer="400", licenses=7, trial_tenant=True, external_limit=9,
        queue_folder="drafts")
    limits = config(args).limits
    assert (limits.exchange_limits, limits.message_rate, limits.recipient_rate, limits.recipient_rate_status,
            limits.recipient_limit, limits.recipient_limit_answer, limits.licenses, limits.trial_tenant,
            limits.external_limit, limits.queue_folder) == (False, 10, 500, "5.2.2", 1000, "400", 7, True, 9, "drafts")


def test_the_command_line_scopes_the_app(tmp_path, capsys, monkeypatch):
    """``--scope-app-to`` restricts the app the printed connection signs in with."""
    from graph_mail_emulator import emulator as emulator_module

    started: dict = {}

    def serve(self):
        started["app"] = self.entra.default_app
        self.stop()

    monkeypatch.setattr(emulator_module.GraphEmulator, "serve_until_stopped", serve)
    assert main(["--port", "0", "--scope-app-to", "reports@contoso.com", "--scope-kind", "access_policy"]) == 0
    app = started["app"]
    assert app.mailboxes == frozenset({"reports@contoso.com"}) and app.mailbox_scope == "access_policy"
    capsys.readouterr()


def test_a_real_request_moves_nothing_it_should_not(graph_emulator):
    """The Date header of an error answer comes from the moved clock too (a client reads server time from any
    answer, even a 403)."""
    graph_emulator.backend.clock.advance(3600)
    answer = requests.get(f"{graph_emulator.base_url}/v1.0/users/{graph_emulator.default_sender}/messages",
                          verify=graph_emulator.ca_path, timeout=10)
    assert answer.status_code == 401
    date = email.utils.parsedate_to_datetime(answer.headers["Date"])
    assert abs((date - when(graph_emulator.backend.clock.iso())).total_seconds()) <= 1


def test_the_viewer_shows_a_mailboxs_budget_and_its_outbox(graph_emulator, http):
    bulk(graph_emulator, 32, recipients=2)
    page = http.get(graph_emulator.base_url + "/", params={"mailbox": graph_emulator.default_sender}).text
    assert "<strong>60</strong> of 10,000 recipients in the last 24 hours" in page
    assert "<strong>2</strong> messages in the Outbox, the next leaving at" in page and "30 messages a minute" in page
    outbox = http.get(graph_emulator.base_url + "/", params={"mailbox": graph_emulator.default_sender,
                                                               "folder": "outbox"}).text
    assert "m30" in outbox and "m31" in outbox
