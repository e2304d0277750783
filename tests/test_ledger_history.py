"""What the planner asks the ledger: each cart's own claimed steps, whatever its key holds.

On SQLite a chunk's keys travel as one JSON list read by ``json_each``, which ends a string at
``\\u0000``: a CSV cart id holding a NUL (Python's csv module reads one since 3.11) was looked up
cut short, so its own step 1 was not found: the next day's run planned step 1 again (only the
claim's unique key stopped it, as `claimed_elsewhere`) and never came to step 2.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from cartrescue.ledger import Ledger

CLAIMED = datetime(2026, 11, 20, 10, tzinfo=timezone.utc).replace(tzinfo=None).isoformat(" ")


def _ledger_with_steps(path: Path, sent: dict[str, int]) -> Ledger:
    """A ledger where each cart key of ``sent`` has that step sent."""
    ledger = Ledger(f"sqlite:///{path}")
    rows = [(key, key.removeprefix("csv:"), f"c{n}@example.com", step, "email", "smtp", "reminder-1", "sent",
             "250 ok", None, CLAIMED) for n, (key, step) in enumerate(sent.items())]
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO cr_message (cart_key, cart_id, email, step, channel, transport, template, status, reply,"
            " run_id, claimed_at, message_id, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', 1)", rows)
    return ledger


def test_a_cart_key_holding_a_nul_finds_its_own_steps(tmp_path: Path) -> None:
    ledger = _ledger_with_steps(tmp_path / "ledger.db", {"csv:a\x00b": 1, "csv:a": 2})
    try:
        history = ledger.history(["csv:a\x00b", "csv:a", "csv:fresh"], [], [])
        assert {key: [sent.step for sent in steps] for key, steps in history.by_cart.items()} == \
            {"csv:a\x00b": [1], "csv:a": [2]}
    finally:
        ledger.close()


def test_a_chunk_without_a_nul_still_finds_every_carts_steps(tmp_path: Path) -> None:
    ledger = _ledger_with_steps(tmp_path / "ledger.db", {f"csv:c{n}": 1 + n % 3 for n in range(600)})
    try:
        history = ledger.history([f"csv:c{n}" for n in range(700)], [], [])
        assert {key: steps[0].step for key, steps in history.by_cart.items()} == \
            {f"csv:c{n}": 1 + n % 3 for n in range(600)}
    finally:
        ledger.close()


def test_a_stand_in_for_a_missing_ledger_is_not_asked_for_histories(tmp_path: Path) -> None:
    """A dry-run before the shop's first sending run reads an empty stand-in (``Ledger.empty``),
    which nothing writes to: the planner plans each chunk as from an empty history without
    hashing the chunk's addresses and asking the stand-in four queries for nothing."""
    from cartrescue.config import Config
    from cartrescue.model import Cart, Customer
    from cartrescue.pipeline import Planner

    config = Config.model_validate({"source": {"type": "csv", "carts": "carts.csv"}})
    stand_in = Ledger.empty(absent="ledger.db does not exist")
    asked: list[object] = []

    def history(*args: object, **kwargs: object) -> None:
        asked.append(args)
        raise AssertionError("a stand-in was asked for histories")

    try:
        stand_in.history = history  # type: ignore[method-assign]
        planner = Planner(config, datetime(2026, 11, 20, 10, tzinfo=timezone.utc), stand_in)
        now = datetime(2026, 11, 20, 8, tzinfo=timezone.utc)
        chunk = [Cart("a", "csv", Customer("ann@example.com"), "EUR", (), 0, now, now)]  # type: ignore[arg-type]
        found = planner._history(chunk, ["ann@example.com"], [])
        assert stand_in.blank is True
        assert (found.by_cart, found.last_by_email, found.suppressed, asked) == ({}, {}, set(), [])
    finally:
        stand_in.close()
    real = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        assert Planner(config, datetime(2026, 11, 20, 10, tzinfo=timezone.utc), real)._history(
            [], ["ann@example.com"], []).by_cart == {}
        assert real.blank is False
    finally:
        real.close()
