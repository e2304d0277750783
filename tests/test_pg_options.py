"""The URL's own PostgreSQL ``options`` (a search_path: one schema per shop) reach the connection
beside cartrescue's own settings, for the ledger and for the SQL sources alike."""

from __future__ import annotations

import pytest
from shopdb import shop_database
from sqlalchemy import text
from sqlalchemy.engine import make_url

from cartrescue.ledger import Ledger
from cartrescue.pg_options import merged
from cartrescue.sources.sql import create_engine
from conftest import Shop, cart


def test_ours_come_first_or_last_and_the_urls_own_options_stay_between() -> None:
    url = make_url("postgresql+psycopg://u@h/db?options=-csearch_path%3Dshop_a")
    assert merged(url, first="-c lock_timeout=15s") == "-c lock_timeout=15s -csearch_path=shop_a"
    assert merged(url, last="-c default_transaction_read_only=on") == \
        "-csearch_path=shop_a -c default_transaction_read_only=on"
    assert merged(make_url("postgresql://u@h/db"), first="-c a=1") == "-c a=1"
    twice = make_url("postgresql://u@h/db?options=-c%20x%3D1&options=-c%20y%3D2")
    assert merged(twice, last="-c z=3") == "-c x=1 -c y=2 -c z=3"


def _schema(url: str, name: str) -> str:
    return f"{url}?options=-csearch_path%3D{name}"


@pytest.mark.postgres
def test_the_ledger_keeps_the_urls_search_path_and_its_own_lock_timeout() -> None:
    with shop_database("postgres", "ledgeropts") as db:
        with db.admin.begin() as connection:
            connection.execute(text("CREATE SCHEMA shop_a"))
        ledger = Ledger(_schema(db.url, "shop_a"))
        try:
            with ledger.engine.connect() as connection:
                assert connection.execute(text("SHOW search_path")).scalar() == "shop_a"
                assert connection.execute(text("SHOW lock_timeout")).scalar() == "15s"
        finally:
            ledger.close()
        with db.admin.connect() as connection:
            tables = set(connection.execute(text(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_name = 'cr_message'")).scalars())
        assert tables == {"shop_a.cr_message"}  # in the shop's schema, none in public


@pytest.mark.postgres
def test_a_lock_timeout_in_the_url_wins_over_the_ledgers_default() -> None:
    with shop_database("postgres", "ledgertimeout") as db:
        ledger = Ledger(f"{db.url}?options=-c%20lock_timeout%3D3s")
        try:
            with ledger.engine.connect() as connection:
                assert connection.execute(text("SHOW lock_timeout")).scalar() == "3s"
        finally:
            ledger.close()


@pytest.mark.postgres
def test_a_sql_source_keeps_the_urls_search_path_and_stays_read_only() -> None:
    with shop_database("postgres", "sourceopts") as db:
        with db.admin.begin() as connection:
            connection.execute(text("CREATE SCHEMA magento"))
        engine = create_engine(f"{_schema(db.url, 'magento')}%20-c%20default_transaction_read_only%3Doff")
        try:
            with engine.connect() as connection:
                assert connection.execute(text("SHOW search_path")).scalar() == "magento"
                assert connection.execute(text("SHOW default_transaction_read_only")).scalar() == "on"
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_a_search_path_of_no_existing_schema_says_to_create_it() -> None:
    from cartrescue.errors import LedgerError

    with shop_database("postgres", "noschema") as db:
        with pytest.raises(LedgerError, match="CREATE SCHEMA it first"):
            Ledger(_schema(db.url, "shop_missing"))


@pytest.mark.postgres
def test_a_dry_run_on_a_search_path_of_no_existing_schema_says_a_sending_run_would_stop(shop: Shop) -> None:
    """A dry-run reads the ledger's history: where its schema does not exist it planned as a first
    run and exited 0 without a word, and only ``--send`` said why it could not run (exit 2)."""
    shop.add(cart("s1"))
    with shop_database("postgres", "noschemadry") as db:
        shop.configure(ledger={"url": _schema(db.url, "shop_missing")})
        sending = shop.cli("run", "--send", "--json")
        dry = shop.cli("run", "--json")
        with db.admin.connect() as connection:  # the dry-run made nothing there either
            assert connection.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname = 'shop_missing'")).scalar() == 0
    assert sending.exit_code == 2 and "CREATE SCHEMA it first" in sending.json["error"]["message"]
    assert dry.exit_code == 0, dry.output
    would_stop = [note for note in dry.json["notes"] if note.startswith("a sending run would stop (exit 2): ")]
    assert would_stop == [f"a sending run would stop (exit 2): {sending.json['error']['message']}"]


@pytest.mark.postgres
def test_doctor_on_a_search_path_of_no_existing_schema_fails_the_ledger_check(shop: Shop) -> None:
    """``doctor`` warned that "the first run with --send or --outbox creates" the ledger's tables
    where the URL's schema does not exist, and every such run stops there (exit 2): its ledger
    check fails, exit 2, with the sending run's own words (CREATE SCHEMA it first)."""
    shop.add(cart("s1"))
    with shop_database("postgres", "docsnoschemadoctor") as db:
        shop.configure(ledger={"url": _schema(db.url, "shop_missing")})
        sending = shop.cli("run", "--send", "--json")
        doctor = shop.cli("doctor", "--json", "--no-smtp", now=None)
    ledger = next(check for check in doctor.json["checks"] if check["name"] == "ledger")
    assert (ledger["status"], ledger["exit_code"], doctor.exit_code) == ("fail", 2, 2), ledger
    assert sending.json["error"]["message"] in ledger["detail"], ledger["detail"]


@pytest.mark.postgres
def test_doctor_fails_the_ledger_check_where_the_role_may_not_create_the_tables(shop: Shop) -> None:
    """PostgreSQL 15 lets no role but the database's owner create in ``public``: a new ledger
    there for another role was "the first run with --send or --outbox creates it" to ``doctor``,
    and that run stopped, ``permission denied for schema public`` (exit 2). The check fails, exit 2,
    naming the grant."""
    shop.add(cart("s1"))
    with shop_database("postgres", "docsnocreatedoctor") as db:
        shop.configure(ledger={"url": db.read_only_user()})
        sending = shop.cli("run", "--send", "--json")
        doctor = shop.cli("doctor", "--json", "--no-smtp", now=None)
    assert sending.exit_code == 2 and "permission denied for schema public" in sending.json["error"]["message"]
    ledger = next(check for check in doctor.json["checks"] if check["name"] == "ledger")
    assert (ledger["status"], ledger["exit_code"], doctor.exit_code) == ("fail", 2, 2), ledger
    assert "permission denied for schema public" in ledger["detail"] and "GRANT CREATE ON SCHEMA public" in \
        ledger["detail"], ledger["detail"]


@pytest.mark.postgres
def test_a_dry_run_where_the_role_may_not_create_the_tables_says_a_sending_run_would_stop(shop: Shop) -> None:
    """The dry-run before a first live run planned as a first run and said nothing, and the live
    run stopped (exit 2) on the schema it may not create in: the dry-run says so in a note."""
    shop.add(cart("s1"))
    with shop_database("postgres", "docsnocreatedry") as db:
        shop.configure(ledger={"url": db.read_only_user()})
        dry = shop.cli("run", "--json")
    assert dry.exit_code == 0, dry.output
    (note,) = [note for note in dry.json["notes"] if note.startswith("a sending run would stop (exit 2): ")]
    assert "permission denied for schema public" in note, note


@pytest.mark.postgres
def test_a_dry_run_on_an_existing_empty_schema_plans_as_a_first_run_without_a_note(shop: Shop) -> None:
    """An empty schema of its own is a shop's ledger before its first run: nothing to say."""
    shop.add(cart("s1"))
    with shop_database("postgres", "emptyschemadry") as db:
        with db.admin.begin() as connection:
            connection.execute(text("CREATE SCHEMA shop_new"))
        shop.configure(ledger={"url": _schema(db.url, "shop_new")})
        dry = shop.cli("run", "--json")
    assert dry.exit_code == 0 and dry.json["notes"] == [] and dry.json["counts"]["send"] == 1
