"""The review gates' shared watch of a mailbox's Drafts (triggers/drafts.py): gates in one loop ask Graph one
change-tracking round per mailbox instead of a look each per poke, and still miss nothing: a draft sent,
discarded, deleted or moved away, a delta link Graph dropped, a watch Graph refuses. CPU lives in
bench/trigger_loop.py; these pin behaviour against the emulator over HTTPS."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import pytest

POKE = 0.2


def gate(message_id: str, **kwargs):
    from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger

    kwargs.setdefault("poke_interval", POKE)
    kwargs.setdefault("deadline", time.time() + 45)
    return GraphDraftSentTrigger(graph_mail_conn_id="graph_mail_default", message_id=message_id, **kwargs)


def drafts(hook, count: int) -> list[str]:
    from airflow_graph_mail.mail.message import Message

    return [hook.create_draft(Message(to="board@example.com", subject=f"Report {n}"))["id"] for n in range(count)]


def run_gates(triggers, steps, *, linger: float = 0.0, expect: int | None = None,
              limit: float = 60.0) -> dict[int, dict]:
    """Run the gates in one loop; ``steps``: (seconds after the start, a blocking action) run in order in a
    thread; once ``expect`` gates fired, or ``linger`` seconds after the last step, the gates still waiting are
    cancelled. The events by index."""
    events: dict[int, dict] = {}

    async def first(n, trigger):
        async for event in trigger.run():
            events[n] = event.payload
            return

    async def main():
        loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(first(n, t)) for n, t in enumerate(triggers)]
        start = loop.time()
        for at, action in steps:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            await loop.run_in_executor(None, action)
        until = loop.time() + linger
        while loop.time() < until and len(events) < (len(tasks) if expect is None else expect):
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), limit))
    return events


def look_log(emulator, message_id: str | None = None) -> list[dict]:
    """GETs of a draft by its id (the gates' own looks), of one draft or all; not the watch's rounds."""
    return [r for r in emulator.inspect.request_log
            if r["method"] == "GET" and "/messages/" in r["path"] and "/messages/delta" not in r["path"]
            and (message_id is None or r["path"].endswith(f"/messages/{message_id}"))]


def own_looks(emulator) -> Counter:
    return Counter(r["path"].split("/messages/")[1] for r in look_log(emulator))


def rounds(emulator) -> list[dict]:
    return [r for r in emulator.inspect.request_log if "/mailFolders/drafts/messages/delta" in r["path"]]


def test_gates_on_one_mailbox_share_a_watch_of_drafts_and_each_fires_on_its_own_draft(hook, graph_emulator):
    """Ten gates, poke 0.2 s, for 10 s: each looked at its own draft about 50 times before; now a look or two each
    and one round of the mailbox's Drafts per half poke. Sent, discarded (Deleted Items) and deleted outright
    wake their own gates only."""
    ids = drafts(hook, 10)
    inspect = graph_emulator.inspect
    events = run_gates([gate(i) for i in ids], [
        (3.0, lambda: inspect.send_as_reviewer(ids[0], {"subject": "Reviewed"})),
        (3.0, lambda: inspect.discard_as_reviewer(ids[1])),
        (3.0, lambda: inspect.discard_as_reviewer(ids[2], hard=True)),
    ], linger=8.0, expect=3)  # a draft gone is confirmed by three looks, 2 s apart
    assert events[0]["status"] == "sent" and events[0]["message"]["subject"] == "Reviewed"
    assert events[1] == {"status": "discarded", "how": "moved to Deleted Items"}
    assert events[2] == {"status": "discarded", "how": "deleted"}
    assert set(events) == {0, 1, 2}  # the seven others still wait
    # Before: a look each poke; now none once the watch covers every gate (a gate that joined after the first
    # round began looks once more after the next), whatever the others' drafts do.
    third_round = rounds(graph_emulator)[2]["time"]
    for waiting in ids[3:]:
        assert [r for r in look_log(graph_emulator, waiting) if r["time"] > third_round] == []
    assert 10 <= len(rounds(graph_emulator)) <= 12.0 / (POKE / 2) + 2  # one watch, not one per gate
    assert all(r["status"] == 200 for r in rounds(graph_emulator))


def test_a_draft_moved_out_of_drafts_is_looked_at_by_its_own_gate_until_sent(hook, graph_emulator):
    """Moved to Archive while its gate waits on the watch: the watch sees it leave, the gate finds it still a
    draft elsewhere and from then on looks for itself each poke; sent from there, it fires."""
    from airflow_graph_mail.graph.inbound import MailboxReader

    (draft,) = drafts(hook, 1)
    reader = MailboxReader(hook.client)
    events = run_gates([gate(draft)], [
        (1.5, lambda: reader.move(draft, "archive")),
        (3.0, lambda: graph_emulator.inspect.send_as_reviewer(draft)),
    ], linger=5.0)
    assert events[0]["status"] == "sent", events
    looks_by_time = [r["time"] for r in look_log(graph_emulator, draft)]
    moved_at = next(r["time"] for r in graph_emulator.inspect.request_log if r["path"].endswith("/move"))
    # waiting on the watch until the move (the one GET then is the move's own check of where the draft is)
    assert len([t for t in looks_by_time if rounds(graph_emulator)[1]["time"] < t < moved_at]) <= 1
    assert 4 <= len([t for t in looks_by_time if t > moved_at]) <= 15  # the gate's own looks, every poke


def test_an_expired_delta_link_lists_drafts_again_and_misses_nothing(hook, graph_emulator, caplog):
    """The draft is sent, then Graph drops the watch's delta link (410 syncStateNotFound) before the next round:
    the watch lists Drafts again, does not find it, and wakes its gate (the removal itself is never reported)."""
    from airflow_graph_mail.triggers.drafts import UNLISTED

    first, other = drafts(hook, 2)

    async def main():
        watch, waiters = watch_by_hand(hook, first, other)
        rounds_by_hand(watch)  # the first round: Drafts listed
        graph_emulator.inspect.send_as_reviewer(first)
        graph_emulator.inbound.expire_delta_links()
        rounds_by_hand(watch)
        woken = [waiter.take() for waiter in waiters]
        for waiter in waiters:
            waiter.close()
        return woken

    with caplog.at_level(logging.WARNING, logger="airflow_graph_mail.triggers.drafts"):
        assert asyncio.run(main()) == [UNLISTED, None]
    assert [r["status"] for r in rounds(graph_emulator)] == [200, 410, 200]
    assert "restarts (410 syncStateNotFound)" in caplog.text


def test_gates_look_for_themselves_when_graph_refuses_the_watch(hook, graph_emulator, caplog):
    """A watch Graph refuses (403 on delta) costs one warning: every gate goes back to a look each poke, and fires;
    the watch asks again only after MAX_BACKOFF."""
    ids = drafts(hook, 2)
    graph_emulator.faults.add("delta_messages", 403, times=1000)
    with caplog.at_level(logging.WARNING, logger="airflow_graph_mail.triggers.drafts"):
        events = run_gates([gate(i) for i in ids],
                           [(2.0, lambda: graph_emulator.inspect.send_as_reviewer(ids[1]))], linger=4.0, expect=1)
    assert set(events) == {1} and events[1]["status"] == "sent"
    assert caplog.text.count("look at their drafts one by one, and the watch tries again in 300.0s") == 1
    assert len(rounds(graph_emulator)) == 1
    assert own_looks(graph_emulator)[ids[0]] >= 8  # every poke, as without the watch


def test_a_gate_looks_for_itself_now_and_then_even_if_the_watch_says_nothing(hook, graph_emulator, monkeypatch):
    """The watch is a speed-up, not the only way to see a draft go: past SELF_LOOK_AFTER a gate looks again."""
    from airflow_graph_mail.triggers import drafts as watch

    monkeypatch.setattr(watch, "SELF_LOOK_AFTER", 0.5)
    (draft,) = drafts(hook, 1)
    run_gates([gate(draft, poke_interval=0.02)], [(3.0, lambda: None)])
    ready = next(r["time"] for r in rounds(graph_emulator) if r["status"] == 200)
    # a look every 0.5 s once the watch is ready (a look every poke would be a hundred); the watch says nothing
    assert 3 <= len([r for r in look_log(graph_emulator, draft) if r["time"] > ready + 0.3]) <= 7


def test_the_watch_stops_with_its_last_gate(hook, graph_emulator):
    """Gates that end (a deadline, here) leave the watch; the last one stops its rounds."""
    from airflow_graph_mail.triggers import drafts as watch

    ids = drafts(hook, 2)
    left: list = []

    async def main():
        async def wait(trigger):
            return [event.payload async for event in trigger.run()]

        loop = asyncio.get_running_loop()
        longer = asyncio.ensure_future(wait(gate(ids[0], deadline=time.time() + 2.0)))
        shorter = await wait(gate(ids[1], deadline=time.time() + 1.0))
        await asyncio.sleep(0.1)  # the gate's wait, cancelled at its deadline, has left
        left.append({key: sorted(w.waiters) for key, w in watch._watches.get(loop, {}).items()})
        payloads = shorter + await longer
        await asyncio.sleep(0.5)  # and a round under way when it stopped has been answered
        left.append(dict(watch._watches.get(loop, {})))
        seen = len(rounds(graph_emulator))
        await asyncio.sleep(1.0)
        return payloads, seen

    payloads, seen = asyncio.run(main())
    assert payloads == [{"status": "timeout"}, {"status": "timeout"}]
    assert [list(watches.values()) for watches in left] == [[[ids[0]]], []]
    assert len(rounds(graph_emulator)) == seen > 0


def test_while_the_watch_fails_its_gates_look_for_themselves_and_after_it_they_wait_again(hook, graph_emulator):
    """Rounds answered 503 (no Retry-After: 1 s, then 2 s apart): the gates look every poke meanwhile, not blind
    for the watch's back-off; once a round works they wait on it again, and a send still wakes them."""
    (draft,) = drafts(hook, 1)
    graph_emulator.faults.add("delta_messages", 503, times=2)
    sent: list[float] = []

    def send() -> None:
        sent.append(time.time())
        graph_emulator.inspect.send_as_reviewer(draft)

    events = run_gates([gate(draft)], [(6.0, send)], linger=4.0)
    assert events[0]["status"] == "sent", events
    failed, worked = [r["time"] for r in rounds(graph_emulator) if r["status"] == 503], \
        [r["time"] for r in rounds(graph_emulator) if r["status"] == 200]
    assert len(failed) == 2 and worked and min(worked) > max(failed)
    looks = [r["time"] for r in look_log(graph_emulator, draft)]
    assert len([t for t in looks if failed[0] < t < min(worked)]) >= 8  # every 0.2 s, for 3 s
    assert len([t for t in looks if min(worked) + 0.5 < t < sent[0]]) <= 1  # waiting on the watch again


def watch_by_hand(hook, *message_ids):
    """A watch with gates joined, its rounds run by hand on the test's loop (real rounds over HTTPS)."""
    from airflow_graph_mail.triggers import drafts as watch

    waiters = [watch.join(hook.client, hook.client.call(None).mailbox, message_id, POKE) for message_id in message_ids]
    return waiters[0].watch, waiters


def rounds_by_hand(watch, wanted: set[str] | None = None) -> None:
    """One round of ``watch`` as its task runs it (``wanted``: the ids it follows, taken when it starts)."""
    wanted = set(watch.waiters) if wanted is None else wanted
    watch._wake(wanted, *watch._round(wanted))


def test_a_draft_that_leaves_during_a_round_wakes_a_gate_that_joined_during_it(hook, graph_emulator):
    """The round's ids to follow are taken when it starts; a gate that joins, looks and sees its draft leave
    before Graph answers the round is woken by that round all the same (dropped before: no wake for 5 minutes)."""
    from airflow_graph_mail.triggers.drafts import LEFT

    first, later = drafts(hook, 2)

    async def main():
        watch, (waiter,) = watch_by_hand(hook, first)
        rounds_by_hand(watch)  # the first round: Drafts listed
        wanted = set(watch.waiters)  # the next round starts: the gate of ``later`` has not joined yet
        (joined,) = watch_by_hand(hook, later)[1]
        graph_emulator.inspect.send_as_reviewer(later)  # after the joined gate's look, before Graph answers
        rounds_by_hand(watch, wanted)
        woken = (joined.take(), waiter.take())
        for each in (waiter, joined):
            each.close()
        return woken

    assert asyncio.run(main()) == (LEFT, None)


def test_a_gate_that_joins_a_running_watch_looks_once_more_after_the_next_round(hook, graph_emulator):
    """A draft made after one round and sent before the next may never be reported gone (Exchange reports the
    removal of what a sync has seen): the first round to cover a new gate wakes it once to look again."""
    from airflow_graph_mail.triggers.drafts import RECHECK

    first, later = drafts(hook, 2)

    async def main():
        watch, (waiter,) = watch_by_hand(hook, first)
        rounds_by_hand(watch)
        (joined,) = watch_by_hand(hook, later)[1]
        rounds_by_hand(watch)
        woken = [(joined.take(), waiter.take())]
        rounds_by_hand(watch)
        woken.append((joined.take(), waiter.take()))
        for each in (waiter, joined):
            each.close()
        return woken

    assert asyncio.run(main()) == [(RECHECK, None), (None, None)]


@pytest.mark.parametrize("first_look_fails", [False, True], ids=["look", "a failed look, then a look"])
def test_a_gate_seen_gone_whose_draft_is_still_in_drafts_looks_for_itself_from_then_on(hook, graph_emulator,
                                                                                       first_look_fails):
    """The watch says the draft left, the gate's look finds it in Drafts (a draft moved out and back: Graph does
    not report the return): the watch cannot follow it, so the gate looks each poke, and still fires. A look
    that fails in between (503) does not make the gate forget why it looked."""
    from airflow_graph_mail.triggers import drafts as watch

    (draft,) = drafts(hook, 1)
    woken_at: list[float] = []

    async def main():
        async def run():
            async for event in gate(draft).run():
                return event.payload
            return None

        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(run())
        await asyncio.sleep(2.0)  # waiting on the watch
        (found,) = next(iter(watch._watches[loop].values())).waiters[draft]
        if first_look_fails:
            graph_emulator.faults.add("get_message", 503)  # then a second's back-off
        woken_at.append(time.time())
        found.wake(watch.LEFT)
        await asyncio.sleep(2.5)
        await loop.run_in_executor(None, graph_emulator.inspect.send_as_reviewer, draft)
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(main())["status"] == "sent"
    after = [r for r in look_log(graph_emulator, draft) if r["time"] > woken_at[0]]
    assert len(after) >= 5  # each poke since, not only the look the wake-up asked for


def test_a_gate_given_a_drafts_regular_id_follows_its_immutable_id_and_looks_for_itself(hook, graph_emulator):
    """Graph reads a draft by its regular id too, but that id changes when the draft is sent: the gate goes on by
    the immutable id Graph answers with (before: three looks found nothing and the send was taken for a discard),
    and, as the rounds name drafts by immutable id, it looks each poke rather than wait on the watch."""
    from graph_mail_emulator.backend.store import IMMUTABLE_ID

    first, second = drafts(hook, 2)
    (regular,) = [m["id"] for m in graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts",
                                                                  with_content=False)
                  if m.get(IMMUTABLE_ID) == second]
    assert regular != second
    sent: list[float] = []

    async def main():
        async def run(message_id):
            async for event in gate(message_id).run():
                return event.payload, time.time()
            return None

        loop = asyncio.get_running_loop()
        running = asyncio.ensure_future(run(first))
        await asyncio.sleep(1.5)  # the watch runs, its first round listed
        given_regular = asyncio.ensure_future(run(regular))
        await asyncio.sleep(2.0)
        sent.append(time.time())
        await loop.run_in_executor(None, graph_emulator.inspect.send_as_reviewer, second)
        done = await asyncio.wait_for(given_regular, 10)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        return done

    payload, fired_at = asyncio.run(main())
    assert payload["status"] == "sent" and payload["message"]["id"] == second, payload
    assert fired_at - sent[0] < 2  # a look each poke, not a wait on the watch
    assert len([r for r in look_log(graph_emulator, second) if r["time"] < sent[0]]) >= 6  # 2 s at 0.2 s
    assert len(look_log(graph_emulator, first)) <= 3
