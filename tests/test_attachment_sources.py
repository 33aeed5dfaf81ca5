"""Attachment sources and the streamed request body (no HTTP)."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_graph_mail import MessageValidationError
from airflow_graph_mail.graph.body import StreamingJson, message_document
from airflow_graph_mail.graph.upload import next_expected_offset
from airflow_graph_mail.mail.attachments import Attachment, expand_sources, inline_images
from airflow_graph_mail.mail.headers import CONTROL
from airflow_graph_mail.mail.message import Message


def test_paths_globs_and_names(tmp_path):
    for name in ("b.csv", "a.csv", "notes.txt", "Übersicht 2026.pdf"):
        (tmp_path / name).write_bytes(name.encode())
    found = expand_sources([str(tmp_path / "*.csv"), tmp_path / "Übersicht 2026.pdf"])
    assert [a.name for a in found] == ["a.csv", "b.csv", "Übersicht 2026.pdf"]
    assert [a.content_type for a in found] == ["text/csv", "text/csv", "application/pdf"]
    assert found[2].read() == "Übersicht 2026.pdf".encode()
    with pytest.raises(MessageValidationError, match=r"pattern .*\*\.xlsx matched no file"):
        expand_sources(str(tmp_path / "*.xlsx"))


def test_bytes_text_and_dicts_from_xcom():
    found = expand_sources([
        ("report.csv", "a,b\n"),
        {"content": "x", "name": "x.json"},
        {"content_base64": base64.b64encode(b"\x89PNG").decode(), "name": "chart.png", "content_type": "image/x-test"},
    ])
    assert [(a.name, a.read(), a.content_type) for a in found] == [
        ("report.csv", b"a,b\n", "text/csv"), ("x.json", b"x", "application/json"),
        ("chart.png", b"\x89PNG", "image/x-test")]


@pytest.mark.parametrize("source, problem", [
    ({"content": "x"}, "needs a 'name'"),
    ({"path": "/a", "content": "x", "name": "n"}, "exactly one of"),
    ({"pathh": "/a"}, "unknown attachment key"),
    ({"content_base64": "***", "name": "n"}, "not valid base64"),
    (42, "cannot attach int"),
    ("   ", "empty attachment path"),
    (("bad\nname.txt", b"x"), "line break"),
    ("memory://nowhere/missing.csv", "file not found"),
])
def test_bad_sources_name_the_problem(source, problem):
    with pytest.raises(MessageValidationError, match=problem):
        expand_sources([source])


def test_fsspec_uris_and_object_storage_path(tmp_path):
    import fsspec
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/reports/q3.xlsx", b"x" * 1000)
    memory.pipe("/bucket/reports/q4.xlsx", b"y" * 10)
    (tmp_path / "local.csv").write_bytes(b"1,2\n")
    found = expand_sources(["memory://bucket/reports/*.xlsx", ObjectStoragePath(f"file://{tmp_path}/local.csv"),
                            f"file://{tmp_path}/local.csv"])
    assert [(a.name, a.size) for a in found] == [("q3.xlsx", 1000), ("q4.xlsx", 10), ("local.csv", 4),
                                                ("local.csv", 4)]
    assert found[0].read() == b"x" * 1000 and found[2].read() == b"1,2\n"
    assert "spreadsheetml" in found[0].content_type


def test_credentials_in_a_uri_never_reach_an_error():
    with pytest.raises(MessageValidationError) as caught:
        expand_sources(["memory://user:s3cret@bucket/missing.csv"])
    assert "s3cret" not in str(caught.value)


def test_sizes_are_checked_without_reading(tmp_path):
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as file:
        file.truncate(150 * 1024 * 1024 + 1)  # sparse: no disk used
    with pytest.raises(MessageValidationError, match=r"huge.bin is 150.0 MB; Graph accepts at most 150 MB"):
        expand_sources(str(huge))


def test_inline_images_and_cid_references(tmp_path):
    (tmp_path / "Sales chart.png").write_bytes(b"\x89PNG")
    images = inline_images({"chart": str(tmp_path / "Sales chart.png")})
    assert images[0].is_inline and images[0].content_id == "chart"
    by_name = inline_images([str(tmp_path / "Sales chart.png")])
    assert by_name[0].content_id == "Sales_chart.png"
    message = Message(to="a@example.com", body='<img src="cid:chart">',
                      inline_images={"chart": str(tmp_path / "Sales chart.png")})
    assert message.to_graph()["attachments"][0]["contentId"] == "chart"
    with pytest.raises(MessageValidationError, match=r"cid:logo but no inline image .*inline images: chart"):
        Message(to="a@example.com", body='<img src="cid:logo">', inline_images={"chart": ("c.png", b"x")})
    with pytest.raises(MessageValidationError, match="used twice"):
        Message(to="a@example.com", inline_images={"a": ("a.png", b"x")},
                attachments=[Attachment.from_bytes("b.png", b"y", is_inline=True, content_id="a")])


@pytest.mark.parametrize("ranges, offset", [
    (["2097152"], 2097152), (["2097152-"], 2097152), (["0-26", "100-"], 0), (["0-"], 0), ([], None),
])
def test_next_expected_ranges_in_every_form(ranges, offset):
    assert next_expected_offset(ranges) == offset


@settings(max_examples=40, derandomize=True, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), max_size=4), name=st.text(
    st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20).filter(
    lambda n: n.strip() and not CONTROL.search(n)))
def test_streamed_body_is_the_same_json(sizes, name):
    """The streamed body equals the one built in memory, and its length is known before sending."""
    attachments = [(f"{name}-{i}", os.urandom(size)) for i, size in enumerate(sizes)]
    message = Message(to="a@example.com", subject=name, body=f"<p>{name}</p>", attachments=attachments)
    document, streams = message_document(message)
    body = StreamingJson({"message": document}, streams)
    sent = b"".join(body)
    assert len(sent) == len(body)
    assert json.loads(sent) == {"message": message.to_graph()}
