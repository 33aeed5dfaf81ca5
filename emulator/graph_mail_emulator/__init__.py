"""A local Microsoft Graph mail service: HTTPS, an Entra-like authority, mailboxes in SQLite.

It shares no code with any client: it is written from Microsoft's documentation, so that a client bug
cannot hide behind the same bug in the server.

    from graph_mail_emulator import EmulatorConfig, GraphEmulator, Limits

    with GraphEmulator(EmulatorConfig(limits=Limits(latency=0.05))) as emulator:
        ...  # Graph and Entra at emulator.base_url, trusting emulator.ca_path
        emulator.inspect.messages("ann@example.com")
"""

from graph_mail_emulator.backend.limits import Limits
from graph_mail_emulator.config import BounceConfig, EmulatorConfig, Network
from graph_mail_emulator.emulator import GraphEmulator

__all__ = ["BounceConfig", "EmulatorConfig", "GraphEmulator", "Limits", "Network"]
