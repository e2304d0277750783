"""The channels a message goes by (email, SMS, webhook, call list), and the words for who answers them."""

from __future__ import annotations

from collections.abc import Collection

#: Who answers a message of each channel: their missing answer leaves its claim without outcome.
#: A call list's row is answered by nobody (only a killed run leaves it without outcome).
ANSWERED_BY = {"email": "the relay", "sms": "the SMS gateway", "webhook": "the webhook receiver"}


def answering(channels: Collection[str]) -> str:
    """``the relay or the SMS gateway``: who answers messages of ``channels`` (an SMS gateway is
    no relay), "" when none of them is answered (a call list's)."""
    return " or ".join(party for channel, party in ANSWERED_BY.items() if channel in channels)


def silent_parties(channels: Collection[str]) -> str:
    """``, or the relay or the SMS gateway did not answer after the message``, naming only the
    channels of the claims without outcome; "" for a call list's, which nobody answers."""
    who = answering(channels)
    return f", or {who} did not answer after the message" if who else ""
