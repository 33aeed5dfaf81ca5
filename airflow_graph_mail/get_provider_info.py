"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""


def _field(label: str, description: str, enum: list[str] | None = None, default: str | None = None,
           secret: bool = False) -> dict:
    schema: dict = {"type": ["string", "null"]}
    if enum:
        schema["enum"] = [*enum, None]
    if default is not None:
        schema["default"] = default
    if secret:
        schema["format"] = "password"
    return {"label": label, "schema": schema, "description": description}


PLACEHOLDERS = {
    "login": "application (client) id",
    "password": "client secret value (leave empty when using a certificate)",
    "tenant_id": "00000000-0000-0000-0000-000000000000",
    "sender": "reports@contoso.com",
    "graph_url": "https://graph.microsoft.com",
    "authority_url": "https://login.microsoftonline.com",
    "ca_bundle": "/etc/ssl/certs/corp-ca.pem",
    "certificate_path": "/secrets/graph-app.pem",
    "certificate_private_key": "-----BEGIN PRIVATE KEY-----",
    "timeout": "60",
    "max_message_size_mb": "35",
}


def get_provider_info():
    return {
        "package-name": "airflow-graph-mail",
        "name": "Microsoft Graph Mail",
        "description": "Send Outlook mail through Microsoft Graph: sendMail (JSON and MIME), drafts, send draft, "
                       "attachments up to 150 MB.",
        "versions": ["0.1.0"],
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
                                   "airflow_graph_mail.operators.mail_merge"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Microsoft Graph Mail",
                "python-modules": ["airflow_graph_mail.hooks.graph_mail"],
            }
        ],
        "extra-links": ["airflow_graph_mail.operators.graph_mail.OpenInOutlookLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_graph_mail.hooks.graph_mail.GraphMailHook",
                "hook-name": "Microsoft Graph Mail",
                "connection-type": "graph_mail",
                "conn-fields": {
                    "tenant_id": _field("Tenant ID", "Directory (tenant) id or domain of the app registration."),
                    "sender": _field("Sender mailbox", "Default mailbox to send from (user principal name or id)."),
                    "cloud": _field("Cloud", "National cloud: picks the Graph host and the sign-in authority.",
                                    enum=["global", "usgov", "usgov-dod", "china"], default="global"),
                    "graph_url": _field("Graph URL", "Overrides the cloud's Graph host (e.g. the local emulator)."),
                    "authority_url": _field("Authority URL", "Overrides the cloud's Entra sign-in host."),
                    "api_version": _field("API version", "Graph API version.", enum=["v1.0", "beta"],
                                          default="v1.0"),
                    "ca_bundle": _field("CA bundle", "PEM file of CAs to trust instead of the system's."),
                    "certificate_path": _field("Certificate file", "PEM with the private key and certificate, "
                                               "instead of a client secret."),
                    "certificate_private_key": _field("Certificate (inline PEM)", "The same PEM pasted inline; "
                                                      "masked in logs.", secret=True),
                    "certificate_passphrase": _field("Certificate passphrase", "Passphrase of an encrypted "
                                                     "private key; masked in logs.", secret=True),
                    "timeout": _field("Timeout (s)", "Seconds to wait for each Graph request."),
                    "max_message_size_mb": _field("Message size limit (MB)", "Your tenant's message size limit, "
                                                  "checked before sending: 35 by default, up to 150."),
                    "retry_max_wait": _field("Retry wait limit (s)", "Total seconds one send may spend waiting "
                                             "to retry (throttling, 5xx, network errors): 300 by default."),
                    "retry_backoff": _field("First retry backoff (s)", "Doubled at each retry, with jitter; "
                                            "Retry-After from Graph wins. 1 by default."),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port", "extra"],
                    "relabeling": {"login": "Client ID", "password": "Client secret"},
                    "placeholders": PLACEHOLDERS,
                },
            }
        ],
    }
