"""``run_once_per_mail``: the dispatcher, one line in a DAG scheduled on a mail asset (Airflow 3).

Airflow alone cannot give one DAG run per mail: a yielded event is lost if the triggerer dies within a second
or two, events are never deduplicated (two triggerers on 3.0-3.2.1 announce every mail twice), several
events become one run, and an event can wait for the next mail to be consumed. The watcher therefore
announces at least once, and this dispatcher turns whatever events it gets into exactly one run of the
handler DAG per mail: the run id is derived from the mailbox and the mail's immutable id, and the
metadata database refuses a second run with the same id (``skip_when_already_exists``). Once the run
exists, the mail is marked claimed, which stops the watcher's announcements.

Importing this module costs nothing; ``run_once_per_mail`` imports the standard provider's
TriggerDagRunOperator and the Task SDK when the DAG file calls it.
"""

from __future__ import annotations

import logging

from airflow_graph_mail.airflow_face import DEFAULT_CONN_ID
from airflow_graph_mail.errors import GraphConfigError, GraphMailError

log = logging.getLogger(__name__)


def mail_runs(events) -> list[dict]:
    """One ``{"trigger_run_id", "conf"}`` per distinct mail among asset events from GraphMailEventTrigger
    (events of other kinds are left out); the conf is the event's payload."""
    from airflow_graph_mail.mail.inbound import run_id_for

    runs: dict[str, dict] = {}
    for event in events or []:
        payload = (getattr(event, "extra", None) or {}).get("payload")
        if not isinstance(payload, dict) or not payload.get("message_id") or not payload.get("mailbox"):
            continue
        run_id = run_id_for(str(payload["mailbox"]), str(payload["message_id"]))
        runs.setdefault(run_id, {"trigger_run_id": run_id, "conf": payload})
    return list(runs.values())


def claim_started(runs: list[dict], trigger_dag_id: str, ti, conn_id: str | None) -> None:
    """Mark each mail whose run now exists as claimed by that run (the watcher then stops announcing it); a
    mail whose run could not be made stays unclaimed, and is announced again after its lease."""
    from airflow_graph_mail.graph.inbound import MailboxReader
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    clients: dict[str, object] = {}
    failed = []
    for run in runs:
        conf, run_id = run["conf"], run["trigger_run_id"]
        if not ti.get_dr_count(dag_id=trigger_dag_id, run_ids=[run_id]):
            log.warning("No run %s of %s for message %s: it will be announced again", run_id, trigger_dag_id,
                        conf["message_id"])
            continue
        conn = conn_id or conf.get("graph_mail_conn_id") or DEFAULT_CONN_ID
        client = clients.get(conn) or clients.setdefault(conn, GraphMailHook(graph_mail_conn_id=conn).client)
        try:
            MailboxReader(client, conf["mailbox"]).claim(conf["message_id"], conf["watch"],
                                                         f"{trigger_dag_id}/{run_id}")
        except GraphMailError as err:  # the others still get claimed; this one is announced again, claimed then
            log.warning("Could not claim message %s for run %s: %s", conf["message_id"], run_id, err)
            failed.append(conf["message_id"])
    if failed:
        raise GraphMailError(f"{len(failed)} mail(s) could not be marked claimed (their runs exist; the watcher "
                           f"announces them again and the next dispatch claims them): {', '.join(failed[:10])}")


def run_once_per_mail(asset, trigger_dag_id: str, *, task_id: str = "start_mail_runs",
                      graph_mail_conn_id: str | None = None):
    """In a DAG scheduled on ``asset`` (an Asset watched by a GraphMailEventTrigger), start the DAG
    ``trigger_dag_id`` exactly once per mail, its conf the mail's summary (``message_id``, ``mailbox``,
    ``sender``, ``subject``, ``received``, ``attachments``, ``authentication``...), its run id
    ``mail__<hash of mailbox and message id>``::

        with DAG("vendor_mail", schedule=[vendor_mail]):
            run_once_per_mail(vendor_mail, trigger_dag_id="load_vendor_file")

    Three tasks: ``<task_id>_plan`` (the distinct mails among the triggering events), ``<task_id>`` (a
    TriggerDagRunOperator mapped over them, skipped for a mail whose run exists already) and
    ``<task_id>_claim`` (marks each mail whose run exists as claimed). Give the handler's tasks retries: a
    run that fails keeps its mail (clear the run to handle it again). Airflow 3 only.

    :param graph_mail_conn_id: the connection to claim with (default: the watcher's).
    :return: the mapped TriggerDagRunOperator.
    """
    try:
        from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
        from airflow.sdk import task
    except ImportError:
        raise GraphConfigError("run_once_per_mail: asset watchers need Airflow 3 (and its standard provider); on "
                               "Airflow 2 wait for mail with GraphMailSensor") from None

    @task(task_id=f"{task_id}_plan")
    def plan(**context) -> list[dict]:
        runs = mail_runs(context["triggering_asset_events"][asset])
        log.info("%d mail(s) to start %s for", len(runs), trigger_dag_id)
        return runs

    @task(task_id=f"{task_id}_claim", trigger_rule="all_done")
    def claim(runs: list[dict], **context) -> None:
        claim_started(runs or [], trigger_dag_id, context["ti"], graph_mail_conn_id)

    runs = plan()
    started = TriggerDagRunOperator.partial(task_id=task_id, trigger_dag_id=trigger_dag_id,
                                            skip_when_already_exists=True).expand_kwargs(runs)
    started >> claim(runs)  # type: ignore[arg-type]  # an XComArg, resolved when the task runs
    return started
