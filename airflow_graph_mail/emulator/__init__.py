"""A local Microsoft Graph mail service: HTTPS, an Entra-like authority, mailboxes in SQLite.

It shares no code with the client side (``mail/``, ``graph/``): it is written from Microsoft's
documentation, so a client bug cannot hide behind the same bug in the server.
"""

from airflow_graph_mail.emulator.server import GraphEmulator

__all__ = ["GraphEmulator"]
