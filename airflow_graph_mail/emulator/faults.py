"""Scripted faults: make the next matching requests fail the ways a real service and network do.

    emulator.faults.add("upload_chunk", "drop_after", skip=2)   # the 3rd chunk is stored, its answer lost
    emulator.faults.add("upload_chunk", 503, times=99)          # every chunk from now on fails

Actions: an HTTP status (answered with a Graph error, the request not processed), ``"drop"`` (the
connection closes before the request is processed) and ``"drop_after"`` (processed, then the
connection closes with no answer). Routes are handler names (``send_mail``, ``upload_chunk``, ...).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

DROP = "drop"
DROP_AFTER = "drop_after"


class DropConnection(Exception):
    """Raised by the dispatcher; the HTTP layer closes the socket without answering."""


@dataclass
class Fault:
    route: str
    action: int | str
    skip: int = 0
    times: int = 1
    retry_after: float | None = None


class FaultPlan:
    def __init__(self):
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.fired: list[tuple[str, int | str]] = []

    def add(self, route: str, action: int | str, *, skip: int = 0, times: int = 1,
            retry_after: float | None = None) -> Fault:
        if not (isinstance(action, int) or action in (DROP, DROP_AFTER)):
            raise ValueError(f"fault action {action!r}: an HTTP status, {DROP!r} or {DROP_AFTER!r}")
        fault = Fault(route, action, skip, times, retry_after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, route: str) -> Fault | None:
        """The fault for this request, if one is due (each matching request counts down skip, then times)."""
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
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.fired.clear()
