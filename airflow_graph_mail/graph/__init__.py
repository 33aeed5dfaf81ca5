"""Talking to Microsoft Graph: HTTP, tokens, clouds and errors. No Airflow here."""
