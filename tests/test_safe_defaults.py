"""Safe defaults: the allow-list, TLS that cannot be turned off by accident, secrets kept out of errors and
logs, and HTML bodies that can escape their template variables."""

from __future__ import annotations

import logging

import pytest
import requests

from airflow_graph_mail import GraphAuthError, MessageValidationError, UploadFailedError
from airflow_graph_mail.mail.message import Message
from airflow_graph_mail.redact import redact_url_secrets


def test_allow_list_passes_listed_domains_and_subdomains_only(connect, graph_emulator):
    hook = connect(extra={"allowed_recipient_domains": ["contoso.com", "*.fabrikam.com"]})
    hook.send_mail(Message(to="ann@contoso.com", cc="bob@eu.fabrikam.com", bcc="carol@fabrikam.com"))
    with pytest.raises(MessageValidationError, match=r"'dan@sub.contoso.com' is outside the allowed recipient"):
        hook.send_mail(Message(to="dan@sub.contoso.com"))  # contoso.com is exact; *.fabrikam.com has subdomains
    assert graph_emulator.backend.delivery.sends == 1


def test_allow_list_stops_a_whole_batch_and_mime(connect, graph_emulator):
    hook = connect(extra={"allowed_recipient_domains": "contoso.com"})
    rows = [Message(to=f"u{i}@contoso.com") for i in range(3)] + [Message(to="u3@contoso.com", bcc="x@gmail.com")]
    with pytest.raises(MessageValidationError, match=r"message 3: bccRecipients|message 3: bcc: 'x@gmail.com'"):
        hook.send_many(rows)
    mime = Message(to="ann@contoso.com", cc="leak@gmail.com", subject="mime").to_mime()
    with pytest.raises(MessageValidationError, match=r"Cc: 'leak@gmail.com' is outside"):
        hook.send_mime(mime)
    assert graph_emulator.inspect.side_effect_requests == []


def test_tls_verification_off_only_when_asked_and_then_warned(connect, graph_emulator, caplog, capfd):
    hook = connect(extra={"ca_bundle": None, "tls_verify": False})
    caplog.set_level(logging.WARNING)
    hook.send_mail(Message(to="ann@example.com", subject="unverified"))
    out, err = capfd.readouterr()
    assert "TLS certificate verification is OFF (tls_verify=false)" in caplog.text + out + err
    with pytest.raises(GraphAuthError, match="CERTIFICATE_VERIFY_FAILED"):  # the default verifies; the CA is unknown
        connect("graph_mail_verified", extra={"ca_bundle": None}).send_mail(Message(to="ann@example.com"))


def test_tokens_are_registered_with_airflows_masker(hook, graph_emulator):
    from airflow.providers.common.compat.sdk import redact

    hook.send_mail(Message(to="ann@example.com"))
    token = graph_emulator.entra.issuer.issued[-1]
    assert redact(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"


def test_upload_url_tokens_never_reach_an_error_or_log():
    url = ("https://outlook.office.com/api/v2.0/Users('a@b')/Messages('AAMk')/AttachmentSessions('AAMkS')"
           "?authtoken=eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-part&sig=abc123")
    cause = requests.ConnectionError(f"HTTPSConnectionPool(host='outlook.office.com', port=443): Max retries "
                                     f"exceeded with url: {url[26:]} (Caused by NewConnectionError)")
    error = UploadFailedError("q3.xlsx", 0, 10 * 1024 * 1024, 3, cause)
    assert "secret-part" not in str(error) and "abc123" not in str(error)
    assert "authtoken=***" in str(error) and "sig=***" in str(error)
    assert redact_url_secrets("no secrets here") == "no secrets here"
    proxy = "ProxyError: Unable to connect to proxy http://svc-airflow:Pr0xy-Pa55@proxy.contoso.com:3128"
    assert redact_url_secrets(proxy) == proxy.replace("Pr0xy-Pa55", "***")


def _render(tmp_path, **operator_kwargs) -> str:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator

    with DAG("escape", schedule=None, template_searchpath=[str(tmp_path)]):
        operator = GraphSendMailOperator(task_id="send", to="ann@example.com", **operator_kwargs)
    operator.render_template_fields({"params": {"note": '<script>alert(1)</script> & "more"',
                                                "link": '<a href="https://contoso.com">report</a>'}})
    return operator.body


def test_html_autoescape_is_opt_in_and_safe_opts_out(tmp_path):
    body = "<p>{{ params.note }}</p>{{ params.link | safe }}"
    escaped = _render(tmp_path, body=body, autoescape=True)
    assert escaped == ('<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;more&#34;</p>'
                       '<a href="https://contoso.com">report</a>')
    assert _render(tmp_path, body=body).startswith("<p><script>alert(1)</script>")  # off by default
    (tmp_path / "note.txt").write_text("{{ params.note }}")
    assert _render(tmp_path, body="note.txt", autoescape=True) == '<script>alert(1)</script> & "more"'  # text


def test_mail_merge_rows_are_escaped_with_autoescape(tmp_path):
    from airflow.providers.common.compat.sdk import DAG

    from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator, RowMessages

    with DAG("merge_escape", schedule=None) as dag:
        merge = GraphMailMergeOperator(task_id="merge", rows=[], to="{{ row.email }}", subject="Hi {{ row.name }}",
                                       body="<p>Dear {{ row.name }}</p>", autoescape=True)
    rows = [{"email": "ann@example.com", "name": "<b>Ann</b>"}]
    message = RowMessages(merge, rows, merge._compile(dag.get_template_env()), {}, None)[0]
    assert message.body == "<p>Dear &lt;b&gt;Ann&lt;/b&gt;</p>"
    assert message.subject == "Hi <b>Ann</b>"  # only the HTML body is escaped


def test_each_token_is_handed_to_the_masker_once(hook, graph_emulator):
    """MSAL returns the cached token for every request; Airflow's masker hears of each token once."""
    seen: list[str] = []
    hook.client.transport.credential.on_secret = seen.append
    for subject in ("one", "two", "three"):
        hook.send_mail(Message(to="ann@example.com", subject=subject))
    assert seen == [graph_emulator.entra.issuer.issued[-1]]
