"""One operation's context (a send, a draft, a lookup): the mailbox it acts on and its retry budget.

Carried through every request the operation makes, instead of threading a sender and a budget through
each method: the paths come from it, the per-mailbox pacer is chosen by it, and every retry spends from
its one budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from airflow_graph_mail.graph.retry import RetryBudget


@dataclass
class Call:
    mailbox: str  # "me" (delegated), an address, or a user's object id; already checked
    budget: RetryBudget

    @property
    def user_path(self) -> str:
        return "/me" if self.mailbox.lower() == "me" else f"/users/{quote(self.mailbox, safe='@')}"

    def messages_path(self, folder: str | None = None) -> str:
        if folder:
            return f"{self.user_path}/mailFolders/{quote(folder, safe='')}/messages"
        return f"{self.user_path}/messages"

    def message_path(self, message_id: str) -> str:
        return f"{self.user_path}/messages/{quote(str(message_id), safe='')}"

    @property
    def pacer_key(self) -> str:
        return self.mailbox.lower()
