"""messages/delta as Microsoft's "Get incremental changes to messages in a folder" describes it: rounds of
pages linked by nextLink, ending with a deltaLink; the next round reports what arrived, changed, or left
(@removed); options encoded in the links; changeType; the one $filter and $orderby it takes; expiry."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest
from test_emulator_resource import MESSAGE_SCHEMA

USER = "reports-in@contoso.com"
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
# A delta page: the message properties (as on a message) plus the delta annotations, nothing else.
PAGE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["@odata.context", "value"],
    "properties": {"@odata.context": {"type": "string", "pattern": r"/\$metadata#Collection\(message\)$"},
                   "@odata.nextLink": {"type": "string"}, "@odata.deltaLink": {"type": "string"},
                   "value": {"type": "array", "items": {"oneOf": [
                       {**MESSAGE_SCHEMA, "required": ["@odata.type", "id"],
                        "properties": {**MESSAGE_SCHEMA["properties"],
                                       "@odata.type": {"const": "#microsoft.graph.message"}}},
                       {"type": "object", "additionalProperties": False, "required": ["@odata.type", "id", "@removed"],
                        "properties": {"@odata.type": {"const": "#microsoft.graph.message"}, "id": {"type": "string"},
                                       "@removed": {"type": "object", "required": ["reason"],
                                                    "properties": {"reason": {"enum": ["deleted", "changed"]}}}}},
                   ]}}},
}


@pytest.fixture
def arrive(graph_emulator):
    def arrive(subject: str, **fields) -> str:
        return graph_emulator.inbound.receive(to=USER, sender="vendor@northwind.example", subject=subject,
                                              **fields)[0]["id"]
    return arrive


@pytest.fixture
def delta(graph, http, graph_emulator):
    """delta(params=None, link=None, headers=None) -> the response; a link is fetched exactly as given."""
    from graph_http import get_token

    token = get_token(http, graph_emulator).json()["access_token"]

    def call(params=None, link=None, headers=None, expect=200):
        merged = {"Authorization": f"Bearer {token}", **(headers or {})}
        if link is None:
            answer = graph("GET", "/mailFolders/inbox/messages/delta", user=USER, params=params, headers=merged)
        else:
            answer = http.get(link, headers=merged)
        assert answer.status_code == expect, answer.text
        if expect == 200:
            jsonschema.validate(answer.json(), PAGE_SCHEMA)
        return answer
    return call


def round_of(delta, first=None, link=None, headers=None) -> tuple[list[dict], str, int]:
    """Follow a round to its deltaLink: (every item, the deltaLink, how many requests it took)."""
    answer = delta(first, link=link, headers=headers).json()
    items, requests = list(answer["value"]), 1
    while "@odata.nextLink" in answer:
        assert "@odata.deltaLink" not in answer
        answer = delta(link=answer["@odata.nextLink"], headers=headers).json()
        items += answer["value"]
        requests += 1
    return items, answer["@odata.deltaLink"], requests


def test_a_first_round_pages_through_the_folder_with_the_options_in_its_links(delta, arrive, graph_emulator):
    ids = [arrive(f"m{n}") for n in range(5)]
    first = delta({"$select": "subject,sender,isRead"}, headers={"Prefer": "odata.maxpagesize=2"})
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=2"
    body = first.json()
    assert len(body["value"]) == 2 and "@odata.deltaLink" not in body
    link = urlsplit(body["@odata.nextLink"])
    assert f"{link.scheme}://{link.netloc}" == graph_emulator.base_url
    assert link.path.endswith("/mailFolders/inbox/messages/delta")
    assert [k for k, _ in parse_qsl(link.query)] == ["$skiptoken"]  # the options travel inside the token
    for item in body["value"]:
        assert set(item) == {"@odata.type", "@odata.etag", "id", "subject", "sender", "isRead"}
    items, delta_link, requests = round_of(delta, link=body["@odata.nextLink"],
                                           headers={"Prefer": "odata.maxpagesize=2"})
    items = body["value"] + items
    assert sorted(i["id"] for i in items) == sorted(ids)  # each message once
    assert [k for k, _ in parse_qsl(urlsplit(delta_link).query)] == ["$deltatoken"]
    assert requests == 2  # pages 2 and 3 of 5 messages, 2 a page


def test_the_next_round_reports_arrivals_changes_and_departures(delta, arrive, graph, graph_emulator):
    kept, read, deleted, moved = (arrive(s) for s in ("kept", "read", "deleted", "moved"))
    _, link, _ = round_of(delta, {"$select": "subject,isRead"})
    assert delta(link=link).json()["value"] == []  # nothing happened: an empty page and the same kind of link
    assert graph("PATCH", f"/messages/{read}", user=USER, json={"isRead": True}).status_code == 200
    assert graph("DELETE", f"/messages/{deleted}", user=USER).status_code == 204
    assert graph("POST", f"/messages/{moved}/move", user=USER, json={"destinationId": "archive"}).status_code == 201
    new = arrive("new")
    items, link, _ = round_of(delta, link=link)
    by_id = {i["id"]: i for i in items}
    assert set(by_id) == {read, deleted, moved, new}  # "kept" did not change
    assert by_id[read]["isRead"] is True and set(by_id[read]) == {"@odata.type", "@odata.etag", "id", "subject",
                                                                    "isRead"}
    assert by_id[new]["subject"] == "new"
    for gone in (deleted, moved):
        assert by_id[gone] == {"@odata.type": "#microsoft.graph.message", "id": gone, "@removed": {"reason": "deleted"}}
    assert kept not in by_id
    assert round_of(delta, link=link)[0] == []


def test_change_type_created_reports_only_arrivals_after_the_first_round(delta, arrive, graph):
    old = arrive("old")
    items, link, _ = round_of(delta, {"changeType": "created"})
    assert [i["id"] for i in items] == [old]  # the first round lists the folder
    graph("PATCH", f"/messages/{old}", user=USER, json={"isRead": True})
    new = arrive("new")
    assert [i["id"] for i in round_of(delta, link=link)[0]] == [new]


@pytest.mark.parametrize("change_type, expected", [("updated", "old"), ("deleted", "gone")])
def test_change_type_updated_and_deleted(delta, arrive, graph, change_type, expected):
    ids = {"old": arrive("old"), "gone": arrive("gone")}
    _, link, _ = round_of(delta, {"changeType": change_type})
    graph("PATCH", f"/messages/{ids['old']}", user=USER, json={"categories": ["Seen"]})
    graph("DELETE", f"/messages/{ids['gone']}", user=USER)
    arrive("new")
    assert [i["id"] for i in round_of(delta, link=link)[0]] == [ids[expected]]


def test_the_one_filter_delta_takes(delta, arrive, graph_emulator):
    arrive("one")
    stamp = graph_emulator.inspect.messages(USER)[0]["receivedDateTime"]
    assert len(round_of(delta, {"$filter": f"receivedDateTime ge {stamp}"})[0]) == 1
    items, _, _ = round_of(delta, {"$filter": f"receivedDateTime gt {stamp}",
                                      "$orderby": "receivedDateTime desc"})
    assert items == []
    for params in ({"$filter": "subject eq 'one'"}, {"$filter": "receivedDateTime lt 2024-01-01T00:00:00Z"},
                   {"$search": "one"}, {"$orderby": "subject"}, {"$skip": "1"}, {"changeType": "moved"},
                   {"$select": "nope"}, {"$expand": "attachments($top=1)"}):
        assert delta(params, expect=400).json()["error"]["message"]


def test_newest_first_and_every_message_once_while_mail_keeps_arriving(delta, arrive):
    first = [arrive(f"m{n}") for n in range(3)]
    answer = delta(headers={"Prefer": "odata.maxpagesize=1"}).json()
    assert [i["id"] for i in answer["value"]] == [first[-1]]
    later = arrive("during the round")
    items, link, _ = round_of(delta, link=answer["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=1"})
    seen = [answer["value"][0]["id"]] + [i["id"] for i in items]
    assert set(first) <= set(seen) and len(seen) == len(set(seen))
    assert later in [i["id"] for i in round_of(delta, link=link)[0]]  # never missed: in this round or the next


def test_immutable_ids_in_delta_and_a_move_out_is_reported_by_it(delta, arrive, graph, graph_emulator):
    message_id = arrive("keep me")
    immutable = graph_emulator.inspect.full_message(message_id)["_immutableId"]
    items, link, _ = round_of(delta, headers=IMMUTABLE)
    assert [i["id"] for i in items] == [immutable]
    graph("POST", f"/messages/{immutable}/move", user=USER, json={"destinationId": "archive"}, headers=IMMUTABLE)
    assert round_of(delta, link=link, headers=IMMUTABLE)[0] == [
        {"@odata.type": "#microsoft.graph.message", "id": immutable, "@removed": {"reason": "deleted"}}]


def test_expired_links_are_410_with_where_to_start_again(delta, arrive, graph_emulator):
    arrive("one")
    _, link, _ = round_of(delta, {"$select": "subject", "changeType": "created"})
    midway = delta(headers={"Prefer": "odata.maxpagesize=1"}).json()
    arrive("two")
    graph_emulator.inbound.expire_delta_links()
    for old in (link, midway["@odata.nextLink"]):
        answer = delta(link=old, expect=410)
        assert answer.json()["error"]["code"] == "syncStateNotFound"
    restart = delta(link=delta(link=link, expect=410).headers["Location"]).json()
    assert sorted(i["subject"] for i in restart["value"]) == ["one", "two"]
    assert set(restart["value"][0]) == {"@odata.type", "@odata.etag", "id", "subject"}  # the round's own options
    graph_emulator.inbound.expire_delta_links(status=400)
    answer = delta(link=restart["@odata.deltaLink"], expect=400)
    assert answer.json()["error"]["code"] == "syncStateNotFound" and "Location" not in answer.headers


def test_a_reset_expires_every_link(delta, arrive, graph_emulator):
    arrive("one")
    _, link, _ = round_of(delta)
    graph_emulator.reset()
    graph_emulator.inbound.receive(to=USER, sender="a@northwind.example", subject="after")
    assert delta(link=link, expect=410).json()["error"]["code"] == "syncStateNotFound"


def test_links_are_used_as_given(delta, arrive, graph, http, graph_emulator):
    arrive("one")
    _, link, _ = round_of(delta)
    assert "used as given" in delta(link=link + "&$select=subject", expect=400).json()["error"]["message"]
    token = dict(parse_qsl(urlsplit(link).query))["$deltatoken"]
    for forged in (token[:-4], "x" * 20, token + "A" * 9000, "eyJ2IjoxfQ"):
        answer = delta(link=link.replace(token, forged), expect=400)
        assert answer.json()["error"]["code"] == "BadRequest"
    other = graph("GET", f"/mailFolders/archive/messages/delta?$deltatoken={token}", user=USER)
    assert other.status_code == 400  # a token of the Inbox is not one of Archive


def test_an_idle_poll_is_one_request_whatever_the_folder_holds(delta, arrive, graph_emulator):
    for n in range(30):
        arrive(f"m{n}")
    _, link, _ = round_of(delta)
    before = len(graph_emulator.inspect.request_log)
    answer = delta(link=link).json()
    assert answer["value"] == [] and "@odata.deltaLink" in answer
    assert len(graph_emulator.inspect.request_log) - before == 1


def test_delta_needs_a_token_and_a_read_role(graph, http, graph_emulator, arrive):
    arrive("one")
    answer = http.get(f"{graph_emulator.base_url}/v1.0/users/{USER}/mailFolders/inbox/messages/delta")
    assert answer.status_code == 401


def test_a_filtered_first_round_stops_at_its_cap(delta, arrive, monkeypatch):
    """"Applying $filter in a delta query returns only up to 5,000 messages" (here 3, to stay quick)."""
    from graph_mail_emulator.faces import delta as delta_face

    monkeypatch.setattr(delta_face, "FILTERED_MAXIMUM", 3)
    for n in range(5):
        arrive(f"m{n}")
    items, _, _ = round_of(delta, {"$filter": "receivedDateTime ge 2000-01-01T00:00:00Z"},
                           headers={"Prefer": "odata.maxpagesize=2"})
    assert [i["subject"] for i in items] == ["m4", "m3", "m2"]  # the newest three, then the round ends
    assert len(round_of(delta)[0]) == 5  # without a filter, no cap
