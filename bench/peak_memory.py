"""Peak resident memory of a process around one operation (Linux /proc), for the benchmarks."""

from __future__ import annotations

import json
import sys
import time


def status(field: str, pid: int | str = "self") -> int:
    """A /proc/<pid>/status size field (VmRSS, VmHWM) in bytes."""
    with open(f"/proc/{pid}/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int | str = "self") -> int:
    """Restart the peak (VmHWM) from the current resident size; returns that size."""
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")
    return status("VmRSS", pid)


def print_peak_of(action) -> None:
    """Run ``action`` once and print {"seconds", "rss_growth"} (bytes its peak added) on the real stdout."""
    before = reset_peak()  # the peak (VmHWM) starts again from here
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_growth": status("VmHWM") - before}), file=sys.__stdout__, flush=True)
