"""Inbound mail: a vendor mails a CSV to reports-in@contoso.com -> the file is saved to object storage -> loaded ->
the vendor gets "received, N rows" as a reply in the same thread.

Airflow 3: the mailbox is an asset. Its watcher announces each matching mail (at least once, marks kept in the
mailbox), ``vendor_mail_dispatch`` runs when it does and starts ``vendor_file_load`` exactly once per mail.
Airflow 2.11 (no asset watchers): ``vendor_file_by_sensor`` waits for the mail with GraphMailSensor, then
does the same steps.

Against the emulator, send the mail from the viewer's form, or in Python:
``emulator.inbound.receive(to="reports-in@contoso.com", sender="orders@fabrikam.example", subject="Orders",
attachments=[("orders.csv", b"id,qty\\n1,5\\n")])``.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime, timedelta

try:
    from airflow.sdk import DAG, Asset, AssetWatcher, task
except ImportError:  # Airflow 2.11: no asset watchers; vendor_file_by_sensor below serves
    from airflow import DAG
    from airflow.decorators import task

    Asset = AssetWatcher = None

from airflow_graph_mail import (
    GraphMailEventTrigger,
    GraphMailSensor,
    GraphReplyOperator,
    GraphSaveAttachmentsOperator,
    run_once_per_mail,
)

INBOX = os.environ.get("VENDOR_INBOX", "reports-in@contoso.com")
VENDOR = os.environ.get("VENDOR_SENDER", "@fabrikam.example")  # anyone at the vendor's domain...
STORE = os.environ.get("VENDOR_STORE", "file:///tmp/vendor-files")  # s3://bucket/vendor, abfs://..., a folder
POLL_SECONDS = float(os.environ.get("VENDOR_POLL_SECONDS", "60"))
LEASE_SECONDS = float(os.environ.get("VENDOR_LEASE_SECONDS", "600"))
RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=int(os.environ.get("VENDOR_RETRY_SECONDS", "60")))}


@task
def load(paths: list[str]) -> int:
    """Count the rows of the saved CSV files (a real DAG would load them into a warehouse)."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    rows = 0
    for path in paths:
        with ObjectStoragePath(path).open("rb") as handle:
            rows += sum(1 for _ in csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8-sig")))
    return rows


def handle_vendor_file(message_id: str | None = None, mailbox: str | None = None):
    """Save the CSV attachments (the mail is then categorised "Loaded"), load them, reply in the thread;
    returns the first task."""
    saved = GraphSaveAttachmentsOperator(
        task_id="save_attachments",
        message_id=message_id,  # None: the mail in the run's conf (runs started by run_once_per_mail)
        mailbox=mailbox,
        destination=STORE + "/{{ ds }}",  # each mail in a folder of its own under it
        name_pattern="*.csv",
        mark_done={"category": "Loaded"},
    )
    rows = load(saved.output)
    reply = GraphReplyOperator(
        task_id="reply_in_thread",
        message_id=message_id,
        mailbox=mailbox,
        body="<p>Hello,</p><p>received, {{ ti.xcom_pull(task_ids='load') }} rows.</p>",
    )
    rows >> reply
    return saved


with DAG("vendor_file_load", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         is_paused_upon_creation=False, default_args=RETRIES, tags=["graph-mail", "example", "inbound"]):
    handle_vendor_file()


if Asset is not None:  # Airflow 3: one run of vendor_file_load per mail, started by the watcher's events
    vendor_mail = Asset("vendor_mail", watchers=[AssetWatcher(
        name="vendor_mail",
        trigger=GraphMailEventTrigger(watch_name="vendor-files", mailbox=INBOX, sender=VENDOR,
                                      attachment_name="*.csv", poll_interval=POLL_SECONDS, lease=LEASE_SECONDS),
    )])

    with DAG("vendor_mail_dispatch", schedule=[vendor_mail], start_date=datetime(2026, 1, 1), catchup=False,
             is_paused_upon_creation=False, default_args=RETRIES, tags=["graph-mail", "example", "inbound"]):
        run_once_per_mail(vendor_mail, trigger_dag_id="vendor_file_load")


with DAG("vendor_file_by_sensor", schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False,
         max_active_runs=1,  # claim mode: one claimer at a time
         default_args=RETRIES, tags=["graph-mail", "example", "inbound"]):
    wait = GraphMailSensor(task_id="wait_for_vendor_file", mailbox=INBOX, sender=VENDOR, attachment_name="*.csv",
                           max_messages=1, poke_interval=POLL_SECONDS, timeout=6 * 3600, mode="reschedule")
    wait >> handle_vendor_file(message_id="{{ ti.xcom_pull(task_ids='wait_for_vendor_file', key='message_ids')[0] }}",
                               mailbox=INBOX)
