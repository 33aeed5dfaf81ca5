"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point, and the one
definition of the connection form's fields.

Airflow 3.2+ builds the form from ``conn-fields`` / ``ui-field-behaviour`` below; Airflow 2.11 to 3.1
call the hook's ``get_connection_form_widgets()`` / ``get_ui_field_behaviour()``, which are built here
from the same ``EXTRAS`` and ``PLACEHOLDERS``.
"""

from __future__ import annotations

from typing import NamedTuple


class Extra(NamedTuple):
    """One extra field of the connection form: masked when ``secret``; shown under its ``section`` (Airflow 3's
    form groups fields by it); a choice field's ``unset`` labels its empty choice (the form would say "null")."""

    label: str
    description: str
    enum: list[str] | None = None
    default: str | None = None
    secret: bool = False
    section: str = "Sign-in"
    unset: str = ""


def _field(extra: Extra) -> dict:
    schema: dict = {"type": ["string", "null"], "section": extra.section}
    if extra.enum:
        schema["enum"] = [*extra.enum, None]
        schema["values_display"] = {"null": extra.unset or "(not set)"}
    if extra.default is not None:
        schema["default"] = extra.default
    if extra.secret:
        schema["format"] = "password"
    return {"label": extra.label, "schema": schema, "description": extra.description}


PLACEHOLDERS = {
    "login": "application (client) id",
    "password": "client secret value (leave empty for other credentials)",
    "credential": "secret",
    "tenant_id": "00000000-0000-0000-0000-000000000000",
    "sender": "reports@contoso.com",
    "cloud": "global",
    "graph_url": "https://graph.microsoft.com",
    "authority_url": "https://login.microsoftonline.com",
    "api_version": "v1.0",
    "scopes": "https://graph.microsoft.com/.default",
    "ca_bundle": "/etc/ssl/certs/corp-ca.pem",
    "tls_verify": "true",
    "allowed_recipient_domains": "contoso.com, *.contoso.com",
    "proxies": '{"https": "http://proxy.contoso.com:3128"}',
    "certificate_path": "/secrets/graph-app.pem",
    "certificate_private_key": "-----BEGIN PRIVATE KEY-----",
    "certificate_passphrase": "passphrase of the private key",
    "certificate_thumbprint": "computed from the certificate when empty",
    "certificate_send_x5c": "false",
    "federated_token_file": "/var/run/secrets/azure/tokens/azure-identity-token",
    "refresh_token": "0.A...",
    "token_cache_path": "/opt/airflow/secrets/graph-mail-token-cache.json",
    "timeout": "60",
    "max_message_size_mb": "35",
    "retry_max_wait": "300",
    "retry_backoff": "1",
    "delivery_guarantee": "exactly_once",
    "recipient_limit": "500",
    "daily_recipient_limit": "10000",
    "message_rate_limit": "30",
}
SIGN_IN, CERTIFICATE, WORKLOAD, REFRESH = "Sign-in", "Certificate", "Workload identity", "Refresh token (one user)"
SENDING, LIMITS, NETWORK = "Sending", "The mailbox's sending limits", "Cloud and network"
# Names with "token", "private_key", "passphrase" are masked by Airflow in logs and the UI too. In the order the
# form shows them: each credential's fields together, then sending, the mailbox's limits, cloud and network.
EXTRAS = {
    "credential": Extra("Credential", "How to sign in: secret, certificate, workload_identity, managed_identity or "
                   "refresh_token. Empty: the one credential field that is set.",
                   ["secret", "certificate", "workload_identity", "managed_identity", "refresh_token"],
                   unset="(the one credential field that is set)"),
    "tenant_id": Extra("Tenant ID", "Directory (tenant) id or domain of the app registration."),
    "certificate_path": Extra("Certificate file", "PEM with the private key and certificate, instead of a secret.",
                              section=CERTIFICATE),
    "certificate_private_key": Extra("Certificate (inline PEM)", "The same PEM pasted inline; masked.", secret=True,
                                     section=CERTIFICATE),
    "certificate_passphrase": Extra("Certificate passphrase", "Passphrase of an encrypted private key; masked.",
                                    secret=True, section=CERTIFICATE),
    "certificate_thumbprint": Extra("Certificate thumbprint", "SHA-1 thumbprint as Entra shows it; checked against "
                               "the certificate, computed when empty.", section=CERTIFICATE),
    "certificate_send_x5c": Extra("Send certificate chain (x5c)", "true for subject-name/issuer sign-in, where the "
                             "certificate is trusted by name instead of uploaded.", ["true", "false"], "false",
                                  section=CERTIFICATE, unset="false (the certificate is uploaded to the app)"),
    "federated_token_file": Extra("Federated token file", "Workload identity: file with the token from your "
                             "Kubernetes or CI identity provider, read at every sign-in. Default: "
                             "AZURE_FEDERATED_TOKEN_FILE.", section=WORKLOAD),
    "refresh_token": Extra("Refresh token", "Delegated access as one user (/me); masked, never logged.", secret=True,
                           section=REFRESH),
    "token_cache_path": Extra("Token cache file", "Where rotated refresh tokens are kept between runs (owner-only "
                         "file). Empty: kept in memory only.", section=REFRESH),
    "sender": Extra("Sender mailbox", "Default mailbox to send from (user principal name or id); 'me' with a "
               "refresh token.", section=SENDING),
    "allowed_recipient_domains": Extra("Allowed recipient domains", "Off when empty. Comma-separated domains; a "
                                  "mail to any other address fails before sending. *.contoso.com allows "
                                  "subdomains.", section=SENDING),
    "max_message_size_mb": Extra("Message size limit (MB)", "Your tenant's message size limit, checked before "
                            "sending: 35 by default, up to 150.", default="35", section=SENDING),
    "delivery_guarantee": Extra("Delivery on retry", "What a retry does when the app cannot read the mailbox to see "
                                "what an earlier try sent (Mail.Send alone): exactly_once fails naming the missing "
                                "permission; at_least_once sends again (a mail may arrive twice); at_most_once does "
                                "not (a mail may be lost).", ["exactly_once", "at_least_once", "at_most_once"],
                                "exactly_once", section=SENDING, unset="exactly_once (the default)"),
    "retry_max_wait": Extra("Retry wait limit (s)", "Total seconds one send may spend waiting to retry (throttling, "
                       "5xx, network errors): 300 by default.", default="300", section=SENDING),
    "retry_backoff": Extra("First retry backoff (s)", "Doubled at each retry, with jitter; Retry-After from Graph "
                      "wins. 1 by default.", default="1", section=SENDING),
    "recipient_limit": Extra("Recipients per message", "The mailbox's limit of recipients per message (to, cc and "
                             "bcc), checked before sending: Exchange Online's 500 by default; an admin can set 1 to "
                             "1000.", default="500", section=LIMITS),
    "daily_recipient_limit": Extra("Recipients per 24 hours", "What the mailbox may send to in a 24-hour sliding "
                                   "window: Exchange Online's 10,000 (it cannot be raised); less where an outbound "
                                   "spam policy says so. Mail merges plan against it.", default="10000",
                                   section=LIMITS),
    "message_rate_limit": Extra("Messages per minute", "How fast mail leaves the mailbox's Outbox: Exchange Online's "
                                "30 (it cannot be raised). Delivery times are estimated from it.", default="30",
                                section=LIMITS),
    "cloud": Extra("Cloud", "National cloud: picks the Graph host, the sign-in authority and the scope.",
              ["global", "usgov", "usgov-dod", "china"], "global", section=NETWORK, unset="global (the default)"),
    "graph_url": Extra("Graph URL", "Overrides the cloud's Graph host (e.g. the local emulator).", section=NETWORK),
    "authority_url": Extra("Authority URL", "Overrides the cloud's Entra sign-in host.", section=NETWORK),
    "api_version": Extra("API version", "Graph API version: v1.0, or beta for preview features.", ["v1.0", "beta"],
                         "v1.0", section=NETWORK, unset="v1.0 (the default)"),
    "scopes": Extra("Scopes", "Overrides the scopes asked for (comma-separated); default: the Graph host's "
               ".default, or Mail.Send and Mail.ReadWrite with a refresh token.", section=NETWORK),
    "ca_bundle": Extra("CA bundle", "PEM file of CAs to trust instead of the system's.", section=NETWORK),
    "tls_verify": Extra("Verify TLS", "Certificates are always verified unless this is false (unsafe; logged as a "
                   "warning on every use).", ["true", "false"], "true", section=NETWORK,
                        unset="true (certificates verified)"),
    "proxies": Extra("Proxies", "JSON map of scheme to proxy URL, for Graph and sign-in.", section=NETWORK),
    "timeout": Extra("Timeout (s)", "Seconds to wait for each Graph request: 60 by default.", default="60",
                     section=NETWORK),
}


HIDDEN_FIELDS = ["host", "schema", "port", "extra"]
RELABELING = {"login": "Client ID", "password": "Client secret"}


def ui_field_behaviour() -> dict:
    return {"hidden-fields": HIDDEN_FIELDS, "relabeling": RELABELING, "placeholders": PLACEHOLDERS}


def form_widgets() -> dict:
    """wtforms fields for Airflow before 3.2 (its web server has flask-appbuilder; 3.0/3.1 stand it in)."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import PasswordField, StringField
    from wtforms.validators import Optional, any_of

    widgets = {}
    for name, extra in EXTRAS.items():
        validators = [Optional()] + ([any_of(extra.enum)] if extra.enum else [])
        if extra.secret:
            widgets[name] = PasswordField(lazy_gettext(extra.label), widget=BS3PasswordFieldWidget(),
                                          description=extra.description, validators=validators)
        else:
            widgets[name] = StringField(lazy_gettext(extra.label), widget=BS3TextFieldWidget(),
                                        description=extra.description, validators=validators, default=extra.default)
    return widgets


# The documentation, as pyproject.toml's [project.urls] Documentation names it: newer Airflow versions read that
# from the package's metadata (Project-URL) in place of this, older ones show this.
DOCUMENTATION_URL = "https://github.com/airflow-graph-mail/airflow-graph-mail/blob/main/docs/index.md"


def get_provider_info():
    from airflow_graph_mail import __version__

    return {
        "package-name": "airflow-graph-mail",
        "name": "Microsoft Graph Mail",
        "description": "Send and receive Outlook mail through Microsoft Graph: send, drafts, mail merge within "
                       "Exchange's sending limits, bounces, review, inbound mail; attachments up to 150 MB.",
        "documentation-url": DOCUMENTATION_URL,
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Microsoft Graph Mail",
                "external-doc-url": "https://learn.microsoft.com/graph/api/user-sendmail",
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": "Microsoft Graph Mail",
                "python-modules": ["airflow_graph_mail.operators.graph_mail",
                                   "airflow_graph_mail.operators.mail_merge",
                                   "airflow_graph_mail.operators.bounce_report",
                                   "airflow_graph_mail.operators.inbound",
                                   "airflow_graph_mail.operators.mail_runs"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Microsoft Graph Mail",
                "python-modules": ["airflow_graph_mail.sensors.graph_mail", "airflow_graph_mail.sensors.inbound"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Microsoft Graph Mail",
                "python-modules": ["airflow_graph_mail.triggers.graph_mail", "airflow_graph_mail.triggers.inbound",
                                   "airflow_graph_mail.triggers.mailbox"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Microsoft Graph Mail",
                "python-modules": ["airflow_graph_mail.hooks.graph_mail"],
            }
        ],
        "extra-links": ["airflow_graph_mail.operators.graph_mail.OpenInOutlookLink"],
        "notifications": ["airflow_graph_mail.notifications.graph_mail.GraphMailNotifier"],
        "email-backends": ["airflow_graph_mail.email_backend.send_email"],
        "connection-types": [
            {
                "hook-class-name": "airflow_graph_mail.hooks.graph_mail.GraphMailHook",
                "hook-name": "Microsoft Graph Mail",
                "connection-type": "graphmail",
                "conn-fields": {name: _field(extra) for name, extra in EXTRAS.items()},
                "ui-field-behaviour": ui_field_behaviour(),
            }
        ],
    }
