"""One sender per peer, each pointed at the local emulator through its own settings.

Every adapter takes the emulator's Airflow connection (client id, secret, tenant, URLs, CA bundle) and
offers ``send(subject, to, html, attachment=None)``; ``bulk(messages, concurrency)`` sends many with at
most ``concurrency`` at a time, the way a careful user of that peer would (its async API with a
semaphore, or a pool of threads); ``concurrency=1`` is one after another, as the peers' docs show it.
What a peer cannot do raises ``Unsupported`` with the reason from its own code or docs.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor


class Unsupported(Exception):
    """The peer cannot do this; the message says why, citing its code or docs."""


def in_threads(send, messages, concurrency: int) -> int:
    """``send(subject, to, html, key)`` for every mail from a pool of ``concurrency`` threads; returns how
    many raised."""
    def one(message) -> bool:
        subject, to, html = message
        try:
            send(subject, to, html, subject)
            return False
        except Exception:  # noqa: BLE001 - a failed mail is counted, the run goes on
            return True

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return sum(pool.map(one, messages))


def gathered(loop, send, messages, concurrency: int) -> int:
    """The async form: every ``await send(subject, to, html)`` at once, at most ``concurrency`` in flight."""
    async def run() -> int:
        gate = asyncio.Semaphore(concurrency)

        async def one(subject, to, html) -> bool:
            async with gate:
                try:
                    await send(subject, to, html)
                    return False
                except Exception:  # noqa: BLE001 - a failed mail is counted, the run goes on
                    return True

        return sum(await asyncio.gather(*(one(*m) for m in messages)))

    return loop.run_until_complete(run())


class Ours:
    name = "airflow-graph-mail"
    module = "airflow_graph_mail.operators.graph_mail"

    def __init__(self, conn: dict, smtp_port: int):
        import json

        os.environ["AIRFLOW_CONN_GRAPH_MAIL_DEFAULT"] = json.dumps(conn)
        from airflow_graph_mail.hooks.graph_mail import GraphMailHook

        self.hook = GraphMailHook()

    def send(self, subject, to, html, attachment=None, key=None):
        from airflow_graph_mail.mail.message import Message

        self.hook.send_mail(Message(to=to, subject=subject, body=html, attachments=[attachment] if attachment else []),
                            idempotency_key=key)

    def bulk(self, messages, concurrency: int):
        """README: send_many, ``concurrency`` at a time within the mailbox's limit, one outcome per message."""
        from airflow_graph_mail.mail.message import Message

        outcomes = self.hook.send_many([Message(to=to, subject=subject, body=html) for subject, to, html in messages],
                                       keys=[subject for subject, _, _ in messages], concurrency=concurrency)
        return sum(o["status"] in ("failed", "unknown") for o in outcomes)


class AzureProvider:
    """apache-airflow-providers-microsoft-azure: MSGraphMailHook over an `msgraph` connection."""

    name = "microsoft-azure MSGraphMailHook"
    module = "airflow.providers.microsoft.azure.hooks.msgraph"

    def __init__(self, conn: dict, smtp_port: int):
        import json

        extra = conn["extra"]
        host = extra["graph_url"].split("://", 1)[1]
        os.environ["AIRFLOW_CONN_MSGRAPH_DEFAULT"] = json.dumps({
            "conn_type": "msgraph", "login": conn["login"], "password": conn["password"], "host": host,
            "schema": "https", "extra": {"tenant_id": extra["tenant_id"], "authority": host,
                                         "disable_instance_discovery": True, "allowed_hosts": host.split(":")[0],
                                         "verify": extra["ca_bundle"], "api_version": "v1.0"}})
        os.environ["REQUESTS_CA_BUNDLE"] = extra["ca_bundle"]  # azure-identity's own transport
        from airflow.providers.microsoft.azure.hooks.msgraph import MSGraphMailHook

        self.sender = extra["sender"]
        self.hook = MSGraphMailHook(conn_id="msgraph_default", host=extra["graph_url"],
                                    scopes=[extra["graph_url"] + "/.default"])
        self.loop = asyncio.new_event_loop()

    def send(self, subject, to, html, attachment=None, key=None):
        self.loop.run_until_complete(self._send(subject, to, html, attachment))

    def _send(self, subject, to, html, attachment=None):
        return self.hook.asend_email(from_email=self.sender, to=to, subject=subject, html_content=html,
                                     files=[attachment] if attachment else None)

    def bulk(self, messages, concurrency: int):
        """No batch API: its async send, ``concurrency`` at a time."""
        return gathered(self.loop, self._send, messages, concurrency)


class O365Library:
    """O365 (python-o365): Account in the client-credentials flow, Message.send()."""

    name = "O365"
    module = "O365"

    def __init__(self, conn: dict, smtp_port: int):
        self.conn = conn
        self.account = self._account()
        self._local = threading.local()

    def _account(self):
        """An Account as O365's docs build it (one per thread in bulk: a Connection is not shared)."""
        import msal
        from O365 import Account
        from O365.connection import MSGraphProtocol
        from O365.utils.token import MemoryTokenBackend

        conn, extra = self.conn, self.conn["extra"]
        os.environ["REQUESTS_CA_BUNDLE"] = extra["ca_bundle"]  # O365's sessions take the CA from here

        class EmulatorProtocol(MSGraphProtocol):
            _protocol_url = extra["graph_url"] + "/"
            _oauth_scope_prefix = extra["graph_url"] + "/"

        account = Account((conn["login"], conn["password"]), auth_flow_type="credentials",
                          tenant_id=extra["tenant_id"], protocol=EmulatorProtocol(default_resource=extra["sender"]),
                          main_resource=extra["sender"], verify_ssl=extra["ca_bundle"],
                          token_backend=MemoryTokenBackend())  # not a token file in the working directory
        con = account.con
        # O365 has no authority setting (login.microsoftonline.com is fixed in Connection); its MSAL client
        # is replaced with one for the emulator's authority, otherwise as O365 builds it.
        con._msal_authority = f"{extra['authority_url']}/{extra['tenant_id']}"
        con._msal_client = msal.ConfidentialClientApplication(
            conn["login"], client_credential=conn["password"], authority=con._msal_authority,
            token_cache=con.token_backend, verify=extra["ca_bundle"], instance_discovery=False)
        if not account.authenticate():
            raise RuntimeError("O365 could not get a token from the emulator")
        return account

    def send(self, subject, to, html, attachment=None, key=None, account=None):
        message = (account or self.account).new_message()
        message.to.add(to)
        message.subject, message.body = subject, html
        if attachment and os.path.getsize(attachment) >= 3 * 2**20:
            # O365's way for large files: save the draft first; attachments added to a saved draft are
            # uploaded when it is saved again (an upload session above UPLOAD_SIZE_LIMIT_SIMPLE, 3 MB).
            message.save_draft()
            message.attachments.add(attachment)
            message.save_draft()
        elif attachment:
            message.attachments.add(attachment)
        if not message.send():
            raise RuntimeError("O365 Message.send() returned False")

    def bulk(self, messages, concurrency: int):
        """Message.send() from ``concurrency`` threads, each with its own Account (O365 waits requests_delay,
        200 ms by default, between one Connection's requests)."""
        def send(subject, to, html, key):
            if not hasattr(self._local, "account"):
                self._local.account = self.account if concurrency == 1 else self._account()
            self.send(subject, to, html, account=self._local.account)

        return in_threads(send, messages, concurrency)


class MsgraphSdk:
    """msgraph-sdk (Microsoft's Python SDK): GraphServiceClient, users.by_user_id(...).send_mail.post()."""

    name = "msgraph-sdk"
    module = "msgraph"

    def __init__(self, conn: dict, smtp_port: int):
        import httpx
        from azure.identity.aio import ClientSecretCredential
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from msgraph import GraphRequestAdapter, GraphServiceClient
        from msgraph_core import GraphClientFactory

        extra = conn["extra"]
        self.sender = extra["sender"]
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        host = extra["authority_url"].split("://", 1)[1]
        self.credential = ClientSecretCredential(extra["tenant_id"], conn["login"], conn["password"], authority=host,
                                                 disable_instance_discovery=True,
                                                 connection_verify=extra["ca_bundle"])
        auth = AzureIdentityAuthenticationProvider(self.credential, scopes=[extra["graph_url"] + "/.default"],
                                                   allowed_hosts=[host.split(":")[0]])
        http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(verify=extra["ca_bundle"]))
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = extra["graph_url"] + "/v1.0"
        self.client = GraphServiceClient(request_adapter=adapter)

    def _body(self, subject, to, html, attachment):
        from msgraph.generated.models.body_type import BodyType
        from msgraph.generated.models.email_address import EmailAddress
        from msgraph.generated.models.file_attachment import FileAttachment
        from msgraph.generated.models.item_body import ItemBody
        from msgraph.generated.models.message import Message
        from msgraph.generated.models.recipient import Recipient
        from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody

        message = Message(subject=subject, body=ItemBody(content_type=BodyType.Html, content=html),
                          to_recipients=[Recipient(email_address=EmailAddress(address=to))])
        if attachment:
            with open(attachment, "rb") as handle:
                data = handle.read()
            message.attachments = [FileAttachment(name=os.path.basename(attachment), content_bytes=data,
                                                  odata_type="#microsoft.graph.fileAttachment")]
        return SendMailPostRequestBody(message=message, save_to_sent_items=True)

    def send(self, subject, to, html, attachment=None, key=None):
        if attachment and os.path.getsize(attachment) >= 3 * 2**20:
            self.loop.run_until_complete(self._send_large(subject, to, html, attachment))
            return
        self.loop.run_until_complete(self._send(subject, to, html, attachment))

    def _send(self, subject, to, html, attachment=None):
        body = self._body(subject, to, html, attachment)
        return self.client.users.by_user_id(self.sender).send_mail.post(body)

    async def _send_large(self, subject, to, html, attachment):
        """Microsoft's large-attachment recipe for the SDK: a draft, an upload session driven by msgraph-core's
        LargeFileUploadTask with the open file and a chunk under Outlook's 4 MB (10 x 320 KiB), then send."""
        from msgraph.generated.models.attachment_item import AttachmentItem
        from msgraph.generated.models.attachment_type import AttachmentType
        from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
            CreateUploadSessionPostRequestBody,
        )
        from msgraph_core.tasks.large_file_upload import LargeFileUploadTask

        mailbox = self.client.users.by_user_id(self.sender)
        draft = await mailbox.messages.post(self._body(subject, to, html, None).message)
        assert draft is not None and draft.id is not None, "Graph answered the draft's POST without an id"
        item = AttachmentItem(attachment_type=AttachmentType.File, name=os.path.basename(attachment),
                              size=os.path.getsize(attachment))
        session = await mailbox.messages.by_message_id(draft.id).attachments.create_upload_session.post(
            CreateUploadSessionPostRequestBody(attachment_item=item))
        with open(attachment, "rb") as stream:
            await LargeFileUploadTask(session, self.client.request_adapter, stream,
                                      max_chunk_size=10 * 320 * 1024).upload()
        await mailbox.messages.by_message_id(draft.id).send.post()

    def bulk(self, messages, concurrency: int):
        """Its async send_mail.post(), ``concurrency`` at a time."""
        return gathered(self.loop, self._send, messages, concurrency)


class SmtpProvider:
    """apache-airflow-providers-smtp: SmtpHook.send_email_smtp, as EmailOperator uses it, to a local SMTP sink."""

    name = "smtp EmailOperator"
    module = "airflow.providers.smtp.operators.smtp"

    def __init__(self, conn: dict, smtp_port: int):
        import json

        if not smtp_port:
            raise Unsupported("no SMTP server")
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": conn["extra"]["sender"]}})
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        self.hook = SmtpHook(smtp_conn_id="smtp_default")
        self.hook.__enter__()

    def send(self, subject, to, html, attachment=None, key=None):
        self.hook.send_email_smtp(to=to, subject=subject, html_content=html, files=[attachment] if attachment else None)

    def bulk(self, messages, concurrency: int):
        raise Unsupported("SMTP, not Graph: the 200 ms Graph latency does not apply to an SMTP server")


PEERS = {"ours": Ours, "azure": AzureProvider, "o365": O365Library, "msgraph-sdk": MsgraphSdk, "smtp": SmtpProvider}
