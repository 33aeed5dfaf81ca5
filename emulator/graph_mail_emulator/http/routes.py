"""URL table: which handler answers which method and path (Graph's segments are case-insensitive)."""

from __future__ import annotations

import re

_USER = r"/(?P<version>v1\.0|beta)/(?:me|users/(?P<user>[^/]+))"
_FOLDER = r"/mailFolders/(?P<folder>[^/]+)"
# Outlook's pre-authenticated upload URL, as in Microsoft's example (the authtoken is in the query).
_UPLOAD = r"/api/v2\.0/Users\('(?P<upload_user>[^']+)'\)/Messages\('(?P<message>[^']+)'\)" \
          r"/AttachmentSessions\('(?P<session>[^']+)'\)"

ROUTES = [
    ("GET", r"/common/discovery/instance", "instance_discovery"),
    ("GET", r"/(?P<tenant>[^/_][^/]*)/v2\.0/\.well-known/openid-configuration", "openid_configuration"),
    ("POST", r"/(?P<tenant>[^/_][^/]*)/oauth2/v2\.0/token", "token"),
    ("GET", r"/metadata/identity/oauth2/token", "imds_token"),
    ("GET", r"/msi/token", "app_service_token"),
    ("POST", _USER + r"/sendMail", "send_mail"),
    ("POST", _USER + r"/messages", "create_message"),
    ("POST", _USER + _FOLDER + r"/messages", "create_message"),
    ("GET", _USER + r"/messages", "list_messages"),
    ("GET", _USER + _FOLDER + r"/messages", "list_messages"),
    ("GET", _USER + _FOLDER + r"/messages/(?:microsoft\.graph\.)?delta(?:\(\))?", "delta_messages"),
    ("GET", _USER + r"/messages/(?P<id>[^/]+)", "get_message"),
    ("GET", _USER + r"/messages/(?P<id>[^/]+)/\$value", "get_mime"),
    ("POST", _USER + r"/messages/(?P<id>[^/]+)/move", "move_message"),
    ("POST", _USER + r"(?:/mailFolders/[^/]+)?/messages/(?P<id>[^/]+)/(?:microsoft\.graph\.)?"
             r"(?P<action>createReply|createReplyAll|createForward)", "create_reply"),
    ("POST", _USER + r"(?:/mailFolders/[^/]+)?/messages/(?P<id>[^/]+)/(?:microsoft\.graph\.)?"
             r"(?P<action>reply|replyAll|forward)", "reply"),
    ("GET", _USER + _FOLDER, "get_folder"),
    ("POST", _USER + r"/messages/(?P<id>[^/]+)/send", "send_draft"),
    ("DELETE", _USER + r"/messages/(?P<id>[^/]+)", "delete_message"),
    ("PATCH", _USER + r"/messages/(?P<id>[^/]+)", "update_message"),
    ("POST", _USER + r"/messages/(?P<id>[^/]+)/attachments", "create_attachment"),
    ("GET", _USER + r"/messages/(?P<id>[^/]+)/attachments", "list_attachments"),
    ("GET", _USER + r"/messages/(?P<id>[^/]+)/attachments/(?P<attachment>[^/]+)", "get_attachment"),
    ("GET", _USER + r"/messages/(?P<id>[^/]+)/attachments/(?P<attachment>[^/]+)/\$value", "attachment_value"),
    ("POST", _USER + r"/messages/(?P<id>[^/]+)/attachments/(?:microsoft\.graph\.)?createUploadSession",
     "create_upload_session"),
    ("PUT", _UPLOAD, "upload_chunk"),
    ("GET", _UPLOAD, "upload_status"),
    ("DELETE", _UPLOAD, "cancel_upload"),
    ("GET", r"/_emulator/mailboxes", "inspect_mailboxes"),
    ("GET", r"/_emulator/mailboxes/(?P<mailbox>[^/]+)/budget", "inspect_budget"),
    ("GET", r"/_emulator/mailboxes/(?P<mailbox>[^/]+)/(?P<folder>[^/]+)", "inspect_folder"),
    ("GET", r"/_emulator/clock", "inspect_clock"),
    ("POST", r"/_emulator/clock", "move_clock"),
    ("GET", r"/_emulator/messages/(?P<id>[^/]+)\.eml", "inspect_eml"),
    ("GET", r"/_emulator/messages/(?P<id>[^/]+)", "inspect_message"),
    ("POST", r"/_emulator/messages/(?P<id>[^/]+)/send", "review_send"),
    ("POST", r"/_emulator/messages/(?P<id>[^/]+)/discard", "review_discard"),
    ("GET", r"/_emulator/requests", "inspect_requests"),
    ("GET", r"/_emulator/deliveries", "inspect_deliveries"),
    ("POST", r"/_emulator/reset", "reset"),
    ("POST", r"/_emulator/inbound", "inbound_receive"),
    ("POST", r"/_emulator/delta/expire", "inbound_expire_delta"),
    ("GET", r"/owa/", "web_link"),
    # The mailbox viewer (handlers named viewer_* live in emulator/viewer/pages.py).
    ("GET", r"/", "viewer_index"),
    ("GET", r"/_viewer/version", "viewer_version"),
    ("GET", r"/_viewer/static/(?P<asset>[\w.-]+)", "viewer_static"),
    ("GET", r"/_viewer/messages/(?P<id>[^/]+)", "viewer_message"),
    ("GET", r"/_viewer/messages/(?P<id>[^/]+)/body", "viewer_body"),
    ("GET", r"/_viewer/messages/(?P<id>[^/]+)/source", "viewer_source"),
    ("GET", r"/_viewer/messages/(?P<id>[^/]+)/attachments/(?P<attachment>[^/]+)", "viewer_attachment"),
    ("GET", r"/_viewer/messages/(?P<id>[^/]+)/cid/(?P<cid>.+)", "viewer_inline"),
    ("POST", r"/_viewer/messages/(?P<id>[^/]+)/send", "viewer_send"),
    ("POST", r"/_viewer/messages/(?P<id>[^/]+)/discard", "viewer_discard"),
    ("POST", r"/_viewer/clear", "viewer_clear"),
    ("POST", r"/_viewer/mailboxes/(?P<mailbox>[^/]+)/clear", "viewer_clear"),
    ("POST", r"/_viewer/mailboxes/(?P<mailbox>[^/]+)/receive", "viewer_receive"),
]

COMPILED = [(method, re.compile(f"^{pattern}$", re.IGNORECASE), name) for method, pattern, name in ROUTES]


def match(method: str, path: str) -> tuple[str, dict] | None:
    """(handler name, path parameters), or None when no route has this path at all."""
    for route_method, pattern, name in COMPILED:
        found = pattern.match(path)
        if found and route_method == method:
            return name, found.groupdict()
    return None


def methods_for(path: str) -> list[str]:
    """The methods some route takes on this path (for a 405's Allow header)."""
    return sorted({method for method, pattern, _ in COMPILED if pattern.match(path)})
