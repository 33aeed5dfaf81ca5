"""Faults: make requests fail the ways a real service and network do, scripted or at random rates.

    emulator.faults.add("upload_chunk", "drop_after", skip=2)   # the 3rd chunk is stored, its answer lost
    emulator.faults.add("upload_chunk", 503, times=99)          # every chunk from now on fails
    emulator.faults.add_rates(["send_mail"], {429: 0.05, "accept_504": 0.05, "slow": 0.02}, seed=7)

Actions:
- an HTTP status: answered with a Graph error, the request not processed (429 and 503 carry Retry-After
  when one is given);
- ``"drop"``: the connection closes before the request is processed;
- ``"drop_after"``: processed, then the connection closes with no answer;
- ``"accept_504"``: processed, then answered 504 GatewayTimeout (Graph's "accepted but timed out");
- ``"slow"``: processed, then answered only after ``delay`` seconds.
Routes are handler names (``send_mail``, ``send_draft``, ``list_messages``, ``upload_chunk``, ...).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

DROP = "drop"
DROP_AFTER = "drop_after"
ACCEPT_504 = "accept_504"
SLOW = "slow"
_NAMED = (DROP, DROP_AFTER, ACCEPT_504, SLOW)


class DropConnection(Exception):
    """Raised by the dispatcher; the HTTP layer closes the socket without answering."""


@dataclass
class Fault:
    route: str
    action: int | str
    skip: int = 0
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.0


def _check_action(action) -> None:
    if not (isinstance(action, int) or action in _NAMED):
        raise ValueError(f"fault action {action!r}: an HTTP status or one of {', '.join(_NAMED)}")


class FaultPlan:
    def __init__(self):
        self._faults: list[Fault] = []
        self._rates: dict[str, list[tuple[float, Fault]]] = {}
        self._random = random.Random()
        self._lock = threading.Lock()
        self.fired: list[tuple[str, int | str]] = []

    def add(self, route: str, action: int | str, *, skip: int = 0, times: int = 1,
            retry_after: float | None = None, delay: float = 0.0) -> Fault:
        """A scripted fault: the matching requests after ``skip`` of them, ``times`` times."""
        _check_action(action)
        fault = Fault(route, action, skip, times, retry_after, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_rates(self, routes, rates: dict, *, retry_after: float | None = 1, delay: float = 0.0,
                  seed: int | None = None) -> None:
        """Random faults: each request to ``routes`` meets ``action`` with probability ``rates[action]``."""
        if sum(rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        for action in rates:
            _check_action(action)
        with self._lock:
            if seed is not None:
                self._random.seed(seed)
            for route in [routes] if isinstance(routes, str) else routes:
                self._rates[route] = [(rate, Fault(route, action, 0, 1, retry_after, delay))
                                      for action, rate in rates.items()]

    def take(self, route: str) -> Fault | None:
        """The fault for this request, if one is due: scripted ones first, then a random draw."""
        with self._lock:
            for fault in self._faults:
                if fault.route != route or fault.times <= 0:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                self.fired.append((route, fault.action))
                return fault
            draw = self._random.random()
            for rate, fault in self._rates.get(route, ()):
                if draw < rate:
                    self.fired.append((route, fault.action))
                    return fault
                draw -= rate
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._rates.clear()
            self.fired.clear()
