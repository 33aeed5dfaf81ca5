"""One scenario through one peer, in a fresh process: `python worker.py PEER SCENARIO CONFIG_JSON`.

Prints one JSON object: the measurement, or {"unsupported": why} / {"error": what happened}.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from adapters import PEERS, Unsupported
from peak_memory import reset_peak, status


def small(peer, config) -> dict:
    for i in range(5):  # warm up: token, TLS connection, imports
        peer.send(f"warm-up {i}", config["to"], "<p>small</p>")
    start = time.perf_counter()
    for i in range(config["count"]):
        peer.send(f"small {i}", config["to"], "<p>small</p>")
    return {"ms_per_message": (time.perf_counter() - start) * 1000 / config["count"]}


def bulk(peer, config) -> dict:
    """``count`` mails, ``concurrency`` at a time, subjects prefixed with ``prefix`` (one per process when
    several share the mailbox)."""
    prefix = config.get("prefix", "bulk")
    messages = [(f"{prefix} {i}", config["to"], "<p>bulk</p>") for i in range(config["count"])]
    peer.send(f"{prefix} warm-up", config["to"], "<p>x</p>")  # token and connection, before the clock
    if "start_at" in config:  # processes sharing a mailbox begin together
        time.sleep(max(0.0, config["start_at"] - time.time()))
    start = time.perf_counter()
    failed = peer.bulk(messages, config.get("concurrency", 1))
    return {"seconds": time.perf_counter() - start, "failed": failed}


def attachment(peer, config) -> dict:
    peer.send("warm-up", config["to"], "<p>x</p>")
    before = reset_peak()  # the peak (VmHWM) starts again from here
    start = time.perf_counter()
    peer.send("attachment", config["to"], "<p>x</p>", attachment=config["path"])
    return {"seconds": time.perf_counter() - start, "peak_mb": (status("VmHWM") - before) / 2**20}


def faults(peer, config) -> dict:
    """Each mail once, with its subject as its key; the peer's own failures are counted, the driver counts
    what arrived."""
    raised = 0
    for i in range(config["count"]):
        try:
            peer.send(f"fault {i}", config["to"], "<p>f</p>", key=f"fault {i}")
        except Unsupported:
            raise
        except Exception:  # noqa: BLE001 - the peer gave up on this mail; the run goes on
            raised += 1
    return {"raised": raised}


def main(name: str, scenario: str, config: dict) -> dict:
    try:
        peer = PEERS[name](config["connection"], config.get("smtp_port", 0))
        return {"scenario": scenario, **globals()[scenario](peer, config)}
    except Unsupported as why:
        return {"unsupported": str(why)}
    except Exception as err:  # noqa: BLE001 - reported in the table, not hidden
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(err).__name__}: {str(err)[:300]}"}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))), flush=True)
