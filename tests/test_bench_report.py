"""`make bench` rewrites its own table in docs/benchmarks.md and keeps the peers section of `make bench-peers`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_bench_keeps_the_peers_section(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    path = tmp_path / "benchmarks.md"
    peers = ("<!-- peers:start -->\n## Side by side with the peers\n\n| peer | x |\n|---|---|\n| us | 1 |\n"
             "<!-- peers:end -->\n")
    path.write_text("# Benchmarks\n\n| scenario | old |\n" + "\n" + peers)
    run.write_report(["| new row | 1 | 2 | 0.5x |"], path)
    text = path.read_text()
    assert "| new row | 1 | 2 | 0.5x |" in text and "| scenario | old |" not in text
    assert text.endswith("\n" + peers)
    run.write_report(["| newer row | 1 | 2 | 0.5x |"], path)  # again: still one peers section, after the table
    assert path.read_text().count("<!-- peers:start -->") == 1 and "new row" not in path.read_text()
    fresh = tmp_path / "none.md"
    run.write_report(["| row | 1 | 2 | 0.5x |"], fresh)
    assert fresh.read_text().startswith("# Benchmarks") and "peers:start" not in fresh.read_text()
