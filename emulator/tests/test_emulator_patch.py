"""PATCH of a message that is not a draft, as Microsoft's "Update message" page lists it: isRead, categories,
flag and extended properties change on received mail; subject, body, internetMessageId and replyTo only on
drafts; single-value extended properties are created or updated by id, the others kept."""

from __future__ import annotations

import pytest
from graph_http import IDEMPOTENCY_PROPERTY

MARK = "String {00020329-0000-0000-C000-000000000046} Name InboundState"


@pytest.fixture
def received(graph_emulator):
    """A mail from outside in reports-in's Inbox: (mailbox address, message id)."""
    arrived = graph_emulator.inbound.receive(to="reports-in@contoso.com", sender="vendor@northwind.example",
                                             subject="Daily export", body="see attached")
    return "reports-in@contoso.com", arrived[0]["id"]


def test_received_mail_takes_is_read_categories_and_flag(graph, received):
    user, message_id = received
    answer = graph("PATCH", f"/messages/{message_id}", user=user,
                   json={"isRead": True, "categories": ["Processed"], "flag": {"flagStatus": "flagged"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["isRead"], body["categories"], body["flag"]["flagStatus"]) == (True, ["Processed"], "flagged")
    assert body["id"] == message_id and body["subject"] == "Daily export"


@pytest.mark.parametrize("change", [{"subject": "x"}, {"body": {"contentType": "text", "content": "x"}},
                                    {"internetMessageId": "<x@y.z>"},
                                    {"replyTo": [{"emailAddress": {"address": "a@b.example"}}]}])
def test_draft_only_properties_are_refused_on_received_mail(graph, received, change):
    user, message_id = received
    answer = graph("PATCH", f"/messages/{message_id}", user=user, json=change)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ErrorInvalidPropertyUpdateSentMessage"


def test_extended_properties_are_merged_by_id_and_found_by_filter(graph, received):
    user, message_id = received
    first = graph("PATCH", f"/messages/{message_id}", user=user, json={"singleValueExtendedProperties": [
        {"id": MARK, "value": "announced"}, {"id": IDEMPOTENCY_PROPERTY, "value": "k1"}]})
    assert first.status_code == 200, first.text
    second = graph("PATCH", f"/messages/{message_id}", user=user, json={"singleValueExtendedProperties": [
        {"id": MARK.upper().replace("NAME INBOUNDSTATE", "Name InboundState"), "value": "claimed"}]})
    assert second.status_code == 200, second.text
    expand = (f"singleValueExtendedProperties($filter=id eq '{MARK}' or id eq '{IDEMPOTENCY_PROPERTY}')")
    shown = graph("GET", f"/messages/{message_id}", user=user, params={"$expand": expand}).json()
    values = {p["value"] for p in shown["singleValueExtendedProperties"]}
    assert values == {"claimed", "k1"}  # the mark updated in place, the other property kept
    for value, expected in (("claimed", [message_id]), ("announced", []), ("k1", [message_id])):
        prop = MARK if value != "k1" else IDEMPOTENCY_PROPERTY
        listed = graph("GET", "/mailFolders/inbox/messages", user=user, params={
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{prop}' and ep/value eq '{value}')"})
        assert [m["id"] for m in listed.json()["value"]] == expected, value


def test_patch_of_a_property_list_that_is_not_one_is_400(graph, received):
    user, message_id = received
    for bad in ({"singleValueExtendedProperties": "x"}, {"singleValueExtendedProperties": [{"value": "no id"}]},
                {"categories": "Processed"}, {"categories": [1]}):
        answer = graph("PATCH", f"/messages/{message_id}", user=user, json=bad)
        assert answer.status_code == 400, (bad, answer.text)


def test_a_scripted_conflict_is_exchanges_412(graph, graph_emulator, received):
    """Exchange answers some updates 412 ErrorIrresolvableConflict (the change key moved on): a client GETs
    again and retries. A test scripts one with faults.add("update_message", 412)."""
    user, message_id = received
    graph_emulator.faults.add("update_message", 412)
    answer = graph("PATCH", f"/messages/{message_id}", user=user, json={"isRead": True})
    assert answer.status_code == 412 and answer.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph_emulator.inspect.full_message(message_id)["isRead"] is False  # refused, not applied
    assert graph("PATCH", f"/messages/{message_id}", user=user, json={"isRead": True}).status_code == 200
