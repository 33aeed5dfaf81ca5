"""One requests session for tokens and Graph alike, whose TLS settings the environment cannot override."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

from airflow_graph_mail.redact import install_url_redaction


class GraphSession(requests.Session):
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's ``verify``; this one keeps it.

    Proxies from the environment (HTTPS_PROXY, NO_PROXY) still apply unless the connection sets its own;
    they are read once per host, not on every request (requests walks the whole environment each time,
    which costs more than the rest of a small send's own work). ~/.netrc is never read: requests would
    look it up on every request, and a password there would replace the bearer token.
    """

    def __init__(self):
        super().__init__()
        self.trust_env = False  # requests' own environment handling (netrc, proxies, CA bundle): ours below
        self._environment_proxies: dict[tuple, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        proxies = dict(proxies or {})
        no_proxy = proxies.get("no_proxy")
        key = (*urlsplit(url)[:2], no_proxy)
        found = self._environment_proxies.get(key)
        if found is None:
            found = self._environment_proxies[key] = get_environ_proxies(url, no_proxy=no_proxy)
        for scheme, address in found.items():
            if scheme not in self.proxies:  # the connection's own proxy wins (requests lets the env win)
                proxies.setdefault(scheme, address)
        return {"proxies": merge_setting(proxies, self.proxies), "stream": merge_setting(stream, self.stream),
                "verify": merge_setting(verify, self.verify), "cert": merge_setting(cert, self.cert)}


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
