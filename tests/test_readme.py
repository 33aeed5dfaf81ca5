"""Every Python snippet in README.md is a file of example_dags/readme/, shown whole, and runs as a DAG with
`airflow dags test` against the emulator (on each Airflow version the suite runs on)."""

from __future__ import annotations

import re
import subprocess

from airflow_env import AIRFLOW, airflow_env, migrate
from helpers import ROOT

README = ROOT / "README.md"
SNIPPET = re.compile(r"<!-- snippet: (?P<path>\S+) -->\n```python\n(?P<code>.*?)```\n", re.DOTALL)


# Example DAGs the README shows whole that need a person or a wait; their own tests run them.
RUN_ELSEWHERE = {"example_dags/reviewed_report.py": "tests/test_review_gate.py",
                 "example_dags/statements_bounce_report.py": "tests/test_bounce_report.py"}


def snippets() -> dict[str, str]:
    return {m["path"]: m["code"] for m in SNIPPET.finditer(README.read_text())}


def readme_dags() -> list[str]:
    return [path for path in snippets() if path.startswith("example_dags/readme/")]


def test_every_python_snippet_is_a_file_shown_whole():
    text = README.read_text()
    assert text.count("```python") == len(snippets()) == 6  # no Python block without its file
    for path, code in snippets().items():
        assert (ROOT / path).read_text() == code, f"README's copy of {path} differs from the file"
    for path in set(snippets()) - set(readme_dags()):
        dag_id = (ROOT / path).stem
        assert f'"{dag_id}"' in (ROOT / RUN_ELSEWHERE[path]).read_text(), f"{path} is run by no test"


def test_the_snippets_run_as_dags(airflow_template_home, graph_emulator, tmp_path):
    """All four at once, each in its own Airflow home (they run in parallel to keep the suite quick)."""
    for colleague in ("oncall@contoso.com", "owners@contoso.com"):  # users of the tenant, or they would bounce
        graph_emulator.backend.store.add_user(colleague)
    runs = {}
    for path in readme_dags():
        dag_id = (ROOT / path).stem
        home = tmp_path / dag_id
        migrate(home, template=airflow_template_home)
        env = airflow_env(home, graph_emulator.connection(), ROOT / "example_dags" / "readme", TMPDIR=str(tmp_path))
        runs[dag_id] = subprocess.Popen([AIRFLOW, "dags", "test", dag_id, "2026-11-20"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = {dag_id: (run.communicate(timeout=300)[0], run.returncode) for dag_id, run in runs.items()}
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

