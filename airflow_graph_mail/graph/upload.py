"""Outlook upload sessions: one attachment sent in ordered chunks to a pre-authenticated URL.

The upload URL carries its own token, so no Authorization header goes with it. Chunks are at most 4 MB
and multiples of 320 KiB (except the last). After a failed or interrupted chunk the upload resumes where
the server says it should ("nextExpectedRanges": ["2097152"] in Outlook's form, or "a-b" / "a-" ranges),
waiting as the connection's retry policy says; on giving up the session is deleted. A session that is
gone (401/404) or a last chunk whose answer was lost leaves the outcome unknown: the caller counts the
draft's attachments to settle it (``submit_once``).
"""

from __future__ import annotations

import logging

import requests

from airflow_graph_mail.errors import (
    AttachmentReadError,
    GraphConfigError,
    OutcomeUnknownError,
    UnexpectedAnswerError,
    UploadFailedError,
)
from airflow_graph_mail.graph.call import Call
from airflow_graph_mail.graph.errors import error_from_response
from airflow_graph_mail.graph.retry import retry_after_seconds
from airflow_graph_mail.redact import redact_url_secrets

log = logging.getLogger(__name__)

CHUNK_UNIT = 320 * 1024
MAX_CHUNK_BYTES = 4 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 12 * CHUNK_UNIT  # 3.75 MiB: the largest multiple of 320 KiB under 4 MB


def check_chunk_size(chunk_size: int) -> int:
    if chunk_size <= 0 or chunk_size % CHUNK_UNIT or chunk_size > MAX_CHUNK_BYTES:
        raise GraphConfigError(f"upload chunk size {chunk_size}: must be a multiple of 320 KiB (327680) and at most "
                               "4 MB")
    return chunk_size


def next_expected_offset(ranges) -> int | None:
    """nextExpectedRanges -> the first byte the server still wants; None when it wants nothing more."""
    if not ranges:
        return None
    starts = []
    for item in ranges:
        start = str(item).split("-", 1)[0].strip()
        if not start.isdigit():
            raise UnexpectedAnswerError(f"unreadable nextExpectedRanges entry {item!r}")
        starts.append(int(start))
    return min(starts)


def expected_offset(response) -> int | None:
    """An upload session's answer -> the next byte it wants (None: nothing more)."""
    try:
        ranges = response.json().get("nextExpectedRanges")
    except (ValueError, AttributeError):
        raise UnexpectedAnswerError("the upload session's answer is not the JSON Graph documents") from None
    return next_expected_offset(ranges)


class _Source:
    """The attachment's stream, positioned at any offset (seeking, or reopening when it cannot seek back)."""

    def __init__(self, attachment):
        self.attachment = attachment
        self.stream = attachment.open()
        self.position = 0

    def read_at(self, offset: int, length: int) -> bytes:
        if offset != self.position:
            try:
                self.stream.seek(offset)
            except (OSError, ValueError, AttributeError):
                self.close()
                self.stream = self.attachment.open()
                self._skip(offset)
            self.position = offset
        data = self.stream.read(length)
        if len(data) != length:
            raise AttachmentReadError(f"{self.attachment.name} changed while it was being sent: wanted bytes "
                                      f"{offset}-{offset + length - 1}, got {len(data)}")
        self.position += length
        return data

    def _skip(self, offset: int) -> None:
        remaining = offset
        while remaining:
            block = self.stream.read(min(remaining, MAX_CHUNK_BYTES))
            if not block:
                raise AttachmentReadError(f"{self.attachment.name} is shorter than {offset} bytes")
            remaining -= len(block)

    def close(self) -> None:
        self.stream.close()


class AttachmentUpload:
    """PUT the chunks of one attachment to ``upload_url``; ``run()`` returns the attachment's URL."""

    def __init__(self, transport, call: Call, upload_url: str, attachment, *,
                 chunk_size: int = DEFAULT_CHUNK_BYTES):
        self.session = transport.session
        self.timeout = transport.timeout
        self.call = call
        self.url = upload_url
        self.attachment = attachment
        self.chunk_size = check_chunk_size(chunk_size)
        self.requests = 0

    def run(self) -> str:
        size = self.attachment.size
        source = _Source(self.attachment)
        offset, attempts, unheard = 0, 0, False
        try:
            while True:
                length = min(self.chunk_size, size - offset)
                response = None
                error: Exception | None = None
                try:
                    response = self._put(offset, source.read_at(offset, length), size)
                except requests.RequestException as err:  # dropped connection, timeout: state unknown
                    error, unheard = err, True
                if response is not None and response.status_code == 201:
                    return response.headers.get("Location", "")
                if response is not None and response.status_code == 200:
                    try:
                        wanted = expected_offset(response)
                    except UnexpectedAnswerError as err:
                        error = err
                    else:
                        wanted = offset + length if wanted is None else wanted
                        if wanted > offset:
                            offset, attempts, unheard = wanted, 0, False
                            continue
                        error = UnexpectedAnswerError(f"the server asked for byte {wanted} again after a chunk "
                                                      f"at {offset}")
                elif response is not None:
                    error = error_from_response(response)
                    if response.status_code in (401, 404):  # the session is gone: finished, or expired?
                        raise OutcomeUnknownError("PUT", "upload session", error or OSError("gone"))
                    if not _retryable(response.status_code):
                        raise UploadFailedError(self.attachment.name, offset, size, attempts + 1,
                                                error or OSError("refused"))
                attempts += 1
                retry_after = retry_after_seconds(response.headers.get("Retry-After")) if response is not None \
                    else None
                delay = self.call.budget.delay(retry_after)
                if delay is None:
                    if unheard and offset + length >= size:  # the last chunk may have completed it
                        raise OutcomeUnknownError("PUT", "upload session", error or OSError("no answer"))
                    raise UploadFailedError(self.attachment.name, offset, size, attempts, error or OSError("no answer"))
                log.warning("Upload of %s: chunk at byte %s failed (%s); retrying in %.1fs from where the "
                            "server says to resume", self.attachment.name, offset, redact_url_secrets(str(error)),
                            delay)
                self.call.budget.wait(delay)
                offset = self._resume_offset(offset)
        except BaseException:
            self.cancel()
            raise
        finally:
            source.close()

    def _put(self, offset: int, data: bytes, size: int):
        self.requests += 1
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                   "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{size}"}
        return self.session.put(self.url, data=data, headers=headers, timeout=self.timeout)

    def _resume_offset(self, fallback: int) -> int:
        """Ask the session where to continue; when it cannot say, resend the chunk that failed. A session
        that is gone (the last chunk completed it, or it expired) leaves the outcome to the caller."""
        try:
            response = self.session.get(self.url, timeout=self.timeout)
        except requests.RequestException as err:
            log.info("Upload of %s: no session status (%s); resending from byte %s", self.attachment.name,
                     redact_url_secrets(str(err)), fallback)
            return fallback
        if response.status_code in (401, 404):
            raise OutcomeUnknownError("GET", "upload session", error_from_response(response))
        if response.status_code == 200:
            try:
                offset = expected_offset(response)
            except UnexpectedAnswerError:
                return fallback
            if offset is not None:
                return offset
        return fallback

    def cancel(self) -> None:
        """DELETE the upload URL (best effort) so the server drops what it received."""
        try:
            self.session.delete(self.url, timeout=self.timeout)
        except requests.RequestException as err:
            log.warning("Could not delete the upload session of %s: %s", self.attachment.name,
                        redact_url_secrets(str(err)))


def _retryable(status: int) -> bool:
    return status in (408, 416, 429) or status >= 500
