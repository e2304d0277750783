"""The ledger's per-chunk and per-claim queries cost the same however large the ledger has grown.

A shop's ledger keeps every message of every run (a year of cron runs: millions of rows). Planning
asks it about each chunk of 500 carts, and a sending run claims a message or a group of them at a
time: those lookups must go by the cart key and the address, never read the whole ledger or the
whole run. Measured as SQLite's own count of virtual-machine steps (a progress handler), which
does not depend on the machine's speed: the same lookups in a ledger ten times larger cost about
the same number of steps. With ``status IN (...)`` in the "last message per address" query,
SQLite read every message of the ledger for each chunk; with ``run_id = ?`` in the query that
finds a group's claims, every claim the run had made so far.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import event

from cartrescue.contacts import email_hash
from cartrescue.ledger import ClaimRequest, Ledger

NOW = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)


def _ledger_with(path: Path, others: int, run_id: int | None = None) -> Ledger:
    """A ledger holding ``others`` sent messages of other carts and addresses (of ``run_id``)."""
    ledger = Ledger(f"sqlite:///{path}")
    rows = [(f"csv:other{n}", f"other{n}", f"other{n % 5000}@example.com", 1, "email", "smtp", "reminder-1", "sent",
             "250 ok", run_id, (NOW - timedelta(minutes=n % 10_000)).replace(tzinfo=None).isoformat(" "))
            for n in range(others)]
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO cr_message (cart_key, cart_id, email, step, channel, transport, template, status, reply,"
            " run_id, claimed_at, message_id, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', 1)", rows)
    return ledger


def _steps(ledger: Ledger, action: Callable[[], object]) -> int:
    """SQLite virtual-machine steps (in thousands) that ``action`` costs on the ledger's connections."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    def checkout(dbapi_connection: object, _record: object, _proxy: object) -> None:
        dbapi_connection.set_progress_handler(tick, 1000)  # type: ignore[attr-defined]

    def checkin(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.set_progress_handler(None, 0)  # type: ignore[attr-defined]

    event.listen(ledger.engine, "checkout", checkout)
    event.listen(ledger.engine, "checkin", checkin)
    try:
        action()
    finally:
        event.remove(ledger.engine, "checkout", checkout)
        event.remove(ledger.engine, "checkin", checkin)
    return count[0]


def _history_steps(tmp_path: Path, others: int) -> int:
    ledger = _ledger_with(tmp_path / f"history-{others}.db", others)
    keys = [f"csv:c{n}" for n in range(500)]
    emails = [f"a{n}@example.com" for n in range(500)]
    try:
        return _steps(ledger, lambda: ledger.history(keys, emails, [email_hash(e) for e in emails], ["+46701234567"]))
    finally:
        ledger.close()


def test_a_chunks_history_costs_the_same_in_a_ledger_ten_times_larger(tmp_path: Path) -> None:
    small, large = _history_steps(tmp_path, 3_000), _history_steps(tmp_path, 30_000)
    assert large < 1.5 * small + 50, (small, large)


def _claim_steps(tmp_path: Path, earlier: int) -> int:
    """Steps of claiming a group of 16 messages for a run that has already claimed ``earlier``."""
    path = tmp_path / f"claims-{earlier}.db"
    ledger = Ledger(f"sqlite:///{path}")
    run = ledger.start_run("send", NOW)
    ledger.close()
    ledger = _ledger_with(path, earlier, run_id=run)
    requests = [ClaimRequest(f"csv:c{n}", f"c{n}", f"a{n}@example.com", 1, "email", "smtp", "reminder-1", None, None,
                             None) for n in range(16)]
    try:
        with ledger.lock(run, timedelta(hours=1)):
            ledger.claim(run, [ClaimRequest("csv:first", "first", None, 1, "email", "smtp", "t", None, None, None)],
                         NOW)  # the run's writer connection is open
            writer = ledger._writer.connection.dbapi_connection  # the connection the claims go through
            count = [0]

            def tick() -> int:
                count[0] += 1
                return 0

            writer.set_progress_handler(tick, 1000)
            won = ledger.claim(run, requests, NOW)
            writer.set_progress_handler(None, 0)
        assert len(won) == 16
        return count[0]
    finally:
        ledger.close()


def test_a_group_of_claims_costs_the_same_late_in_a_large_run(tmp_path: Path) -> None:
    early, late = _claim_steps(tmp_path, 2_000), _claim_steps(tmp_path, 20_000)
    assert late < 1.5 * early + 50, (early, late)


def test_no_message_index_repeats_the_leading_columns_of_another(tmp_path: Path) -> None:
    """Every claim writes every index of ``cr_message``: an index whose columns lead another
    (``cart_key`` alone beside the unique ``cart_key, step, channel``) only costs pages on each
    write, since the longer one answers its lookups (see the history test above)."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with ledger.engine.connect() as conn:
        names = [row[1] for row in conn.exec_driver_sql("PRAGMA index_list(cr_message)")]
        columns = {name: tuple(row[2] for row in conn.exec_driver_sql(f"PRAGMA index_info('{name}')"))
                   for name in names}
    assert ("cart_key", "step", "channel") in columns.values()
    for name, leading in columns.items():
        for other, longer in columns.items():
            assert other == name or longer[:len(leading)] != leading, f"{name} {leading} leads {other} {longer}"


def _bounce_lookup_steps(tmp_path: Path, others: int) -> int:
    """Steps of finding the recipients of two returned messages among ``others`` sent ones."""
    ledger = _ledger_with(tmp_path / f"returned-{others}.db", others)
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE cr_message SET message_id = '<' || id || '.cart@shop.example.com>'")
    try:
        wanted = ["<7.cart@shop.example.com>", "<11.cart@shop.example.com>"]
        return _steps(ledger, lambda: ledger.recipients_of(wanted))
    finally:
        ledger.close()


def test_a_returned_messages_lookup_costs_the_same_in_a_ledger_ten_times_larger(tmp_path: Path) -> None:
    """``suppress mailbox`` finds whom a bounce or a spam complaint names by the returned
    Message-ID, once per report: without an index on it, each report read every sent message."""
    small, large = _bounce_lookup_steps(tmp_path, 3_000), _bounce_lookup_steps(tmp_path, 30_000)
    assert large < 1.5 * small + 50, (small, large)
