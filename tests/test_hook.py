"""GraphMailHook over a real connection to the emulator: credentials, TLS, errors, token reuse."""

from __future__ import annotations

import pytest
from helpers import make_certificate, token_requests

from airflow_graph_mail import (
    AccessDeniedError,
    GraphAuthError,
    GraphConfigError,
    InvalidRecipientsError,
    ItemNotFoundError,
    MailboxNotEnabledError,
    MessageValidationError,
)
from airflow_graph_mail.mail.message import Message


def test_send_and_token_reused(hook, graph_emulator):
    hook.send_mail(Message(to="a@example.com", subject="one"))
    hook.send_mail(Message(to="a@example.com", subject="two"))
    assert [m["subject"] for m in graph_emulator.inspect.messages("a@example.com")] == ["two", "one"]
    assert token_requests(graph_emulator) == 1


def test_ca_bundle_wins_over_requests_ca_bundle_env(hook, graph_emulator, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    hook.send_mail(Message(to="a@example.com", subject="tls"))
    assert len(graph_emulator.inspect.messages("a@example.com")) == 1


def test_without_ca_bundle_tls_is_verified_against_system_cas(connect):
    hook = connect(extra={"ca_bundle": None})
    with pytest.raises(GraphAuthError, match=r"tls_error: .*CERTIFICATE_VERIFY_FAILED.*set ca_bundle"):
        hook.send_mail(Message(to="a@example.com"))


@pytest.mark.parametrize("changes, message", [
    ({"login": ""}, "login (the app's client id) is empty"),
    ({"extra": {"tenant_id": None}}, "'tenant_id' is empty"),
    ({"password": None}, "no credential"),
    ({"extra": {"certificate_path": "/x.pem"}}, "several credentials are set (password, certificate_path); keep one"),
    ({"extra": {"cloud": "mars"}}, "unknown cloud 'mars'"),
    ({"extra": {"graph_url": "graph.example.com"}}, "graph_url: 'graph.example.com' is not a URL"),
    ({"extra": {"authority_url": "http://login.example.com"}}, "plain http:// is allowed only for a loopback"),
    ({"extra": {"ca_bundle": "/no/such/ca.pem"}}, "ca_bundle '/no/such/ca.pem' is not a file"),
    ({"password": None, "extra": {"certificate_path": "/no/such.pem"}}, "is not a readable file"),
    ({"extra": {"retry_max_wait": "-5"}}, "extra 'retry_max_wait' is '-5'; give a number of seconds (0 or more)"),
    ({"extra": {"retry_backoff": "soon"}}, "extra 'retry_backoff' is 'soon'; give a number of seconds"),
    ({"extra": {"max_message_size_mb": "lots"}}, "'max_message_size_mb' is 'lots'; give a number of MB"),
])
def test_connection_errors_name_the_field(connect, graph_emulator, changes, message):
    hook = connect("graph_mail_broken", **changes)
    with pytest.raises(GraphConfigError) as err:
        hook.send_mail(Message(to="a@example.com"))
    assert message in str(err.value)
    assert not graph_emulator.inspect.request_log  # nothing reached the emulator


def test_wrong_secret_names_the_field_and_hides_the_secret(connect, graph_emulator):
    hook = connect(password="s3cr3t-wrong-value")
    with pytest.raises(GraphAuthError) as err:
        hook.send_mail(Message(to="a@example.com"))
    text = str(err.value)
    assert "AADSTS7000215" in text and "fix the connection's password" in text
    assert "s3cr3t-wrong-value" not in text
    assert graph_emulator.inspect.side_effect_requests == []


def test_certificate_credential(connect, graph_emulator, tmp_path):
    bundle, cert = make_certificate()
    app = graph_emulator.entra.add_app(certificate_pem=cert)
    path = tmp_path / "app.pem"
    path.write_bytes(bundle)
    connect(login=app.client_id, password=None, extra={"certificate_path": str(path)}).send_mail(
        Message(to="cert@example.com", subject="signed in with a certificate"))
    inline = connect("graph_mail_inline", login=app.client_id, password=None,
                     extra={"certificate_private_key": bundle.decode()})
    inline.send_mail(Message(to="cert@example.com", subject="inline"))
    assert len(graph_emulator.inspect.messages("cert@example.com")) == 2


def test_encrypted_certificate_needs_its_passphrase(connect, graph_emulator, tmp_path):
    bundle, cert = make_certificate(passphrase=b"pw")
    app = graph_emulator.entra.add_app(certificate_pem=cert)
    path = tmp_path / "app.pem"
    path.write_bytes(bundle)
    with pytest.raises(GraphConfigError, match="certificate_passphrase"):
        connect(login=app.client_id, password=None, extra={"certificate_path": str(path)}).get_conn()
    connect("graph_mail_pw", login=app.client_id, password=None,
            extra={"certificate_path": str(path), "certificate_passphrase": "pw"}).send_mail(
        Message(to="cert@example.com"))
    assert len(graph_emulator.inspect.messages("cert@example.com")) == 1


def test_unregistered_certificate_is_refused(connect, graph_emulator, tmp_path):
    bundle, _ = make_certificate()
    path = tmp_path / "app.pem"
    path.write_bytes(bundle)
    with pytest.raises(GraphAuthError, match="AADSTS700027"):
        connect(password=None, extra={"certificate_path": str(path)}).send_mail(Message(to="a@example.com"))


def test_missing_permission_is_explained(connect, graph_emulator):
    app = graph_emulator.entra.add_app(secret="ro", roles=["Mail.ReadWrite"])
    hook = connect(login=app.client_id, password="ro")
    with pytest.raises(AccessDeniedError) as err:
        hook.send_mail(Message(to="a@example.com"))
    assert err.value.code == "ErrorAccessDenied" and "Mail.Send" in str(err.value)
    assert "admin must grant consent" in str(err.value) and "RBAC for Applications" in str(err.value)
    assert [r["status"] for r in graph_emulator.inspect.side_effect_requests] == [403]
    assert graph_emulator.backend.delivery.sends == 0
    send_only = graph_emulator.entra.add_app(secret="so", roles=["Mail.Send"])
    with pytest.raises(AccessDeniedError) as denied:  # Graph's own 403 for drafts (not checked beforehand)
        connect("graph_mail_send_only", login=send_only.client_id, password="so").create_draft(Message(subject="x"))
    assert denied.value.code == "ErrorAccessDenied" and "admin must grant consent" in str(denied.value)
    assert denied.value.request_id
    ok, text = hook.test_connection()
    assert ok and "application permissions granted: Mail.ReadWrite." in text
    assert "Missing Mail.Send: no mail can be sent" in text and "grant admin consent" in text
    assert "Exchange RBAC for Applications does not show in the token" in text


def test_test_connection_has_no_side_effect(hook, graph_emulator):
    ok, text = hook.test_connection()
    client_id = hook.client.transport.credential.client_id
    assert ok and text == (f"Signed in with client secret, client id {client_id}; application "
                           "permissions granted: Mail.ReadWrite, Mail.Send. Sending, drafts, large attachments "
                           "and received mail will work. Reading airflow@contoso.com's Sent Items works: a retry "
                           "looks there before sending again (exactly once), and a mail merge plans against the "
                           "mailbox's limits (500 recipients per message, 10,000 per 24 hours, 30 messages a "
                           "minute).")
    assert graph_emulator.inspect.side_effect_requests == []
    mailbox = [r["path"] for r in graph_emulator.inspect.request_log if "/users/" in r["path"]]
    assert mailbox == ["/v1.0/users/airflow@contoso.com/mailFolders/sentitems/messages"]  # one read, no change


def test_test_connection_reports_failure(connect):
    ok, text = connect(password="wrong").test_connection()
    assert not ok and "AADSTS7000215" in text


def test_expired_token_is_renewed_once(connect, graph_emulator):
    hook = connect()
    hook.send_mail(Message(to="a@example.com"))
    graph_emulator.entra.issuer.kid = "rotated"  # every token issued so far is now refused with 401
    hook.send_mail(Message(to="a@example.com"))
    sends = [r["status"] for r in graph_emulator.inspect.request_log if r["path"].endswith("/sendMail")]
    assert sends == [202, 401, 202]
    assert token_requests(graph_emulator) == 2


def test_typed_errors(hook, graph_emulator):
    with pytest.raises(ItemNotFoundError):
        hook.send_draft("does-not-exist")
    graph_emulator.backend.store.add_user("onprem@contoso.com", rest_enabled=False)
    with pytest.raises(MailboxNotEnabledError, match="no Exchange Online mailbox"):
        hook.send_mail(Message(to="a@example.com"), sender="onprem@contoso.com")
    draft_without_recipients = hook.create_draft(Message(subject="no one"))
    with pytest.raises(InvalidRecipientsError, match="contains no recipients"):
        hook.send_draft(draft_without_recipients["id"])


def test_bad_message_fails_before_any_request(hook, graph_emulator):
    with pytest.raises(MessageValidationError, match="no recipients"):
        hook.send_mail(Message(subject="x"))
    with pytest.raises(MessageValidationError, match="not a valid e-mail address"):
        hook.send_mail({"toRecipients": [{"emailAddress": {"address": "bad@"}}]})
    assert list(graph_emulator.inspect.request_log) == []


def test_oversized_mime_refused_before_sending(hook, graph_emulator):
    """MIME goes in one request: over 4 MB it cannot be sent, and nothing is tried."""
    from airflow_graph_mail import MessageSizeError

    mime = Message(to="a@example.com", attachments=[("big.bin", b"x" * 3_100_000)]).to_mime()
    with pytest.raises(MessageSizeError, match=r"^mime: the request would be .* at most 4 MB") as raised:
        hook.send_mime(mime)
    assert "Graph answered" not in str(raised.value)  # Graph was never asked
    assert graph_emulator.inspect.side_effect_requests == []


def test_repr_hides_secret(hook, graph_emulator):
    secret = next(iter(graph_emulator.entra.default_app.secrets))
    assert secret in hook.get_connection("graph_mail_default").password
    assert secret not in repr(hook.client.transport.credential) and secret not in repr(hook.client)


def test_test_connection_reports_unreachable_authority(connect):
    ok, text = connect(extra={"authority_url": "https://127.0.0.1:9"}).test_connection()
    assert not ok and text.startswith("cannot reach the sign-in endpoint")
