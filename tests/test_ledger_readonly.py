"""Commands that only read leave the ledger as they found it, on SQLite, PostgreSQL and MariaDB.

``report``, ``doctor``, ``suppress list``, ``preview``, ``codes list``, ``survey``, ``carts`` and a
dry-run made the ledger's ``cr_*`` tables in an empty server database (``codes list`` and
``survey`` even made a missing SQLite file) and brought an older ledger up to date (ALTER TABLE,
a SQLite file switched to WAL) as they read it: a developer's ``doctor`` against production
changed the schema under the shop's running cartrescue. A role with only SELECT rights on the
ledger, as reporting is often given, runs ``report`` and ``doctor``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from shopdb import KINDS, ShopDb, shop_database

from conftest import NOW, Shop, cart

LATER = "2026-11-26T10:00:00Z"  # every attribution window of the report's period has closed
PERIOD = ("--since", "2026-11-19", "--until", "2026-11-21")
#: Every command that only reads the ledger, with ``--json``.
READERS = [["report", "--json", *PERIOD], ["doctor", "--no-smtp", "--json"], ["suppress", "list", "--json"],
           ["preview", "c1", "--json"], ["codes", "list", "--json"], ["survey", "summary", "--json"],
           ["survey", "export", "--json"], ["carts", "--json"], ["run", "--json"], ["templates", "check", "--json"]]
#: ... of which these leave an older ledger as it is (``run`` and ``carts``, a dry-run too, upgrade it).
ONLY_READERS = [command for command in READERS if command[0] not in ("run", "carts")]
ALL_KINDS = [pytest.param("sqlite", id="sqlite"), *KINDS]


@pytest.fixture(params=ALL_KINDS)
def ledger_db(request: pytest.FixtureRequest, shop: Shop) -> Iterator[tuple[str, ShopDb | None]]:
    """An empty ledger database of each kind, and (on a server) its admin handle."""
    if request.param == "sqlite":
        yield f"sqlite:///{shop.folder / 'ledger.db'}", None
        return
    with shop_database(request.param, "roledger") as db:
        yield db.url, db


def snapshot(url: str) -> dict[str, Any]:
    """The database's tables with their columns and row counts (SQLite: and its file's bytes):
    what a command that wrote anything would have changed."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        with engine.connect() as conn:
            found: dict[str, Any] = {
                name: ([c["name"] for c in inspector.get_columns(name)],
                       conn.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar())
                for name in sorted(inspector.get_table_names())}
            if engine.dialect.name == "sqlite":
                found["bytes"] = hashlib.md5(Path(engine.url.database or "").read_bytes()).hexdigest()
        return found
    finally:
        engine.dispose()


def _run(shop: Shop, command: list[str]) -> Any:
    """``command`` at the suite's now (the report: once its period's windows have closed)."""
    if command[0] == "report":
        result = shop.cli(*command, "--now", LATER, now=None)
    else:
        result = shop.cli(*command, now=NOW if command[0] in ("preview", "codes", "carts", "run") else None)
    assert result.exit_code != 70, result.output
    assert isinstance(result.json, dict), result.output  # one JSON document in every outcome
    return result


def _populated(shop: Shop, url: str, tmp_path: Path) -> None:
    """A ledger at ``url`` that has delivered one message (to an outbox folder)."""
    shop.configure(ledger={"url": url}).add(cart("c1", email="ann@example.com"))
    result = shop.cli("run", "--outbox", str(tmp_path / "outbox"), "--json")
    assert result.exit_code == 0 and result.json["counts"]["sent"] == 1, result.output


def test_commands_that_only_read_make_no_table_in_an_empty_ledger_database(
        shop: Shop, ledger_db: tuple[str, ShopDb | None]) -> None:
    url, _db = ledger_db
    shop.configure(ledger={"url": url}).add(cart("c1", email="ann@example.com"))
    before = snapshot(url) if _db is not None else None
    for command in READERS:
        result = _run(shop, command)
        if command[0] == "report":
            assert result.exit_code == 0 and "no run has recorded anything" in result.json["notes"][0], result.output
        elif command[0] == "doctor":
            found = {check["name"]: check for check in result.json["checks"]}
            assert found["ledger"]["status"] == "warn", found["ledger"]
            assert "no run has used this ledger yet" in found["ledger"]["detail"]
        else:
            assert result.exit_code == 0, (command, result.output)
        if _db is None:
            assert not (shop.folder / "ledger.db").exists(), command
        else:
            assert snapshot(url) == before == {}, command


def _make_older(url: str) -> None:
    """Take away a table and a column this version has: the ledger of an older cartrescue."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE cr_promotion")
        conn.exec_driver_sql("ALTER TABLE cr_run DROP COLUMN shop")
        if url.startswith("sqlite"):
            conn.exec_driver_sql("PRAGMA user_version = 1")  # an older cartrescue's: no stamp of this schema
    engine.dispose()


def test_commands_that_only_read_leave_an_older_ledger_as_it_is_and_say_what_upgrades_it(
        shop: Shop, ledger_db: tuple[str, ShopDb | None], tmp_path: Path) -> None:
    """``doctor`` (and every reader) added the missing columns and tables as it read."""
    url, _db = ledger_db
    _populated(shop, url, tmp_path)
    _make_older(url)
    before = snapshot(url)
    for command in ONLY_READERS:
        result = _run(shop, command)
        if command[0] == "doctor":
            found = {check["name"]: check for check in result.json["checks"]}
            assert found["ledger"]["status"] == "warn", found["ledger"]
            detail = found["ledger"]["detail"]
            assert "older cartrescue" in detail and "cr_promotion" in detail and "cr_run.shop" in detail, detail
            assert "`cartrescue run`" in detail and found["staleness"]["status"] == "skip"
        elif command[0] in ("report", "preview", "codes", "suppress", "survey"):
            assert result.exit_code == 2, (command, result.output)
            assert "older cartrescue" in result.json["error"]["message"], result.output
        assert snapshot(url) == before, command
    assert shop.cli("run", "--outbox", str(tmp_path / "outbox"), "--json").exit_code == 0  # brings it up to date
    assert "cr_promotion" in snapshot(url) and "shop" in snapshot(url)["cr_run"][0]
    doctor = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert {c["name"]: c["status"] for c in doctor.json["checks"]}["ledger"] == "ok", doctor.output


@pytest.mark.parametrize("command", [["run", "--json"], ["carts", "--json"]], ids=["dry-run", "carts"])
def test_a_dry_run_of_a_new_version_brings_an_older_ledger_up_to_date_and_plans_from_its_history(
        shop: Shop, ledger_db: tuple[str, ShopDb | None], tmp_path: Path, command: list[str]) -> None:
    """A careful owner dry-runs a new version before its first sending run: it must not stop
    on the ledger the old version left, nor plan as if nothing had been sent."""
    url, _db = ledger_db
    _populated(shop, url, tmp_path)
    _make_older(url)
    result = _run(shop, command)
    assert result.exit_code == 0, result.output
    decided = {d["cart_id"]: d for d in (result.json.get("decisions") or result.json.get("carts") or [])}
    assert decided["c1"]["action"] != "send" or decided["c1"]["step"] != 1, decided["c1"]  # step 1 went out
    after = snapshot(url)
    assert "cr_promotion" in after and "shop" in after["cr_run"][0], after
    assert after["cr_message"][1] == 1  # upgraded, nothing recorded


@pytest.mark.parametrize("kind", KINDS)
def test_a_role_that_may_only_select_runs_the_report_and_doctor(shop: Shop, kind: str, tmp_path: Path) -> None:
    """Reporting is often given a read-only account; opening the ledger to create its tables
    was the first thing every command did."""
    with shop_database(kind, "roreport") as db:
        _populated(shop, db.url, tmp_path)
        before = snapshot(db.url)
        shop.configure(ledger={"url": db.read_only_user()})
        report = shop.cli("report", "--json", *PERIOD, "--now", LATER, now=None)
        assert report.exit_code == 0, report.output
        assert report.json["summary"]["messages"] == 1, report.json["summary"]
        doctor = shop.cli("doctor", "--no-smtp", "--json", now=None)
        found = {check["name"]: check for check in doctor.json["checks"]}
        assert found["ledger"]["status"] == "fail" and "refuses to write" in found["ledger"]["detail"], found
        assert "1 sent" in found["ledger"]["detail"] and found["staleness"]["status"] in ("ok", "warn", "fail")
        assert snapshot(db.url) == before


def test_suppress_remove_brings_an_older_ledger_up_to_date_and_lifts_the_suppression(
        shop: Shop, ledger_db: tuple[str, ShopDb | None], tmp_path: Path) -> None:
    """``suppress remove`` opened an older ledger as it was and wrote to it: its query of the
    suppression's row named a column the older ledger lacks, and the command crashed (exit 70)."""
    url, _db = ledger_db
    _populated(shop, url, tmp_path)
    assert shop.cli("unsubscribe", "bob@example.com", "--json", now=None).exit_code == 0
    _make_older(url)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:  # a column an older cartrescue's suppressions did not have
        conn.exec_driver_sql("ALTER TABLE cr_suppression DROP COLUMN source")
    engine.dispose()
    result = _run(shop, ["suppress", "remove", "bob@example.com", "--json"])
    assert result.exit_code == 0, result.output
    assert result.json == {"email": "bob@example.com", "phone": None, "removed": True, "warnings": []}
    after = snapshot(url)
    assert "cr_promotion" in after and "shop" in after["cr_run"][0] and "source" in after["cr_suppression"][0], after
    assert after["cr_suppression"][1] == 0


@pytest.mark.parametrize("cart_args", [[], ["c1"]], ids=["first-due", "cart"])
def test_send_test_brings_an_older_ledger_up_to_date_with_or_without_a_cart_id(
        shop: Shop, tmp_path: Path, cart_args: list[str]) -> None:
    """Without a CART_ID send-test upgraded an older ledger; with one it stopped (exit 2, "older
    cartrescue"), although it writes its test to that ledger either way."""
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    _populated(shop, url, tmp_path)
    _make_older(url)
    result = shop.cli("send-test", "owner@shop.example.com", *cart_args, "--outbox", str(tmp_path / "tests"), "--json")
    assert result.exit_code == 0, result.output
    after = snapshot(url)
    assert "cr_promotion" in after and "shop" in after["cr_run"][0] and after["cr_send_test"][1] == 1, after


@pytest.mark.parametrize("command", [command for command in READERS if command[0] not in ("report", "doctor")],
                         ids=lambda command: " ".join(command[:2]))
def test_a_reader_of_a_sqlite_ledger_whose_folder_is_not_there_reads_an_empty_one_and_makes_no_folder(
        shop: Shop, command: list[str]) -> None:
    """A ledger in a folder no run has made yet (state/) stopped every command that only reads
    (exit 2, "unable to open database file"), where a missing file in an existing folder read as
    the shop's first run; ``report`` and ``doctor`` have tests of their own."""
    shop.configure(ledger={"url": "sqlite:///state/ledger.db"}).add(cart("c1", email="ann@example.com"))
    result = _run(shop, command)
    assert result.exit_code == 0, (command, result.output)
    assert not (shop.folder / "state").exists(), command
