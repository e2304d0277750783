"""The generic ``sql`` source (named queries) and the shared database plumbing: errors as one
clear line, the read-only guard, values. SQLite always; MariaDB and PostgreSQL when they answer."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

import shopdb
from cartrescue.errors import ConfigError, ExitCode, SourceError
from cartrescue.sources.base import Window
from cartrescue.sources.sql import SqlSource, as_currency, read_only_guard, RowError

UTC = timezone.utc
NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=7), NOW - timedelta(minutes=45))

DDL = [
    "CREATE TABLE carts (id integer PRIMARY KEY, customer_email varchar(100), customer_no varchar(20), "
    "currency varchar(3), created timestamp NULL, updated timestamp NULL, total decimal(10,2), consent smallint)",
    "CREATE TABLE cart_lines (cart_id integer, sku varchar(20), title varchar(50), qty integer, price decimal(10,2), "
    "cost decimal(10,2), stock integer)",
    "CREATE TABLE orders (id integer, email varchar(100), cart_id integer, created timestamp NULL, "
    "status varchar(20), delivered smallint, total decimal(10,2))",
]
CARTS = [
    {"id": 1, "customer_email": "Ann@Example.com", "customer_no": "C1", "currency": "EUR",
     "created": datetime(2026, 3, 29, 8, 0), "updated": datetime(2026, 3, 29, 9, 0), "total": Decimal("30"),
     "consent": 1},
    {"id": 2, "customer_email": None, "customer_no": None, "currency": "EUR",
     "created": datetime(2026, 3, 29, 8, 0), "updated": datetime(2026, 3, 29, 9, 30), "total": None, "consent": None},
    {"id": 3, "customer_email": "cid@example.com", "customer_no": None, "currency": "ZZZ",
     "created": datetime(2026, 3, 29, 8, 0), "updated": datetime(2026, 3, 29, 9, 30), "total": None, "consent": None},
    {"id": 4, "customer_email": "old@example.com", "customer_no": None, "currency": "EUR",
     "created": datetime(2026, 3, 1, 8, 0), "updated": datetime(2026, 3, 1, 9, 0), "total": None, "consent": None},
    {"id": 5, "customer_email": "dan@example.com", "customer_no": None, "currency": "SEK",
     "created": None, "updated": datetime(2026, 3, 29, 9, 30), "total": None, "consent": None},
]
LINES = [
    {"cart_id": 1, "sku": "A", "title": "Apple", "qty": 2, "price": Decimal("10"), "cost": Decimal("4"), "stock": 500},
    {"cart_id": 1, "sku": "B", "title": "Banana", "qty": 1, "price": Decimal("10"), "cost": None, "stock": None},
    {"cart_id": 2, "sku": "A", "title": "Apple", "qty": 3, "price": Decimal("10"), "cost": None, "stock": None},
    {"cart_id": 3, "sku": "A", "title": "Apple", "qty": 1, "price": Decimal("10"), "cost": None, "stock": None},
    {"cart_id": 4, "sku": "A", "title": "Apple", "qty": 1, "price": Decimal("10"), "cost": None, "stock": None},
    {"cart_id": 5, "sku": "A", "title": "Apple", "qty": 1, "price": Decimal("10"), "cost": None, "stock": None},
]
ORDERS = [
    {"id": 9, "email": "ann@example.com", "cart_id": 77, "created": datetime(2026, 3, 29, 10, 0), "status": "paid",
     "delivered": 0, "total": Decimal("5")},
    {"id": 10, "email": None, "cart_id": 2, "created": datetime(2026, 3, 29, 10, 0), "status": "paid",
     "delivered": 1, "total": Decimal("30")},
    {"id": 11, "email": "ann@example.com", "cart_id": None, "created": datetime(2026, 3, 29, 10, 0),
     "status": "Cancelled", "delivered": 0, "total": Decimal("5")},
    {"id": 12, "email": "zed@example.com", "cart_id": None, "created": datetime(2026, 3, 29, 10, 0),
     "status": "paid", "delivered": 0, "total": Decimal("5")},
]
QUERIES = {
    "carts": (
        "SELECT c.id AS cart_id, c.customer_email AS email, c.customer_no AS customer_id, c.currency, "
        "c.created AS created_at, c.updated AS updated_at, c.total, c.consent AS marketing_consent, "
        "l.sku, l.title AS name, l.qty AS quantity, l.price AS unit_price, l.cost AS unit_cost, "
        "l.stock AS stock_on_hand "
        "FROM carts c JOIN cart_lines l ON l.cart_id = c.id "
        "WHERE c.updated >= :start AND c.updated <= :end ORDER BY c.id, l.sku"
    ),
    "orders": (
        "SELECT id AS order_id, email, cart_id, created AS created_at, status, delivered, total FROM orders "
        "WHERE LOWER(email) IN :emails OR cart_id IN :cart_ids"
    ),
}


def fill(execute, insert) -> None:
    for statement in DDL:
        execute(statement)
    insert("carts", CARTS)
    insert("cart_lines", LINES)
    insert("orders", ORDERS)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlshop") / "shop.db"
    connection = sqlite3.connect(path)
    sqlite3.register_adapter(Decimal, str)
    sqlite3.register_adapter(datetime, lambda moment: moment.isoformat(" "))

    def insert(table, rows):
        for row in rows:
            connection.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                               list(row.values()))

    fill(connection.execute, insert)
    connection.commit()
    connection.close()
    return f"sqlite:///{path}"


@pytest.fixture(scope="module", params=["sqlite"] + shopdb.KINDS)
def url(request, sqlite_url):
    if request.param == "sqlite":
        yield sqlite_url
        return
    with shopdb.shop_database(request.param, "generic") as db:
        fill(db.execute, db.insert)
        yield db.url


def read(url: str, **options):
    problems = shopdb.Problems()
    source = SqlSource(url, queries=QUERIES, shop_tz=ZoneInfo("Europe/Berlin"), options=options,
                       on_problem=problems)
    return source, {cart.id: cart for cart in source.carts(WINDOW)}, problems


def test_named_queries_give_carts(url):
    source, carts, problems = read(url)
    try:
        assert sorted(carts) == ["1", "2"]
        ann = carts["1"]
        assert ann.key == "sql:1" and ann.customer.email == "ann@example.com" and ann.customer.id == "C1"
        assert not ann.customer.is_guest and ann.customer.marketing_consent is True
        assert ann.total == Decimal("30") and ann.currency == "EUR"
        assert ann.updated_at == datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
        apple, banana = ann.items
        assert (apple.sku, apple.name, apple.quantity, apple.unit_price, apple.unit_cost, apple.stock_on_hand) == \
            ("A", "Apple", 2, Decimal("10"), Decimal("4"), 500)
        assert banana.unit_cost is None and banana.stock_on_hand is None
        assert carts["2"].total == Decimal("30") and carts["2"].customer.is_guest  # sum of the lines
        assert set(problems.reasons()) == {"carts query cart_id=3", "carts query cart_id=5"}
        assert "ZZZ" in problems.reasons()["carts query cart_id=3"]
        assert problems.reasons()["carts query cart_id=5"] == "created_at: missing"
    finally:
        source.close()


def test_orders_query_with_list_parameters(url):
    source, carts, _ = read(url)
    try:
        orders = {o.id: o for o in source.orders_for(list(carts.values()))}
    finally:
        source.close()
    assert set(orders) == {"9", "10"}  # 11 is cancelled, 12 concerns nobody here
    assert orders["10"].cart_id == "2" and orders["10"].delivered is True
    assert orders["9"].email == "ann@example.com" and orders["9"].delivered is False


def test_naive_times_in_the_shops_timezone(url):
    source, carts, _ = read(url, db_timezone="shop")
    try:
        assert carts["1"].updated_at == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 CEST
    finally:
        source.close()


def test_from_config(sqlite_url):
    cfg = SimpleNamespace(type="sql", url=sqlite_url, prefix=None, queries=QUERIES, options={"name": "erp"})
    source = SqlSource.from_config(cfg, shop_tz=ZoneInfo("UTC"), on_problem=lambda p: None)
    try:
        assert {cart.key for cart in source.carts(WINDOW)} == {"erp:1", "erp:2"}
        assert source.check() == []
    finally:
        source.close()


@pytest.mark.parametrize("query", [
    "DELETE FROM carts",
    "UPDATE carts SET total = 0",
    "WITH gone AS (DELETE FROM carts RETURNING id) SELECT * FROM gone",
    "SELECT * INTO backup FROM carts",
    "SELECT * FROM carts FOR UPDATE",
    "PRAGMA query_only = OFF",
    "SET SESSION TRANSACTION READ WRITE",
    "select 1; drop table carts",
])
def test_queries_that_could_write_are_refused_before_connecting(query):
    with pytest.raises(ConfigError, match=r"source\.queries\.carts: "):
        SqlSource("sqlite:///nowhere.db", queries={"carts": query})


@pytest.mark.parametrize("query", [
    "SELECT 'update' AS word, created_at FROM carts -- DELETE in a comment",
    "with recent as (select * from carts) select * from recent",
    "SELECT REPLACE(sku, '-', '') FROM cart_lines",
    "  (SELECT 1)",
])
def test_plain_reads_pass_the_guard(query):
    read_only_guard(query)


def test_currency_codes():
    assert as_currency(" sek ") == "SEK"
    for bad, reason in ((None, "missing"), ("EURO", "ISO 4217"), ("XXQ", "unknown currency code 'XXQ'"), ("1", "ISO")):
        with pytest.raises(RowError, match=reason):
            as_currency(bad)


# -- connection failures: one clear line, exit code 3, no chained traceback -------------------


def assert_one_line(caught: pytest.ExceptionInfo, *fragments: str) -> None:
    error = caught.value
    message = str(error)
    assert error.exit_code == ExitCode.SOURCE
    assert "\n" not in message and len(message) < 300
    assert error.__cause__ is None and error.__suppress_context__
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("url, kind", [
    ("mysql+pymysql://root@127.0.0.1:1/shop", "mysql"),
    ("postgresql+psycopg://postgres@127.0.0.1:1/shop", "postgresql"),
])
def test_connection_refused(url, kind):
    source = SqlSource(url, queries=QUERIES)
    with pytest.raises(SourceError) as caught:
        list(source.carts(WINDOW))
    assert_one_line(caught, "sql source: cannot connect to", f"{kind} database shop at 127.0.0.1:1",
                    "connection refused")


@pytest.mark.mariadb
def test_wrong_password_mariadb():
    with shopdb.shop_database("mariadb", "password") as db:
        good = db.read_only_user()
        bad = good.replace(good.split(":")[2].split("@")[0], "wrong-password")
        source = SqlSource(bad, queries=QUERIES)
        with pytest.raises(SourceError) as caught:
            list(source.carts(WINDOW))
        source.close()
    assert_one_line(caught, "cannot log in to mysql database", "access denied (wrong user or password)")
    assert "wrong-password" not in str(caught.value)


@pytest.mark.postgres
def test_unknown_user_postgres():
    shopdb.need("postgres")
    url = shopdb.SERVERS["postgres"].replace("postgres@", "no_such_user_cr:secret@") + "/postgres"
    source = SqlSource(url, queries=QUERIES)
    with pytest.raises(SourceError) as caught:
        list(source.carts(WINDOW))
    assert_one_line(caught, "cannot log in to postgresql database postgres", "access denied")
    assert "secret" not in str(caught.value)


def test_missing_table(url):
    source = SqlSource(url, queries={"carts": "SELECT * FROM no_such_table WHERE 1 = 0"})
    with pytest.raises(SourceError) as caught:
        list(source.carts(WINDOW))
    source.close()
    assert_one_line(caught, "sql source: table no_such_table not found in")


def test_missing_database(url):
    if url.startswith("sqlite"):
        bad = url.replace("shop.db", "missing.db")
        expected = "the SQLite file is missing"
    else:
        bad = url.rsplit("/", 1)[0] + "/no_such_db_cr"
        expected = "the database does not exist"
    source = SqlSource(bad, queries=QUERIES)
    with pytest.raises(SourceError) as caught:
        list(source.carts(WINDOW))
    assert_one_line(caught, expected)
    assert source.check() and expected in source.check()[0]


def test_unknown_url_scheme():
    source = SqlSource("postgres://127.0.0.1/shop", queries=QUERIES)
    with pytest.raises(SourceError) as caught:
        list(source.carts(WINDOW))
    assert_one_line(caught, "unknown database type")


def test_bad_prefix_is_a_config_error():
    with pytest.raises(ConfigError, match="prefix"):
        SqlSource("sqlite:///x.db", queries=QUERIES, prefix="wp_; DROP TABLE x")


def test_empty_lists_match_nothing(url):
    from cartrescue.model import Cart, Customer

    source = SqlSource(url, queries={**QUERIES, "orders": QUERIES["orders"] + " OR LOWER(email) IN :customer_ids"})
    guest = Cart(id="2", source="sql", customer=Customer(email=None), currency="EUR", items=(), total=Decimal(1),
                 created_at=NOW, updated_at=NOW)
    try:
        assert [o.id for o in source.orders_for([guest])] == ["10"]
    finally:
        source.close()
