"""What the connection test can tell about the sender's mailbox without changing anything: one read of its Sent
Items. It shows whether a retry can look for what an earlier attempt sent (exactly once needs a read permission)
and whether a merge can plan against the mailbox's last 24 hours, and it names a scope that leaves the mailbox
out (Exchange RBAC for Applications, or an application access policy). Whether the app may send cannot be seen
without sending: RBAC for Applications grants Mail.Send without a claim in the token.
"""

from __future__ import annotations

from airflow_graph_mail.errors import AccessDeniedError, GraphMailError, MailboxNotFoundError
from airflow_graph_mail.graph.errors import POLICY_DENIED
from airflow_graph_mail.graph.limits import AT_LEAST_ONCE, AT_MOST_ONCE

_ON_RETRY = {AT_LEAST_ONCE: "a retry sends again without looking (delivery_guarantee=at_least_once: a mail may "
                            "arrive twice)",
             AT_MOST_ONCE: "a retry does not send again what an earlier try may have sent (delivery_guarantee="
                           "at_most_once: a mail may be lost)"}


def report_access(client) -> str:
    """One sentence or two on the sender's mailbox, from one GET of its Sent Items."""
    sender = client.default_sender
    if sender is None:
        return "No default sender is set, so no mailbox was looked at."
    limits = client.limits
    try:
        call = client.call(None)
        client.transport.request(call, "GET", call.messages_path("sentitems") + "?$top=1&$select=id")
    except AccessDeniedError as err:
        if err.message.strip().rstrip(".").lower() == POLICY_DENIED.rstrip(".").lower():
            return (f"An application access policy keeps this app from {sender} (Graph answered {err.status} "
                    f"{err.code}: {err.message}): nothing can be sent from it or read there until an Exchange admin "
                    "adds it to the policy's group, or choose a sender inside it.")
        on_retry = _ON_RETRY.get(client.delivery_guarantee, "a retry that must look for what an earlier try sent "
                                 "fails, naming the missing permission (delivery_guarantee=exactly_once)")
        return (f"Reading {sender}'s Sent Items is refused ({err.status} {err.code}). Exactly once across retries "
                "needs a read permission there (Mail.ReadWrite, or Mail.Read): without it " + on_retry + ", and a "
                "mail merge plans from its batch alone. Grant one, or set delivery_guarantee to at_least_once or "
                "at_most_once. If the app has a read permission, it is restricted to mailboxes that leave out "
                f"{sender} (Exchange RBAC for Applications' scope, or an application access policy), and sending "
                "from it will be refused too.")
    except MailboxNotFoundError:
        return f"{sender} is no mailbox of this tenant: set the connection's sender to one."
    except GraphMailError as err:
        return f"Could not look at {sender}'s mailbox: {err}"
    return (f"Reading {sender}'s Sent Items works: a retry looks there before sending again (exactly once), and a "
            f"mail merge plans against the mailbox's limits ({limits.recipients_per_message:,} recipients per "
            f"message, {limits.recipients_per_day:,} per 24 hours, {limits.messages_per_minute} messages a minute).")
