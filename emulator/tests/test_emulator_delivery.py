"""The emulator's delivery side, checked with plain HTTP: throttling, latency, faults, finding a message again."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests
from graph_http import simple


def test_requests_per_window_answer_429_with_retry_after(graph, graph_emulator):
    graph_emulator.backend.set_limits(mailbox_requests=3, mailbox_window=60)
    statuses = [graph("POST", "/sendMail", json={"message": simple()}).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    refused = graph("POST", "/sendMail", json={"message": simple()})
    assert refused.json()["error"]["code"] == "ApplicationThrottled"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 3  # a throttled request sends nothing
    assert graph("POST", "/sendMail", user="other@contoso.com", json={"message": simple()}).status_code != 429


def test_concurrency_limit_per_mailbox(graph, graph_emulator):
    graph_emulator.backend.set_limits(mailbox_concurrency=2, latency=0.3)
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(lambda _: graph("POST", "/sendMail", json={"message": simple()}).status_code,
                                 range(5)))
    assert statuses.count(202) >= 2 and 429 in statuses
    assert len(graph_emulator.inspect.messages("ann@example.com")) == statuses.count(202)
    graph_emulator.reset()
    assert graph_emulator.backend.limits.latency == 0 and graph_emulator.backend.throttle.concurrency == 4


KEY = "String {8ECCC264-6880-4EBE-992F-8888D2EEAA1D} Name test-key"
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def tagged(value: str, **extra) -> dict:
    return simple(singleValueExtendedProperties=[{"id": KEY, "value": value}], **extra)


def key_filter(value: str, property_id: str = KEY) -> dict:
    escaped = value.replace("'", "''")
    return {"$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{property_id}' and ep/value eq "
                       f"'{escaped}')"}


def test_filter_on_extended_property_finds_the_sent_message(graph, graph_emulator):
    for value in ("a", "it's b", "c"):
        assert graph("POST", "/sendMail", json={"message": tagged(value, subject=value)}).status_code == 202
    found = graph("GET", "/mailFolders/sentitems/messages", params=key_filter("it's b")).json()["value"]
    assert [m["subject"] for m in found] == ["it's b"]
    # the property id matches whatever its case and spacing; the value must match exactly
    assert len(graph("GET", "/mailFolders/SentItems/messages",
                     params=key_filter("a", KEY.lower().replace(" ", "  "))).json()["value"]) == 1
    assert graph("GET", "/mailFolders/sentitems/messages", params=key_filter("A")).json()["value"] == []
    assert graph("GET", "/mailFolders/drafts/messages", params=key_filter("a")).json()["value"] == []
    # inside a larger filter, the same rules
    combined = {"$filter": f"subject eq 'a' and {key_filter('a', KEY.upper())['$filter']}"}
    assert len(graph("GET", "/mailFolders/sentitems/messages", params=combined).json()["value"]) == 1
    combined = {"$filter": f"subject eq 'a' and {key_filter('A')['$filter']}"}
    assert graph("GET", "/mailFolders/sentitems/messages", params=combined).json()["value"] == []


def test_deliveries_are_counted_per_key(graph, graph_emulator, http):
    graph("POST", "/sendMail", json={"message": tagged("once")})
    graph("POST", "/sendMail", json={"message": tagged("twice")})
    graph("POST", "/sendMail", json={"message": tagged("twice"), "saveToSentItems": False})
    draft = graph("POST", "/messages", json=tagged("draft")).json()
    assert graph_emulator.inspect.deliveries(KEY) == {"once": 1, "twice": 2}  # a draft is not a delivery
    graph("POST", f"/messages/{draft['id']}/send")
    over_http = http.get(f"{graph_emulator.base_url}/_emulator/deliveries", params={"property": KEY.upper()})
    assert over_http.json()["value"] == {"once": 1, "twice": 2, "draft": 1}


def test_immutable_id_survives_sending_a_draft(graph, graph_emulator):
    plain = graph("POST", "/messages", json=tagged("d1")).json()
    draft = graph("POST", "/messages", json=tagged("d2"), headers=IMMUTABLE)
    assert draft.headers["Preference-Applied"] == 'IdType="ImmutableId"'
    immutable = draft.json()["id"]
    assert immutable != plain["id"]
    assert graph("GET", f"/messages/{immutable}", headers=IMMUTABLE).json()["isDraft"] is True
    assert graph("POST", f"/messages/{immutable}/send", headers=IMMUTABLE).status_code == 202
    sent = graph("GET", f"/messages/{immutable}", headers=IMMUTABLE).json()
    assert sent["isDraft"] is False and sent["id"] == immutable  # now in Sent Items, same immutable id
    (listed,) = graph("GET", "/mailFolders/sentitems/messages", params=key_filter("d2"), headers=IMMUTABLE).json()[
        "value"]
    assert listed["id"] == immutable
    # the plain id of a draft is gone once it is sent (it moved folders)
    graph("POST", f"/messages/{plain['id']}/send")
    assert graph("GET", f"/messages/{plain['id']}").status_code == 404


def test_accepted_then_504_and_slow_answers_still_deliver(graph, graph_emulator, http):
    graph_emulator.faults.add("send_mail", "accept_504")
    graph_emulator.faults.add("send_mail", "slow", delay=1.0)
    timed_out = graph("POST", "/sendMail", json={"message": tagged("504")})
    assert timed_out.status_code == 504 and timed_out.json()["error"]["code"] == "GatewayTimeout"
    try:
        graph("POST", "/sendMail", json={"message": tagged("slow")}, timeout=0.3)
        raise AssertionError("the slow answer came early")
    except requests.Timeout:
        pass
    assert graph_emulator.inspect.deliveries(KEY) == {"504": 1, "slow": 1}
    time.sleep(1.0)  # the slow answer is logged once it has been given
    faults = [r["fault"] for r in graph_emulator.inspect.request_log if r["path"].endswith("/sendMail")]
    assert faults == ["accept_504", "slow"]


def test_fault_rates_are_drawn_per_request(graph, graph_emulator):
    graph_emulator.faults.add_rates(["send_mail"], {503: 0.3, "drop": 0.2}, seed=3)
    outcomes = []
    for _ in range(100):
        try:
            outcomes.append(graph("POST", "/sendMail", json={"message": simple()}).status_code)
        except OSError:
            outcomes.append("dropped")
    assert 15 <= outcomes.count(503) <= 45 and 8 <= outcomes.count("dropped") <= 35
    graph_emulator.backend.clock.advance(60)  # past 30 in a minute, mail waits in the Outbox: let it leave
    assert outcomes.count(202) == len(graph_emulator.inspect.messages("ann@example.com"))
    refused = [r for r in graph_emulator.inspect.request_log if r["status"] == 503]
    assert refused and all(r["fault"] == 503 for r in refused)
    graph_emulator.reset()
    assert graph("POST", "/sendMail", json={"message": simple()}).status_code == 202


def test_an_unknown_address_in_the_senders_own_domain_bounces(graph, graph_emulator):
    """The mailboxes' domain (contoso.com) is one of the tenant's accepted domains, as Exchange requires of
    any address it gives a mailbox: mail to an address there that no user has bounces with 5.1.10."""
    graph_emulator.backend.bounces.delay = 0
    assert graph_emulator.default_sender.endswith("@contoso.com")
    assert graph("POST", "/sendMail", json={"message": simple(to="nobody@contoso.com", subject="lost")}).status_code \
        == 202
    assert graph_emulator.inspect.messages("nobody@contoso.com") == []
    (report,) = graph_emulator.inspect.messages(graph_emulator.default_sender)
    assert report["subject"] == "Undeliverable: lost" and b"Status: 5.1.10" in graph_emulator.inspect.eml(report["id"])
    expanded = graph("GET", f"/messages/{report['id']}", params={
        "$expand": "singleValueExtendedProperties($filter=id eq 'String 0x001A')"}).json()
    assert expanded["singleValueExtendedProperties"] == [{"id": "String 0x1a", "value": "REPORT.IPM.Note.NDR"}]
    graph_emulator.backend.store.add_user("known@contoso.com")
    graph_emulator.backend.store.add_user("ops@fabrikam.example")  # a user's domain is accepted too
    assert graph("POST", "/sendMail", json={"message": simple(to="known@contoso.com")}).status_code == 202
    assert graph("POST", "/sendMail", json={"message": simple(to="gone@fabrikam.example")}).status_code == 202
    assert [m["subject"] for m in graph_emulator.inspect.messages("known@contoso.com")] == ["Hi"]
    assert graph_emulator.inspect.messages("gone@fabrikam.example") == []
    assert len(graph_emulator.inspect.messages(graph_emulator.default_sender)) == 2  # a second report
