"""Per-mailbox throttling and latency in the emulator, checked with plain HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from graph_http import simple


def test_requests_per_window_answer_429_with_retry_after(graph, graph_emulator):
    graph_emulator.set_limits(mailbox_requests=3, mailbox_window=60)
    statuses = [graph("POST", "/sendMail", json={"message": simple()}).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    refused = graph("POST", "/sendMail", json={"message": simple()})
    assert refused.json()["error"]["code"] == "ApplicationThrottled"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(graph_emulator.messages("ann@example.com")) == 3  # a throttled request sends nothing
    assert graph("POST", "/sendMail", user="other@contoso.com", json={"message": simple()}).status_code != 429


def test_concurrency_limit_per_mailbox(graph, graph_emulator):
    graph_emulator.set_limits(mailbox_concurrency=2, latency=0.3)
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(lambda _: graph("POST", "/sendMail", json={"message": simple()}).status_code,
                                 range(5)))
    assert statuses.count(202) >= 2 and 429 in statuses
    assert len(graph_emulator.messages("ann@example.com")) == statuses.count(202)
    graph_emulator.reset()
    assert graph_emulator.latency == 0 and graph_emulator.throttle.concurrency == 4
