"""Peak resident memory of this process around one operation (Linux /proc), for the benchmarks."""

from __future__ import annotations


def status(field: str) -> int:
    """A /proc/self/status size field (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Restart the peak (VmHWM) from the current resident size; returns that size."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return status("VmRSS")
