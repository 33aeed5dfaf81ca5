"""README.md is the front page. Every code block in it is a file shown whole that a test runs (or `make`
commands the Makefile defines); its links lead to files of the repository; its numbers against the peers are
quoted from docs/benchmarks.md. The DAGs of example_dags/readme/ (the README's one, and those the
documentation site includes) run with `airflow dags test` against the emulator, on each Airflow version the
suite runs on."""

from __future__ import annotations

import re

from airflow_env import airflow_env
from helpers import ROOT

README = ROOT / "README.md"
README_DAGS = ROOT / "example_dags" / "readme"
MARKER = re.compile(r"<!-- snippet: (?P<path>\S+) -->\n$")
FENCE = re.compile(r"^```(?P<language>\w*)\n(?P<code>.*?)^```\n", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)\s]*)?\)")
# Snippets that are not DAGs of example_dags/readme/, and the test that runs each.
RUN_ELSEWHERE = {"example_dags/docs/install.sh": "tests/test_docs_examples.py"}


def blocks() -> list[tuple[str | None, str, str]]:
    """(the file a block shows, or None; its language; its code) for each fenced block of README.md."""
    text = README.read_text()
    found = []
    for block in FENCE.finditer(text):
        marker = MARKER.search(text, 0, block.start())
        found.append((marker["path"] if marker else None, block["language"], block["code"]))
    return found


def readme_dags() -> list[str]:
    return sorted(path.name for path in README_DAGS.glob("*.py"))


def test_every_code_block_is_a_file_shown_whole():
    """One DAG, the install script, and the two commands; no code that no test runs."""
    shown = blocks()
    assert [path for path, language, _ in shown if language == "python"] == ["example_dags/readme/sales_report.py"]
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    for path, _, code in shown:
        if path is None:  # the two commands: targets of the Makefile, which CI runs
            commands = [line.split("#")[0].split() for line in code.splitlines() if line.strip()]
            assert commands and all(c[0] == "make" and c[1] in targets for c in commands), code
            continue
        assert (ROOT / path).read_text() == code, f"README's copy of {path} differs from the file"
        if path.startswith("example_dags/readme/"):
            assert path.endswith(".py")  # run below
        else:
            assert (ROOT / path).name in (ROOT / RUN_ELSEWHERE[path]).read_text(), f"{path} is run by no test"


def test_the_links_lead_to_files_of_the_repository():
    """The README links the site's Markdown sources, so that each link works on the forge too."""
    links = [m["target"] for m in LINK.finditer(README.read_text()) if "://" not in m["target"]]
    assert "docs/index.md" in links
    missing = [target for target in links if not (ROOT / target).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_the_numbers_against_the_peers_are_quoted_from_the_benchmarks():
    """Each number in "Against the peers" is one docs/benchmarks.md gives (written by make bench-peers)."""
    section = README.read_text().split("## Against the peers", 1)[1].split("\n## ", 1)[0]
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    quoted = re.findall(r"\d+(?:\.\d+)? (?:ms|s|MB)\b|\d+ / \d+ / \d+", section)
    quoted += [f"{modules}, {ms} ms" for modules, ms in re.findall(r"(\d+) modules, (\d+) ms", section)]
    assert len(quoted) > 20
    assert [q for q in quoted if q not in benchmarks] == []
    numbers = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", section))
    assert [n for n in sorted(numbers) if not re.search(rf"(?<![\w.]){re.escape(n)}(?![\w.]\d)", benchmarks)] == []


def test_the_readme_dags_run(airflow_home, dags_test, graph_emulator, tmp_path):
    """All of example_dags/readme/, one after the other in one Airflow home: the README's DAG, and those the
    documentation site includes."""
    assert readme_dags() == ["customer_statements.py", "oncall_alerts.py", "revenue_chart.py", "sales_report.py"]
    for colleague in ("oncall@contoso.com", "owners@contoso.com"):  # users of the tenant, or they would bounce
        graph_emulator.backend.store.add_user(colleague)
    env = airflow_env(airflow_home, graph_emulator.connection(), README_DAGS, TMPDIR=str(tmp_path))
    results = {}
    for name in readme_dags():
        dag_id = name.removesuffix(".py")
        run = dags_test(dag_id, env, timeout=300)
        results[dag_id] = (run.stdout + run.stderr, run.returncode)
    for dag_id in ("sales_report", "revenue_chart", "customer_statements"):
        assert results[dag_id][1] == 0, results[dag_id][0][-3000:]
    # the task log says what was sent (the hook logs through its module's logger)
    assert "Sent 'Daily sales report for 2026-11-20' to 3 recipient(s) from" in results["sales_report"][0]
    output, returncode = results["oncall_alerts"]
    assert returncode != 0 and "the source table is empty" in output  # it fails on purpose, and alerts

    bob = {m["subject"]: m for m in graph_emulator.inspect.messages("bob@example.com")}
    report = bob["Daily sales report for 2026-11-20"]
    assert "the sales report for <b>2026-11-20</b> is attached" in report["body"]["content"]
    assert graph_emulator.inspect.attachment_bytes(report["id"]) == {
        "sales_2026-11-20.csv": b"region,revenue\nNorth,15360.50\nSouth,11020.00\n"}
    statement = bob["Your statement for 2026-11-20"]
    assert statement["body"]["content"] == "<p>Dear Bob, your balance is 80.</p>"
    files = graph_emulator.inspect.attachment_bytes(statement["id"])
    assert files == {"statement-bob@example.com.csv": b"amount\n80\n"}
    ann = {m["subject"]: m for m in graph_emulator.inspect.messages("ann@example.com")}
    chart = ann["Revenue 2026-11-20"]
    assert set(graph_emulator.inspect.attachment_bytes(chart["id"])) == {"chart.png", "north.csv", "south.csv"}
    alerts = {m["subject"] for m in graph_emulator.inspect.messages("oncall@contoso.com")}
    assert "[Airflow] oncall_alerts.load failed (try 1 of 1)" in alerts

