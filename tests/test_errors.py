"""One error tree: everything the provider raises is a GraphMailError, and says whether a retry can help."""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

import airflow_graph_mail
from airflow_graph_mail import (
    GraphConnectionError,
    GraphMailError,
    MessageValidationError,
    OutcomeUnknownError,
    ThrottledError,
    errors,
)
from airflow_graph_mail.mail.idempotency import PROPERTY_ID
from airflow_graph_mail.mail.message import Message

PACKAGE = Path(airflow_graph_mail.__file__).parent
FAST = {"retry_backoff": 0.02, "retry_max_wait": 0.3, "timeout": 2}
# Built-in exceptions raised on purpose and caught inside the same module, abstract methods, or what a
# protocol asks for (a module's __getattr__, PEP 562, raises AttributeError for a name it does not have).
INTERNAL = {("mail/recipients.py", "ValueError"), ("graph/auth.py", "NotImplementedError"),
            ("__init__.py", "AttributeError")}


def test_every_error_class_has_one_root_and_is_re_exported():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, BaseException)]
    assert len(classes) >= 20 and all(issubclass(c, GraphMailError) for c in classes)
    for cls in classes:
        assert getattr(airflow_graph_mail, cls.__name__) is cls


def test_no_built_in_exception_escapes_the_provider():
    """Client code (the emulator is a product of its own) raises only our errors."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("emulator/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                name = node.exc.func.id
                if isinstance(getattr(builtins, name, None), type) and (relative, name) not in INTERNAL:
                    found.append(f"{relative}:{node.lineno} raises {name}")
    assert found == []


def test_permanent_or_not():
    assert MessageValidationError("to", "x").permanent and errors.GraphConfigError("x").permanent
    assert errors.AccessDeniedError(403, "ErrorAccessDenied", "no").permanent
    assert errors.InvalidAuthenticationTokenError(401, "InvalidAuthenticationToken", "no").permanent
    assert not ThrottledError(429, "TooManyRequests", "slow down").permanent
    assert not errors.ServiceUnavailableError(503, "ServiceUnavailable", "later").permanent
    assert not OutcomeUnknownError("POST", "/users/a/sendMail", OSError("reset")).permanent
    assert errors.GraphAuthError("invalid_client", "AADSTS7000215: bad secret").permanent
    assert not errors.GraphAuthError("connection_error", "refused").permanent


def test_an_answer_lost_after_the_budget_is_spent_is_outcome_unknown(connect, graph_emulator):
    """Accepted, but the answer is lost, and every lookup fails too: unknown, never a requests error."""
    hook = connect(extra=FAST)
    graph_emulator.faults.add("send_mail", "accept_504")
    graph_emulator.faults.add("list_messages", "drop", times=99)
    with pytest.raises(OutcomeUnknownError, match="looking it up failed too") as raised:
        hook.send_mail(Message(to="ann@example.com"), idempotency_key="lost-1")
    assert not raised.value.permanent
    graph_emulator.faults.clear()
    assert hook.send_mail(Message(to="ann@example.com"), idempotency_key="lost-1", check_first=True) == \
        "already_sent"  # what a retried task does: it looks first
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == {"lost-1": 1}


def test_a_read_with_no_answer_is_a_connection_error(connect, graph_emulator):
    hook = connect(extra=FAST)
    draft = hook.create_draft(Message(to="ann@example.com"))
    graph_emulator.faults.add("get_message", "drop", times=99)
    with pytest.raises(GraphConnectionError, match=r"GET https://127.0.0.1:.*: no answer"):
        hook.get_message(draft["id"])


def test_a_batch_row_whose_answer_was_lost_is_unknown_and_looked_up_on_retry(connect, graph_emulator):
    hook = connect(extra=FAST)
    graph_emulator.faults.add("send_mail", "accept_504", skip=1)  # the second message went, unheard
    # the plan's three reads (Outbox, Drafts, Sent Items) are answered; every lookup after the lost answer is not
    graph_emulator.faults.add("list_messages", "drop", skip=3, times=99)
    messages = [Message(to=f"u{i}@example.com") for i in range(3)]
    keys = [f"batch/{i}" for i in range(3)]
    outcomes = hook.send_many(messages, keys=keys, concurrency=1)
    assert [o["status"] for o in outcomes] == ["sent", "unknown", "sent"]
    assert not outcomes[1]["permanent"]
    graph_emulator.faults.clear()
    again = hook.send_many(messages, keys=keys, check_first=True)
    assert [o["status"] for o in again] == ["already_sent"] * 3
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == dict.fromkeys(keys, 1)  # delivered once, never twice


def test_a_plan_that_cannot_read_the_mailbox_sends_nothing_and_may_be_retried(connect, graph_emulator):
    """The plan reads the mailbox before the first send: a read lost on the way fails the batch with nothing sent,
    as a transient error (the task's retries apply), never as a batch planned against nothing."""
    hook = connect(extra=FAST)
    graph_emulator.faults.add("list_messages", "drop", times=99)
    with pytest.raises(GraphConnectionError) as raised:
        hook.send_many([Message(to="ann@example.com")], keys=["planned/0"])
    assert not raised.value.permanent
    assert graph_emulator.backend.delivery.sends == 0


def test_a_permanent_error_fails_the_task_without_its_retries(connect, graph_emulator):
    from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator

    connect("graph_mail_default", extra=FAST)
    bad = GraphSendMailOperator(task_id="bad", to="ann@", idempotency_key=False)
    with pytest.raises(AirflowFailException, match="not retried") as raised:
        bad.execute({})
    assert isinstance(raised.value.__cause__, MessageValidationError)
    graph_emulator.faults.add("send_mail", 429, retry_after=60)  # longer than the connection lets a send wait
    busy = GraphSendMailOperator(task_id="busy", to="ann@example.com", idempotency_key=False)
    with pytest.raises(ThrottledError):  # transient: the task's own retries apply
        busy.execute({})
