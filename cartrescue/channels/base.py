"""The channel seam: how a rendered message leaves cartrescue.

A channel delivers batches of envelopes and reports one outcome per envelope. It must not
decide who gets a message nor touch the ledger: the pipeline claims before and records after.
Implementations: ``outbox`` (.eml files), ``dryrun`` (nothing leaves), ``call_list`` (a CSV for
staff), ``smtp`` (aiosmtplib).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cartrescue.model import Decision, OutgoingMessage


class Status(StrEnum):
    """Ledger status of a message; the channel reports the last three."""

    CLAIMED = "claimed"  # inserted before delivery; no outcome known yet
    SENT = "sent"  # the server (or the outbox) accepted it
    TRANSIENT = "failed_transient"  # retry later (4xx, connection/TLS errors)
    PERMANENT = "failed_permanent"  # do not retry (5xx)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One claimed message: the ledger row id, why it goes out, and what goes out."""

    claim_id: int
    decision: Decision
    message: OutgoingMessage | None  # None for channels that need no rendered message (call list)


@dataclass(frozen=True, slots=True)
class Outcome:
    claim_id: int
    status: Status
    reply: str = ""  # the server's reply or the file written; kept in the ledger
    suppress: str = ""  # non-empty: the address does not exist; the pipeline suppresses it with this reason


class Channel(ABC):
    """Delivers envelopes. Sync interface; an async channel runs its own loop inside."""

    #: Transport name recorded in the ledger ("outbox", "smtp", "call-list").
    transport: str = "channel"

    @abstractmethod
    def deliver(self, batch: Sequence[Envelope]) -> Iterator[Outcome]:
        """Deliver ``batch``; yield one outcome per envelope, in any order, as they happen."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush files, close connections."""

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
