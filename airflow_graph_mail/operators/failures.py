"""Errors a retry cannot fix fail the task at once; the others keep the task's retries.

Bad input, bad configuration, a refused sign-in, a 401 after the token was renewed or a 403 stay wrong
however often the task runs: retrying them only delays the alert. Throttling, 5xx and lost answers may
pass, and a retry of ours never sends twice.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def retries_only_when_useful():
    """Re-raise a permanent GraphMailError as Airflow's AirflowFailException (the typed error as its cause)."""
    from airflow_graph_mail.errors import GraphMailError

    try:
        yield
    except GraphMailError as err:
        if not err.permanent:
            raise
        from airflow.providers.common.compat.sdk import AirflowFailException

        raise AirflowFailException(f"{type(err).__name__}: {err} (not retried: a retry cannot fix this)") from err
