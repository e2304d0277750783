"""Read-only proof: the database sources never write to a shop's database.

Shown three ways, on the real servers:

* every preset does its whole job (carts, activity, orders, doctor's check) as a database user
  that may only SELECT — a write would fail the run;
* MariaDB's own statement log (the general query log) of a run by a user that *could* write
  holds nothing but reads;
* the sessions the adapter opens are read-only at the server: a write slipped past cartrescue's
  guard is refused by MariaDB, PostgreSQL and SQLite themselves.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

import shopdb
import test_source_magento as magento_case
import test_source_prestashop as prestashop_case
import test_source_woocommerce as woocommerce_case
from cartrescue.errors import SourceError
from cartrescue.sources.magento import MagentoSource
from cartrescue.sources.prestashop import PrestaShopSource
from cartrescue.sources.sql import ShopDatabase
from cartrescue.sources.woocommerce import WooCommerceSource

PRESETS: dict[str, tuple[type, Callable[[shopdb.ShopDb], None], dict, ZoneInfo]] = {
    "magento2": (MagentoSource, magento_case.fill, {}, ZoneInfo("UTC")),
    "woocommerce": (WooCommerceSource, woocommerce_case.fill, {}, woocommerce_case.STOCKHOLM),
    "prestashop": (PrestaShopSource, prestashop_case.fill, {}, prestashop_case.PARIS),
}
WINDOW = magento_case.WINDOW
# What MariaDB logs for a read-only client: reads, session settings, transaction ends, pings.
_READ = re.compile(r"^\s*\(?\s*(SELECT|SHOW|SET\s+(SESSION|NAMES|time_zone|autocommit|@@session|sql_mode)|"
                   r"ROLLBACK|COMMIT|DESCRIBE|EXPLAIN)\b", re.IGNORECASE)


def everything(source) -> tuple:
    """All a run asks of a source: the carts, the activity pass, their orders, doctor's check."""
    carts = list(source.carts(WINDOW))
    activity = sorted((a.cart_key, a.email) for a in source.activity(WINDOW))
    orders = sorted(order.id for order in source.orders_for(carts))
    problems = [p for p in source.check() if "no index on" not in p]
    return sorted(cart.key for cart in carts), activity, orders, problems


@pytest.fixture(scope="module", params=shopdb.KINDS)
def kind(request):
    return request.param


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_runs_as_a_select_only_user(kind, preset):
    cls, fill, options, tz = PRESETS[preset]
    with shopdb.shop_database(kind, f"ro{preset}") as db:
        fill(db)
        admin = cls(db.url, shop_tz=tz, options=options)
        reader = cls(db.read_only_user(), shop_tz=tz, options=options)
        try:
            expected = everything(admin)
            assert expected[0], "the fixture should give carts"
            assert everything(reader) == expected
        finally:
            admin.close()
            reader.close()


@pytest.mark.mariadb
def test_mariadb_statement_log_of_a_run_holds_only_reads():
    with shopdb.shop_database("mariadb", "generallog") as db:
        magento_case.fill(db)
        user, password = f"cr_rw_{secrets.token_hex(4)}", secrets.token_hex(8)
        server = sa.create_engine(shopdb._admin_url("mariadb", None), poolclass=sa.pool.NullPool,
                                  isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            connection.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
            connection.exec_driver_sql(f"GRANT ALL PRIVILEGES ON `{db.name}`.* TO '{user}'@'%%'")
            general_log, log_output = connection.exec_driver_sql(
                "SELECT @@global.general_log, @@global.log_output").one()
            connection.exec_driver_sql("SET GLOBAL log_output = 'TABLE,FILE'" if "FILE" in log_output.upper()
                                       else "SET GLOBAL log_output = 'TABLE'")
            connection.exec_driver_sql("SET GLOBAL general_log = 1")
        url = sa.engine.make_url(db.url).set(username=user, password=password).render_as_string(hide_password=False)
        try:
            for cls in (MagentoSource, WooCommerceSource, PrestaShopSource):
                source = cls(url)
                try:  # the Magento schema: the other presets fail on missing tables, still without writing
                    everything(source)
                except SourceError:
                    pass
                finally:
                    source.close()
            with server.connect() as connection:
                logged = [row[0].decode() if isinstance(row[0], bytes) else str(row[0])
                          for row in connection.exec_driver_sql(
                              "SELECT argument FROM mysql.general_log WHERE user_host LIKE %s "
                              "AND command_type IN ('Query', 'Execute', 'Prepare')", (f"{user}[{user}]%",))]
        finally:
            with server.connect() as connection:
                connection.exec_driver_sql(f"SET GLOBAL general_log = {int(general_log)}")
                connection.exec_driver_sql(f"SET GLOBAL log_output = '{log_output}'")
                connection.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
            server.dispose()
    assert any(statement.lstrip().upper().startswith("SELECT") for statement in logged), logged[:5]
    writes = [statement for statement in logged if not _READ.match(statement)]
    assert writes == []
    assert any("SET SESSION TRANSACTION READ ONLY" in statement for statement in logged)


def _raw_write(database: ShopDatabase, statement: str) -> Exception | None:
    """Send a write through the adapter's own connection, below cartrescue's guard."""
    with database.engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        except Exception as exc:  # the server's refusal
            return exc
        finally:
            cursor.close()
    return None


def test_sessions_are_read_only_at_the_server(kind):
    with shopdb.shop_database(kind, "rosession") as db:
        db.execute("CREATE TABLE t (a integer)")
        db.execute("INSERT INTO t (a) VALUES (1)")
        database = ShopDatabase(db.url, source="sql")
        try:
            with pytest.raises(SourceError, match="refusing to run a statement that is not a read"):
                database.fetch("UPDATE t SET a = 2")
            refusal = _raw_write(database, "UPDATE t SET a = 2")
            assert refusal is not None and re.search(r"read[- ]only", str(refusal), re.IGNORECASE), refusal
            show = "SELECT @@session.tx_read_only AS ro" if kind == "mariadb" \
                else "SHOW default_transaction_read_only"
            assert str(list(database.fetch(show)[0].values())[0]).lower() in ("1", "on")
        finally:
            database.close()
        assert db.execute("SELECT a FROM t") == [(1,)]


def test_sqlite_files_are_opened_read_only(tmp_path):
    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE t (a integer)")
    connection.execute("INSERT INTO t VALUES (1)")
    connection.commit()
    connection.close()
    database = ShopDatabase(f"sqlite:///{path}", source="sql")
    try:
        refusal = _raw_write(database, "UPDATE t SET a = 2")
        assert refusal is not None and "readonly" in str(refusal)
        assert database.fetch("SELECT a FROM t") == [{"a": 1}]
    finally:
        database.close()


def test_a_sqlite_file_uri_is_opened_read_only_and_never_created(tmp_path):
    """``?mode=ro`` was set on a path but not on a ``file:`` URI, whose open created the missing
    shop database, empty."""
    path = tmp_path / "shpo.db"
    database = ShopDatabase(f"sqlite:///file:{path}?uri=true", source="sql")
    try:
        with pytest.raises(SourceError, match="missing or unreadable"):
            database.fetch("SELECT 1")
    finally:
        database.close()
    assert not path.exists()


@pytest.mark.postgres
def test_a_stream_closed_after_the_server_dropped_its_connection_ends_quietly():
    """A run that stops reading (another error ended it) closes the carts' stream; on a connection
    the server has dropped that cleanup fails. It must not raise from the generator's close:
    collected later, that became "Exception ignored in: <generator …>" and a traceback in cron's mail."""
    with shopdb.shop_database("postgres", "lostconn") as db:
        db.execute("CREATE TABLE t (a integer)")
        db.execute("INSERT INTO t SELECT generate_series(1, 5000)")
        database = ShopDatabase(db.url, source="sql")
        try:
            rows = database.stream("SELECT a FROM t", batch=100)
            assert next(rows) == {"a": 1}
            assert db.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()") == [(1,)]
            rows.close()  # raised SourceError ("the connection is lost") before
        finally:
            database.close()
