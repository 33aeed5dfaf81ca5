"""Attachments of any size through the hook, against the emulator over HTTPS: path choice, upload
sessions, resuming, giving up cleanly, limits checked before any request."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from airflow_graph_mail import MailboxNotEnabledError, MessageValidationError, UploadFailedError
from airflow_graph_mail.graph.upload import CHUNK_UNIT, MAX_CHUNK_BYTES
from airflow_graph_mail.mail.message import Message

MB = 1024 * 1024
KB = 1000


@pytest.fixture
def big_hook(connect, graph_emulator):
    """Both sides at 150 MB, as a tenant whose admin raised the limit."""
    graph_emulator.backend.set_limits(message_size_limit=150 * MB, upload_budget_bytes=2000 * MB)
    return connect(extra={"max_message_size_mb": 150})


def make_file(directory, name: str, size: int) -> tuple[str, str]:
    path = directory / name
    digest = hashlib.sha256()
    with path.open("wb") as file:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 4 * MB))
            file.write(block)
            digest.update(block)
            remaining -= len(block)
    return str(path), digest.hexdigest()


def delivered(emulator, address="ann@example.com", folder="inbox") -> dict:
    (message,) = emulator.inspect.messages(address, folder, with_content=False)
    return {a["name"]: a["sha256"] for a in message["attachments"]}


def calls(emulator) -> list[str]:
    """The request log as short names: sendMail, messages, attachments, createUploadSession, PUT, send..."""
    names = []
    for r in emulator.inspect.request_log:
        if "/oauth2/" in r["path"] or "openid" in r["path"]:
            continue
        last = r["path"].rsplit("/", 1)[-1]
        names.append(r["method"] if "AttachmentSessions" in r["path"] else
                     "draft" if last == "messages" else last)
    return names


@pytest.mark.parametrize("size", [0, 1 * KB, 2_900_000, 2_999_999, 3_000_000, 3_100_000, 10 * MB, 100 * MB],
                         ids=lambda s: f"{s:,}B")
def test_any_size_one_call(big_hook, graph_emulator, tmp_path, size):
    path, digest = make_file(tmp_path, f"données-{size}.bin", size)
    big_hook.send_mail(Message(to="ann@example.com", subject=f"{size}", attachments=[path]))
    assert delivered(graph_emulator) == {f"données-{size}.bin": digest}
    assert delivered(graph_emulator, graph_emulator.default_sender, "sentitems") == {f"données-{size}.bin": digest}
    steps = calls(graph_emulator)
    if 4 * -(-size // 3) < 4 * MB - 64 * 1024 - 1000:  # base64 and JSON fit in one request under 4 MB
        assert steps == ["sendMail"]
    else:
        assert steps[:2] == ["draft", "createUploadSession"] and steps[-1] == "send"
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts") == []


def test_path_per_attachment_at_the_3_mb_boundary(big_hook, graph_emulator, tmp_path):
    """Together over 4 MB: a draft; under 3,000,000 bytes one POST, from 3,000,000 an upload session."""
    below, below_digest = make_file(tmp_path, "below.bin", 2_999_999)
    at, at_digest = make_file(tmp_path, "at.bin", 3_000_000)
    big_hook.send_mail(Message(to="ann@example.com", attachments=[below, at]))
    assert calls(graph_emulator) == ["draft", "attachments", "createUploadSession", "PUT", "send"]
    assert delivered(graph_emulator) == {"below.bin": below_digest, "at.bin": at_digest}


def test_chunks_are_ordered_multiples_of_320_kib_without_authorization(big_hook, graph_emulator, tmp_path):
    path, _ = make_file(tmp_path, "big.bin", 10 * MB + 7)
    big_hook.send_mail(Message(to="ann@example.com", attachments=[path]))
    puts = [r for r in graph_emulator.inspect.request_log if r["method"] == "PUT"]

    def start(content_range: str) -> int:
        match = re.match(r"bytes (\d+)-", content_range)
        assert match, content_range
        return int(match.group(1))

    starts = [start(r["content_range"]) for r in puts]
    assert starts == sorted(starts) and starts[0] == 0
    assert all(r["bytes"] % CHUNK_UNIT == 0 and r["bytes"] <= MAX_CHUNK_BYTES for r in puts[:-1])
    assert sum(r["bytes"] for r in puts) == 10 * MB + 7
    assert not any(r["authorization"] for r in puts)


def test_mixed_with_inline_image(big_hook, graph_emulator, tmp_path):
    files = dict(make_file(tmp_path, name, size) for name, size in
                 [("empty.txt", 0), ("1k.csv", KB), ("2.9m.bin", 2_900_000), ("3m.bin", 3_000_000),
                  ("3.1m.bin", 3_100_000), ("10m.xlsx", 10 * MB)])
    chart, chart_digest = make_file(tmp_path, "chart.png", 20 * KB)
    message = Message(to="ann@example.com", subject="mixed", body='<p>Sales</p><img src="cid:chart.png">',
                      attachments=list(files), inline_images=[chart])
    big_hook.send_mail(message)
    expected = {os.path.basename(p): d for p, d in files.items()} | {"chart.png": chart_digest}
    assert delivered(graph_emulator) == expected
    (mail,) = graph_emulator.inspect.messages("ann@example.com", with_content=False)
    (image,) = [a for a in mail["attachments"] if a["isInline"]]
    assert image["contentId"] == "chart.png" and image["contentType"] == "image/png"


def test_draft_keeps_every_attachment(big_hook, graph_emulator, tmp_path):
    small, small_digest = make_file(tmp_path, "small.csv", 5 * KB)
    large, large_digest = make_file(tmp_path, "large.pdf", 12 * MB)
    draft = big_hook.create_draft(Message(to="ann@example.com", subject="review me", attachments=[small, large]))
    assert draft["id"] and draft["webLink"] and draft["hasAttachments"] is True
    (stored,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts", with_content=False)
    assert {a["name"]: a["sha256"] for a in stored["attachments"]} == {"small.csv": small_digest,
                                                                     "large.pdf": large_digest}
    assert graph_emulator.backend.delivery.sends == 0 and graph_emulator.inspect.messages("ann@example.com") == []
    big_hook.send_draft(draft["id"])
    assert delivered(graph_emulator) == {"small.csv": small_digest, "large.pdf": large_digest}


def test_save_to_sent_items_false_on_the_draft_path(big_hook, graph_emulator, tmp_path):
    path, digest = make_file(tmp_path, "big.bin", 4 * MB)
    big_hook.send_mail(Message(to="ann@example.com", attachments=[path]), save_to_sent_items=False)
    assert delivered(graph_emulator) == {"big.bin": digest}
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems") == []


@pytest.mark.parametrize("fault", ["drop", "drop_after", 503, 500, 429])
def test_broken_upload_resumes(big_hook, graph_emulator, tmp_path, fault):
    path, digest = make_file(tmp_path, "big.bin", 12 * MB)
    graph_emulator.faults.add("upload_chunk", fault, skip=1, retry_after=0 if fault == 429 else None)
    big_hook.send_mail(Message(to="ann@example.com", attachments=[path]))
    assert graph_emulator.faults.fired == [("upload_chunk", fault)]
    assert delivered(graph_emulator) == {"big.bin": digest}
    # the client asked the session where to resume, and sent no byte twice except after an unknown outcome
    assert any(r["method"] == "GET" and "AttachmentSessions" in r["path"] for r in graph_emulator.inspect.request_log)


def test_vanished_session_is_replaced(big_hook, graph_emulator, tmp_path):
    """A session that is gone (expired, 404) is cancelled and the attachment starts again in a new one."""
    path, digest = make_file(tmp_path, "big.bin", 5 * MB)
    graph_emulator.faults.add("upload_chunk", 404, skip=1)
    big_hook.send_mail(Message(to="ann@example.com", attachments=[path]))
    assert calls(graph_emulator).count("createUploadSession") == 2
    assert delivered(graph_emulator) == {"big.bin": digest}


def test_upload_that_fails_for_good_leaves_nothing(big_hook, graph_emulator, tmp_path):
    small, _ = make_file(tmp_path, "small.csv", KB)
    large, _ = make_file(tmp_path, "large.bin", 12 * MB)
    graph_emulator.faults.add("upload_chunk", 503, skip=1, times=100, retry_after=0)
    with pytest.raises(UploadFailedError, match=r"'large.bin': upload stopped at byte 3,932,160 of 12,582,912"):
        big_hook.send_mail(Message(to="ann@example.com", attachments=[small, large]))
    log = list(graph_emulator.inspect.request_log)
    assert log[-1]["method"] == "DELETE" and "/messages/" in log[-1]["path"]  # the draft, deleted last
    assert any(r["method"] == "DELETE" and "AttachmentSessions" in r["path"] for r in log)
    for folder in ("drafts", "sentitems"):
        assert graph_emulator.inspect.messages(graph_emulator.default_sender, folder) == []
    assert graph_emulator.inspect.messages("ann@example.com") == []
    assert not list(graph_emulator.backend.uploads.directory.iterdir())


def test_upload_budget_is_waited_out(connect, graph_emulator, tmp_path):
    """Over the mailbox's upload budget the emulator answers 429 + Retry-After; the upload waits, then goes on."""
    graph_emulator.backend.set_limits(upload_budget_bytes=8 * MB, upload_budget_window=2)
    path, digest = make_file(tmp_path, "big.bin", 10 * MB)
    connect().send_mail(Message(to="ann@example.com", attachments=[path]))
    assert 429 in [r["status"] for r in graph_emulator.inspect.request_log]
    assert delivered(graph_emulator) == {"big.bin": digest}


def test_limits_are_checked_before_any_request(hook, connect, graph_emulator, tmp_path):
    over = tmp_path / "36mb.bin"
    with over.open("wb") as file:
        file.truncate(36 * MB)
    with pytest.raises(MessageValidationError, match=r"36.0 MB but the limit is 35 MB \(connection setting "
                                                     r"max_message_size_mb"):
        hook.send_mail(Message(to="ann@example.com", attachments=[over]))
    with pytest.raises(MessageValidationError, match="limit is 35 MB"):
        hook.create_draft(Message(attachments=[over]))
    with pytest.raises(MessageValidationError, match="limit is 20 MB"):
        connect(extra={"max_message_size_mb": 20}).send_mail(
            Message(to="ann@example.com", attachments=[("x.bin", b"x"), over]))
    from airflow_graph_mail import GraphConfigError

    with pytest.raises(GraphConfigError, match="max_message_size_mb' is '200'; give a number of MB from 1 to 150"):
        connect(extra={"max_message_size_mb": "200"}).send_mail(Message(to="ann@example.com"))
    assert graph_emulator.inspect.side_effect_requests == []


def test_same_errors_on_both_paths(connect, graph_emulator, tmp_path):
    graph_emulator.backend.store.add_user("onprem@contoso.com", rest_enabled=False)
    hook = connect()
    path, _ = make_file(tmp_path, "big.bin", 4 * MB)
    with pytest.raises(MailboxNotEnabledError):
        hook.send_mail(Message(to="ann@example.com", attachments=[("a.txt", "x")]), sender="onprem@contoso.com")
    with pytest.raises(MailboxNotEnabledError):
        hook.send_mail(Message(to="ann@example.com", attachments=[path]), sender="onprem@contoso.com")


def test_attachments_from_object_storage_and_fsspec(big_hook, graph_emulator, tmp_path):
    import fsspec
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    data = os.urandom(3_100_000)
    fsspec.filesystem("memory").pipe("/exports/extract.parquet", data)
    local, local_digest = make_file(tmp_path, "local €.csv", 3 * KB)
    big_hook.send_mail(Message(to="ann@example.com", attachments=[
        "memory://exports/extract.parquet", ObjectStoragePath(f"file://{local}")]))
    assert delivered(graph_emulator) == {"extract.parquet": hashlib.sha256(data).hexdigest(),
                                         "local €.csv": local_digest}
