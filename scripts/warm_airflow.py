"""`airflow dags test` in forks of one process that has already started Airflow (used by the tests on Airflow 3).

On Airflow 3 a `dags test` spends most of its time before its first task doing the same work every time:
importing Airflow, then building the in-process execution API and its versioned routes (cadwyn), ~16 CPU
seconds. This process does that once for a whole test run (every test worker shares it); each request is then
a fork of it that runs Airflow's own CLI (``airflow.__main__.main``) with the caller's arguments and
environment, and exits. Nothing one run does reaches the next: each is a fresh fork of the same warm process,
and runs may overlap.

Configuration read when Airflow is imported (airflow.cfg, its generated keys) is this process's AIRFLOW_HOME's;
what a run reads at run time comes from its request's environment (connections, DAGs folder, any
``AIRFLOW__...`` variable), and the logging and database settings are configured again from it in each fork.
So that overlapping runs share nothing, a request must name its own database and log folder
(``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``, ``AIRFLOW__LOGGING__BASE_LOG_FOLDER``; ``airflow_env`` sets both).

Usage: ``warm_airflow.py NAME WATCHED_PID``. When the warm-up is done it listens on the Unix socket NAME in
Linux's abstract namespace (no file to clean up) and prints ``{"ready": true}`` on stdout; it ends when
WATCHED_PID (the test run) is gone, or on SIGTERM. Protocol, one connection per run: the client sends one JSON
line ``{"argv": [...], "env": {...}, "stdout": path, "stderr": path}``; it gets ``{"pid": n}`` when the run's
process starts and ``{"returncode": n}`` when it ends.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import traceback


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


OWN_SETTINGS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__LOGGING__BASE_LOG_FOLDER")


def run(request: dict) -> int:
    """One Airflow command, in the fork; its exit code."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    missing = [name for name in OWN_SETTINGS if not request["env"].get(name)]
    if missing:  # it would share this process's database or logs with every other run
        print(f"warm_airflow: a run must set its own {' and '.join(missing)}", file=sys.stderr)
        return 2
    os.environ.clear()
    os.environ.update(request["env"])
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
        traceback.print_exc()
        return 1
    return 0


def answer(connection: socket.socket) -> None:
    """In a fork of the server, for one connection: fork the run, say its pid, say its exit code when it ends.
    The run is killed when the client says ``kill`` or goes away (a test stopped, a worker gone): no run
    outlives the test that asked for it. (The run's own parent waits for it: the server's loop never blocks.)"""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the server's handler is not the run's
    channel = connection.makefile("rw")
    request = json.loads(channel.readline())
    pid = os.fork()
    if pid == 0:
        channel.close()
        connection.close()
        code = 1
        try:
            code = run(request)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    channel.write(json.dumps({"pid": pid}) + "\n")
    channel.flush()
    ended = os.pidfd_open(pid)
    if ended not in select.select([ended, connection.fileno()], [], [])[0]:  # the client said kill, or went away
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    channel.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
    channel.flush()


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (an exited one not yet reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def serve(name: str, watched: int) -> None:
    if watched <= 1:
        raise SystemExit(f"warm_airflow: {watched} is not a test run's pid")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready = os.fdopen(os.dup(1), "w")  # the starter's channel: what Airflow prints goes to stderr
    os.dup2(2, 1)
    warm_up()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)  # an abstract socket has no file mode: callers are checked by their user id
    listener.listen(64)
    ready.write(json.dumps({"ready": True}) + "\n")
    ready.close()
    while alive(watched):  # checked each second: the server outlives its test run by at most that
        if select.select([listener], [], [], 1.0)[0]:
            connection, _ = listener.accept()
            if own_user(connection) and os.fork() == 0:
                listener.close()
                code = 1
                try:
                    answer(connection)
                    code = 0
                except BaseException:  # noqa: BLE001  (said in the server's log, which the client names)
                    traceback.print_exc()
                finally:
                    os._exit(code)
            connection.close()
        while True:  # the finished connections' forks
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def own_user(connection: socket.socket) -> bool:
    """Whether the caller runs as this process's user: any local user could reach an abstract socket, and a
    request names the DAGs folder whose code its run executes."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1] == os.getuid()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
