"""The emulator as Microsoft documents Graph and Entra, checked with plain HTTP (no client code)."""

from __future__ import annotations

import base64
import json
import time

import requests
from graph_http import get_token, simple

from graph_mail_emulator import EmulatorConfig, GraphEmulator
from graph_mail_emulator.__main__ import main as emulator_main


def test_openid_configuration_and_token(http, graph_emulator):
    conf = http.get(f"{graph_emulator.base_url}/{graph_emulator.entra.tenant_id}/v2.0/.well-known/openid-configuration")
    assert conf.status_code == 200
    assert conf.json()["token_endpoint"].endswith("/oauth2/v2.0/token")
    answer = get_token(http, graph_emulator)
    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
    claims = json.loads(base64.urlsafe_b64decode(answer.json()["access_token"].split(".")[1] + "=="))
    assert set(claims["roles"]) == {"Mail.Send", "Mail.ReadWrite"} and claims["tid"] == graph_emulator.entra.tenant_id


def test_a_token_request_that_is_not_utf8_is_refused_as_entra_refuses_it(http, graph_emulator):
    answer = http.post(f"{graph_emulator.base_url}/{graph_emulator.entra.tenant_id}/oauth2/v2.0/token",
                       data=b"grant_type=\xff\xfe&client_id=\xc3", headers={
                           "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"


def test_token_errors(http, graph_emulator):
    wrong = get_token(http, graph_emulator, secret="nope")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert "AADSTS7000215" in wrong.json()["error_description"]
    unknown = get_token(http, graph_emulator, client_id="00000000-0000-0000-0000-000000000001")
    assert unknown.json()["error"] == "unauthorized_client" and unknown.json()["error_codes"] == [700016]
    bad_scope = get_token(http, graph_emulator, scope="Mail.Send")
    assert bad_scope.json()["error"] == "invalid_scope"
    not_graph = get_token(http, graph_emulator, scope="https://vault.azure.net/.default")
    assert "AADSTS500011" in not_graph.json()["error_description"]
    expired_app = graph_emulator.entra.add_app(secret="old", secret_expires_at=time.time() - 1)
    expired = get_token(http, graph_emulator, client_id=expired_app.client_id, secret="old")
    assert "AADSTS7000222" in expired.json()["error_description"]


def test_tokens_expire(http, tmp_path):
    with GraphEmulator(EmulatorConfig(tmp_path, token_lifetime=2)) as emu:
        http.verify = str(emu.ca_path)
        token = get_token(http, emu).json()["access_token"]
        url = f"{emu.base_url}/v1.0/users/{emu.default_sender}/messages"
        assert http.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        time.sleep(2.5)
        expired = http.get(url, headers={"Authorization": f"Bearer {token}"})
        assert expired.status_code == 401
        assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert "expired" in expired.json()["error"]["message"]


def test_missing_or_forged_token_is_401(graph):
    assert graph("POST", "/sendMail", json={"message": simple()},
                 headers={"Authorization": ""}).json()["error"]["code"] == "InvalidAuthenticationToken"
    forged = graph("POST", "/sendMail", json={"message": simple()}, token_override="a.b.c")
    assert forged.status_code == 401


def test_role_required_per_call(http, graph_emulator, graph):
    send_only = graph_emulator.entra.add_app(secret="s1", roles=["Mail.Send"])
    token = get_token(http, graph_emulator, client_id=send_only.client_id, secret="s1").json()["access_token"]
    assert graph("POST", "/sendMail", json={"message": simple()}, token_override=token).status_code == 202
    denied = graph("POST", "/messages", json=simple(), token_override=token)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ErrorAccessDenied"
    read_write_only = graph_emulator.entra.add_app(secret="s2", roles=["Mail.ReadWrite"])
    token = get_token(http, graph_emulator, client_id=read_write_only.client_id, secret="s2").json()["access_token"]
    assert graph("POST", "/sendMail", json={"message": simple()}, token_override=token).status_code == 403


def test_error_body_shape(graph):
    answer = graph("POST", "/messages/AAMkAG" + "A" * 40 + "/send", headers={"client-request-id": "abc"})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "ErrorItemNotFound"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["client-request-id"] == "abc"


def test_parameter_names_and_enums_in_any_case(graph, graph_emulator):
    body = {"Message": {"Subject": "caps", "Body": {"ContentType": "HTML", "Content": "<p>x</p>"},
                        "ToRecipients": [{"EmailAddress": {"Address": "ann@example.com"}}],
                        "Importance": "HIGH"}, "SaveToSentItems": "False"}
    assert graph("POST", "/sendMail", json=body).status_code == 202
    (got,) = graph_emulator.inspect.messages("ann@example.com")
    assert got["body"]["contentType"] == "html" and got["importance"] == "high"
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems") == []


def test_save_to_sent_items_default_true(graph, graph_emulator):
    assert graph("POST", "/sendMail", json={"message": simple()}).status_code == 202
    assert len(graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")) == 1


def test_unknown_property_and_bad_enum(graph):
    unknown = graph("POST", "/sendMail", json={"message": simple(colour="red")})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "RequestBodyRead"
    assert "colour" in unknown.json()["error"]["message"]
    bad_enum = graph("POST", "/sendMail", json={"message": simple(importance="urgent")})
    assert bad_enum.status_code == 400


def test_mentions_only_on_beta(graph, graph_emulator):
    mention = simple(mentions=[{"mentioned": {"name": "Dana", "address": "danas@contoso.com"}}])
    assert graph("POST", "/sendMail", json={"message": mention}).status_code == 400
    assert graph("POST", "/sendMail", json={"message": mention}, version="beta").status_code == 202
    assert graph_emulator.inspect.messages("ann@example.com")[0]["mentions"][0]["mentioned"]["name"] == "Dana"


def test_recipient_rules(graph):
    bad = graph("POST", "/sendMail", json={"message": simple(to="not-an-address")})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "ErrorInvalidRecipients"
    none = graph("POST", "/sendMail", json={"message": {"subject": "x"}})
    assert none.json()["error"]["code"] == "ErrorInvalidRecipients"
    # Over the recipients-per-message limit: accepted, then a 5.5.3 report (test_emulator_transport.py).


def test_custom_header_must_start_with_x(graph):
    answer = graph("POST", "/sendMail", json={"message": simple(
        internetMessageHeaders=[{"name": "Priority", "value": "1"}])})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidInternetMessageHeader"


def test_request_over_4mb_is_413(graph, graph_emulator):
    payload = {"message": simple(attachments=[{"@odata.type": "#microsoft.graph.fileAttachment", "name": "big",
                                               "contentBytes": base64.b64encode(b"x" * 3_200_000).decode()}])}
    answer = graph("POST", "/sendMail", json=payload)
    assert answer.status_code == 413
    assert answer.json()["error"]["message"] == "The maximum request length supported is 4MB."
    assert graph("POST", "/sendMail", json={"message": simple()}).status_code == 202  # connection still fine
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1


def test_bad_base64_mime(graph):
    answer = graph("POST", "/sendMail", data=b"%%% not base64 %%%", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ErrorMimeContentInvalidBase64String"
    assert answer.json()["error"]["message"] == "Invalid base64 string for MIME content."


def test_me_needs_delegated_token(graph):
    answer = graph("POST", "/sendMail", user="me", json={"message": simple()})
    assert answer.status_code == 400 and "delegated" in answer.json()["error"]["message"]


def test_unknown_and_disabled_sender(graph, graph_emulator):
    assert graph("POST", "/sendMail", user="ghost@contoso.com",
                 json={"message": simple()}).json()["error"]["code"] == "ErrorInvalidUser"
    graph_emulator.backend.store.add_user("onprem@contoso.com", rest_enabled=False)
    assert graph("POST", "/sendMail", user="onprem@contoso.com",
                 json={"message": simple()}).json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"


def test_every_recipient_gets_a_copy_and_bcc_stays_hidden(graph, graph_emulator):
    message = simple(ccRecipients=[{"emailAddress": {"address": "cc@example.com"}}],
                     bccRecipients=[{"emailAddress": {"address": "secret@example.com"}}],
                     flag={"flagStatus": "Flagged"}, importance="low",
                     internetMessageHeaders=[{"name": "x-run", "value": "42"}])
    assert graph("POST", "/sendMail", json={"message": message}).status_code == 202
    for address in ("ann@example.com", "cc@example.com", "secret@example.com"):
        (copy,) = graph_emulator.inspect.messages(address)
        assert "bccRecipients" not in copy
        assert copy["flag"]["flagStatus"] == "flagged" and copy["importance"] == "low"
        assert copy["internetMessageHeaders"] == [{"name": "x-run", "value": "42"}]
    (sent,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
    assert sent["bccRecipients"][0]["emailAddress"]["address"] == "secret@example.com"


def test_draft_lifecycle(graph, graph_emulator):
    created = graph("POST", "/messages", json=simple())
    assert created.status_code == 201
    draft = created.json()
    assert draft["isDraft"] is True and draft["webLink"].startswith(graph_emulator.base_url)
    assert {"id", "createdDateTime", "conversationId", "parentFolderId", "body"} <= set(draft)
    assert "internetMessageHeaders" not in draft
    assert graph("GET", f"/messages/{draft['id']}").json()["subject"] == "Hi"
    assert [m["id"] for m in graph("GET", "/mailFolders/drafts/messages").json()["value"]] == [draft["id"]]
    sent = graph("POST", f"/messages/{draft['id']}/send", headers={"Content-Length": "0"})
    assert sent.status_code == 202 and sent.content == b""
    assert graph("GET", f"/messages/{draft['id']}").status_code == 404
    assert graph("POST", f"/messages/{draft['id']}/send").status_code == 404
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1


def test_draft_in_named_folder_and_unknown_folder(graph, graph_emulator):
    assert graph("POST", "/mailFolders/Inbox/messages", json=simple()).status_code == 201
    assert len(graph_emulator.inspect.messages(graph_emulator.default_sender, "inbox")) == 1
    assert graph("POST", "/mailFolders/nope/messages", json=simple()).status_code == 404


def test_inspection_api_and_eml(http, graph, graph_emulator, tmp_path):
    attachment = {"@odata.type": "#microsoft.graph.fileAttachment", "name": "r.csv", "contentType": "text/csv",
                  "contentBytes": base64.b64encode(b"a,b\n").decode()}
    graph("POST", "/sendMail", json={"message": simple(attachments=[attachment])})
    boxes = http.get(f"{graph_emulator.base_url}/_emulator/mailboxes").json()["value"]
    assert {b["address"]: b["folders"] for b in boxes}["ann@example.com"] == {"inbox": 1}
    (message,) = http.get(f"{graph_emulator.base_url}/_emulator/mailboxes/ann@example.com/inbox",
                          params={"content": "true"}).json()["value"]
    assert base64.b64decode(message["attachments"][0]["contentBytes"]) == b"a,b\n"
    eml = http.get(f"{graph_emulator.base_url}/_emulator/messages/{message['id']}.eml")
    assert eml.headers["Content-Type"] == "message/rfc822" and b"Subject: Hi" in eml.content
    (path,) = graph_emulator.inspect.export_eml("ann@example.com", tmp_path)
    assert path.read_bytes() == eml.content
    log = http.get(f"{graph_emulator.base_url}/_emulator/requests").json()["value"]
    assert [r["status"] for r in log if r["path"].endswith("/sendMail")] == [202]


def test_state_persists_and_cli_exports(tmp_path, capsys):
    with GraphEmulator(tmp_path) as emu:
        session = requests.Session()
        session.verify = str(emu.ca_path)
        session.trust_env = False
        token = get_token(session, emu).json()["access_token"]
        session.post(f"{emu.base_url}/v1.0/users/{emu.default_sender}/sendMail", json={"message": simple()},
                     headers={"Authorization": f"Bearer {token}"})
        connection = json.loads((tmp_path / "airflow-connection.json").read_text())
        assert connection["extra"]["ca_bundle"] == str(emu.ca_path)
    again = GraphEmulator(tmp_path)
    assert again.entra.default_app.client_id == connection["login"]
    assert len(again.inspect.messages("ann@example.com")) == 1
    assert emulator_main(["--state-dir", str(tmp_path), "--export-eml", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "ann@example.com").is_dir()


def test_cross_site_changes_are_refused(http, graph, graph_emulator):
    """A page on another site must not be able to wipe the mailboxes (a form POST or a fetch)."""
    graph("POST", "/sendMail", json={"message": simple()})
    reset = f"{graph_emulator.base_url}/_emulator/reset"
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "https://other.localhost"}):
        refused = http.post(reset, headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "CrossSiteRequestRefused"
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1
    assert http.post(reset).status_code == 204  # curl, a test, a script: no browser headers
    assert graph_emulator.inspect.messages("ann@example.com") == []


def test_a_reset_through_http_does_not_wait_for_itself(http, graph, graph_emulator):
    """A reset lets requests being answered finish first; the reset's own request was one of them, so every
    POST /_emulator/reset waited the whole settle time (30 s) before this was fixed."""
    graph("POST", "/sendMail", json={"message": simple()})
    assert http.post(f"{graph_emulator.base_url}/_emulator/reset", timeout=10).status_code == 204
    assert graph_emulator.inspect.messages("ann@example.com") == []


def test_foreign_host_names_are_refused(http, graph, graph_emulator):
    """DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own name as Host."""
    port = graph_emulator.site.port
    for path in ("/_emulator/mailboxes", "/", f"/v1.0/users/{graph_emulator.default_sender}/messages"):
        refused = http.get(graph_emulator.base_url + path, headers={"Host": f"rebind.evil.example:{port}"})
        assert refused.status_code == 403 and "does not answer to the host name 'rebind.evil.example'" in refused.text
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert http.get(f"{graph_emulator.base_url}/_emulator/mailboxes", headers={"Host": host}).status_code == 200


def test_every_answer_says_nosniff(http, graph, graph_emulator):
    answers = [http.get(f"{graph_emulator.base_url}/_emulator/mailboxes"), graph("GET", "/messages"),
               graph("POST", "/sendMail", json={}), get_token(http, graph_emulator), http.get(graph_emulator.base_url),
               http.get(f"{graph_emulator.base_url}/no/such/path")]
    assert {a.headers.get("X-Content-Type-Options") for a in answers} == {"nosniff"}


def test_state_files_holding_secrets_are_owner_only(tmp_path):
    with GraphEmulator(tmp_path):
        names = ("emulator.json", "airflow-connection.json")
        modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in names}
    assert modes == {"emulator.json": 0o600, "airflow-connection.json": 0o600}


def test_listening_beyond_loopback_warns(tmp_path):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "graph_mail_emulator", "--host", "0.0.0.0", "--port",
                                "0", "--state-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        warning = process.stderr.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert warning.startswith("WARNING: listening on 0.0.0.0") and "no sign-in" in warning


def test_ctrl_c_stops_the_command_even_when_a_script_started_it_in_the_background(tmp_path):
    """A script's ``graph-mail-emulator &`` starts it with SIGINT ignored (bash: no job control); Ctrl-C (or
    ``kill -INT``) must still stop it, as SIGTERM does."""
    import signal
    import subprocess
    import sys

    import requests

    as_a_background_job = 'trap "" INT; exec "$0" -m graph_mail_emulator --port 0 --state-dir "$1"'
    process = subprocess.Popen(["bash", "-c", as_a_background_job, sys.executable, str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline()]
        while lines[-1] and not lines[-1].startswith("Managed identity"):  # printed just before it waits
            lines.append(process.stdout.readline())
        assert lines[-1].startswith("Managed identity"), lines
        url = lines[0].split(" on ", 1)[1].strip()
        answer = requests.get(f"{url}/_emulator/mailboxes", verify=str(tmp_path / "tls" / "ca.pem"), timeout=10)
        assert answer.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_the_command_has_a_fixed_port_and_imports_nothing_of_airflow(tmp_path):
    import socket
    import subprocess
    import sys
    from pathlib import Path

    command = Path(sys.executable).parent / "graph-mail-emulator"  # the console script the package installs
    usage = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=True).stdout
    assert "default 8443" in usage and "0 picks a free port" in usage
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run([str(command), "--port", str(port), "--state-dir", str(tmp_path)],
                                 capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in refused.stderr
    assert "--port 0 for a free one" in refused.stderr
    imported = subprocess.run([sys.executable, "-c", "import sys, graph_mail_emulator.__main__, "
                               "graph_mail_emulator.pytest_plugin; print(sorted({m.split('.')[0] for m in "
                               "sys.modules} & {'airflow', 'airflow_graph_mail', 'msal', 'requests'}))"],
                              capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"  # any project's tests can use it, Airflow or not
    package = subprocess.run([sys.executable, "-c", "import sys, graph_mail_emulator; print(sorted({m.split('.')[0] "
                              "for m in sys.modules} & {'pytest', '_pytest'}))"], capture_output=True, text=True,
                             check=True).stdout
    assert package.strip() == "[]"  # the pytest plugin is pytest's to load: the package itself needs no pytest


LINE_BREAKS = {
    "subject": "Weekly report\r\nBcc: evil@evil.example",
    "name": 'Ann "the boss", <x@evil.example>\r\nBcc: evil@evil.example',
    "header": "run 7\r\nBcc: evil@evil.example",
}


def _headers_of(raw: bytes):
    from email import policy
    from email.parser import BytesParser

    return BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)


def test_line_breaks_in_a_subject_or_a_name_are_kept_and_written_safely(graph, graph_emulator, http, tmp_path):
    """Graph keeps a subject or a display name as given; every MIME the emulator writes of it ($value, the
    .eml export, the viewer's source) holds it on one line, so it can never add a header or a recipient."""
    message = simple(subject=LINE_BREAKS["subject"],
                     toRecipients=[{"emailAddress": {"address": "ann@example.com", "name": LINE_BREAKS["name"]}}],
                     internetMessageHeaders=[{"name": "x-run", "value": LINE_BREAKS["header"]}])
    assert graph("POST", "/sendMail", json={"message": message}).status_code == 202
    draft = graph("POST", "/messages", json=simple(to="ann@example.com\r\nBcc: evil@evil.example")).json()
    (received,) = graph_emulator.inspect.messages("ann@example.com")
    (sent,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
    assert received["subject"] == sent["subject"] == LINE_BREAKS["subject"]  # stored as given
    for message_id in (sent["id"], draft["id"], received["id"]):
        value = graph("GET", f"/messages/{message_id}/$value") if message_id != received["id"] else None
        assert value is None or value.status_code == 200, value.text
        for raw in ([value.content] if value else []) + [
                http.get(f"{graph_emulator.base_url}/_emulator/messages/{message_id}.eml").content,
                http.get(f"{graph_emulator.base_url}/_viewer/messages/{message_id}/source").content]:
            headers = _headers_of(raw)
            assert "Bcc" not in headers and len(headers.get_all("Subject")) == 1
            assert len(headers["To"].addresses) == 1
        assert http.get(f"{graph_emulator.base_url}/_viewer/messages/{message_id}").status_code == 200
    headers = _headers_of(graph_emulator.inspect.eml(received["id"]))
    assert str(headers["Subject"]) == "Weekly report  Bcc: evil@evil.example"
    assert headers["To"].addresses[0].addr_spec == "ann@example.com"
    assert headers["To"].addresses[0].display_name == 'Ann "the boss", <x@evil.example>  Bcc: evil@evil.example'
    assert str(headers["x-run"]) == "run 7  Bcc: evil@evil.example"
    assert len(graph_emulator.inspect.export_eml(graph_emulator.default_sender, tmp_path, "sentitems")) == 1


def test_a_bounce_of_a_message_with_a_line_break_in_its_subject(graph, graph_emulator):
    graph_emulator.backend.bounces.delay = 0
    graph_emulator.backend.bounces.add("gone@example.com", "5.1.1")
    sent = graph("POST", "/sendMail", json={"message": simple(to="gone@example.com", subject="a\r\nb")})
    assert sent.status_code == 202, sent.text
    (report,) = graph_emulator.inspect.messages(graph_emulator.default_sender)
    assert report["subject"] == "Undeliverable: a\r\nb"
    assert str(_headers_of(graph_emulator.inspect.eml(report["id"]))["Subject"]) == "Undeliverable: a  b"


def test_mime_in_a_charset_python_does_not_know_is_read(graph, graph_emulator, http):
    """A MIME body in an unknown charset, with a subject whose encoded word hides a line break: accepted, read
    as UTF-8, shown by the viewer (never a 500)."""
    raw = (b"From: airflow@contoso.com\r\nTo: ann@example.com\r\nSubject: =?utf-8?q?caf=C3=A9=0D=0AX-Injected:_1?=\r\n"
           b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nbody text\r\n")
    answer = graph("POST", "/sendMail", data=base64.b64encode(raw), headers={"Content-Type": "text/plain"})
    assert answer.status_code == 202, answer.text
    (received,) = graph_emulator.inspect.messages("ann@example.com")
    assert received["body"]["content"].strip() == "body text" and received["subject"] == "café\r\nX-Injected: 1"
    page = http.get(f"{graph_emulator.base_url}/_viewer/messages/{received['id']}")
    assert page.status_code == 200 and "body text" in page.text


def test_private_files_are_created_private(tmp_path, graph, monkeypatch):
    """The server key, the credentials, the mailboxes (and SQLite's journal of them) and upload files are
    private from the moment they exist: no chmod afterwards, which would leave a window."""
    import os

    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)  # only the mode given at creation counts
    previous = os.umask(0o022)
    try:
        with GraphEmulator(tmp_path) as emu:
            session = requests.Session()
            session.verify, session.trust_env = str(emu.ca_path), False
            token = get_token(session, emu).json()["access_token"]
            url = f"{emu.base_url}/v1.0/users/{emu.default_sender}/messages"
            draft = session.post(url, json=simple(), headers={"Authorization": f"Bearer {token}"}).json()
            created = session.post(f"{url}/{draft['id']}/attachments/createUploadSession", json={"AttachmentItem": {
                "attachmentType": "file", "name": "big.bin", "size": 4_000_000}},
                headers={"Authorization": f"Bearer {token}"})
            assert created.status_code == 201
            (upload,) = (tmp_path / "uploads").iterdir()
            files = [tmp_path / name for name in ("emulator.json", "airflow-connection.json", "tls/server-key.pem",
                                                   "mail.sqlite", "mail.sqlite-wal")] + [upload]
            modes = {str(path.relative_to(tmp_path)): oct(path.stat().st_mode & 0o777) for path in files}
    finally:
        os.umask(previous)
    assert set(modes.values()) == {oct(0o600)}, modes


def test_a_state_directory_from_before_is_made_private(tmp_path):
    with GraphEmulator(tmp_path):
        pass
    (tmp_path / "mail.sqlite").chmod(0o644)
    with GraphEmulator(tmp_path):
        assert (tmp_path / "mail.sqlite").stat().st_mode & 0o777 == 0o600


def test_paths_handed_out_are_absolute(tmp_path, monkeypatch, capsys):
    """A scheduler started in another directory must find the CA bundle the emulator wrote."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    with GraphEmulator(".emulator") as emu:
        written = json.loads((tmp_path / ".emulator" / "airflow-connection.json").read_text())
        bundles = [emu.connection()["extra"]["ca_bundle"], written["extra"]["ca_bundle"], str(emu.ca_path)]
        emu.backend.delivery.send_new(emu.backend.store.find_mailbox(emu.default_sender), simple(), [], True)
        exported = emu.inspect.export_eml("ann@example.com", "out")
    monkeypatch.chdir("/")
    assert all(Path(bundle).is_absolute() and Path(bundle).is_file() for bundle in bundles), bundles
    assert [path.parent for path in exported] == [tmp_path / "out"] and emu.state_dir == tmp_path / ".emulator"
    monkeypatch.chdir(tmp_path)
    assert emulator_main(["--state-dir", ".emulator", "--export-eml", "exported"]) == 0
    (printed,) = capsys.readouterr().out.split()
    assert Path(printed).is_absolute() and Path(printed).parent == tmp_path / "exported" / "ann@example.com"
