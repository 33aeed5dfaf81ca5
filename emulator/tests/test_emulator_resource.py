"""The message resource as Graph returns it (properties, order, casing, types), the query options clients
send on message lists, and Graph's answers to malformed ids, wrong methods and missing tokens."""

from __future__ import annotations

import base64
import datetime as dt
import time
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
from graph_http import simple

# Graph's documented order for a message (create-message page), restated here on purpose: the emulator's
# own list is what is under test.
DOCUMENTED_ORDER = [
    "@odata.context", "@odata.etag", "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories",
    "receivedDateTime", "sentDateTime", "hasAttachments", "internetMessageId", "subject", "bodyPreview",
    "importance", "parentFolderId", "conversationId", "conversationIndex", "isDeliveryReceiptRequested",
    "isReadReceiptRequested", "isRead", "isDraft", "webLink", "inferenceClassification", "body", "sender",
    "from", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "flag",
]
STAMP = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"}
RECIPIENT = {"type": "object", "additionalProperties": False, "required": ["emailAddress"], "properties": {
    "emailAddress": {"type": "object", "additionalProperties": False, "required": ["address"],
                     "properties": {"address": {"type": "string"}, "name": {"type": "string"}}}}}
RECIPIENTS = {"type": "array", "items": RECIPIENT}
# The message type's properties and their types, as Graph's metadata (microsoft.graph.message and the
# outlookItem it extends) defines them; nothing else may appear.
MESSAGE_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "@odata.context": {"type": "string"}, "@odata.etag": {"type": "string", "pattern": r'^W/".+"$'},
        "id": {"type": "string"}, "createdDateTime": STAMP, "lastModifiedDateTime": STAMP,
        "changeKey": {"type": "string"}, "categories": {"type": "array", "items": {"type": "string"}},
        "receivedDateTime": STAMP, "sentDateTime": STAMP, "hasAttachments": {"type": "boolean"},
        "internetMessageId": {"type": "string", "pattern": "^<.+@.+>$"}, "subject": {"type": "string"},
        "bodyPreview": {"type": "string", "maxLength": 255},
        "importance": {"enum": ["low", "normal", "high"]}, "parentFolderId": {"type": "string"},
        "conversationId": {"type": "string"}, "conversationIndex": {"type": "string"},
        "isDeliveryReceiptRequested": {"type": ["boolean", "null"]},
        "isReadReceiptRequested": {"type": "boolean"}, "isRead": {"type": "boolean"},
        "isDraft": {"type": "boolean"}, "webLink": {"type": "string"},
        "inferenceClassification": {"enum": ["focused", "other"]},
        "body": {"type": "object", "additionalProperties": False, "required": ["contentType", "content"],
                 "properties": {"contentType": {"enum": ["text", "html"]}, "content": {"type": "string"}}},
        "uniqueBody": {"type": "object"},
        "sender": RECIPIENT, "from": RECIPIENT, "toRecipients": RECIPIENTS, "ccRecipients": RECIPIENTS,
        "bccRecipients": RECIPIENTS, "replyTo": RECIPIENTS,
        "flag": {"type": "object", "required": ["flagStatus"],
                 "properties": {"flagStatus": {"enum": ["notFlagged", "complete", "flagged"]}}},
        "internetMessageHeaders": {"type": "array", "items": {"type": "object", "required": ["name", "value"]}},
    },
}


def game_night():
    """Like the first example on Microsoft's create-message page (our own words and values)."""
    return {"subject": "Did you catch the match?", "importance": "Low",
            "body": {"contentType": "HTML", "content": "They were <b>brilliant</b>!"},
            "toRecipients": [{"emailAddress": {"address": "AdeleV@contoso.com"}}]}


def test_create_get_and_list_answer_the_documented_message(graph, graph_emulator):
    created = graph("POST", "/messages", json=game_night())
    assert created.status_code == 201
    message = created.json()
    jsonschema.validate(message, MESSAGE_SCHEMA)
    assert list(message) == DOCUMENTED_ORDER
    sender = graph_emulator.default_sender.replace("@", "%40")
    assert message["@odata.context"] == f"{graph_emulator.base_url}/v1.0/$metadata#users('{sender}')/messages/$entity"
    assert message["@odata.etag"] == f'W/"{message["changeKey"]}"'
    assert message["bodyPreview"] == "They were brilliant!" and message["importance"] == "low"
    assert message["isDraft"] is True and message["isRead"] is True
    assert message["receivedDateTime"] == message["sentDateTime"] == message["createdDateTime"]
    assert message["inferenceClassification"] == "focused" and message["categories"] == []
    assert message["isDeliveryReceiptRequested"] is False and message["isReadReceiptRequested"] is False
    index = base64.b64decode(message["conversationIndex"])
    assert len(index) == 22 and index[0] == 1  # Exchange's header block: reserved byte, time, GUID

    fetched = graph("GET", f"/messages/{message['id']}").json()
    assert fetched == message  # same properties, same order, same etag while unchanged
    listed = graph("GET", "/messages").json()
    assert listed["@odata.context"] == f"{graph_emulator.base_url}/v1.0/$metadata#users('{sender}')/messages"
    assert [list(m) for m in listed["value"]] == [DOCUMENTED_ORDER[1:]]
    for item in listed["value"]:
        jsonschema.validate(item, MESSAGE_SCHEMA)

    time.sleep(1.1)  # a second later, so the modification time moves
    changed = graph("PATCH", f"/messages/{message['id']}", json={"subject": "Changed"}).json()
    assert changed["changeKey"] != message["changeKey"] and changed["subject"] == "Changed"


def test_sent_and_received_copies_carry_their_times(graph, graph_emulator):
    graph_emulator.backend.store.add_user("AdeleV@contoso.com")
    sent = graph("POST", "/sendMail", json={"message": {**game_night(), "isReadReceiptRequested": True}})
    assert sent.status_code == 202
    received = graph("GET", "/messages", user="AdeleV@contoso.com").json()["value"][0]
    jsonschema.validate(received, MESSAGE_SCHEMA)
    assert received["isDraft"] is False and received["isRead"] is False
    assert received["isReadReceiptRequested"] is True and received["bccRecipients"] == []
    assert received["sentDateTime"] <= received["receivedDateTime"]


def test_select_returns_the_id_and_what_was_asked(graph, graph_emulator):
    created = graph("POST", "/messages", json=game_night()).json()
    picked = graph("GET", f"/messages/{created['id']}", params={"$select": "Subject,from,internetMessageHeaders"})
    assert list(picked.json()) == ["@odata.context", "@odata.etag", "id", "subject", "from", "internetMessageHeaders"]
    assert picked.json()["@odata.context"].endswith("/messages(subject,from,internetMessageHeaders)/$entity")
    listed = graph("GET", "/messages", params={"$select": "subject"}).json()
    assert listed["@odata.context"].endswith("/messages(subject)") and list(listed["value"][0]) == [
        "@odata.etag", "id", "subject"]
    unknown = graph("GET", "/messages", params={"$select": "subject,colour"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == ("Could not find a property named 'colour' on type "
                                                  "'microsoft.graph.message'.")


@pytest.fixture
def mailbox(graph, graph_emulator):
    """25 drafts: subjects 'Report 00'..'Report 24', importance cycling, every fifth with a category, an
    extended property and a distinct recipient; created one after another (newest last)."""
    ids = []
    for n in range(25):
        message = {"subject": f"Report {n:02d}", "importance": ("low", "normal", "high")[n % 3],
                   "body": {"contentType": "Text", "content": "pizza tonight" if n == 7 else "numbers"},
                   "toRecipients": [{"emailAddress": {"address": "vip@contoso.com" if n % 5 == 0 else
                                                      "team@contoso.com"}}]}
        if n % 5 == 0:
            message["categories"] = ["Finance"]
            message["singleValueExtendedProperties"] = [{"id": "String {66f5a359-4659-4830-9070-00047ec6ac6e} "
                                                         "Name Batch", "value": f"batch-{n}"}]
        ids.append(graph("POST", "/messages", json=message).json()["id"])
    return ids


def subjects(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [m["subject"] for m in answer.json()["value"]]


def test_paging_by_next_link_visits_every_message_once(graph, graph_emulator, mailbox, http):
    answer = graph("GET", "/messages", params={"$top": "10", "$count": "true", "$select": "subject"})
    seen = subjects(answer)
    assert answer.json()["@odata.count"] == 25
    assert seen[0] == "Report 24"  # newest first
    link = answer.json()["@odata.nextLink"]
    while link:
        assert parse_qs(urlsplit(link).query)["$top"] == ["10"]  # the next page repeats the query
        page = http.get(link, headers={"Authorization": answer.request.headers["Authorization"]})
        seen += subjects(page)
        link = page.json().get("@odata.nextLink")
    assert seen == [f"Report {n:02d}" for n in range(24, -1, -1)]
    default = graph("GET", "/messages")
    assert len(default.json()["value"]) == 10
    assert parse_qs(urlsplit(default.json()["@odata.nextLink"]).query) == {"$skip": ["10"]}
    preferred = graph("GET", "/messages", headers={"Prefer": "odata.maxpagesize=4"})
    assert len(preferred.json()["value"]) == 4 and preferred.headers["Preference-Applied"] == "odata.maxpagesize=4"
    assert subjects(graph("GET", "/messages", params={"$skip": "23"})) == ["Report 01", "Report 00"]


def test_orderby(graph, mailbox):
    assert subjects(graph("GET", "/messages", params={"$orderby": "subject", "$top": "3"})) == [
        "Report 00", "Report 01", "Report 02"]
    by_importance = subjects(graph("GET", "/messages", params={"$orderby": "importance desc,subject asc",
                                                                "$top": "2"}))
    assert by_importance == ["Report 02", "Report 05"]
    assert graph("GET", "/messages", params={"$orderby": "colour"}).status_code == 400


@pytest.mark.parametrize("expression, expected", [
    ("subject eq 'report 07'", ["Report 07"]),
    ("importance eq 'high' and isDraft eq true", [f"Report {n:02d}" for n in range(23, -1, -1) if n % 3 == 2]),
    ("startswith(subject,'Report 2')", ["Report 24", "Report 23", "Report 22", "Report 21", "Report 20"]),
    ("contains(subject, '1') and not (importance eq 'low')", ["Report 19", "Report 17", "Report 16", "Report 14",
                                                             "Report 13", "Report 11", "Report 10", "Report 01"]),
    ("toRecipients/any(r: r/emailAddress/address eq 'VIP@contoso.com')",
     ["Report 20", "Report 15", "Report 10", "Report 05", "Report 00"]),
    ("categories/any(c: c eq 'Finance') and subject eq 'Report 15'", ["Report 15"]),
    ("singleValueExtendedProperties/Any(ep: ep/id eq 'String {66f5a359-4659-4830-9070-00047ec6ac6e} Name Batch' "
     "and ep/value eq 'batch-10')", ["Report 10"]),
    ("subject eq 'Report 03' or subject eq 'Report 04'", ["Report 04", "Report 03"]),
    ("hasAttachments eq true", []),
])
def test_filter_forms(graph, mailbox, expression, expected):
    assert subjects(graph("GET", "/messages", params={"$filter": expression, "$top": "50"})) == expected


def test_filter_on_dates(graph, mailbox):
    everything = graph("GET", "/messages", params={"$top": "50"}).json()["value"]
    cutoff = max(m["receivedDateTime"] for m in everything)
    later = subjects(graph("GET", "/messages", params={"$filter": f"receivedDateTime ge {cutoff}", "$top": "50"}))
    earlier = subjects(graph("GET", "/messages", params={"$filter": f"receivedDateTime lt {cutoff}", "$top": "50"}))
    assert sorted(later + earlier) == sorted(m["subject"] for m in everything) and later
    tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert subjects(graph("GET", "/messages", params={"$filter": f"receivedDateTime gt {tomorrow}"})) == []


@pytest.mark.parametrize("params, code, message", [
    ({"$filter": "colour eq 'blue'"}, "BadRequest",
     "Could not find a property named 'colour' on type 'microsoft.graph.message'."),
    ({"$filter": "subject eq"}, "BadRequest", "Invalid filter clause: expected a value at the end."),
    ({"$filter": "subject eq 'x' and"}, "BadRequest", None),
    ({"$filter": "subject eq 'a'", "$orderby": "receivedDateTime desc"}, "InefficientFilter",
     "The restriction or sort order is too complex for this operation."),
    ({"$search": '"pizza"', "$filter": "isRead eq true"}, "ErrorInvalidUrlQuery",
     "The query parameter '$filter' is not supported with '$search'."),
    ({"$search": '"pizza"', "$orderby": "subject"}, "ErrorInvalidUrlQuery", None),
    ({"$top": "ten"}, "BadRequest", None),
    ({"$skip": "-1"}, "BadRequest", None),
    ({"$count": "maybe"}, "BadRequest", None),
    ({"$expand": "colour"}, "BadRequest", None),  # attachments expand (test_emulator_attachment_reads.py)
    ({"$colour": "1"}, "BadRequest", None),
])
def test_query_options_graph_refuses(graph, mailbox, params, code, message):
    answer = graph("GET", "/messages", params=params)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == code
    if message:
        assert answer.json()["error"]["message"] == message


def test_filter_with_the_orderby_it_allows(graph, mailbox):
    allowed = graph("GET", "/messages", params={"$filter": "importance eq 'high'", "$orderby": "importance desc",
                                                 "$top": "2"})
    assert allowed.status_code == 200 and len(allowed.json()["value"]) == 2


def test_search(graph, mailbox):
    assert subjects(graph("GET", "/messages", params={"$search": '"pizza"'})) == ["Report 07"]
    assert subjects(graph("GET", "/messages", params={"$search": '"subject:report 2"', "$top": "50"})) == [
        "Report 24", "Report 23", "Report 22", "Report 21", "Report 20", "Report 12", "Report 02"]
    assert len(subjects(graph("GET", "/messages", params={"$search": '"to:vip"'}))) == 5
    assert subjects(graph("GET", "/messages", params={"$search": "nothing-like-this"})) == []


def test_folder_lists_say_their_folder(graph, mailbox):
    answer = graph("GET", "/mailFolders/Drafts/messages", params={"$top": "1"})
    assert answer.json()["@odata.context"].endswith("/mailFolders('Drafts')/messages")
    assert len(answer.json()["value"]) == 1
    assert graph("GET", "/mailFolders/inbox/messages").json()["value"] == []


@pytest.mark.parametrize("method, path", [
    ("GET", "/messages/nope"), ("PATCH", "/messages/nope"), ("DELETE", "/messages/nope"),
    ("POST", "/messages/nope/send"), ("POST", "/messages/AAMkAGshort/attachments"),
    ("GET", "/messages/AAMk AG with spaces and more than twenty"),
])
def test_malformed_ids_are_400(graph, method, path):
    answer = graph(method, path, json={} if method in ("PATCH", "POST") and "attachments" in path else None)
    assert answer.status_code == 400
    assert answer.json()["error"] | {"innerError": None} == {"code": "ErrorInvalidIdMalformed",
                                                             "message": "Id is malformed.", "innerError": None}


def test_well_formed_ids_that_name_nothing_are_404(graph):
    missing = "AAMkAG" + "A" * 40
    for method, path in (("GET", f"/messages/{missing}"), ("POST", f"/messages/{missing}/send"),
                         ("DELETE", f"/messages/{missing}")):
        answer = graph(method, path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "ErrorItemNotFound"


def test_wrong_method_is_405(graph):
    answer = graph("GET", "/sendMail")
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "ErrorInvalidRequest"
    assert answer.json()["error"]["message"] == "The OData request is not supported."
    assert answer.headers["Allow"] == "POST"
    assert graph("PUT", "/messages").headers["Allow"] == "GET, POST"


def test_401_says_where_to_sign_in(graph, graph_emulator):
    answer = graph("GET", "/messages", headers={"Authorization": ""})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == (
        f'Bearer realm="", authorization_uri="{graph_emulator.base_url}/common/oauth2/authorize", '
        'client_id="00000003-0000-0000-c000-000000000000"')


def test_client_request_id_is_echoed_or_made(graph):
    sent = graph("POST", "/messages/nope/send", headers={"client-request-id": "abc"})
    assert sent.headers["client-request-id"] == "abc" == sent.json()["error"]["innerError"]["client-request-id"]
    made = graph("POST", "/messages/nope/send")
    generated = made.headers["client-request-id"]
    assert len(generated) == 36 and made.json()["error"]["innerError"]["client-request-id"] == generated
    assert graph("GET", "/messages").headers["client-request-id"]


def test_chunked_request_bodies_are_read(graph, graph_emulator):
    import json

    payload = json.dumps({"message": simple(to="chunked@fabrikam.com")}).encode()
    answer = graph("POST", "/sendMail", data=iter([payload[:20], payload[20:]]),
                   headers={"Content-Type": "application/json"})
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 202
    assert [m["subject"] for m in graph_emulator.inspect.messages("chunked@fabrikam.com")] == ["Hi"]


def test_search_takes_an_apostrophe(graph, mailbox):
    graph("POST", "/messages", json={"subject": "Notes for O'Brien", "body": {"contentType": "text", "content": "x"}})
    assert subjects(graph("GET", "/messages", params={"$search": '"O\'Brien"'})) == ["Notes for O'Brien"]
    assert subjects(graph("GET", "/messages", params={"$search": '"subject:o\'brien notes"'})) == ["Notes for O'Brien"]


def test_filters_nest_as_deep_as_real_ones_do(graph, mailbox):
    deep = "(" * 60 + "subject eq 'Report 07'" + ")" * 60
    assert subjects(graph("GET", "/messages", params={"$filter": deep})) == ["Report 07"]
    negated = "not " * 40 + "subject eq 'Report 07'"  # an even number of nots
    assert subjects(graph("GET", "/messages", params={"$filter": negated, "$top": "1"})) == ["Report 07"]


def test_a_page_size_asked_beyond_reason_is_the_maximum(graph, mailbox):
    answer = graph("GET", "/messages", headers={"Prefer": "odata.maxpagesize=" + "9" * 5000})
    assert answer.status_code == 200 and answer.headers["Preference-Applied"] == "odata.maxpagesize=1000"
    assert len(answer.json()["value"]) == 25


MESSAGE_CLASS = "singleValueExtendedProperties($filter=id eq 'String 0x001A')"
BATCH = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name Batch"


def test_expand_extended_properties_as_documented(graph, mailbox):
    """Microsoft's documented way to read a message's extended properties: the message class of any message,
    a named property where it was set; they come last; a message without any of them shows none."""
    one = graph("GET", f"/messages/{mailbox[7]}", params={"$expand": MESSAGE_CLASS})
    assert one.status_code == 200, one.text
    assert list(one.json())[-2:] == ["flag", "singleValueExtendedProperties"]
    assert one.json()["singleValueExtendedProperties"] == [{"id": "String 0x1a", "value": "IPM.Note"}]
    picked = graph("GET", f"/messages/{mailbox[10]}", params={
        "$select": "subject", "$expand": f"SingleValueExtendedProperties($filter=Id eq '{BATCH}' or "
                                         "(id eq 'String 0x1a'))"}).json()
    assert list(picked) == ["@odata.context", "@odata.etag", "id", "subject", "singleValueExtendedProperties"]
    assert picked["singleValueExtendedProperties"] == [{"id": BATCH, "value": "batch-10"},
                                                       {"id": "String 0x1a", "value": "IPM.Note"}]
    listed = graph("GET", "/messages", params={"$top": "6", "$select": "subject",
                                                "$expand": f"singleValueExtendedProperties($filter=id eq '{BATCH}')"})
    assert listed.status_code == 200, listed.text
    shown = {m["subject"]: m.get("singleValueExtendedProperties") for m in listed.json()["value"]}
    assert shown == {"Report 24": None, "Report 23": None, "Report 22": None, "Report 21": None,
                     "Report 20": [{"id": BATCH, "value": "batch-20"}], "Report 19": None}
    for message in listed.json()["value"]:
        jsonschema.validate({k: v for k, v in message.items() if k != "singleValueExtendedProperties"},
                            MESSAGE_SCHEMA)
