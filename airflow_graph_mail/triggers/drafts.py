"""The review gates' shared look-out: one change-tracking poll of a mailbox's Drafts folder for every gate of the
triggerer waiting on a draft in it.

A gate that looks at its own draft every poke costs one GET per gate per poke, and a GET's CPU is mostly TLS and
HTTP, whatever it asks (bench/trigger_loop.py). The watch asks Graph one question per mailbox per round instead, which
drafts left Drafts (sent: moved to Sent Items; discarded: deleted or moved to Deleted Items; moved elsewhere),
and wakes the gates whose drafts did; each then looks at its own draft to tell which (``graph/review.py``).

Nothing is missed for it: a gate joins before its first look and clears its wake-up before every look, and a round
reports every draft that left to whoever waits for it then, so a draft that leaves after a look wakes its gate; a
first round (and one after Graph dropped the delta link) lists the folder and wakes every gate whose draft it does
not hold; and a gate that joined a running watch looks once more after the first round that covers it. A gate looks
for itself every poke, as before, when its draft is not in Drafts, when a wake-up finds its draft still there (an id
the watch cannot follow, or a draft moved out and back), in the China cloud (no change tracking) and while the
watch's rounds fail (Graph's refusal is tried again every MAX_BACKOFF seconds); and every gate looks for itself at
least every SELF_LOOK_AFTER seconds. Rounds run twice per poke interval (the shortest of the gates waiting), in the
triggers' thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING

from airflow_graph_mail.errors import GraphMailError
from airflow_graph_mail.triggers.pool import MAX_BACKOFF, backoff, pooled, sleep

if TYPE_CHECKING:  # loaded in the pool, never on the event loop's thread
    from airflow_graph_mail.graph.inbound import MailboxReader

log = logging.getLogger(__name__)

MIN_ROUND = 0.2  # seconds between rounds at the least (Graph allows 10,000 requests per 10 minutes per mailbox)
# Rounds per poke: a draft sent just after a round is seen within half a poke, leaving the other half for its
# gate's own look (Graph answers 4 at a time per mailbox: many drafts sent at once queue their looks).
ROUNDS_PER_POKE = 2
SELF_LOOK_AFTER = 300.0  # seconds (or SELF_LOOK_EVERY pokes, if longer) a gate waits on the watch at most
SELF_LOOK_EVERY = 10

# Why a gate was woken. LEFT and UNLISTED: the watch saw the draft gone from Drafts (a look that still finds it
# there means the watch cannot follow this id); RECHECK: look again, nothing more (the gate joined a running
# watch, or a round failed and the gates look for themselves until one works).
LEFT, UNLISTED, RECHECK = "left", "unlisted", "recheck"

# Per event loop (a triggerer has one; tests and `dags test` start several), per client and mailbox.
_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, str], DraftsWatch]] = \
    weakref.WeakKeyDictionary()


def join(client, mailbox: str, message_id: str, poke_interval: float) -> Waiter:
    """A waiter for ``message_id`` on the watch of ``mailbox``'s Drafts (made by the first gate of the loop);
    call on the event loop, then ``close()`` it when the gate ends."""
    watches = _watches.setdefault(asyncio.get_running_loop(), {})
    key = (id(client), mailbox.lower())  # the watch holds the client: its id is not reused while it lives

    def forget(gone: DraftsWatch) -> None:  # its last gate left
        if watches.get(key) is gone:
            del watches[key]

    watch = watches.get(key)
    if watch is None:
        watch = watches[key] = DraftsWatch(client, mailbox, forget)
    return watch.join(message_id, poke_interval)


class Waiter:
    """One gate's place on a watch: ``woken`` is set, with the reason, when the gate should look again."""

    def __init__(self, watch: DraftsWatch, message_id: str, poke_interval: float):
        self.watch = watch
        self.message_id = message_id
        self.poke_interval = poke_interval
        self.woken = asyncio.Event()
        self.why: str | None = None
        self.closed = False

    def wake(self, why: str) -> None:
        if self.why not in (LEFT, UNLISTED):  # the strongest reason is kept until the gate looks
            self.why = why
        self.woken.set()

    def take(self) -> str | None:
        """Why the gate was woken (None: it was not), cleared before its look: a wake after it is a new one."""
        why, self.why = self.why, None
        self.woken.clear()
        return why

    def tracks(self, message: dict | None) -> bool:
        """Whether the watch will tell when this draft (as a look found it waiting) leaves Drafts: it is
        there, under the id the gate was given, the watch knows Drafts' id and its last round worked. The
        first gate to ask starts the watch's rounds (a gate whose first look failed asks Graph nothing more)."""
        watch = self.watch
        watch.start()
        return (watch.drafts_id is not None and not watch.failing and isinstance(message, dict)
                and message.get("parentFolderId") == watch.drafts_id
                and message.get("id") == self.message_id)  # a regular id: the rounds name drafts by immutable id

    async def wait(self) -> bool:
        """Until woken (True) or the longest wait passed (False): the gate looks for itself now and then.
        ``asyncio.wait``, not ``wait_for``: on Python 3.10 and 3.11 a cancel that meets a wake-up in the same
        turn of the loop is lost by ``wait_for``, and a cancelled gate would go on looking."""
        waiting = asyncio.ensure_future(self.woken.wait())
        try:
            done, _ = await asyncio.wait((waiting,), timeout=max(self.poke_interval * SELF_LOOK_EVERY,
                                                                  SELF_LOOK_AFTER))
            return bool(done)
        finally:
            waiting.cancel()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.watch.leave(self)


class DraftsWatch:
    """The rounds of one mailbox's Drafts folder, while any gate waits on it."""

    def __init__(self, client, mailbox: str, forget):
        self.client = client
        self.mailbox = mailbox
        self.waiters: dict[str, set[Waiter]] = {}
        self._new: set[Waiter] = set()  # joined since the start of the last round that worked
        # The gates' looks at this mailbox, as many at once as its pacer lets through: a look that waits for a
        # slot waits here, not in one of the pool's threads (drafts sent together wake their gates together,
        # and one mailbox's queue would hold every thread while other mailboxes' looks wait behind it).
        self.turns = asyncio.Semaphore(client.transport.concurrency)
        self.drafts_id: str | None = None  # known after the first round
        self.failing = False  # the last round failed: the gates look for themselves until one works
        self._forget = forget
        self._reader: MailboxReader | None = None
        self._link: str | None = None
        self._task: asyncio.Future | None = None

    def join(self, message_id: str, poke_interval: float) -> Waiter:
        waiter = Waiter(self, message_id, poke_interval)
        self.waiters.setdefault(message_id, set()).add(waiter)
        self._new.add(waiter)
        return waiter

    def start(self) -> None:
        if self._task is None and self.waiters:
            self._task = asyncio.ensure_future(self._run())

    def leave(self, waiter: Waiter) -> None:
        same = self.waiters.get(waiter.message_id, set())
        same.discard(waiter)
        self._new.discard(waiter)
        if not same:
            self.waiters.pop(waiter.message_id, None)
        if not self.waiters:  # the last gate left: no more rounds; the next gate starts a new watch
            self._forget(self)
            if self._task is not None:
                self._task.cancel()
                self._task = None

    def _interval(self) -> float:
        shortest = min(w.poke_interval for same in self.waiters.values() for w in same)
        return max(MIN_ROUND, shortest / ROUNDS_PER_POKE)

    async def _run(self) -> None:
        failures = 0
        while self.waiters:
            wanted = set(self.waiters)  # taken here, on the loop: the round runs in a thread
            try:
                present, left = await pooled(self._round, wanted)
            except GraphMailError as err:
                failures += 1
                delay = self._failed(err, failures)
            except Exception:  # a bug of ours: the gates go on without the watch
                log.exception("Watching Drafts of %s failed; its review gates look at their drafts one by one, and "
                              "the watch tries again in %.0fs", self.mailbox, MAX_BACKOFF)
                delay = self._failed(None, failures)
            else:
                failures, self.failing = 0, False
                self._wake(wanted, present, left)
                delay = self._interval() if self.waiters else 0.0
            await sleep(delay)

    def _failed(self, err: GraphMailError | None, failures: int) -> float:
        """A round failed (``err`` None: by a bug): every gate looks for itself until a round works again; the
        wait before the next round."""
        if not self.failing:
            self.failing = True
            for same in self.waiters.values():
                for waiter in same:
                    waiter.wake(RECHECK)
        if err is None:
            return MAX_BACKOFF
        delay = MAX_BACKOFF if err.permanent else backoff(err, failures, self._interval())
        log.warning("Watching Drafts of %s: %s; its review gates look at their drafts one by one, and the watch "
                    "tries again in %.1fs", self.mailbox, err, delay)
        return delay

    def _round(self, wanted: set[str]) -> tuple[set[str] | None, set[str]]:
        """One round, in the pool: (the wanted ids Drafts holds, on a first round; else None), and every id that
        left (the few of a round, whoever waits for them: a gate may have joined since ``wanted``)."""
        from airflow_graph_mail.graph.inbound import MailboxReader, SyncReset

        if self._reader is None:
            self._reader = MailboxReader(self.client, self.mailbox, "drafts", retries=False)
        if self.drafts_id is None:
            self.drafts_id = self.client.folder_id("drafts", call=self._reader.call())
        first = self._link is None
        try:
            present, left, self._link = self._reader.departures(self._link, wanted)
        except SyncReset as reset:
            log.warning("Change tracking of Drafts of %s restarts (%s): listing the folder again", self.mailbox,
                        reset)
            first, self._link = True, None  # a listing that fails is tried again, not the dead link
            present, left, self._link = self._reader.departures(None, wanted)
        return (present if first else None), left

    def _wake(self, wanted: set[str], present: set[str] | None, left: set[str]) -> None:
        """Wake the gates whose drafts left; after a first round, those whose drafts it did not list. A gate that
        joined since the last round is woken once to look again by the first delta round to cover it: a draft
        made after one round and gone before the next may never be reported as gone (Exchange reports removals
        of what a sync has seen), and a listing under way when the gate joined may have missed it."""
        covered = {waiter for waiter in self._new if waiter.message_id in wanted}
        self._new -= covered
        if present is None:
            for message_id in left & self.waiters.keys():
                for waiter in self.waiters[message_id]:
                    waiter.wake(LEFT)
            for waiter in covered:
                waiter.wake(RECHECK)
            return
        for message_id in wanted - present:
            for waiter in self.waiters.get(message_id, ()):
                waiter.wake(UNLISTED)
