"""Draft -> review -> send: create a draft, check it, then send it by id.

The review here is an automated gate (the draft must carry its attachment and a subject); in
production a person opens the draft through the task's "Open in Outlook" link, and the gate can be
an approval step instead.
"""

from __future__ import annotations

import os
from datetime import datetime

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphDraftOperator, GraphSendDraftOperator

RECIPIENTS = os.environ.get("REVIEW_RECIPIENTS", "board@example.com")


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["graph-mail", "example"])
def draft_review_send():
    draft = GraphDraftOperator(
        task_id="make_draft",
        to=RECIPIENTS,
        subject="Quarterly numbers for review ({{ ds }})",
        body="<p>Dear board,</p><p>Please find the quarterly summary attached.</p>",
        attachments=[("summary.txt", "Quarter: {{ ds }}\nRevenue: 1.2M\n")],
        importance="high",
    )

    @task
    def review(draft: dict) -> str:
        from airflow_graph_mail import GraphMailHook

        draft_id = draft["id"]
        message = GraphMailHook().get_message(draft_id)
        if not message.get("isDraft") or not message.get("hasAttachments") or not message.get("subject"):
            raise ValueError(f"draft {draft_id} is not ready to send: {message.get('subject')!r}")
        return draft_id

    approved = review(draft.output)
    GraphSendDraftOperator(task_id="send_draft", message_id=approved)


draft_review_send()
