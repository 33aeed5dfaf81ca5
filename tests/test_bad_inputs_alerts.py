"""GraphMailNotifier's templates that fail, one row each, in the style of test_bad_inputs.py.

A notifier runs as a callback: Airflow logs what it raises and goes on, so the error is all a reader gets.
Every row asserts that it names the field it came from, as ``<field>: <ErrorType>: <message>`` (the
operators' and the mail merge's wording), that the template's own exception is its cause, and that the
emulator saw no request with a side effect.
"""

from __future__ import annotations

import json

import pytest
from airflow.providers.common.compat.sdk import DAG
from helpers import as_context, at_the_recursion_limit
from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError

from airflow_graph_mail import MessageValidationError

CONN_ID = "graph_mail_alerts_table"
RECURSIVE = "{% macro again(n) %}{{ again(n + 1) }}{% endmacro %}{{ again(0) }}"

ROWS = [
    # (case, notifier arguments, field, cause, text)
    ("subject divides by zero", {"subject": "{{ 1 / 0 }}"}, "subject", ZeroDivisionError, "division by zero"),
    ("body recurses forever", {"html_content": RECURSIVE}, "html_content", RecursionError,
     "maximum recursion depth exceeded"),
    ("recipient from a filter given the wrong type", {"to": "{{ 'ops' | round }}@example.com"}, "to", TypeError,
     "type str doesn't define __round__ method"),
    ("header value from a missing key", {"custom_headers": {"X-Run": "{{ {}.pop('run') }}"}}, "custom_headers",
     KeyError, "'run'"),
    ("cc from an unknown codec", {"cc": "{{ 'x'.encode('no-such-codec') }}"}, "cc", LookupError,
     "unknown encoding: no-such-codec"),
    ("subject names an undefined variable", {"subject": "{{ no_such_thing }}"}, "subject", UndefinedError,
     "'no_such_thing' is undefined"),
    ("body that does not parse", {"html_content": "<p>{{ run_id </p>"}, "html_content", TemplateSyntaxError,
     "unexpected '/'"),
    ("body file that does not exist", {"html_content": "no_such_alert.html"}, "html_content", TemplateNotFound,
     "no_such_alert.html"),
    ("connection id divides by zero", {"graph_mail_conn_id": "{{ 1 // 0 }}"}, "graph_mail_conn_id",
     ZeroDivisionError, "integer division or modulo by zero"),
]


@pytest.mark.parametrize(("case", "arguments", "field", "cause", "text"), ROWS, ids=[row[0] for row in ROWS])
def test_a_failing_template_names_its_field_and_sends_nothing(connect, graph_emulator, case, arguments, field,
                                                             cause, text):
    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    connect(CONN_ID)
    with DAG("nightly", schedule=None) as dag:  # a DAG's environment: undefined names are errors
        pass
    notifier = GraphMailNotifier(**{"to": "oncall@example.com", "subject": "alert", "html_content": "<p>x</p>",
                                    "graph_mail_conn_id": CONN_ID, **arguments})
    with at_the_recursion_limit(cause is RecursionError), pytest.raises(MessageValidationError) as raised:
        notifier.notify({"run_id": "manual__2026-11-20", "dag": dag})
    err = raised.value
    assert err.field == field and str(err).startswith(f"{field}: {cause.__name__}: "), str(err)
    assert text in str(err)
    assert isinstance(err.__cause__, cause)
    assert graph_emulator.inspect.side_effect_requests == [], json.dumps(graph_emulator.inspect.side_effect_requests)
    assert graph_emulator.backend.delivery.sends == 0


def test_an_endless_recursion_leaves_no_thousand_frame_traceback(connect, graph_emulator):
    """The error reaches Airflow's callback log; a thousand template frames would bury its one line."""
    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    connect(CONN_ID)
    with at_the_recursion_limit(), pytest.raises(MessageValidationError, match=r"^html_content: RecursionError: ") \
            as raised:
        GraphMailNotifier(to="oncall@example.com", subject="x", html_content=RECURSIVE,
                          graph_mail_conn_id=CONN_ID).notify(as_context({"dag": None}))
    assert raised.value.__cause__ is not None and raised.value.__cause__.__traceback__ is None


def test_an_outside_failure_keeps_its_own_type_and_the_log_names_the_field(connect, graph_emulator, caplog):
    """A macro reaching a service that did not answer is no template fault: it is raised as it is."""
    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    def fetch():
        raise ConnectionError("the API server did not answer")

    connect(CONN_ID)
    with pytest.raises(ConnectionError, match="did not answer"):
        GraphMailNotifier(to="oncall@example.com", subject="{{ fetch() }}", html_content="<p>x</p>",
                          graph_mail_conn_id=CONN_ID).notify(as_context({"dag": None, "fetch": fetch}))
    assert "Rendering the notifier's field 'subject' failed" in caplog.text
    assert graph_emulator.inspect.side_effect_requests == []
