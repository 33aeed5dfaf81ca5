"""Send and receive Outlook mail from Apache Airflow through Microsoft Graph.

The public API, one import path for each name (every error included)::

    from airflow_graph_mail import GraphSendMailOperator, Message, Attachment, MessageValidationError

Names load when first asked for (PEP 562): Airflow imports this package in every process to discover the
provider, and DAG parsing stays cheap, so importing it loads no operator, hook, HTTP client or MSAL.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from airflow_graph_mail import errors
from airflow_graph_mail.errors import *  # noqa: F403 - the error tree: small, no third-party imports

# Public name -> the module that defines it, loaded when the name is first asked for.
_LAZY = {
    "Message": "airflow_graph_mail.mail.message",
    "Attachment": "airflow_graph_mail.mail.attachments",
    "Recipient": "airflow_graph_mail.mail.recipients",
    "Status": "airflow_graph_mail.outcomes",
    "Outcome": "airflow_graph_mail.outcomes",
    "GraphMailClient": "airflow_graph_mail.graph.client",
    "GraphMailHook": "airflow_graph_mail.hooks.graph_mail",
    "GraphSendMailOperator": "airflow_graph_mail.operators.graph_mail",
    "GraphDraftOperator": "airflow_graph_mail.operators.graph_mail",
    "GraphSendDraftOperator": "airflow_graph_mail.operators.graph_mail",
    "GraphMailMergeOperator": "airflow_graph_mail.operators.mail_merge",
    "GraphBounceReportOperator": "airflow_graph_mail.operators.bounce_report",
    "GraphDraftSentSensor": "airflow_graph_mail.sensors.graph_mail",
    "GraphMailNotifier": "airflow_graph_mail.notifications.graph_mail",
    "GraphMailSensor": "airflow_graph_mail.sensors.inbound",
    "GraphMailEventTrigger": "airflow_graph_mail.triggers.inbound",
    "GraphSaveAttachmentsOperator": "airflow_graph_mail.operators.inbound",
    "GraphMarkMailOperator": "airflow_graph_mail.operators.inbound",
    "GraphReplyOperator": "airflow_graph_mail.operators.inbound",
    "run_once_per_mail": "airflow_graph_mail.operators.mail_runs",
}
__all__ = ["__version__", *sorted([*errors.__all__, *_LAZY])]  # noqa: PLE0604, F405 - lazy names: __getattr__


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:  # the version lives in pyproject.toml only; the installed metadata carries it here
            found = version("airflow-graph-mail")
        except PackageNotFoundError:  # a source tree that was never installed
            found = "0+unknown"
    elif name in _LAZY:
        found = getattr(import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = found  # asked once
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads each name when asked
    from airflow_graph_mail.graph.client import GraphMailClient  # noqa: F401
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook  # noqa: F401
    from airflow_graph_mail.mail.attachments import Attachment  # noqa: F401
    from airflow_graph_mail.mail.message import Message  # noqa: F401
    from airflow_graph_mail.mail.recipients import Recipient  # noqa: F401
    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier  # noqa: F401
    from airflow_graph_mail.operators.bounce_report import GraphBounceReportOperator  # noqa: F401
    from airflow_graph_mail.operators.graph_mail import (  # noqa: F401
        GraphDraftOperator,
        GraphSendDraftOperator,
        GraphSendMailOperator,
    )
    from airflow_graph_mail.operators.inbound import (  # noqa: F401
        GraphMarkMailOperator,
        GraphReplyOperator,
        GraphSaveAttachmentsOperator,
    )
    from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator  # noqa: F401
    from airflow_graph_mail.operators.mail_runs import run_once_per_mail  # noqa: F401
    from airflow_graph_mail.outcomes import Outcome, Status  # noqa: F401
    from airflow_graph_mail.sensors.graph_mail import GraphDraftSentSensor  # noqa: F401
    from airflow_graph_mail.sensors.inbound import GraphMailSensor  # noqa: F401
    from airflow_graph_mail.triggers.inbound import GraphMailEventTrigger  # noqa: F401
