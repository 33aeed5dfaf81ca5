"""How the mail operators render their fields (rendering.py), on the Airflow version installed.

The one private hook the operators override is Airflow's ``_do_render_template_fields``: these tests fail
when Airflow stops calling it, for plain or for mapped tasks, or changes its signature.
"""

from __future__ import annotations

import inspect
import signal
import time
from datetime import timedelta

import pytest
from airflow.providers.common.compat.sdk import DAG, AirflowFailException, BaseOperator
from helpers import at_the_recursion_limit

from airflow_graph_mail import RenderTimeoutError
from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator
from airflow_graph_mail.rendering import time_limit

ENDLESS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


def test_airflow_still_calls_the_hook_we_override():
    params = list(inspect.signature(BaseOperator._do_render_template_fields).parameters)
    assert params == ["self", "parent", "template_fields", "context", "jinja_env", "seen_oids"]
    assert "_do_render_template_fields" in inspect.getsource(BaseOperator.render_template_fields)
    try:
        from airflow.sdk.definitions.mappedoperator import MappedOperator
    except ImportError:  # Airflow 2.11
        from airflow.models.mappedoperator import MappedOperator  # type: ignore[no-redef]
    # A mapped task is rendered through the unmapped operator's hook, not its render_template_fields.
    assert "_do_render_template_fields" in inspect.getsource(MappedOperator.render_template_fields)


def operator(tmp_path, **arguments):
    (tmp_path / "report.html").write_text("<p>{{ params.team }} & {{ cid('chart.png') }}</p>")
    (tmp_path / "summary.txt").write_text("{{ a file to attach, not a template }}")
    with DAG("rendering", schedule=None, template_searchpath=[str(tmp_path)], params={"team": "<R&D>"}):
        return GraphSendMailOperator(task_id="send", **{"to": "ann@example.com", **arguments})


def test_only_the_body_names_a_template_file(tmp_path):
    send = operator(tmp_path, body="report.html", subject="{{ params.team }} summary.txt",
                    attachments=["summary.txt", "{{ params.team }}.csv"])
    send.render_template_fields({"params": {"team": "<R&D>"}})
    assert send.body == "<p><R&D> & cid:chart.png</p>"
    assert send.subject == "<R&D> summary.txt"
    assert send.attachments == ["summary.txt", "<R&D>.csv"]  # paths, never read as templates


def test_autoescape_applies_to_an_html_body_only(tmp_path):
    send = operator(tmp_path, body="report.html", subject="{{ params.team }}", autoescape=True)
    send.render_template_fields({"params": {"team": "<R&D>"}})
    assert send.body == "<p>&lt;R&amp;D&gt; & cid:chart.png</p>"
    assert send.subject == "<R&D>"


def test_an_endless_template_fails_the_task_naming_the_field(tmp_path):
    send = operator(tmp_path, body=ENDLESS, render_timeout=0.5)
    outer = signal.getitimer(signal.ITIMER_REAL)[0]  # pytest-timeout's own alarm, if any
    with pytest.raises(AirflowFailException, match=r"body: RenderTimeoutError: body: the template did not finish "
                                                   "rendering within 0.5s") as raised:
        send.render_template_fields({"params": {}})
    assert isinstance(raised.value.__cause__, RenderTimeoutError)
    after = signal.getitimer(signal.ITIMER_REAL)[0]
    assert (after == 0) if not outer else (outer - 5 < after <= outer)  # no alarm of ours left; the outer kept


def test_a_shorter_execution_timeout_bounds_rendering_too(tmp_path):
    send = operator(tmp_path, subject=ENDLESS, execution_timeout=timedelta(seconds=0.5))
    with pytest.raises(AirflowFailException, match=r"subject: .* within 0\.5s"):
        send.render_template_fields({"params": {}})


def test_an_outer_alarm_is_kept_and_wins_when_due_first():
    fired = []

    def outer(signum, frame):
        fired.append(signum)
        raise TimeoutError("outer")

    previous = signal.signal(signal.SIGALRM, outer)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100)
        with time_limit(5, "subject"):
            pass
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 99 < remaining <= 100 and signal.getsignal(signal.SIGALRM) is outer
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(TimeoutError, match="outer"), time_limit(30, "subject"):
            while True:
                time.sleep(0.01)
        assert fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_attachment_content_keeps_its_last_newline(tmp_path):
    """Airflow's environment drops a template's trailing newline; a CSV's last line break must stay."""
    send = operator(tmp_path, body="<p>{{ params.team }}</p>\n",
                    attachments=[("totals-{{ params.team }}.csv", "team,total\n{{ params.team }},3\n")])
    send.render_template_fields({"params": {"team": "R&D"}})
    assert send.attachments == [("totals-R&D.csv", "team,total\nR&D,3\n")]


RECURSIVE = "{% macro again(n) %}{{ again(n + 1) }}{% endmacro %}{{ again(0) }}"


@pytest.mark.parametrize(("field", "template", "error", "text"), [
    ("subject", "{{ 1 / 0 }}", ZeroDivisionError, "division by zero"),
    ("body", RECURSIVE, RecursionError, "maximum recursion depth exceeded"),
    ("to", "{{ params.team | round }}@example.com", TypeError, "type str doesn't define __round__ method"),
    ("headers", {"x-team": "{{ {}.pop('team') }}"}, KeyError, "'team'"),
    ("attachments", [("a.csv", "{{ 'x'.encode('no-such-codec') }}")], LookupError, "unknown encoding: no-such-codec"),
])
@pytest.mark.parametrize("kind", ["send", "draft"])
def test_a_template_that_raises_fails_the_task_naming_the_field(tmp_path, kind, field, template, error, text):
    """Like a template error, an exception the template raises is the same on every try: the task fails at
    once, and the error says which field ("<field>: <ErrorType>: <message>")."""
    from airflow_graph_mail.operators.graph_mail import GraphDraftOperator

    with DAG("raising", schedule=None, params={"team": "R&D"}):
        kinds = {"send": GraphSendMailOperator, "draft": GraphDraftOperator}
        task = kinds[kind](task_id="mail", **{"to": "ann@example.com", field: template})
    with at_the_recursion_limit(error is RecursionError), pytest.raises(AirflowFailException) as raised:
        task.render_template_fields({"params": {"team": "R&D"}})
    assert str(raised.value).startswith(f"{field}: {error.__name__}: ")
    assert text in str(raised.value) and "(not retried: a retry cannot fix this)" in str(raised.value)
    assert isinstance(raised.value.__cause__, error)


def test_an_endless_recursion_leaves_no_thousand_frame_traceback(tmp_path):
    """The stack is unwound before the error is handled, and the cause carries no traceback of ~1000
    template frames into the task log (the message names the field)."""
    send = operator(tmp_path, body=RECURSIVE)
    with at_the_recursion_limit(), pytest.raises(AirflowFailException, match=r"^body: RecursionError: ") as raised:
        send.render_template_fields({"params": {}})
    assert raised.value.__cause__ is not None and raised.value.__cause__.__traceback__ is None


def test_an_outside_failure_while_rendering_keeps_the_retries(tmp_path, caplog):
    """A template reaching outside (an XCom, a Variable, a service) may fail for a moment: that is not a
    template fault, so the task keeps its retries; the log names the field."""
    def fetch():
        raise ConnectionError("the API server did not answer")

    with DAG("outside", schedule=None, user_defined_macros={"fetch": fetch}):
        send = GraphSendMailOperator(task_id="send", to="ann@example.com", subject="{{ fetch() }}")
    with pytest.raises(ConnectionError, match="did not answer"):
        send.render_template_fields({"params": {}})
    assert "Rendering the template of field 'subject' of task send failed" in caplog.text
