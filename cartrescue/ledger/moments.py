"""Times as the ledger's columns take and give them: aware UTC in, aware UTC out.

Apart because every other module of the ledger stores or reads a time, and so do
:mod:`cartrescue.compose.incentives`' queries of ``cr_code``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import overload


def naive(moment: datetime) -> datetime:
    """What the columns take: aware UTC (SQLModel's UTCDateTime stores it portably)."""
    return moment.astimezone(timezone.utc)


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: datetime | None) -> datetime | None:
    """A time read from the ledger (naive UTC on SQLite and MariaDB) as an aware UTC time."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
