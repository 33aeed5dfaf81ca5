"""Send Outlook mail from Apache Airflow through Microsoft Graph."""

__version__ = "0.1.0"
