"""Every way to sign in gets a token from the emulator and sends a message; conflicts name what to remove."""

from __future__ import annotations

import json
import logging
import stat

import pytest
from helpers import make_certificate, token_requests

from airflow_graph_mail import GraphAuthError, GraphConfigError
from airflow_graph_mail.graph.auth import forget_shared
from airflow_graph_mail.mail.message import Message


def sent_by(emulator, mailbox: str) -> list[str]:
    return [m["subject"] for m in emulator.inspect.messages(mailbox, "sentitems", with_content=False)]


def send(hook, subject: str, **kwargs) -> None:
    hook.send_mail(Message(to="ann@example.com", subject=subject), **kwargs)


def test_client_secret(connect, graph_emulator):
    hook = connect()
    send(hook, "with a secret")
    assert hook.client.transport.credential.kind == "client secret"
    assert sent_by(graph_emulator, graph_emulator.default_sender) == ["with a secret"]


@pytest.mark.parametrize("inline", [False, True])
def test_certificate_encrypted_with_thumbprint_computed(connect, graph_emulator, tmp_path, inline):
    bundle, cert = make_certificate(passphrase=b"s3cret-pass")
    app = graph_emulator.entra.add_app(certificate_pem=cert)
    path = tmp_path / "app.pem"
    path.write_bytes(bundle)
    source = {"certificate_private_key": bundle.decode()} if inline else {"certificate_path": str(path)}
    hook = connect(login=app.client_id, password=None, extra={**source, "certificate_passphrase": "s3cret-pass"})
    send(hook, "with a certificate")
    description = hook.client.transport.credential.describe()
    assert description.startswith("certificate, client id") and "thumbprint" in description
    assert "s3cret-pass" not in repr(hook.client.transport.credential)
    assert sent_by(graph_emulator, graph_emulator.default_sender) == ["with a certificate"]


def test_certificate_thumbprint_must_match(connect, graph_emulator, tmp_path):
    bundle, cert = make_certificate()
    app = graph_emulator.entra.add_app(certificate_pem=cert)
    hook = connect(login=app.client_id, password=None,
                   extra={"certificate_private_key": bundle.decode(), "certificate_thumbprint": "AB:CD"})
    with pytest.raises(GraphConfigError, match="certificate_thumbprint: 'AB:CD' is not the certificate's SHA-1"):
        hook.get_conn()
    assert list(graph_emulator.inspect.request_log) == []


def test_certificate_trusted_by_subject_name_needs_x5c(connect, graph_emulator, tmp_path):
    """Subject-name/issuer sign-in: the certificate is not uploaded; the chain travels in x5c."""
    app = graph_emulator.entra.add_app()
    pem = graph_emulator.entra.issue_client_certificate("airflow-mail.contoso.com", app=app)
    extra = {"certificate_private_key": pem.decode()}
    with pytest.raises(GraphAuthError, match="AADSTS700027") as err:
        send(connect(login=app.client_id, password=None, extra=extra), "no x5c")
    assert "certificate_send_x5c" in str(err.value)
    forget_shared()
    hook = connect(login=app.client_id, password=None, extra={**extra, "certificate_send_x5c": "true"})
    send(hook, "x5c sent")
    assert "x5c sent" in hook.client.transport.credential.describe()
    assert sent_by(graph_emulator, graph_emulator.default_sender) == ["x5c sent"]


def test_workload_identity_reads_the_token_file_each_time(connect, graph_emulator, tmp_path):
    app = graph_emulator.entra.add_app()
    graph_emulator.entra.add_federated_credential(app, "system:serviceaccount:airflow:worker")
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(graph_emulator.entra.issue_federated_token("system:serviceaccount:airflow:worker"))
    hook = connect(login=app.client_id, password=None, extra={"federated_token_file": str(token_file)})
    send(hook, "as a workload")
    assert hook.client.transport.credential.kind == "workload identity"
    # The webhook rotates the file; the next token request must present what is there now.
    token_file.write_text(graph_emulator.entra.issue_federated_token("system:serviceaccount:other:pod"))
    hook.client.transport.credential.invalidate()
    with pytest.raises(GraphAuthError, match="AADSTS70021") as err:
        hook.client.transport.credential.get_token()
    assert "federated credential" in str(err.value)
    token_file.write_text(graph_emulator.entra.issue_federated_token("system:serviceaccount:airflow:worker"))
    send(hook, "after rotation")
    assert sent_by(graph_emulator, graph_emulator.default_sender) == ["after rotation", "as a workload"]


def test_workload_identity_from_the_webhook_environment(connect, graph_emulator, tmp_path, monkeypatch):
    """AKS's webhook sets AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE in the pod."""
    app = graph_emulator.entra.add_app()
    graph_emulator.entra.add_federated_credential(app, "system:serviceaccount:airflow:worker")
    token_file = tmp_path / "token"
    token_file.write_text(graph_emulator.entra.issue_federated_token("system:serviceaccount:airflow:worker"))
    monkeypatch.setenv("AZURE_CLIENT_ID", app.client_id)
    monkeypatch.setenv("AZURE_TENANT_ID", graph_emulator.entra.tenant_id)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    hook = connect(login=None, password=None, extra={"credential": "workload_identity", "tenant_id": None})
    send(hook, "from the pod's environment")
    assert sent_by(graph_emulator, graph_emulator.default_sender) == ["from the pod's environment"]


def test_workload_identity_wrong_audience_is_named(connect, graph_emulator, tmp_path):
    app = graph_emulator.entra.add_app()
    graph_emulator.entra.add_federated_credential(app, "system:serviceaccount:airflow:worker")
    token_file = tmp_path / "token"
    token_file.write_text(graph_emulator.entra.issue_federated_token("system:serviceaccount:airflow:worker",
                                                               audience="api://SomethingElse"))
    hook = connect(login=app.client_id, password=None, extra={"federated_token_file": str(token_file)})
    with pytest.raises(GraphAuthError, match=r"AADSTS700212.*audience"):
        send(hook, "never")
    assert graph_emulator.inspect.side_effect_requests == []


@pytest.mark.parametrize("form", ["imds", "app_service"])
def test_managed_identity_system_assigned(connect, graph_emulator, monkeypatch, form):
    for name, value in graph_emulator.entra.managed_identity_env(form).items():
        monkeypatch.setenv(name, value)
    hook = connect(login=None, password=None, extra={"credential": "managed_identity", "tenant_id": None})
    send(hook, f"managed identity via {form}")
    assert hook.client.transport.credential.kind == "managed identity (system-assigned)"
    path = "/metadata/identity/oauth2/token" if form == "imds" else "/msi/token"
    assert [r["status"] for r in graph_emulator.inspect.request_log if r["path"] == path] == [200]
    assert sent_by(graph_emulator, graph_emulator.default_sender) == [f"managed identity via {form}"]


def test_managed_identity_user_assigned(connect, graph_emulator, monkeypatch):
    for name, value in graph_emulator.entra.managed_identity_env().items():
        monkeypatch.setenv(name, value)
    identity = graph_emulator.entra.directory.add_managed_identity()
    hook = connect(login=identity.client_id, password=None, extra={"credential": "managed_identity"})
    send(hook, "user-assigned")
    described = hook.client.transport.credential.describe()
    assert described == f"managed identity (user-assigned), client id {identity.client_id}"
    forget_shared()
    unknown = connect(login="00000000-0000-0000-0000-000000000000", password=None,
                      extra={"credential": "managed_identity"})
    with pytest.raises(GraphAuthError, match="Identity not found"):
        send(unknown, "never")
    assert sent_by(graph_emulator, graph_emulator.default_sender) == ["user-assigned"]


def test_managed_identity_without_an_endpoint_is_explained(connect, monkeypatch):
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "https://127.0.0.1:9")
    hook = connect(login=None, password=None, extra={"credential": "managed_identity"})
    ok, text = hook.test_connection()
    assert not ok and "no managed identity endpoint answered" in text and "Azure host" in text


def delegated_connection(graph_emulator, user="ann@contoso.com", **extra):
    graph_emulator.backend.store.add_user(user, "Ann")
    app = graph_emulator.entra.add_app(public_client=True)
    token = graph_emulator.entra.issue_refresh_token(user, app)
    return app, token, {"login": app.client_id, "password": None, "extra": {"refresh_token": token, "sender": None,
                                                                              **extra}}


def logged(caplog, capfd) -> str:
    """Everything logged so far: Airflow routes its loggers to stdout, plain ones reach caplog."""
    out, err = capfd.readouterr()
    return caplog.text + out + err


def test_refresh_token_sends_as_the_user(connect, graph_emulator, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    app, _token, conn = delegated_connection(graph_emulator)
    hook = connect(**conn)
    send(hook, "as Ann")
    sends = [r["path"] for r in graph_emulator.inspect.request_log if r["path"].endswith("sendMail")]
    assert sends == ["/v1.0/me/sendMail"]
    assert sent_by(graph_emulator, "ann@contoso.com") == ["as Ann"]
    ok, text = hook.test_connection()
    assert ok and "delegated scopes granted: Mail.ReadWrite, Mail.Send" in text
    rotated = [t for t, g in graph_emulator.entra.directory.refresh_tokens.items() if g.client_id == app.client_id]
    assert len(rotated) == 2  # Entra answered with a new refresh token
    text = logged(caplog, capfd)
    assert "Sent 'as Ann'" in text  # the log was captured
    for secret in [*rotated, *graph_emulator.entra.issuer.issued]:
        assert secret not in text


def test_rotated_refresh_token_is_kept_only_in_the_configured_cache(connect, graph_emulator, tmp_path):
    cache = tmp_path / "cache" / "msal.json"
    app, token, conn = delegated_connection(graph_emulator, token_cache_path=str(cache))
    send(connect(**conn), "first run")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    rotated = next(t for t, grant in graph_emulator.entra.directory.refresh_tokens.items()
                   if t != token and grant.client_id == app.client_id)
    assert rotated in cache.read_text()
    graph_emulator.entra.directory.refresh_tokens[token].revoked = True  # the connection's own token no longer works

    forget_shared()  # a later task, in a new process: starts from the cache's newest token
    send(connect(**conn), "second run")
    assert sent_by(graph_emulator, "ann@contoso.com") == ["second run", "first run"]

    forget_shared()  # without a cache the revoked token in the connection is all there is
    conn["extra"]["token_cache_path"] = None
    with pytest.raises(GraphAuthError, match="AADSTS50173") as err:
        send(connect(**conn), "never")
    assert "sign the user in again" in str(err.value)


def test_refresh_token_with_a_confidential_app(connect, graph_emulator):
    graph_emulator.backend.store.add_user("bob@contoso.com")
    app = graph_emulator.entra.add_app(secret="app-secret")
    token = graph_emulator.entra.issue_refresh_token("bob@contoso.com", app)
    send(connect(login=app.client_id, password="app-secret", extra={"refresh_token": token, "sender": None}),
         "confidential")
    assert sent_by(graph_emulator, "bob@contoso.com") == ["confidential"]
    forget_shared()
    with pytest.raises(GraphAuthError, match="AADSTS7000218"):  # no secret, and not a public client
        send(connect(login=app.client_id, password=None, extra={"refresh_token": token, "sender": None}), "x")


def test_one_token_cache_per_credential_in_the_process(connect, graph_emulator):
    first, second = connect("graph_mail_a"), connect("graph_mail_b")
    send(first, "one")
    send(second, "two")
    assert first.client.transport.credential is second.client.transport.credential
    assert token_requests(graph_emulator) == 1
    other = graph_emulator.entra.add_app(secret="other")
    send(connect("graph_mail_c", login=other.client_id, password="other"), "three")
    assert token_requests(graph_emulator) == 2


@pytest.mark.integration  # starts processes
def test_a_token_is_reused_until_shortly_before_it_expires(tmp_path, monkeypatch):
    """Sends read the kept token without asking MSAL; MSAL is asked again once half of a short token's life
    (or all but 5 minutes of an hour's) has passed, and at once after a 401."""
    import time

    from graph_mail_emulator import EmulatorConfig, GraphEmulator

    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    with GraphEmulator(EmulatorConfig(tmp_path, token_lifetime=4)) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_SHORT", json.dumps(emulator.connection()))
        credential = GraphMailHook(graph_mail_conn_id="graph_mail_short").client.transport.credential
        asked = []
        acquire = credential._acquire

        def counted():
            asked.append(1)
            return acquire()

        monkeypatch.setattr(credential, "_acquire", counted)
        first = credential.get_token()
        assert [credential.get_token() for _ in range(50)] == [first] * 50 and len(asked) == 1
        time.sleep(2.2)  # past half of the 4 s life: MSAL is asked (and hands out a new token)
        renewed = credential.get_token()
        assert len(asked) == 2 and renewed != first
        credential.invalidate()  # a 401
        credential.get_token()
        assert len(asked) == 3


@pytest.mark.parametrize(("changes", "message"), [
    ({"extra": {"credential": "managed_identity"}},
     "credential is managed_identity but the password (client secret) is also set; remove it"),
    ({"extra": {"refresh_token": "0.Axyz", "certificate_path": "/x.pem"}, "password": None},
     "credential is refresh_token but certificate_path is also set; remove it"),
    ({"extra": {"federated_token_file": "/var/run/token"}}, "several credentials are set (password, "
                                                             "federated_token_file); keep one"),
    ({"extra": {"credential": "kerberos"}}, "extra 'credential' is 'kerberos'; use one of secret, certificate"),
    ({"password": None, "extra": {"credential": "workload_identity"}},
     "no token file: set extra 'federated_token_file' or the AZURE_FEDERATED_TOKEN_FILE variable"),
    ({"password": None, "extra": {"federated_token_file": "/no/such/token"}},
     "federated_token_file '/no/such/token' is not a readable file"),
    ({"extra": {"api_version": "v2"}}, "extra 'api_version' is 'v2'; use v1.0 or beta"),
])
def test_conflicting_or_missing_settings_say_what_to_change(connect, graph_emulator, changes, message, monkeypatch):
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    with pytest.raises(GraphConfigError) as err:
        send(connect("graph_mail_conflict", **changes), "never")
    assert message in str(err.value)
    assert graph_emulator.inspect.side_effect_requests == []


def test_msgraph_connection_works_as_it_is(graph_emulator, monkeypatch, tmp_path):
    """A microsoft-azure provider `msgraph` connection: client id, secret, tenant_id, authority, base_url."""
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    host = graph_emulator.base_url.split("://")[1]
    conn = {"conn_type": "msgraph", "login": graph_emulator.entra.default_app.client_id,
            "password": next(iter(graph_emulator.entra.default_app.secrets)), "host": host, "schema": "https",
            "extra": {"tenant_id": graph_emulator.entra.tenant_id, "authority": host, "api_version": "v1.0",
                      "verify": str(graph_emulator.ca_path), "proxies": json.dumps({}),
                      "scopes": f"{graph_emulator.base_url}/.default"}}
    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_DEFAULT", json.dumps(conn))
    hook = GraphMailHook(graph_mail_conn_id="msgraph_default")
    hook.send_mail(Message(to="ann@example.com", subject="from an msgraph connection"),
                   sender=graph_emulator.default_sender)
    assert hook.client.transport.base_url == f"{graph_emulator.base_url}/v1.0"

    forget_shared()
    bundle, cert = make_certificate()
    app = graph_emulator.entra.add_app(certificate_pem=cert)
    conn.update(login=app.client_id, password=None, host=None)
    conn["extra"].update(certificate_data=bundle.decode(), base_url=f"{graph_emulator.base_url}/beta/")
    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_CERT", json.dumps(conn))
    hook = GraphMailHook(graph_mail_conn_id="msgraph_cert")
    hook.send_mail(Message(to="ann@example.com", subject="msgraph with certificate_data"),
                   sender=graph_emulator.default_sender)
    assert hook.client.transport.base_url == f"{graph_emulator.base_url}/beta"
    assert sent_by(graph_emulator, graph_emulator.default_sender) == ["msgraph with certificate_data",
                                                                      "from an msgraph connection"]


CLOUD_HOSTS = {
    "global": ("https://graph.microsoft.com", "https://login.microsoftonline.com"),
    "usgov": ("https://graph.microsoft.us", "https://login.microsoftonline.us"),
    "usgov-dod": ("https://dod-graph.microsoft.us", "https://login.microsoftonline.us"),
    "china": ("https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
}


@pytest.mark.parametrize("cloud", sorted(CLOUD_HOSTS))
def test_each_cloud_picks_its_graph_host_authority_and_scope(connect, graph_emulator, cloud, monkeypatch):
    graph, login = CLOUD_HOSTS[cloud]
    tenant = graph_emulator.entra.tenant_id
    client = connect(extra={"cloud": cloud, "graph_url": None, "authority_url": None}).get_conn()
    assert client.transport.base_url == f"{graph}/v1.0"
    credential = client.transport.credential
    assert credential.scope == f"{graph}/.default" and credential.authority == f"{login}/{tenant}"
    forget_shared()
    delegated = connect(password=None, extra={"cloud": cloud, "graph_url": None, "authority_url": None,
                                              "refresh_token": "0.Ax"}).get_conn()
    assert delegated.transport.credential.scopes == [f"{graph}/Mail.Send", f"{graph}/Mail.ReadWrite"]
    # On the wire: the emulator, standing in for this cloud's authority, is asked for this cloud's scope and
    # issues a token for that cloud's Graph, as Entra does.
    forget_shared()
    on_wire = connect(extra={"cloud": cloud, "graph_url": None}).get_conn()
    token = on_wire.transport.credential.get_token()
    assert graph_emulator.entra.verify_access_token(token)["aud"] == graph


def test_explicit_urls_win_over_the_cloud(connect, graph_emulator):
    client = connect(extra={"cloud": "china"}).get_conn()  # graph_url and authority_url: the emulator's
    assert client.transport.base_url == f"{graph_emulator.base_url}/v1.0"
    assert client.transport.credential.scope == f"{graph_emulator.base_url}/.default"
    client.transport.credential.get_token()


def test_msgraph_host_of_a_national_cloud_picks_its_authority(monkeypatch, graph_emulator):
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    conn = {"conn_type": "msgraph", "login": "app", "password": "secret", "host": "graph.microsoft.us",
            "schema": "https", "extra": {"tenant_id": "contoso.onmicrosoft.us"}}
    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_GOV", json.dumps(conn))
    client = GraphMailHook(graph_mail_conn_id="msgraph_gov").get_conn()
    assert client.transport.base_url == "https://graph.microsoft.us/v1.0"
    assert client.transport.credential.authority == "https://login.microsoftonline.us/contoso.onmicrosoft.us"
    assert client.transport.credential.scope == "https://graph.microsoft.us/.default"


def test_emulator_identity_endpoints_check_their_headers(http, graph_emulator):
    """The managed identity endpoints refuse what the real ones refuse: IMDS wants Metadata: true,
    App Service wants the IDENTITY_HEADER secret."""
    resource = {"api-version": "2018-02-01", "resource": graph_emulator.base_url}
    imds = f"{graph_emulator.base_url}/metadata/identity/oauth2/token"
    refused = http.get(imds, params=resource)
    assert refused.status_code == 400
    assert refused.json()["error_description"] == "Required metadata header not specified"
    answered = http.get(imds, params=resource, headers={"Metadata": "true"}).json()
    assert answered["client_id"] == graph_emulator.entra.directory.system_identity.client_id
    assert int(answered["expires_in"]) == graph_emulator.entra.token_lifetime
    app_service = f"{graph_emulator.base_url}/msi/token"
    assert http.get(app_service, params=resource, headers={"X-IDENTITY-HEADER": "guess"}).status_code == 401
    wrong = http.get(imds, params={**resource, "resource": "https://vault.azure.net"}, headers={"Metadata": "true"})
    assert wrong.status_code == 400 and "AADSTS500011" in wrong.json()["error_description"]
    graph = http.get(imds, params={**resource, "resource": "https://graph.microsoft.com"}, headers={"Metadata": "true"})
    assert graph.status_code == 200 and graph.json()["resource"] == "https://graph.microsoft.com"


def test_msgraph_verify_false_is_honoured_with_a_warning(graph_emulator, monkeypatch, caplog, capfd):
    """msgraph's own `verify: false` turns TLS checks off, as it does there; we say so in the log."""
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    conn = {"conn_type": "msgraph", "login": graph_emulator.entra.default_app.client_id,
            "password": next(iter(graph_emulator.entra.default_app.secrets)),
            "extra": {"tenant_id": graph_emulator.entra.tenant_id, "authority": graph_emulator.base_url,
                      "base_url": graph_emulator.base_url, "verify": False, "sender": graph_emulator.default_sender}}
    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_INSECURE", json.dumps(conn))
    caplog.set_level(logging.WARNING)
    GraphMailHook(graph_mail_conn_id="msgraph_insecure").send_mail(Message(to="ann@example.com", subject="no tls"))
    assert "TLS certificate verification is OFF" in logged(caplog, capfd)
    assert sent_by(graph_emulator, graph_emulator.default_sender) == ["no tls"]
