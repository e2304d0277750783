"""What the planner asks the ledger: each cart's own claimed steps, whatever its key holds.

On SQLite a chunk's keys travel as one JSON list read by ``json_each``, which ends a string at
``\\u0000``: a CSV cart id holding a NUL (Python's csv module reads one since 3.11) was looked up
cut short, so its own step 1 was not found: the next day's run planned step 1 again (only the
claim's unique key stopped it, as `claimed_elsewhere`) and never came to step 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from shopdb import KINDS, shop_database

from cartrescue.ledger import History, Ledger

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
        assert (found.by_cart, found.last_by_email, found.suppressed, asked) == ({}, {}, {}, [])
    finally:
        stand_in.close()
    real = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        assert Planner(config, datetime(2026, 11, 20, 10, tzinfo=timezone.utc), real)._history(
            [], ["ann@example.com"], []).by_cart == {}
        assert real.blank is False
    finally:
        real.close()


#: Cart keys, addresses and numbers a chunk may ask about that JSON or SQL text could mangle: a
#: quote, a backslash, another script, a key that looks like a number, a JSON escape written out.
AWKWARD = ['csv:q"uote', "csv:back\\slash", "csv:\u00e5sa-\u4e2d", "csv:12", "csv:\\u0041", "csv:plain"]


def _filled(url: str) -> Ledger:
    """A ledger of ``url`` holding steps of the AWKWARD carts, messages of their addresses and a
    number (one failed in a way that is no message, one a day earlier), and two suppressions."""
    from sqlalchemy import insert

    from cartrescue.contacts import email_hash
    from cartrescue.ledger.tables import Message

    ledger = Ledger(url)
    at = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    rows = []
    for n, key in enumerate(AWKWARD):
        address = f'{key.removeprefix("csv:")}@example.com'
        for step, channel, status, hours in ((1, "email", "sent", 48), (2, "email", "failed_permanent", 24),
                                             (2, "sms", "failed_transient", 1)):
            if step <= 1 + n % 2:
                rows.append(dict(cart_key=key, cart_id=key[4:], email=address, step=step, channel=channel,
                                 transport="smtp", template=f"reminder-{step}", status=status, reply="",
                                 run_id=None, claimed_at=at - timedelta(hours=hours, minutes=n), message_id="",
                                 attempts=1, phone="+46701234567" if channel == "sms" else None,
                                 variant="b" if n == 3 else None, sequence="default"))
    with ledger.engine.begin() as conn:
        conn.execute(insert(Message.__table__), rows)  # type: ignore[attr-defined]
    for address in ('q"uote@example.com', "\u00e5sa-\u4e2d@example.com"):
        ledger.suppress(email_hash(address), "unsubscribed", "test", datetime(2026, 11, 20, tzinfo=timezone.utc))
    return ledger


def _asked(ledger: Ledger) -> History:
    """The history of the AWKWARD carts (one twice, with carts and addresses the ledger has not)."""
    from cartrescue.contacts import email_hash

    addresses = [f'{key.removeprefix("csv:")}@example.com' for key in AWKWARD] + ["new@example.com"]
    return ledger.history([*AWKWARD, AWKWARD[0], "csv:new"], addresses, [email_hash(a) for a in addresses],
                          ["+46701234567", "+46709999999"])


def _plain(history: History) -> tuple[object, ...]:
    return ({key: [(s.step, s.channel, s.status, s.at, s.variant, s.sequence) for s in steps]
             for key, steps in history.by_cart.items()}, history.last_by_email, history.suppressed,
            history.last_by_phone)


@pytest.fixture(params=["sqlite", *KINDS])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with shop_database(request.param, "history") as db:
        yield db.url


def test_a_chunks_history_is_the_same_on_every_database_whatever_its_keys_hold(ledger_url: str) -> None:
    """SQLite's one statement of JSON lists, its IN lists (an SQLite without json_each), and
    PostgreSQL's and MariaDB's IN lists give one history: each cart's steps once and in step
    order though the chunk names it twice, the last message of an address and of a number (a
    failed_transient one is none), and the suppressed hashes with their reasons."""
    from cartrescue.contacts import email_hash

    ledger = _filled(ledger_url)
    try:
        history = _asked(ledger)
        if ledger.engine.dialect.name == "sqlite":
            ledger._json_each = False
            assert _plain(_asked(ledger)) == _plain(history)
    finally:
        ledger.close()
    at = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    steps = {key: [(1, "email", "sent", at - timedelta(hours=48, minutes=n), "b" if n == 3 else None, "default")]
             + ([(2, "email", "failed_permanent", at - timedelta(hours=24, minutes=n), "b" if n == 3 else None, "default"),
                 (2, "sms", "failed_transient", at - timedelta(hours=1, minutes=n), "b" if n == 3 else None, "default")]
                if n % 2 else [])
             for n, key in enumerate(AWKWARD)}
    last = {f'{key.removeprefix("csv:")}@example.com': at - timedelta(hours=24 if n % 2 else 48, minutes=n)
            for n, key in enumerate(AWKWARD)}
    suppressed = {email_hash('q"uote@example.com'): "unsubscribed", email_hash("\u00e5sa-\u4e2d@example.com"): "unsubscribed"}
    assert _plain(history) == (steps, last, suppressed, {})  # each hash with its reason


def test_a_chunks_history_is_one_statement_on_sqlite(tmp_path: Path) -> None:
    """A chunk's four lookups (steps, last message by address and by number, suppressions) go
    to SQLite as one statement, whose text is the same for every chunk (prepared once)."""
    from sqlalchemy import event

    ledger = _filled(f"sqlite:///{tmp_path / 'ledger.db'}")
    sent: list[str] = []

    def checkout(dbapi_connection: Any, _record: object, _proxy: object) -> None:
        dbapi_connection.set_trace_callback(sent.append)

    event.listen(ledger.engine, "checkout", checkout)
    try:
        _asked(ledger)
        _asked(ledger)
    finally:
        ledger.close()
    asked = [text for text in sent if "cr_message" in text or "cr_suppression" in text]
    assert len(asked) == 2 and asked[0] == asked[1] and asked[0].count("UNION ALL") == 3, sent


def test_a_chunks_addresses_are_hashed_only_once_the_ledger_holds_a_suppression(tmp_path: Path) -> None:
    """A ledger without a suppression is asked for no contact's hash (the chunk's addresses are
    not hashed for it); one added while the run plans is found from the next chunk on."""
    from cartrescue.config import Config
    from cartrescue.contacts import email_hash, phone_hash
    from cartrescue.model import Cart, Customer
    from cartrescue.pipeline import Planner

    config = Config.model_validate({"source": {"type": "csv", "carts": "carts.csv"}})
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    asked: list[list[str]] = []
    history = ledger.history

    def spied(keys: Any, emails: Any, hashes: Any, phones: Any = ()) -> History:
        asked.append(list(hashes))
        return history(keys, emails, hashes, phones)

    ledger.history = spied  # type: ignore[method-assign]
    now = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    chunk = [Cart("a", "csv", Customer("ann@example.com"), "EUR", (), 0, now, now)]  # type: ignore[arg-type]
    try:
        planner = Planner(config, now, ledger)
        assert planner._history(chunk, ["ann@example.com"], ["+46701234567"]).suppressed == {}
        ledger.suppress(email_hash("ann@example.com"), "unsubscribed", "test", now)
        assert planner._history(chunk, ["ann@example.com"], ["+46701234567"]).suppressed == {
            email_hash("ann@example.com"): "unsubscribed"}
        ledger.unsuppress(email_hash("ann@example.com"))
        ledger.suppress(phone_hash("+46701234567"), "unsubscribed", "test", now)
        assert planner._history(chunk, ["ann@example.com"], ["+46701234567"]).suppressed == {
            phone_hash("+46701234567"): "unsubscribed"}
    finally:
        ledger.close()
    assert asked == [[], [email_hash("ann@example.com"), phone_hash("+46701234567")]] * 1 + \
        [[email_hash("ann@example.com"), phone_hash("+46701234567")]]


def test_a_chunks_address_is_hashed_once_for_the_history_and_the_gates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a suppression in the ledger, the planner hashes a chunk's addresses for the history
    lookup; the gates' suppression test of each cart then reuses that hash (a SHA-256 is ~1 % of
    a cart's work) instead of hashing the address again."""
    import hashlib
    import types
    import uuid

    import cartrescue.contacts
    from cartrescue.config import Config
    from cartrescue.contacts import email_hash
    from cartrescue.decide.orders import NO_ORDERS
    from cartrescue.model import REASON_SUPPRESSED, Cart, Customer
    from cartrescue.pipeline import Planner

    address = f"once-{uuid.uuid4().hex}@example.com"  # hashed by no earlier test
    config = Config.model_validate({"source": {"type": "csv", "carts": "carts.csv"}})
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    now = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    cart = Cart("a", "csv", Customer(address), "EUR", (), 0, now, now)  # type: ignore[arg-type]
    try:
        ledger.suppress(email_hash(address), "unsubscribed", "test", now)
        planner = Planner(config, now, ledger)
        hashed: list[bytes] = []

        def sha256(data: bytes) -> Any:
            hashed.append(data)
            return hashlib.sha256(data)

        monkeypatch.setattr(cartrescue.contacts, "hashlib", types.SimpleNamespace(sha256=sha256))
        history = planner._history([cart], [address], [])
        verdict = planner.gates.check(cart, NO_ORDERS, now=now, suppressed=history.suppressed, newest_cart=None)
    finally:
        ledger.close()
    assert verdict is not None and verdict.reason == REASON_SUPPRESSED
    assert hashed == [address.encode()]


def test_a_stand_in_for_a_missing_ledger_is_not_asked_whether_it_holds_a_suppression() -> None:
    """Nothing writes to the stand-in a dry-run reads before the shop's first sending run: the
    planner's question before each chunk (does the ledger hold a suppression?) has its answer
    without a query (one a chunk of 500 carts, ~0.2 % of a dry-run's instructions)."""
    from cartrescue.config import Config
    from cartrescue.pipeline import Planner

    config = Config.model_validate({"source": {"type": "csv", "carts": "carts.csv"}})
    stand_in = Ledger.empty(absent="ledger.db does not exist")
    asked: list[object] = []

    def suppressions(*args: object, **kwargs: object) -> list[object]:
        asked.append(kwargs)
        return []

    try:
        stand_in.suppressions = suppressions  # type: ignore[method-assign]
        planner = Planner(config, datetime(2026, 11, 20, 10, tzinfo=timezone.utc), stand_in)
        assert (planner._may_suppress(), planner._may_suppress(), asked) == (False, False, [])
    finally:
        stand_in.close()
