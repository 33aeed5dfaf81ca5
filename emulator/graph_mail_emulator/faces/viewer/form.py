"""The viewer's "send a mail to this mailbox" form, read from its POST: multipart/form-data (with files) or
urlencoded, parsed by the standard library's email package (a form is a MIME multipart)."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qsl

from graph_mail_emulator.http.wire import Request


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (name, content type, bytes)


def read_form(request: Request) -> Form:
    """The fields (the last value of each name) and the uploaded files; anything unreadable is left out."""
    kind = request.headers.get("content-type", "")
    form = Form()
    if kind.split(";")[0].strip().lower() == "multipart/form-data":
        parsed = BytesParser(policy=policy.default).parsebytes(
            b"Content-Type: " + kind.encode("latin-1", "replace") + b"\r\n\r\n" + request.body)
        for part in parsed.iter_parts() if parsed.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            filename = part.get_filename()
            payload = part.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
            if filename:
                form.files.append((filename, part.get_content_type(), content))
            elif filename is None:
                form.fields[name] = content.decode("utf-8", "replace")
    else:
        form.fields.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return form
