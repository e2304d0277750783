"""A ledger or shop database that takes the connection and never answers is an error within
``drivers.CONNECT_WAIT``, not a hang: a hung server (or a proxy whose backend is gone) held every
command for good, ``doctor`` too, and each cron round added another hung process. Once
connected, a MySQL/MariaDB connection's reads wait for the statements' deadline instead
(``ledger.statement_wait``, ``source.statement_wait``: a long report query)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tcpproxy import SilentServer

from cartrescue import drivers
from cartrescue.errors import LedgerError, SourceError
from cartrescue.ledger import Ledger
import shopdb
from cartrescue.sources.sql import SqlSource

pytest.importorskip("psycopg")
pytest.importorskip("pymysql")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts every connection and never says a word."""
    with SilentServer() as port:
        yield port


SCHEMES = ["postgresql+psycopg://postgres@127.0.0.1:{port}/x", "mysql+pymysql://root@127.0.0.1:{port}/x"]


@pytest.mark.parametrize("url", SCHEMES, ids=["postgres", "mariadb"])
def test_a_ledger_that_never_greets_is_a_ledger_error_not_a_hang(
    silent_server: int, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drivers, "CONNECT_WAIT", 2)
    started = time.monotonic()
    with pytest.raises(LedgerError, match="did not answer within 2 s$"):  # the drivers' own wait: no option named
        Ledger(url.format(port=silent_server))
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("url", SCHEMES, ids=["postgres", "mariadb"])
def test_a_shop_database_that_never_greets_is_the_sources_error_not_a_hang(
    silent_server: int, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_source_sql import QUERIES, WINDOW

    monkeypatch.setattr(drivers, "CONNECT_WAIT", 2)
    started = time.monotonic()
    source = SqlSource(url.format(port=silent_server), queries=QUERIES)
    with pytest.raises(SourceError):
        list(source.carts(WINDOW))
    source.close()
    assert time.monotonic() - started < 20


@pytest.mark.mariadb
def test_a_mariadb_connection_reads_past_the_greetings_deadline_once_it_has_greeted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The greeting's deadline gives way: a query that takes longer than it still answers, on
    the ledger's connections (bounded by ``ledger.statement_wait`` instead, 60 s) and a shop
    database's (``source.statement_wait``, 10 minutes)."""
    from test_source_sql import QUERIES

    monkeypatch.setattr(drivers, "CONNECT_WAIT", 2)
    with shopdb.shop_database("mariadb", "deadline") as db:
        ledger = Ledger(db.url)
        try:
            with ledger.engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT SLEEP(3), 7").fetchone()[1] == 7
        finally:
            ledger.engine.dispose()
        source = SqlSource(db.url, queries=QUERIES)
        try:
            assert source.db.fetch("SELECT SLEEP(3) AS s, 7 AS n", {})[0]["n"] == 7
        finally:
            source.close()


def test_a_deadline_the_url_gives_itself_wins() -> None:
    from sqlalchemy.engine import make_url

    assert drivers.connect_deadline(make_url("postgresql+psycopg://h/x?connect_timeout=60")) == {}
    assert drivers.connect_deadline(make_url("mysql+pymysql://h/x?read_timeout=600")) == {"connect_timeout": 10}
    assert drivers.connect_deadline(make_url("sqlite:///x.db")) == {}


def test_the_doctors_timeout_shortens_the_connect_deadline_to_what_libpq_takes() -> None:
    """``doctor --timeout`` below :data:`drivers.CONNECT_WAIT` bounds connecting too; PostgreSQL's
    ``connect_timeout`` is whole seconds, 2 at least (libpq waits 2 s for less)."""
    from sqlalchemy.engine import make_url

    assert drivers.connect_deadline(make_url("postgresql+psycopg://h/x"), 0.5) == {"connect_timeout": 2}
    assert drivers.connect_deadline(make_url("postgresql+psycopg://h/x"), 3.5) == {"connect_timeout": 4}
    assert drivers.connect_deadline(make_url("mysql+pymysql://h/x"), 3.5) == {"connect_timeout": 3.5, "read_timeout": 3.5}
    assert drivers.connect_deadline(make_url("mysql+pymysql://h/x"), 30) == {"connect_timeout": 10, "read_timeout": 10}
