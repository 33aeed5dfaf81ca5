"""The one requests session: TLS settings the environment cannot override, proxies from the environment
read once per host."""

from __future__ import annotations

from airflow_graph_mail.graph.session import build_session

URL = "https://graph.microsoft.com/v1.0/users/a@contoso.com/sendMail"


def settings(session, url=URL):
    return session.merge_environment_settings(url, {}, None, None, None)


def test_environment_proxies_apply_and_no_proxy_is_honoured(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.contoso.com:3128")
    monkeypatch.setenv("NO_PROXY", "login.microsoftonline.com")
    session = build_session(verify="/tmp/ca.pem")
    assert settings(session)["proxies"]["https"] == "http://proxy.contoso.com:3128"
    assert "https" not in settings(session, "https://login.microsoftonline.com/t/oauth2/v2.0/token")["proxies"]


def test_the_connections_own_proxies_win(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://from-env:3128")
    session = build_session(proxies={"https": "http://from-connection:8080"})
    assert settings(session)["proxies"]["https"] == "http://from-connection:8080"


def test_a_ca_bundle_in_the_environment_does_not_replace_the_sessions(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert settings(build_session(verify="/tmp/emulator-ca.pem"))["verify"] == "/tmp/emulator-ca.pem"
    assert settings(build_session(verify=False))["verify"] is False


def test_the_environment_is_read_once_per_host(monkeypatch):
    """A task's environment does not change while it sends; requests would walk it on every request."""
    monkeypatch.setenv("HTTPS_PROXY", "http://first:3128")
    session = build_session()
    assert settings(session)["proxies"]["https"] == "http://first:3128"
    monkeypatch.setenv("HTTPS_PROXY", "http://second:3128")
    assert settings(session)["proxies"]["https"] == "http://first:3128"  # the same host: as read before
    assert build_session().merge_environment_settings(URL, {}, None, None, None)["proxies"]["https"] == \
        "http://second:3128"  # a new session (a new task) reads it again


def test_a_netrc_entry_never_replaces_the_bearer_token(tmp_path, monkeypatch):
    import requests

    netrc = tmp_path / ".netrc"
    netrc.write_text("machine graph.microsoft.com login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    plain = requests.Session().prepare_request(requests.Request("POST", URL))
    assert plain.headers["Authorization"].startswith("Basic")  # what requests alone would send
    ours = build_session().prepare_request(requests.Request("POST", URL, headers={"Authorization": "Bearer t"}))
    assert ours.headers["Authorization"] == "Bearer t"
