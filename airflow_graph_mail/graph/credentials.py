"""Checked settings -> the session and the token source: the one place that reads certificate files, token
files and the environment the workload identity webhook sets.

One credential object per distinct configuration lives for the whole process (``auth.shared``), so every
hook, operator and callback that signs in the same way shares one MSAL token cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from airflow_graph_mail.errors import GraphConfigError
from airflow_graph_mail.graph.auth import AppCredential, ManagedIdentityCredential, TokenCredential, shared
from airflow_graph_mail.graph.certificates import load_certificate
from airflow_graph_mail.graph.config import (
    CERTIFICATE,
    MANAGED_IDENTITY,
    REFRESH_TOKEN,
    WORKLOAD_IDENTITY,
    ClientConfig,
    CredentialConfig,
    check_app_ids,
)
from airflow_graph_mail.graph.delegated import RefreshTokenCredential
from airflow_graph_mail.graph.session import GraphSession, build_session

log = logging.getLogger(__name__)


def session_for(config: ClientConfig) -> GraphSession:
    """The requests session: TLS as configured (a CA bundle must exist), proxies."""
    verify = config.verify
    if isinstance(verify, str):
        path = Path(verify).expanduser()
        if not path.is_file():
            raise GraphConfigError(f"{config.where}: ca_bundle {verify!r} is not a file")
        verify = str(path)
    elif verify is False:
        log.warning("%s: TLS certificate verification is OFF (tls_verify=false); anyone on the path can read "
                    "the token and the mail. Use ca_bundle for a private CA instead.", config.where)
    return build_session(verify=verify, proxies=config.proxies)


def build_credential(config: ClientConfig, session_factory) -> TokenCredential:
    """The process-wide token source for ``config.credential``; ``session_factory()`` makes its session."""
    spec = config.credential
    where = config.where
    client_id, tenant_id = spec.client_id, spec.tenant_id
    if spec.kind == WORKLOAD_IDENTITY:  # what the workload identity webhook injects into the pod
        client_id = client_id or os.environ.get("AZURE_CLIENT_ID", "")
        tenant_id = tenant_id or os.environ.get("AZURE_TENANT_ID", "")
        check_app_ids(where, client_id, tenant_id)
    authority = f"{spec.authority_url}/{tenant_id}"
    key = {"kind": spec.kind, "authority": authority, "client_id": client_id, "scopes": spec.scopes,
           "verify": config.verify, "proxies": config.proxies}
    if spec.kind == MANAGED_IDENTITY:
        return shared(key, lambda: ManagedIdentityCredential(session_factory(), spec.scopes[0],
                                                              client_id=client_id or None))
    if spec.kind == REFRESH_TOKEN:
        key.update(refresh_token=spec.refresh_token, secret=spec.secret, cache=spec.token_cache_path)
        return shared(key, lambda: RefreshTokenCredential(
            session_factory(), list(spec.scopes), authority=authority, client_id=client_id,
            refresh_token=str(spec.refresh_token), client_secret=spec.secret, cache_path=spec.token_cache_path))
    certificate = token_file = None
    if spec.kind == CERTIFICATE:
        certificate = load_certificate(_certificate_pem(where, spec), spec.certificate_passphrase,
                                       thumbprint=spec.certificate_thumbprint, send_x5c=spec.certificate_send_x5c)
        key["certificate"] = certificate
    elif spec.kind == WORKLOAD_IDENTITY:
        token_file = spec.federated_token_file or os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
        if not token_file:
            raise GraphConfigError(f"{where}: credential is workload_identity but no token file: set extra "
                                   "'federated_token_file' or the AZURE_FEDERATED_TOKEN_FILE variable")
        if not Path(token_file).expanduser().is_file():
            raise GraphConfigError(f"{where}: federated_token_file {token_file!r} is not a readable file; is the "
                                   "workload identity token projected here?")
        key["token_file"] = token_file
    else:
        key["secret"] = spec.secret
    return shared(key, lambda: AppCredential(
        session_factory(), spec.scopes[0], authority=authority, client_id=client_id,
        client_secret=spec.secret if spec.kind == "secret" else None, certificate=certificate,
        federated_token_file=token_file))


def _certificate_pem(where: str, spec: CredentialConfig) -> bytes:
    if spec.certificate_path:
        path = Path(spec.certificate_path).expanduser()
        if not path.is_file():
            raise GraphConfigError(f"{where}: certificate_path {str(path)!r} is not a readable file")
        return path.read_bytes()
    return str(spec.certificate_pem).encode("ascii")
