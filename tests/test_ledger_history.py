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
