"""The time a command runs at: ``--now``, the config's pinned ``now``, or the wall clock, within
the years a run can count in.

Apart from ``Config`` because commands ask it for options the config does not hold.
"""

from datetime import date
from typing import TYPE_CHECKING, TypeVar

from cartrescue.config.root import Config
from cartrescue.errors import ConfigError

if TYPE_CHECKING:
    from datetime import datetime


#: The years a time a command is given (``--now``, ``--since``, ``--until``, the config's
#: ``now``) may fall in: far enough from years 1 and 9999 that the days, weeks and ``max_age``
#: counted around it are still dates (it was an OverflowError deep in a run: exit 70).
YEARS = range(1970, 9000)


_When = TypeVar("_When", bound=date)  # a date or a datetime: what the caller gave


def within_reach(moment: "_When", what: str) -> "_When":
    """``moment`` (a datetime or a date) if its year is in :data:`YEARS`; else a ConfigError naming ``what``."""
    if moment.year not in YEARS:
        raise ConfigError(f"{what}: {moment.isoformat()} is out of reach: expected a time between "
                          f"{YEARS.start} and {YEARS.stop}")
    return moment


def resolve_now(config: Config, now: "datetime | None") -> "datetime":
    """``--now`` wins, then the config's pinned clock, then the wall clock; always aware UTC."""
    from datetime import datetime, timezone as utc_zone

    if now is None and config.now:
        try:
            now = within_reach(datetime.fromisoformat(config.now), config.where("now"))
        except ValueError:
            raise config.refusal("now", f"expected an ISO 8601 time, got {config.now!r}") from None
    if now is None:
        from cartrescue.clock import wall

        return wall()
    if now.tzinfo is None:
        now = now.replace(tzinfo=config.shop.tz)
    return now.astimezone(utc_zone.utc)
