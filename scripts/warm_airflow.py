"""`airflow dags test` in forks of one process that has already started Airflow (used by the tests on Airflow 3).

On Airflow 3 a `dags test` spends most of its time before its first task doing the same work every time:
importing Airflow, then building the in-process execution API and its versioned routes (cadwyn). This process
does that once; each request is then a fork of it that runs Airflow's own CLI (``airflow.__main__.main``) with
the caller's arguments and environment, and exits. Nothing one run does reaches the next: each is a fresh
fork of the same warm process.

Configuration read when Airflow is imported (airflow.cfg, its generated keys) belongs to one AIRFLOW_HOME, so
every request must use this process's AIRFLOW_HOME (the caller resets its contents between runs); settings
read from the environment at run time (connections, DAGs folder, any ``AIRFLOW__...`` variable) are the
caller's, and the logging and database settings are configured again from them in each fork.

Protocol: one JSON request per line on stdin, ``{"argv": [...], "env": {...}, "stdout": path, "stderr":
path}``; for each, two JSON lines on stdout: ``{"pid": n}`` when the fork starts, ``{"returncode": n}`` when
it ends. The first line on stdout, ``{"ready": true}``, says the warm-up is done.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys


def warm_up() -> None:
    """Everything a `dags test` would do before its first task, the same for every run."""
    import alembic  # noqa: F401  (each run's database check imports it)
    from airflow import settings
    from airflow.__main__ import main  # noqa: F401  (the CLI and its parser)
    from airflow.cli.commands import dag_command  # noqa: F401
    from airflow.configuration import write_default_airflow_configuration_if_needed
    from airflow.models import import_all_models
    from airflow.sdk.execution_time import supervisor, task_runner  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    import airflow_graph_mail.operators.graph_mail  # noqa: F401  (what the DAGs under test import)

    write_default_airflow_configuration_if_needed()  # airflow.cfg and its keys, once, for every run and command
    import_all_models()
    configure_mappers()  # the ORM's classes, set up at each run's first query otherwise (0.4 s of each run)
    app = supervisor.in_process_api_server().app
    initialize = getattr(app, "_cadwyn_initialize", None)  # done on the first request otherwise, in each run
    if initialize is not None and not getattr(app, "_cadwyn_initialized", True):
        initialize()
    settings.dispose_orm(do_log=False)  # no database connection crosses a fork


def run(request: dict, home: str) -> int:
    """One Airflow command, in the fork; its exit code."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.environ.clear()
    os.environ.update(request["env"])
    if os.environ.get("AIRFLOW_HOME") != home:
        print(f"warm_airflow: AIRFLOW_HOME must be {home}, the one this process started with", file=sys.stderr)
        return 2
    sys.argv = ["airflow", *request["argv"]]
    from airflow import settings
    from airflow.__main__ import main

    settings.configure_vars()
    logging_config = sys.modules.get("airflow.config_templates.airflow_local_settings")
    if logging_config is not None:  # its dict holds the level and folders of the warm-up's environment
        importlib.reload(logging_config)
    settings.configure_logging()
    settings.configure_orm()
    try:
        main()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001  (as the interpreter would: the traceback on stderr, exit code 1)
        import traceback

        traceback.print_exc()
        return 1
    return 0


def serve() -> None:
    home = os.environ["AIRFLOW_HOME"]
    answers = os.fdopen(os.dup(1), "w")  # the answers' own channel: what Airflow prints goes to stderr
    os.dup2(2, 1)
    warm_up()
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            answers.close()
            code = 1
            try:
                code = run(request, home)
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()
