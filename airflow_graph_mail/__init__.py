"""Send Outlook mail from Apache Airflow through Microsoft Graph."""

from importlib.metadata import PackageNotFoundError, version

from airflow_graph_mail.errors import *  # noqa: F403 - the error tree, catchable from the package

try:  # the version lives in pyproject.toml only; the installed metadata carries it here
    __version__ = version("airflow-graph-mail")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

