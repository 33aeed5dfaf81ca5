"""Microsoft's own clients against the emulator, with their defaults: scopes, authority and Graph URL as a
user writes them for the real service. Only host names change: login.microsoftonline.com,
graph.microsoft.com and outlook.office.com resolve to the emulator in this process (the plugin's
``graph_microsoft_hosts``), whose CA is trusted through REQUESTS_CA_BUNDLE and SSL_CERT_FILE.

The clients come with the ``clients`` extra (``pip install -e 'emulator[clients]'``, which the repository's
``make test`` installs); elsewhere these tests skip, unless REQUIRE_CLIENTS is set, as in CI.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os

import pytest

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def need(module: str):
    """The client module, or a skip (a failure when REQUIRE_CLIENTS is set)."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as err:
        if os.environ.get("REQUIRE_CLIENTS"):
            raise
        pytest.skip(f"{module} is not installed ({err}); pip install -e 'emulator[clients]'")


def make_certificate() -> tuple[bytes, bytes]:
    """An app's certificate as Entra takes it: (PEM with the private key and certificate, the certificate
    PEM alone, to upload)."""
    import trustme

    leaf = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("graph-mail-test.example", key_type=trustme.KeyType.RSA)
    return leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes(), leaf.cert_chain_pems[0].bytes()


def claims(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def secret_of(app) -> str:
    return next(iter(app.secrets))


# -- tokens ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def colleague(graph_emulator):
    """Ann is a user of the tenant: contoso.com is an accepted domain there, so an unknown address bounces."""
    graph_emulator.backend.store.add_user("ann@contoso.com")


def test_msal_with_its_defaults(graph_microsoft_hosts):
    msal = need("msal")
    requests = need("requests")
    emu = graph_microsoft_hosts
    default = emu.entra.default_app
    app = msal.ConfidentialClientApplication(default.client_id, client_credential=secret_of(default),
                                             authority=f"https://login.microsoftonline.com/{emu.entra.tenant_id}")
    token = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert claims(token["access_token"])["aud"] == "https://graph.microsoft.com"
    sent = requests.post(f"https://graph.microsoft.com/v1.0/users/{emu.default_sender}/sendMail",
                         headers={"Authorization": f"Bearer {token['access_token']}"},
                         json={"message": {"subject": "from msal",
                                           "toRecipients": [{"emailAddress": {"address": "ann@contoso.com"}}]}})
    assert sent.status_code == 202
    assert [m["subject"] for m in emu.inspect.messages("ann@contoso.com")] == ["from msal"]


@pytest.mark.parametrize("resource, audience", [
    ("https://graph.microsoft.com", "https://graph.microsoft.com"),
    ("00000003-0000-0000-c000-000000000000", "00000003-0000-0000-c000-000000000000"),
    ("https://graph.microsoft.us", "https://graph.microsoft.us"),
    ("https://microsoftgraph.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
])
def test_graph_is_known_by_each_of_its_names(graph_microsoft_hosts, http, resource, audience):
    """As Entra does: the Graph resource by its URL in any cloud or by its application id; the token's aud
    is the name asked for, and the emulator's Graph accepts the token."""
    emu = graph_microsoft_hosts
    answer = http.post(f"{emu.base_url}/{emu.entra.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": emu.entra.default_app.client_id,
        "client_secret": secret_of(emu.entra.default_app), "scope": f"{resource}/.default"})
    token = answer.json()["access_token"]
    assert claims(token)["aud"] == audience
    listed = http.get(f"{emu.base_url}/v1.0/users/{emu.default_sender}/messages",
                      headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200


def test_azure_identity_client_secret_credential(graph_microsoft_hosts):
    identity = need("azure.identity")
    emu = graph_microsoft_hosts
    default = emu.entra.default_app
    credential = identity.ClientSecretCredential(emu.entra.tenant_id, default.client_id, secret_of(default))
    token = credential.get_token(GRAPH_SCOPE)
    assert claims(token.token)["aud"] == "https://graph.microsoft.com" and token.expires_on > 0
    assert claims(token.token)["roles"] == ["Mail.ReadWrite", "Mail.Send"]


def test_azure_identity_certificate_credential(graph_microsoft_hosts):
    identity = need("azure.identity")
    emu = graph_microsoft_hosts
    bundle, certificate = make_certificate()
    app = emu.entra.add_app(certificate_pem=certificate)
    credential = identity.CertificateCredential(emu.entra.tenant_id, app.client_id, certificate_data=bundle)
    assert claims(credential.get_token(GRAPH_SCOPE).token)["appid"] == app.client_id
    stranger = identity.CertificateCredential(emu.entra.tenant_id, app.client_id,
                                              certificate_data=make_certificate()[0])
    from azure.core.exceptions import ClientAuthenticationError

    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        stranger.get_token(GRAPH_SCOPE)


# -- msgraph-sdk -------------------------------------------------------------------------------------


def _graph_client(emu, *, allowed_hosts=None):
    """GraphServiceClient as its README builds it; ``allowed_hosts`` narrows where it sends its token."""
    aio = need("azure.identity.aio")
    msgraph = need("msgraph")
    default = emu.entra.default_app
    credential = aio.ClientSecretCredential(emu.entra.tenant_id, default.client_id, secret_of(default))
    if allowed_hosts is None:
        return credential, msgraph.GraphServiceClient(credential, scopes=[GRAPH_SCOPE])
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph.graph_request_adapter import GraphRequestAdapter

    provider = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=allowed_hosts)
    return credential, msgraph.GraphServiceClient(request_adapter=GraphRequestAdapter(provider))


def _sdk_message(subject: str):
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.recipient import Recipient

    return Message(subject=subject, body=ItemBody(content_type=BodyType.Html, content="<p>From the SDK</p>"),
                   to_recipients=[Recipient(email_address=EmailAddress(address="ann@contoso.com"))])


def test_msgraph_sdk_send_draft_attachment_send(graph_microsoft_hosts):
    need("msgraph")
    from msgraph.generated.models.file_attachment import FileAttachment
    from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody

    emu = graph_microsoft_hosts

    async def run():
        credential, client = _graph_client(emu)
        try:
            mailbox = client.users.by_user_id(emu.default_sender)
            await mailbox.send_mail.post(SendMailPostRequestBody(message=_sdk_message("sdk sendMail"),
                                                                 save_to_sent_items=True))
            draft = await mailbox.messages.post(_sdk_message("sdk draft"))
            assert draft.is_draft and draft.web_link and draft.conversation_id
            attachment = FileAttachment(odata_type="#microsoft.graph.fileAttachment", name="notes.txt",
                                        content_type="text/plain", content_bytes=b"hello")
            added = await mailbox.messages.by_message_id(draft.id).attachments.post(attachment)
            assert added.size == 5 and added.name == "notes.txt"
            await mailbox.messages.by_message_id(draft.id).send.post()
            listed = await mailbox.messages.get()
            return {m.subject for m in listed.value}
        finally:
            await credential.close()

    in_sender = asyncio.run(run())
    assert in_sender == {"sdk sendMail", "sdk draft"}  # both saved to Sent Items
    received = {m["subject"]: m for m in emu.inspect.messages("ann@contoso.com")}
    assert set(received) == {"sdk sendMail", "sdk draft"}
    assert [a["name"] for a in received["sdk draft"]["attachments"]] == ["notes.txt"]


def test_msgraph_core_large_file_upload_task_breaks_on_outlooks_ranges(graph_microsoft_hosts):
    """msgraph-core's LargeFileUploadTask reads Outlook's nextExpectedRanges ("1310720", a start without
    "-end", as Microsoft's uploadSession page says Outlook answers) as if it were OneDrive's "start-end":
    after the first chunk it fails on int(''). Upstream: microsoftgraph/msgraph-sdk-python-core#691.
    The client's token is kept to Graph's host (``allowed_hosts``), since the upload URL is
    pre-authenticated; by default the SDK would send its Graph token there too.

    When this test fails because the upload succeeds, upstream has fixed it: assert the attachment."""
    need("msgraph")
    from msgraph.generated.models.attachment_item import AttachmentItem
    from msgraph.generated.models.attachment_type import AttachmentType
    from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
        CreateUploadSessionPostRequestBody,
    )
    from msgraph_core.tasks.large_file_upload import LargeFileUploadTask

    emu = graph_microsoft_hosts
    content = os.urandom(5 * 1024 * 1024)
    chunk = 4 * 320 * 1024

    async def run():
        credential, client = _graph_client(emu, allowed_hosts=["graph.microsoft.com"])
        try:
            mailbox = client.users.by_user_id(emu.default_sender)
            draft = await mailbox.messages.post(_sdk_message("sdk large"))
            item = AttachmentItem(attachment_type=AttachmentType.File, name="big.bin", size=len(content))
            session = await mailbox.messages.by_message_id(draft.id).attachments.create_upload_session.post(
                CreateUploadSessionPostRequestBody(attachment_item=item))
            assert session.upload_url.startswith("https://outlook.office.com/api/v2.0/")
            task = LargeFileUploadTask(session, client.request_adapter, io.BytesIO(content), max_chunk_size=chunk)
            await task.upload()
        finally:
            await credential.close()

    with pytest.raises(ValueError, match=r"^invalid literal for int\(\) with base 10: ''$"):
        asyncio.run(run())
    puts = [r for r in emu.inspect.request_log if r["method"] == "PUT"]
    assert [(r["status"], r["content_range"]) for r in puts] == [(200, f"bytes 0-{chunk - 1}/{len(content)}")]


# -- O365 --------------------------------------------------------------------------------------------


def test_o365_send_draft_with_large_attachment_send(graph_microsoft_hosts, tmp_path):
    """O365 with its credentials flow: a sendMail, then a draft whose 5 MB attachment goes through
    Outlook's upload session (O365 attaches on the second save of a draft, as its docs say), then sent."""
    o365 = need("O365")
    emu = graph_microsoft_hosts
    # The token goes to a file O365 would otherwise write into the working directory.
    backend = o365.FileSystemTokenBackend(token_path=tmp_path, token_filename="o365_token.txt")
    default = emu.entra.default_app
    account = o365.Account((default.client_id, secret_of(default)), auth_flow_type="credentials",
                           tenant_id=emu.entra.tenant_id, main_resource=emu.default_sender, token_backend=backend)
    assert account.authenticate()
    mailbox = account.mailbox()
    message = mailbox.new_message()
    message.to.add("ann@contoso.com")
    message.subject, message.body = "o365 sendMail", "<p>hello</p>"
    assert message.send()

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024))
    draft = mailbox.new_message()
    draft.to.add("ann@contoso.com")
    draft.subject, draft.body = "o365 draft", "see attached"
    assert draft.save_draft() and draft.object_id
    draft.attachments.add([big])
    assert draft.save_draft()
    assert draft.send()

    received = {m["subject"]: m for m in emu.inspect.messages("ann@contoso.com")}
    assert set(received) == {"o365 sendMail", "o365 draft"}
    assert [(a["name"], a["size"]) for a in received["o365 draft"]["attachments"]] == [("big.bin", 5 * 1024 * 1024)]
    assert emu.inspect.attachment_bytes(received["o365 draft"]["id"])["big.bin"] == big.read_bytes()
    uploads = [r for r in emu.inspect.request_log if r["method"] == "PUT"]
    assert len(uploads) >= 2 and all(r["status"] in (200, 201) and not r["authorization"] for r in uploads)
