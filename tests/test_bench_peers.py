"""The peers table reports every peer, including one that failed to install or to run (never dropped)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "bench" / "peers" / "run.py"


def load_run():
    spec = importlib.util.spec_from_file_location("bench_peers_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_failed_install_and_failed_runs_are_rows_not_gaps():
    run = load_run()
    missing = {"error": "not installed: No solution found when resolving dependencies"}
    ok = {"small": {"ms_per_message": 5.0}, "bulk": {"seconds": 52.0, "failed": 0},
          "attachments": [{"size_mb": 1, "seconds": 0.1, "peak_mb": 1.0},
                          {"size_mb": 3, "error": "AirflowException: {'error': {'code': 'RequestEntityTooLarge'}} 413"}],
          "faults": {"delivered": 300, "lost": 0, "duplicated": 0}, "parse": {"ms": 10.0, "modules": 6}}
    results = {peer: ({"small": missing, "bulk": missing, "attachments": [{"size_mb": 1, **missing}],
                       "faults": missing, "parse": missing} if peer == "o365" else ok) for peer, _ in run.PEERS}
    lines = run.table(results)
    assert len(lines) == 2 + len(run.PEERS)
    (o365,) = [line for line in lines if line.startswith("| O365 |")]
    assert o365.count("failed: not installed: No solution found") == 5
    (azure,) = [line for line in lines if line.startswith("| microsoft-azure")]
    assert "3 MB failed: 413 RequestEntityTooLarge (MSGraphMailHook sends sendMail only" in azure
