"""Send Outlook mail from Apache Airflow through Microsoft Graph."""

from airflow_graph_mail.errors import *  # noqa: F403 - the error tree, catchable from the package
from airflow_graph_mail.errors import __all__ as _errors

__version__ = "0.1.0"
__all__ = [*_errors, "__version__"]
