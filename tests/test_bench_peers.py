"""The peers table reports every peer, including one that failed to install or to run (never dropped)."""

from __future__ import annotations

from pathlib import Path

from helpers import load_module

RUN = Path(__file__).resolve().parent.parent / "bench" / "peers" / "run.py"


def load_run():
    return load_module("bench_peers_run", RUN)


def test_failed_install_and_failed_runs_are_rows_not_gaps():
    run = load_run()
    missing = {"error": "not installed: No solution found when resolving dependencies"}
    ok = {"small": {"ms_per_message": 5.0}, "bulk": {"seconds": 21.0, "failed": 0, "count": 400},
          "sequential": {"seconds": 21.0, "failed": 0, "count": 100},
          "shared": {"seconds": 30.0, "delivered": 400, "lost": 0, "duplicated": 0, "over_limit": 3, "requests": 420},
          "attachments": [{"size_mb": 1, "seconds": 0.1, "peak_mb": 1.0},
                          {"size_mb": 3, "error": "AirflowException: {'error': {'code': 'RequestEntityTooLarge'}} 413"},
                          {"size_mb": 10, "seconds": 1.0, "peak_mb": 4.0}],
          "faults": {"delivered": 300, "lost": 0, "duplicated": 0},
          "parse": {"ms": 10.0, "modules": 6, "in_task": False, "module": "x.operators"}}
    scenarios = ("small", "bulk", "sequential", "shared", "faults", "parse")
    results = {peer: ({**dict.fromkeys(scenarios, missing), "attachments": [{"size_mb": 1, **missing}]}
                      if peer == "o365" else ok) for peer, _ in run.PEERS}
    lines = run.table(results)
    assert len(lines) == 2 + len(run.PEERS)
    (o365,) = [line for line in lines if line.startswith("| O365 |")]
    assert o365.count("failed: not installed: No solution found") == 7
    (azure,) = [line for line in lines if line.startswith("| microsoft-azure")]
    # each size has its own outcome: the 3 MB failure does not hide that 10 MB went through
    assert "1 MB: 0.1 s, peak 1 MB; 3 MB: failed: 413 RequestEntityTooLarge; 10 MB: 1.0 s, peak 4 MB" in azure
    assert "(MSGraphMailHook sends sendMail only" in azure
    assert "400 / 0 / 0 delivered / lost / duplicated; 3 answered 429 for the mailbox's limit" in azure


def test_libraries_imported_inside_a_task_are_not_parse_cost():
    run = load_run()
    assert run.PARSE_MODULES["azure"].endswith(".operators.msgraph")  # what a DAG file imports, as ours
    assert {"o365", "msgraph-sdk"} == run.IMPORTED_IN_TASK
