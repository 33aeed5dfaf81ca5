"""Property tests against the emulator: every input either gets a clear error before any request, or is
delivered and reads back exactly as given (subject, body, recipients, attachment names and bytes).

Fixed seed (derandomize), no example database, a bounded number of examples: the same run every time.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_graph_mail import MessageValidationError
from airflow_graph_mail.mail.message import Message

PROPERTY = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
_local = st.text("abcdefghijklmnopqrstuvwxyz0123456789.!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=20)
_label = st.one_of(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12),
                   st.sampled_from(["bücher", "münchen", "例え", "пример", "xn--bcher-kva"]))
_domain = st.lists(_label, min_size=1, max_size=2).map(lambda labels: ".".join([*labels, "example"]))
_address = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domain)


@pytest.fixture
def sent(hook, graph_emulator):
    """sent(message) -> the copy in the sender's Sent Items (with attachments), or the validation error."""
    def _send(message_factory):
        graph_emulator.reset()
        try:
            message = message_factory()
            hook.send_mail(message)
        except MessageValidationError as err:
            assert str(err).split(":")[0], err  # names a field
            assert graph_emulator.inspect.side_effect_requests == []
            return err
        (copy,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
        return copy

    return _send


@PROPERTY
@given(subject=_text, body=_text, html=st.booleans())
def test_subject_and_body_read_back_exactly(sent, subject, body, html):
    result = sent(lambda: Message(to="ann@example.com", subject=subject, body=body,
                                  body_type="html" if html else "text"))
    if isinstance(result, MessageValidationError):
        assert result.field == "subject" and ("\r" in subject or "\n" in subject)
        return
    assert result["subject"] == subject
    assert result["body"] == {"contentType": "html" if html else "text", "content": body}


@PROPERTY
@given(entries=st.lists(st.tuples(_text, _address), min_size=1, max_size=4), quote=st.booleans())
def test_recipients_read_back_exactly(sent, entries, quote):
    def written(name: str, address: str) -> str:
        if not name:
            return address
        if quote:  # as a careful user (or formataddr) writes it
            return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + f'" <{address}>'
        return f"{name} <{address}>"

    result = sent(lambda: Message(to=[written(name, address) for name, address in entries]))
    if isinstance(result, MessageValidationError):
        assert result.field.startswith("to")
        return
    got = [(r["emailAddress"].get("name", ""), r["emailAddress"]["address"]) for r in result["toRecipients"]]
    # Exactly as given; only whitespace around a display name is not part of it.
    assert got == [(name.strip(), address) for name, address in entries]


@PROPERTY
@given(files=st.lists(st.tuples(_text, st.binary(max_size=3000)), min_size=1, max_size=3))
def test_attachment_names_and_bytes_read_back_exactly(sent, graph_emulator, files):
    result = sent(lambda: Message(to="ann@example.com", subject="files", attachments=list(files)))
    if isinstance(result, MessageValidationError):
        assert result.field == "attachments"
        return
    names = [a["name"] for a in result["attachments"]]
    assert names == [name for name, _ in files]
    stored = [a["content"] for a in graph_emulator.backend.store.attachments(result["id"], with_content=True)]
    assert stored == [data for _, data in files]
