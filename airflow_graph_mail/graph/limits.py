"""The sending limits of the mailbox a connection sends from, as Exchange Online sets them, and what a retry
may do when it cannot look in the mailbox.

Microsoft ("Exchange Online limits", "Troubleshoot outbound sending limits in Exchange Online"): at most 500
recipients per message by default (an admin can set 1 to 1000), 10,000 recipients per 24-hour sliding window
and 30 messages per minute per mailbox, the last two hard limits that cannot be raised. A connection states
its mailbox's limits (lower ones, where an outbound spam policy sets them; a per-message limit an admin
raised) in its extras; the client checks and plans against them.
"""

from __future__ import annotations

from dataclasses import dataclass

RECIPIENTS_PER_MESSAGE = 500
MOST_RECIPIENTS_PER_MESSAGE = 1000
RECIPIENTS_PER_DAY = 10_000
MESSAGES_PER_MINUTE = 30

# What a retry does when an earlier attempt may have sent a mail and the app cannot read the mailbox to see.
EXACTLY_ONCE = "exactly_once"  # look; unable to look, fail naming the missing permission (the default)
AT_LEAST_ONCE = "at_least_once"  # send again without looking: a mail may arrive twice
AT_MOST_ONCE = "at_most_once"  # do not send again: a mail may be lost
DELIVERY_GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE, AT_MOST_ONCE)


@dataclass(frozen=True)
class MailboxLimits:
    recipients_per_message: int = RECIPIENTS_PER_MESSAGE
    recipients_per_day: int = RECIPIENTS_PER_DAY
    messages_per_minute: int = MESSAGES_PER_MINUTE
