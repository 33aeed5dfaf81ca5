"""One requests session for tokens and Graph alike, whose TLS settings the environment cannot override."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

from airflow_graph_mail.redact import install_url_redaction


class GraphSession(requests.Session):
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's ``verify``; this one keeps it.

    Proxies from the environment still apply unless the connection sets its own.
    """

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None:
            settings["verify"] = self.verify
        return settings


def build_session(verify: bool | str = True, proxies: dict | None = None, pool_size: int = 8) -> GraphSession:
    install_url_redaction()  # urllib3 prints request URLs (upload tokens included) at DEBUG
    session = GraphSession()
    session.verify = verify
    if proxies:
        session.proxies.update(proxies)
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "airflow-graph-mail"
    return session
