"""The rows a run's claims and outcomes bind (``RawStatements``): the fast path of positional
drivers (SQLite) builds them as tuples straight from the request and the outcome; they must
bind exactly what the compiled statements name, column for column."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from cartrescue.errors import LockLost
from cartrescue.ledger import ClaimRequest, Ledger


NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A SQLite ledger of its own, closed after the test."""
    opened = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield opened
    finally:
        opened.close()


def _request(n: int, **changes: object) -> ClaimRequest:
    values: dict[str, object] = dict(
        cart_key=f"key{n}", cart_id=f"id{n}", email=f"e{n}@example.com", step=n, channel="email",
        transport="smtp", template=f"reminder-{n}", variant=f"v{n}", tier=f"tier{n}", score=0.5 + n,
        message_id=f"<m{n}@example.com>", sequence=f"seq{n}", locale="de", customer_id=f"cust{n}",
        cart_value=f"{n}.99", phone=f"+4930{n:06d}")
    values.update(changes)
    return ClaimRequest(**values)  # type: ignore[arg-type]


def test_claim_and_outcome_rows_bind_what_the_statements_name(ledger: Ledger) -> None:
    raw = ledger._raw_statements()
    assert raw._claim_fields is not None and raw._record_plain  # SQLite takes the fast path
    requests = [_request(1), _request(2, email=None, variant=None, tier=None, score=None, phone=None)]
    at = raw.moment(NOW)
    fast = raw.claim_rows(requests, 7, at, "run")
    fixed = dict(raw._claim_defaults, c_run=7, c_at=at, c_lock="run")
    named = [dict(fixed, **{"c_" + name: getattr(r, name) for name in r.__slots__}) for r in requests]
    assert fast == raw.rows(raw._claim_order, named)
    outcomes = [(11, "sent", "250 ok" + "x" * 2000, "<m1@example.com>"), (12, "failed_permanent", "550", "")]
    assert raw.record_rows(outcomes, at) == raw.rows(raw._record_order, [
        dict(b_id=i, b_status=s, b_reply=r[:1000], b_mid=m, b_at=at) for i, s, r, m in outcomes])


def test_a_claimed_message_stores_every_field_of_its_request(ledger: Ledger) -> None:
    run_id = ledger.start_run("send", NOW)
    with ledger.lock(run_id, timedelta(minutes=5)):
        request = _request(3)
        won = ledger.claim(run_id, [request], NOW)
        claim_id = won[(request.cart_key, request.step, request.channel)]
        ledger.claim(run_id, [_request(4)], NOW, outcomes=[(claim_id, "sent", "250 queued", "<m3@example.com>")])
    row = {m["cart_key"]: m for m in ledger.messages()}["key3"]
    for name in request.__slots__:
        assert row[name] == getattr(request, name), name
    assert (row["status"], row["reply"], row["run_id"]) == ("sent", "250 queued", run_id)


def _claims_of(tmp_path: Path, name: str, grouped: bool) -> tuple[list[list[tuple[str, int, str]]], list[Any]]:
    """Claims of groups of several sizes (a key twice in a group, keys another run holds, a
    ``failed_transient`` row to claim again), with SQLite's one-statement groups on or off."""
    ledger = Ledger(f"sqlite:///{tmp_path / name}")
    try:
        raw = ledger._raw_statements()
        assert raw._group_width  # this SQLite has RETURNING: the group statement exists
        if not grouped:
            raw._group_width = 0
        now = NOW
        earlier = ledger.start_run("send", now)
        with ledger.lock(earlier, timedelta(minutes=5)):
            first = ledger.claim(earlier, [_request(n) for n in (1, 2, 3)], now)
            ledger.record([(first[("key3", 3, "email")], "failed_transient", "421 later", "")])
        run_id = ledger.start_run("send", now)
        won: list[list[tuple[str, int, str]]] = []
        with ledger.lock(run_id, timedelta(minutes=5)):
            for group in ([_request(4)], [_request(5), _request(5), _request(1), _request(3)],
                          [_request(n) for n in range(10, 18)], [_request(n) for n in range(20, 52)],
                          [_request(n) for n in range(60, 93)]):
                claimed = ledger.claim(run_id, group, now)
                assert all(claimed[key] > 0 for key in claimed)
                won.append(sorted(claimed))
        rows = [{k: v for k, v in m.items() if k not in ("id", "claimed_at", "finished_at")}
                for m in sorted(ledger.messages(), key=lambda m: (m["cart_key"], m["step"]))]
        return won, rows
    finally:
        ledger.close()


def test_a_group_of_claims_in_one_statement_claims_what_row_by_row_claimed(tmp_path: Path) -> None:
    grouped, rows = _claims_of(tmp_path, "grouped.db", grouped=True)
    assert (grouped, rows) == _claims_of(tmp_path, "rows.db", grouped=False)
    assert grouped[1] == [("key3", 3, "email"), ("key5", 5, "email")]  # key1 is the other run's; key5 once
    assert [len(keys) for keys in grouped] == [1, 2, 8, 32, 33]
    assert {r["cart_key"]: r["attempts"] for r in rows}["key3"] == 2


def test_a_group_of_claims_without_the_lock_claims_nothing(ledger: Ledger) -> None:
    run_id = ledger.start_run("send", NOW)
    with ledger.lock(run_id, timedelta(minutes=5)):
        with pytest.raises(LockLost):
            ledger.claim(run_id + 1, [_request(n) for n in range(5)], NOW)  # the lock names another run
    assert ledger.messages() == []
