"""The ledger: cartrescue's own state, in SQLModel tables (SQLite by default, any SQLAlchemy URL).

Owns the persisted tables and the four guarantees cron users need:
- **claim before deliver**: a message row is inserted under a unique key (cart key, step,
  channel) *before* delivery, so a second claim of the same step fails, whatever happens later;
- **record after deliver**: the row is updated with the outcome; a crash in between leaves it
  ``claimed``, which later runs report and do not resend (at most once);
- **one run at a time**: a lock row keeps overlapping cron runs from both delivering;
- **one text or call a day per number**: with the shop's day, a claim on a channel that reaches
  the customer's number is refused when that number already had a message that day, whichever
  shard, worker or host claimed it (the planner's own check sees only its shard's carts).

It must not decide eligibility or talk to channels; it answers questions and stores answers.
All times are stored and returned as aware UTC (SQLModel's UTCDateTime columns).

The package, one job per module (``handle`` is the only one that opens a database):

- :mod:`~cartrescue.ledger.tables`: the SQLModel tables and the widths their columns allow;
- :mod:`~cartrescue.ledger.values`: statuses, channel sets and the value types asked and answered with;
- :mod:`~cartrescue.ledger.moments`: times as the columns take and give them (aware UTC);
- :mod:`~cartrescue.ledger.engine`: SQLite pragmas, the write lock's wait, the driver's cursor;
- :mod:`~cartrescue.ledger.statements`: the prebuilt statements (history, the fenced claim, raw rows);
- :mod:`~cartrescue.ledger.liveness`: which runs are over or dead (process identity, heartbeats);
- :mod:`~cartrescue.ledger.errors`: what a database error of the ledger means, in one line;
- :mod:`~cartrescue.ledger.schema`, :mod:`~cartrescue.ledger.suppressed`, :mod:`~cartrescue.ledger.reports`:
  parts of :class:`Ledger` (schema upkeep; suppressions and inbound messages; the report's queries);
- :mod:`~cartrescue.ledger.handle`: :class:`Ledger` itself (runs, the lock, history, claims, outcomes).

Other modules import from ``cartrescue.ledger``; a test that patches a value patches the module
that owns it (``cartrescue.ledger.engine.WRITE_LOCK_WAIT``), which this package does not re-export.
"""

from __future__ import annotations

from cartrescue.ledger.errors import (NO_SCHEMA, NO_SCHEMA_HINT, busy, failed_while_delivering, ledger_error,
                                      older_ledger, one_line, why_no_file)
from cartrescue.ledger.handle import LOCKING_WAIT, NUMBER_LOCKS, Ledger, shops_taking_turns
from cartrescue.ledger.liveness import OTHER_HOST_GONE, RunsOver, process_identity
from cartrescue.ledger.moments import aware, naive
from cartrescue.ledger.schema import BINARY_COLLATIONS, binary_collation
from cartrescue.ledger.tables import (CART_VALUES, CONFIG_VALUES, READ_TABLES, REPORT_COLUMNS, TABLES, BudgetHold,
                                      CartDecision, Code, Inbound, Message, Promotion, Run, RunLock, SendTest,
                                      Suppression, SurveyAnswer, cart_value_limits, config_value_limits)
from cartrescue.ledger.values import (ADDRESS_CHANNELS, MAYBE_DELIVERED, MESSAGED, NUMBER_CHANNELS, REPORTED,
                                      RESENDS_LOST, UNCONFIRMED, Claimed, ClaimRequest, History, Owner, Promoted,
                                      SentStep, StoppedChannel, TierUse, may_have_reached)

__all__ = ["aware", "naive", "ADDRESS_CHANNELS", "binary_collation", "BINARY_COLLATIONS", "BudgetHold", "busy",
           "cart_value_limits", "CART_VALUES", "CartDecision", "Claimed", "ClaimRequest", "Code", "config_value_limits",
           "CONFIG_VALUES", "failed_while_delivering", "History", "Inbound", "Ledger", "ledger_error", "LOCKING_WAIT", "MAYBE_DELIVERED",
           "may_have_reached", "Message", "MESSAGED", "NO_SCHEMA", "NO_SCHEMA_HINT", "NUMBER_CHANNELS", "NUMBER_LOCKS", "older_ledger",
           "one_line", "OTHER_HOST_GONE", "Owner", "process_identity", "Promoted", "Promotion", "READ_TABLES",
           "REPORT_COLUMNS", "REPORTED", "RESENDS_LOST", "Run", "RunLock", "RunsOver", "SendTest", "SentStep", "StoppedChannel", "shops_taking_turns",
           "Suppression", "SurveyAnswer", "TABLES", "TierUse", "UNCONFIRMED", "why_no_file"]
