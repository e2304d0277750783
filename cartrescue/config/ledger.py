"""The ``ledger`` section: where cartrescue keeps its own state, and how long.

Apart from :mod:`cartrescue.config.root`, which opens the ledger it describes: this only
validates the keys.
"""

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator

from cartrescue.config.types import (
    database_url,
    Duration,
    a_statement_wait,
    Model,
    duration_text,
)
from cartrescue.drivers import STATEMENT_WAIT

LOCK_TIMEOUT_FLOOR = timedelta(seconds=5)


RETENTION_FLOOR = timedelta(days=1)


class Retention(Model):
    """How long the ledger keeps decisions and run records (``None``: for ever). The delivering
    run that follows deletes older rows (cartrescue.lifecycle); messages are never pruned."""

    decisions: Duration | None = timedelta(days=90)  # cr_decision: each cart's latest decision
    runs: Duration | None = timedelta(days=180)  # cr_run: one row per run

    @field_validator("decisions", "runs")
    @classmethod
    def _floor(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < RETENTION_FLOOR:
            raise ValueError(f"must be at least 1d (or null: keep for ever), got {duration_text(value)}")
        return value


def _retention(value: Any) -> Any:
    """One duration for both tables (``retention: 90d``), ``null`` to keep everything, or a mapping."""
    if value is None:
        return {"decisions": None, "runs": None}
    if isinstance(value, (str, int, float, timedelta)) and not isinstance(value, bool):
        return {"decisions": value, "runs": value}
    return value


class LedgerConfig(Model):
    """Where cartrescue keeps its own state (never the shop's database)."""

    url: str = "sqlite:///cartrescue.db"  # relative SQLite paths are relative to the config file
    lock_timeout: Duration = timedelta(hours=2)  # a lock without heartbeat this long is stale (crashed run)
    # A statement on a PostgreSQL or MySQL/MariaDB ledger that goes this long without an answer
    # (a proxy whose backend is gone) stops the command, exit 2 (cartrescue.drivers.Silence).
    statement_wait: Duration = timedelta(seconds=STATEMENT_WAIT)
    retention: Annotated[Retention, BeforeValidator(_retention)] = Retention()

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        """A URL's shape, as ``source.url``'s: ``cartrescue.db`` without ``sqlite:///`` was "cannot
        open: Could not parse SQLAlchemy URL", with no word of what it lacked."""
        return database_url(value, "expected an SQLAlchemy database URL like sqlite:///cartrescue.db (a file "
                                   "beside this config) or postgresql+psycopg://user@host/cartrescue")

    @field_validator("lock_timeout")
    @classmethod
    def _lock_floor(cls, value: timedelta) -> timedelta:
        if value < LOCK_TIMEOUT_FLOOR:
            raise ValueError(f"must be at least {int(LOCK_TIMEOUT_FLOOR.total_seconds())}s (the run refreshes its "
                             f"heartbeat every lock_timeout/4), got {duration_text(value)}")
        return value

    @field_validator("statement_wait")
    @classmethod
    def _some_wait(cls, value: timedelta) -> timedelta:
        return a_statement_wait(value)
