"""Many clients at once: a test suite, a triggerer full of gates or a load test connect together, and none of
them may time out waiting for the emulator to accept its connection or finish its TLS handshake."""

from __future__ import annotations

import asyncio
import ssl
import time

from graph_mail_emulator import GraphEmulator

CLIENTS = 1000
CONNECT_TIMEOUT = 20.0  # far above what a healthy server needs; the old accept loop hit 60 s at 200


async def _one(host: str, port: int, context: ssl.SSLContext) -> tuple[str, float]:
    """Connect, handshake and ask for the mailboxes page on a kept-alive connection: ("ok" | why, seconds)."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname="localhost"), CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as err:
        return f"connect: {type(err).__name__}", time.monotonic() - started
    try:
        writer.write(b"GET /_emulator/mailboxes HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), CONNECT_TIMEOUT)
        return ("ok" if status.startswith(b"HTTP/1.1 200") else f"status: {status!r}"), time.monotonic() - started
    except (OSError, asyncio.TimeoutError) as err:
        return f"answer: {type(err).__name__}", time.monotonic() - started
    finally:
        writer.close()


async def _all(host: str, port: int, context: ssl.SSLContext) -> list[tuple[str, float]]:
    return await asyncio.gather(*(_one(host, port, context) for _ in range(CLIENTS)))


def test_a_thousand_tls_clients_connect_at_once_without_a_timeout(tmp_path):
    with GraphEmulator(tmp_path) as emulator:
        context = ssl.create_default_context(cafile=str(emulator.ca_path))
        results = asyncio.run(_all(emulator.site.host, emulator.site.port, context))
    failures = [why for why, _ in results if why != "ok"]
    assert failures == [], f"{len(failures)} of {CLIENTS} failed: {sorted(set(failures))}"


def test_answers_leave_without_waiting_for_the_clients_ack(graph_emulator, http, monkeypatch):
    """The headers and the body of an answer are two writes; with Nagle's algorithm on, the body of every answer
    on a kept-alive connection waited for the client's delayed ACK (a 45 ms GET; 7 ms without)."""
    import socket

    from graph_mail_emulator.http.server import _Handler

    nodelay = []
    setup = _Handler.setup

    def recording_setup(handler):
        setup(handler)
        nodelay.append(handler.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(_Handler, "setup", recording_setup)
    assert http.get(f"{graph_emulator.base_url}/_emulator/mailboxes", timeout=10).status_code == 200
    assert nodelay and all(nodelay)
