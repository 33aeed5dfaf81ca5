"""`make bench` rewrites its own table in docs/benchmarks.md and keeps the peers section of `make bench-peers`."""

from __future__ import annotations

from pathlib import Path

from helpers import load_module

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_bench_keeps_the_peers_section(tmp_path):
    run = load_module("bench_run", RUN)
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


def test_bench_only_replaces_the_rows_of_the_scenarios_it_ran(tmp_path):
    """`make bench ARGS="--only delivered"`: that scenario's rows take the place of its earlier ones, the other
    scenarios' rows stay as the last full run left them, and a scenario new to the page is added at the end."""
    run = load_module("bench_run", RUN)
    page = run.PEERS_START.join(["# Benchmarks\n\n| scenario | ours | baseline | ratio |\n|---|---|---|---|\n"
                                 "| small sendMail, 800 per variant per round, 9 rounds: wall | 2.50 ms | 2 | 1x |\n"
                                 "| the same mails delivered: first to last leaving the Outbox | 30.0 min | 33 | 1x |\n"
                                 "| the emulator's CPU per sendMail with 10,000 mails sent | 1.6 ms | 1.5 | 1x |\n\n",
                                 "\n| peer | x |\n"])
    fresh = {"delivered": ["| 1,000 mails from one mailbox at Exchange Online's limits | 53 s | 50 | 1.07x |",
                           "| the same mails delivered: first to last leaving the Outbox | 33.0 min | 33 | 1.00x |"],
             "newcomer": ["| a scenario not on the page yet, measured now for the first time | 1 | 1 | 1x |"]}
    rows = run.merged_rows(fresh, page)
    assert rows == ["| small sendMail, 800 per variant per round, 9 rounds: wall | 2.50 ms | 2 | 1x |",
                    *fresh["delivered"],
                    "| the emulator's CPU per sendMail with 10,000 mails sent | 1.6 ms | 1.5 | 1x |",
                    *fresh["newcomer"]]
