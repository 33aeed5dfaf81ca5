"""DAGs the tests run with `airflow dags test` against the emulator."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task  # type: ignore[attr-defined, no-redef]

from airflow_graph_mail.operators.graph_mail import (
    GraphDraftOperator,
    GraphSendDraftOperator,
    GraphSendMailOperator,
)
from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator

CASE_DIR = Path(os.environ.get("CASE_DIR", "/tmp"))
TEMPLATES = str(Path(__file__).parent / "templates")


@dag(schedule=None, start_date=datetime(2026, 1, 1), template_searchpath=[TEMPLATES], params={"team": "Data"})
def graph_mail_features():
    @task
    def write_files() -> str:
        path = CASE_DIR / "summary.txt"
        path.write_text("{{ not a template }} raw bytes\n")
        return str(path)

    summary = write_files()
    send = GraphSendMailOperator(
        task_id="send_text",
        to="Ann <ann@example.com>; bob@example.com",
        cc=["carol@example.com"],
        bcc="hidden@example.com",
        reply_to="replies@example.com",
        subject="Note for {{ params.team }} on {{ ds }}",
        body="plain_note.txt",
        attachments=["{{ ti.xcom_pull(task_ids='write_files') }}", ("inline-{{ ds }}.txt", "made on {{ ds }}")],
        importance="high",
        headers={"x-run-id": "{{ run_id }}"},
        save_to_sent_items=False,
    )
    summary >> send

    # A mapped task renders like a plain one: the body from its file, escaped, with cid() (Airflow renders
    # mapped tasks through another path; see rendering.py).
    GraphSendMailOperator.partial(
        task_id="send_mapped", subject="Copy {{ ti.map_index }}", body="mapped_body.html", autoescape=True,
        inline_images={"logo.png": ("logo.png", b"\x89PNG")},
    ).expand(to=["mapped0@example.com", "mapped1@example.com"])

    draft = GraphDraftOperator(task_id="make_draft", to="dave@example.com", subject="Draft {{ ds }}",
                               body="draft_body.html.j2")

    @task
    def check_xcom(result: dict, ti=None) -> None:
        link = ti.xcom_pull(task_ids="make_draft", key="web_link")
        assert link and link == result["web_link"], (link, result)
        assert ti.xcom_pull(task_ids="make_draft", key="draft_id") == result["id"]

    checked = check_xcom(draft.output)  # type: ignore[arg-type]  # @task takes an XComArg for its dict
    send_draft = GraphSendDraftOperator(
        task_id="send_draft", message_id="{{ ti.xcom_pull(task_ids='make_draft', key='draft_id') }}")
    checked >> send_draft

    @task
    def write_rows() -> str:
        path = CASE_DIR / "customers.csv"
        path.write_text("email,name,amount\nzoe@example.com,Zoe,12.50\nyan@example.com,{{ 7 * 7 }},3\n")
        return str(path)

    merge = GraphMailMergeOperator(
        task_id="merge_from_csv",
        rows="{{ ti.xcom_pull(task_ids='write_rows') }}",
        key_field="email",
        to="{{ row.email }}",
        subject="Balance for {{ row.email }}",
        body="statement.html.j2",
    )

    @task
    def check_outcomes(counts: dict, ti=None) -> None:
        assert counts == {"sent": 2}, counts
        outcomes = ti.xcom_pull(task_ids="merge_from_csv", key="outcomes")
        assert [(o["to"], o["status"]) for o in outcomes] == [
            (["zoe@example.com"], "sent"), (["yan@example.com"], "sent")], outcomes
        assert outcomes[0]["key"].endswith("/zoe@example.com"), outcomes

    write_rows() >> merge
    check_outcomes(merge.output)  # type: ignore[arg-type]  # @task takes an XComArg for its dict

    # check_only: every row rendered and checked, nothing sent
    rehearsal = GraphMailMergeOperator(task_id="merge_rehearsal", rows=[{"n": n} for n in range(3)],
                                       to="rehearsal{{ row.n }}@example.com", body="Row {{ row.n }}",
                                       check_only=True)

    @task
    def check_rehearsal(result: dict) -> None:
        assert result["checked"] == 3, result  # and the plan against the mailbox's 24-hour window
        assert (result["plan"]["recipients"], result["plan"]["fits"]) == (3, True), result

    check_rehearsal(rehearsal.output)  # type: ignore[arg-type]  # @task takes an XComArg for its dict


ENDLESS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@dag(schedule=None, start_date=datetime(2026, 1, 1), template_searchpath=[TEMPLATES],
     default_args={"retries": 2, "retry_delay": timedelta(seconds=0)})
def graph_mail_bad_inputs():
    """Every task fails on bad input; none may use its retries (a retry cannot fix bad input)."""
    GraphSendMailOperator(task_id="no_recipients", subject="x", body="x")
    GraphSendMailOperator(task_id="malformed_address", to="ann@example.com, bob(at)example.com", body="x")
    GraphSendMailOperator(task_id="missing_attachment", to="ann@example.com", body="x",
                          attachments=["/nonexistent/report-{{ ds }}.csv"])
    GraphSendMailOperator(task_id="undefined_variable", to="ann@example.com", body="Hi {{ customer_name }}")
    GraphSendMailOperator(task_id="missing_template", to="ann@example.com", body="no_such_template.html")
    GraphMailMergeOperator(task_id="merge_bad_row", rows=[{"e": "a@example.com"}, {"e": "b@example.com"},
                                                          {"e": "c(at)example.com"}], to="{{ row.e }}", body="x")
    GraphMailMergeOperator(task_id="merge_duplicate_keys", rows=[{"e": "a@example.com"}, {"e": "a@example.com"}],
                           key_field="e", to="{{ row.e }}", body="x")
    GraphMailMergeOperator(task_id="merge_missing_rows", rows="/nonexistent/rows-{{ ds }}.csv", to="x@example.com")
    GraphSendMailOperator(task_id="broken_connection", to="ann@example.com", body="x",
                          graph_mail_conn_id="graph_mail_broken")
    GraphMailMergeOperator(task_id="merge_endless_row", rows=[{"n": 1}, {"n": 2}, {"n": 3}], to="a@example.com",
                           render_timeout=1, subject="{% if row.n == 2 %}" + ENDLESS + "{% endif %}row {{ row.n }}")
    GraphSendMailOperator(task_id="endless_template", to="ann@example.com", render_timeout=2,
                          body=ENDLESS)


graph_mail_features()
graph_mail_bad_inputs()
