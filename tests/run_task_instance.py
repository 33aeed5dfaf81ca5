"""`python run_task_instance.py DAG_FILE DAG_ID TASK_ID RUN_ID`: create the run if needed and run one task
instance in this process, as a worker does (Airflow 2.x); print its state and its XComs as JSON. Used with a
real `airflow triggerer` process by tests/test_review_gate.py."""

from __future__ import annotations

import json
import sys


def main(dag_file: str, dag_id: str, task_id: str, run_id: str) -> None:
    from airflow.models.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XCom
    from airflow.utils import timezone  # type: ignore[attr-defined]  # Airflow 2 only
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    dag = DagBag(dag_file, include_examples=False).get_dag(dag_id)
    dag.sync_to_db()
    runs = DagRun.find(dag_id=dag_id, run_id=run_id)
    if runs:
        run = runs[0]
    else:
        now = timezone.utcnow()
        run = dag.create_dagrun(run_id=run_id, state=DagRunState.RUNNING, execution_date=now,
                                data_interval=(now, now), run_type=DagRunType.MANUAL, start_date=now)
    ti = run.get_task_instance(task_id)
    assert ti is not None, task_id
    ti.task = dag.get_task(task_id)
    ti.run(ignore_ti_state=True)
    ti.refresh_from_db()
    xcoms = {x.key: x.value for x in XCom.get_many(run_id=run_id, dag_ids=dag_id, task_ids=task_id)}
    print(json.dumps({"state": str(ti.state), "next_method": ti.next_method, "xcom": xcoms}, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:5])
