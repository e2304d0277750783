"""The generic ``sql`` source (named queries) and the shared database plumbing: errors as one
clear line, the read-only guard, values. SQLite always; MariaDB and PostgreSQL when they answer."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

import shopdb
from cartrescue.errors import ConfigError, ExitCode, SourceError
from cartrescue.model import Order
from cartrescue.sources.base import Window
from cartrescue.sources.sql import (RowError, ShopDatabase, SqlSource, as_currency, as_decimal, email_in, explain_error,
                                    read_only_guard, stored_forms)

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
    "CREATE TABLE epoch_carts (id integer PRIMARY KEY, email varchar(100), created bigint, updated bigint)",
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


#: Carts whose times are whole seconds since 1970 (UTC): in the window, before it, after its end.
EPOCH_CARTS = [
    {"id": 1, "email": "ann@example.com", "created": int(datetime(2026, 3, 29, 8, 0, tzinfo=UTC).timestamp()),
     "updated": int(datetime(2026, 3, 29, 9, 0, tzinfo=UTC).timestamp())},
    {"id": 4, "email": "old@example.com", "created": int(datetime(2026, 3, 1, 8, 0, tzinfo=UTC).timestamp()),
     "updated": int(datetime(2026, 3, 1, 9, 0, tzinfo=UTC).timestamp())},
    {"id": 6, "email": "late@example.com", "created": int(datetime(2026, 3, 29, 11, 0, tzinfo=UTC).timestamp()),
     "updated": int(datetime(2026, 3, 29, 11, 30, tzinfo=UTC).timestamp())},
]
#: The window's ``:start``/``:end`` as seconds, per dialect: what docs/databases.md writes.
EPOCH_START = {
    "sqlite": "CAST(strftime('%s', :start) AS INTEGER)",
    "mysql": "UNIX_TIMESTAMP(:start)",
    "postgresql": "EXTRACT(EPOCH FROM CAST(:start AS timestamp))",
}


def fill(execute, insert) -> None:
    for statement in DDL:
        execute(statement)
    insert("carts", CARTS)
    insert("cart_lines", LINES)
    insert("orders", ORDERS)
    insert("epoch_carts", EPOCH_CARTS)


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


def test_the_first_pass_leaves_out_a_cart_it_cannot_build(url):
    """Only a cart that can be reminded competes for its address's newest: cart 3 (an unknown
    currency) has an address but is no address's newest, so an older cart of its customer keeps
    its reminders. The Magento preset's first pass is held to the same (test_source_magento_details)."""
    source, _carts, _problems = read(url)
    try:
        keys = [activity.cart_key for activity in source.activity(WINDOW)]
    finally:
        source.close()
    assert keys == ["sql:1"]  # 2 has no address, 3 cannot be read, 4 is too old, 5 has no created_at


def test_orders_query_with_list_parameters(url):
    source, carts, _ = read(url)
    try:
        orders = {o.id: o for o in source.orders_for(list(carts.values()))}
    finally:
        source.close()
    assert set(orders) == {"9", "10"}  # 11 is cancelled, 12 concerns nobody here
    assert orders["10"].cart_id == "2" and orders["10"].delivered is True
    assert orders["9"].email == "ann@example.com" and orders["9"].delivered is False


def _carts(url: str) -> list:
    """The carts of the shop, read with the standard queries (their source closed)."""
    source, carts, _problems = read(url)
    source.close()
    return list(carts.values())


def _query_source(url: str, **queries: str) -> tuple[SqlSource, shopdb.Problems]:
    problems = shopdb.Problems()
    source = SqlSource(url, queries={**QUERIES, **queries}, shop_tz=ZoneInfo("Europe/Berlin"), on_problem=problems)
    return source, problems


def _read_carts(url: str, **queries: str) -> tuple[dict, shopdb.Problems]:
    """The carts ``queries`` (over the standard ones) read in the window, by id, and the problems."""
    source, problems = _query_source(url, **queries)
    try:
        return {cart.id: cart for cart in source.carts(WINDOW)}, problems
    finally:
        source.close()


@pytest.mark.parametrize(("key", "renamed", "missing"), [
    ("orders", ("id AS order_id", "id"), "order_id"),  # read no order at all: every buyer was reminded
    ("carts", ("c.id AS cart_id", "c.id"), "cart_id"),  # was an internal error (NoSuchColumnError)
])
def test_a_query_without_a_column_it_must_return_stops_naming_the_query_and_the_column(url, key, renamed, missing):
    source, _problems = _query_source(url, **{key: QUERIES[key].replace(*renamed)})
    try:
        with pytest.raises(SourceError) as caught:
            carts = list(source.carts(WINDOW)) if key == "carts" else _carts(url)
            list(source.orders_for(carts))
    finally:
        source.close()
    assert f"source.queries.{key} returns no {missing} column (it returns " in str(caught.value)


@pytest.mark.parametrize(("column", "other", "said"), [
    ("c.customer_email AS email", "'bob@example.com' AS email", "email 'ann@example.com' and 'bob@example.com'"),
    ("c.currency", "'SEK' AS currency", "currency 'EUR' and 'SEK'"),
])
def test_rows_of_one_cart_id_that_name_two_customers_are_skipped_and_reported(url, column, other, said):
    """Two stores' carts under one id: their lines went in one message, to one of the two
    customers (which one the server's row order decided), without a word. The CSV source
    refuses the same rows."""
    alias = column.split(" AS ")[-1].split(".")[-1]
    mixed = QUERIES["carts"].replace(column, f"CASE WHEN l.sku = 'B' THEN {other.split(' AS ')[0]} ELSE "
                                             f"{column.split(' AS ')[0]} END AS {alias}")
    carts, problems = _read_carts(url, carts=mixed)
    assert sorted(carts) == ["2"]
    reason = problems.reasons()["carts query cart_id=1"]
    assert said in reason and "two carts under one id?" in reason


def test_column_names_are_read_whatever_their_case(url):
    """MySQL keeps an alias's case (``AS Email``); without an email every cart was no_contact."""
    source, problems = _query_source(url, carts=QUERIES["carts"].replace("AS email", "AS Email"))
    try:
        carts = {cart.id: cart for cart in source.carts(WINDOW)}
    finally:
        source.close()
    assert carts["1"].customer.email == "ann@example.com"
    assert not [reason for reason in problems.reasons().values() if "email" in reason]


def test_a_carts_query_without_an_email_column_is_said(url):
    source, problems = _query_source(url, carts=QUERIES["carts"].replace("c.customer_email AS email, ", ""))
    try:
        list(source.carts(WINDOW))
    finally:
        source.close()
    assert problems.reasons()["carts query"] == \
        "source.queries.carts returns no email column: its carts reach no one by e-mail"


def test_orders_read_cancelled_at_and_fulfilment_words_as_the_csv_format_does(url):
    orders_query = (
        "SELECT id AS order_id, email, cart_id, created AS created_at, status, total, "
        "CASE WHEN id = 9 THEN 'unfulfilled' ELSE 'fulfilled' END AS delivered, "
        "CASE WHEN id = 10 THEN created END AS cancelled_at FROM orders "
        "WHERE LOWER(email) IN :emails OR cart_id IN :cart_ids")
    source, _problems = _query_source(url, orders=orders_query)
    try:
        orders = {order.id: order for order in source.orders_for(_carts(url))}
    finally:
        source.close()
    assert set(orders) == {"9"}  # 10 was cancelled (its status still says paid)
    assert orders["9"].delivered is False  # unfulfilled: not delivered yet (a pending order)


def _orders_where(url: str, column: str, instead: str) -> dict[str, Order]:
    """The run's orders of the fixture's carts, the orders query's ``column`` read as ``instead``."""
    source, _problems = _query_source(url, orders=QUERIES["orders"].replace(column, instead))
    try:
        return {order.id: order for order in source.orders_for(_carts(url))}
    finally:
        source.close()


def test_an_order_row_with_a_negative_total_is_a_refund_not_an_order(url):
    orders = _orders_where(url, "delivered, total", "delivered, CASE WHEN id = 9 THEN -total ELSE total END AS total")
    assert "9" not in orders and "10" in orders


def test_an_order_whose_status_says_refunded_is_still_a_runs_order_awaiting_no_delivery(url):
    """As the presets read it: its customer bought the cart (README, ``ordered``); nothing of it
    is still to come. It was dropped, and the buyer reminded of the cart they had bought."""
    orders = _orders_where(url, "status,", "CASE WHEN id = 10 THEN 'refunded' ELSE status END AS status,")
    assert orders["10"].status == "refunded" and not orders["10"].awaits_delivery


@pytest.mark.parametrize("status", ["wc-cancelled", "wc-failed", "wc-checkout-draft"])
def test_a_woocommerce_status_of_no_purchase_is_read_as_the_csv_format_reads_it(url, status):
    """A query over WooCommerce's orders table returns its statuses under ``wc-``: read as written,
    a failed payment or a checkout's draft was its customer's purchase, and their cart never reminded."""
    orders = _orders_where(url, "status,", f"CASE WHEN id = 10 THEN '{status}' ELSE status END AS status,")
    assert "10" not in orders and "9" in orders


def test_an_order_whose_address_was_mistyped_at_checkout_is_read_by_its_cart(url):
    """The address only ties an order to carts: read as a cart's is, ``kim@example`` made the
    order unreadable, and its cart waited for it instead of knowing it was bought (Magento's and
    the CSV export's same order were read)."""
    source, problems = _query_source(url, orders=QUERIES["orders"].replace(
        "SELECT id AS order_id, email,", "SELECT id AS order_id, CASE WHEN id = 10 THEN 'Kim@Example' ELSE email END "
        "AS email,"))
    try:
        orders = {order.id: order for order in source.orders_for(_carts(url))}
    finally:
        source.close()
    assert (orders["10"].unreadable, orders["10"].email, orders["10"].cart_id) == (None, "kim@example", "2")
    assert orders["10"].total == Decimal("30") and not problems.reasons()


def test_an_orders_date_without_a_time_is_the_end_of_that_day(url):
    """A DATE column (or a date as text, as SQLite returns ``date()``) read as its midnight put
    an order of the cart's own day before the cart: its buyer was reminded of what they bought."""
    source, _problems = _query_source(url, orders=QUERIES["orders"].replace("created AS created_at",
                                                                              "DATE(created) AS created_at"))
    try:
        orders = {order.id: order for order in source.orders_for(_carts(url))}
    finally:
        source.close()
    assert orders["9"].created_at == datetime.combine(date(2026, 3, 29), time.max, UTC)


def test_a_window_compared_with_seconds_since_1970_as_the_docs_write_it_reads_the_carts_in_it(url):
    """A column of UNIX seconds read fine, but ``updated >= :start`` compared a number with a
    time: docs/databases.md now says how to write the window in seconds on each database."""
    start = EPOCH_START[url.split(":", 1)[0].split("+", 1)[0].replace("mariadb", "mysql")]
    query = ("SELECT id AS cart_id, email, 'EUR' AS currency, created AS created_at, updated AS updated_at, "
             "'A' AS sku, 1 AS quantity, 10 AS unit_price FROM epoch_carts "
             f"WHERE updated >= {start} AND updated <= {start.replace(':start', ':end')} ORDER BY id")
    carts, problems = _read_carts(url, carts=query)
    assert sorted(carts) == ["1"] and not problems.reasons()
    assert carts["1"].updated_at == datetime(2026, 3, 29, 9, 0, tzinfo=UTC)


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
    "EXPLAIN ANALYZE DELETE FROM carts",  # PostgreSQL runs the statement it explains
    "DESCRIBE ANALYZE UPDATE carts SET total = 0",
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


@pytest.mark.parametrize(("text", "value"), [("12,50", "12.50"), ("1 234,50", "1234.50"), ("1,234.50", "1234.50")])
def test_a_number_in_a_text_column_reads_as_the_csv_format_reads_it(text, value):
    assert as_decimal(text, "unit_price") == Decimal(value)


def test_an_ambiguous_number_in_a_text_column_is_refused_as_in_the_csv_format():
    """'1,500' in a VARCHAR price column was read as 1.5 (the comma a decimal sign) without a
    word; the CSV format refuses it as 1.5 or 1500."""
    with pytest.raises(RowError, match="unit_price: ambiguous: '1,500'"):
        as_decimal("1,500", "unit_price")


def test_an_address_with_capital_accents_is_found_where_lower_folds_ascii_alone(tmp_path):
    """SQLite's ``LOWER()`` folds ASCII alone, as PostgreSQL's does in a database whose
    ``LC_CTYPE`` is ``C`` (test_source_magento_details): the presets' look-up by address
    (:func:`email_in`) missed an order or an unsubscription stored as ``ÅSA@…`` for ``åsa@…``."""
    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE orders (id integer, email varchar(100))")
    connection.executemany("INSERT INTO orders VALUES (?, ?)", [
        (1, "ÅSA@EXAMPLE.COM"), (2, " Örjan@Example.com"), (3, "A\u030aSA@example.com"),  # 3: Å decomposed
        (4, "ÄSA@EXAMPLE.COM"), (5, "ÖRJAN@EXAMPLE.ORG")])
    connection.commit()
    connection.close()
    db = ShopDatabase(f"sqlite:///{path}", source="sql")
    forms = stored_forms(["åsa@example.com", "örjan@example.com"])
    try:
        rows = db.fetch(f"SELECT id FROM orders WHERE {email_in(db.backend, 'email', 'IN :emails', emails=forms)} "
                        "ORDER BY id", {"emails": forms}, expanding=("emails",))
    finally:
        db.close()
    assert [row["id"] for row in rows] == [1, 2, 3]


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


def test_a_host_name_that_does_not_resolve_is_an_unknown_host_not_a_refusal():
    # MySQL reports both with error 2003; the text says which (pymysql's own error, as it raises it).
    import pymysql

    error = pymysql.err.OperationalError(
        2003, "Can't connect to MySQL server on 'db.invalid' ([Errno -2] Name or service not known)")
    assert explain_error(error, "mysql database shop at db.invalid:3306") == \
        "cannot connect to mysql database shop at db.invalid:3306: unknown host"


def test_a_mysql_url_without_its_driver_says_which_to_write():
    source = SqlSource("mysql://root@127.0.0.1:3306/shop", queries=QUERIES)
    with pytest.raises(SourceError) as caught:
        list(source.carts(WINDOW))
    assert_one_line(caught, "names no driver", "write mysql+pymysql://")


@pytest.mark.parametrize("url, kind", [
    ("mysql+pymysql://root@127.0.0.1:1/shop", "mysql"),
    ("postgresql+psycopg://postgres@127.0.0.1:1/shop", "postgresql"),
])
def test_connection_refused(url, kind):
    source = SqlSource(url, queries=QUERIES)
    with pytest.raises(SourceError) as caught:
        list(source.carts(WINDOW))
    assert_one_line(caught, "sql source: source.url: cannot connect to", f"{kind} database shop at 127.0.0.1:1",
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
    assert_one_line(caught, "sql source: source.queries.carts: table no_such_table not found in",
                    "(check the table names in source.queries, and source.url)")


def test_a_missing_column_points_at_the_query_not_a_preset(url):
    source = SqlSource(url, queries={"carts": "SELECT c.customer_number AS cart_id FROM carts c WHERE 1 = 0"})
    with pytest.raises(SourceError) as caught:
        list(source.carts(WINDOW))
    source.close()
    assert_one_line(caught, "sql source: source.queries.carts: column carts.customer_number not found in",  # alias c
                    "(check the column names in source.queries)")
    assert "preset" not in str(caught.value)


@pytest.mark.parametrize(("queries", "message"), [
    ({"carts": "SELECT * FROM carts WHERE updated >= :start AND updated <= :stop"},
     "source.queries.carts: :stop is not a parameter this query gets; it gets :start, :end"),
    ({"carts": "SELECT 1", "orders": "SELECT * FROM orders WHERE email IN :emails OR id IN :ids"},
     "source.queries.orders: :ids is not a parameter this query gets; it gets :cart_ids, :emails, :customer_ids"),
    ({"carts": "SELECT 1", "order": "SELECT 1"},
     "source.queries.order: not a query cartrescue runs (it runs carts, count, orders, orders_placed, newsletters"),
])
def test_a_query_with_an_unknown_name_or_parameter_is_a_config_error(queries, message):
    # Found when the config loads (exit 2), not as a database error in the middle of a run.
    with pytest.raises(ConfigError) as caught:
        SqlSource("sqlite:///nowhere.db", queries=queries)
    assert str(caught.value).startswith(message)


def test_casts_and_times_in_a_query_are_no_parameters():
    SqlSource("sqlite:///nowhere.db", queries={
        "carts": "SELECT created::text AS created_at, '10:30' AS at FROM carts WHERE updated >= :start"})


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


# -- the same logical carts from CSV, Magento, WooCommerce and PrestaShop -----------------------
#
# One small scenario written four ways; `cartrescue carts --json` must decide the same for each.
# Every cart is inside the window (the database presets filter by it, CSV leaves it to the
# pipeline) and totals are the sum of the lines (PrestaShop keeps no cart totals).

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import phpserialize  # noqa: E402

EQ_NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
EQ_TZ = ZoneInfo("Europe/Stockholm")
# product id -> (sku, name, price, cost, stock)
EQ_PRODUCTS = {
    11: ("LAMP", "Desk lamp", Decimal("120"), Decimal("30"), 500),
    12: ("MUG", "Coffee mug", Decimal("12.5"), Decimal("9"), 8),
    13: ("SOFA", "Three-seat sofa", Decimal("900"), Decimal("700"), 2),
}
# cart id, customer id (None: guest), email, first name, updated (UTC), [(product, quantity)]
EQ_CARTS = [
    (301, 7, "anna@example.com", "Anna", datetime(2026, 3, 29, 9, 30), [(11, 2), (12, 1)]),
    (302, None, "ben@example.com", "Ben", datetime(2026, 3, 29, 0, 30), [(12, 2)]),   # 01:30 CET, before DST
    (303, 9, "carol@example.com", "Carol", datetime(2026, 3, 28, 8, 0), [(13, 1)]),  # ordered since
    (304, 10, "dave@example.com", "Dave", datetime(2026, 3, 28, 22, 0), [(12, 1)]),  # order not delivered
    (305, 11, "eve@example.com", "Eve", datetime(2026, 3, 29, 10, 0), [(13, 1), (11, 1)]),  # returning
    (306, None, "finn@example.com", "Finn", datetime(2026, 3, 25, 10, 0), [(11, 1)]),
]
# order id, customer id, email, created (UTC), delivered, status word per platform
EQ_ORDERS = [
    (501, 9, "carol@example.com", datetime(2026, 3, 28, 9, 0), True),
    (502, 10, "dave@example.com", datetime(2026, 3, 20, 9, 0), False),
    (503, 11, "eve@example.com", datetime(2025, 12, 1, 9, 0), True),
]


def _total(lines) -> Decimal:
    return sum((EQ_PRODUCTS[p][2] * q for p, q in lines), Decimal("0"))


def _local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(EQ_TZ).replace(tzinfo=None)


def eq_csv(folder: Path) -> dict:
    rows = ["cart_id,customer_id,email,first_name,currency,total,created_at,updated_at,sku,name,quantity,"
            "unit_price,unit_cost,stock_on_hand"]
    for cart_id, customer, email, first, updated, lines in EQ_CARTS:
        for product, quantity in lines:
            sku, name, price, cost, stock = EQ_PRODUCTS[product]
            stamp = updated.isoformat() + "+00:00"
            rows.append(f"{cart_id},{customer or ''},{email},{first},EUR,{_total(lines)},{stamp},{stamp},"
                        f"{sku},{name},{quantity},{price},{cost},{stock}")
    (folder / "carts.csv").write_text("\n".join(rows) + "\n")
    orders = ["order_id,email,customer_id,total,currency,status,created_at,delivered"]
    for order_id, customer, email, created, delivered in EQ_ORDERS:
        orders.append(f"{order_id},{email},{customer},50,EUR,{'complete' if delivered else 'processing'},"
                      f"{created.isoformat()}+00:00,{'yes' if delivered else 'no'}")
    (folder / "orders.csv").write_text("\n".join(orders) + "\n")
    return {"type": "csv", "carts": str(folder / "carts.csv"), "orders": str(folder / "orders.csv")}


def eq_magento(db: shopdb.ShopDb) -> dict:
    db.schema("magento2")
    db.insert("quote", [{"entity_id": c, "store_id": 1, "created_at": u, "updated_at": u, "is_active": 1,
                         "items_count": len(lines), "quote_currency_code": "EUR", "base_currency_code": "EUR",
                         "grand_total": _total(lines), "customer_id": cust, "customer_is_guest": int(cust is None),
                         "customer_email": None if cust is None else email, "customer_firstname": first}
                        for c, cust, email, first, u, lines in EQ_CARTS])
    db.insert("quote_address", [{"quote_id": c, "address_type": "billing", "email": email, "firstname": first}
                                for c, cust, email, first, u, lines in EQ_CARTS if cust is None])
    db.insert("quote_item", [{"item_id": c * 10 + n, "quote_id": c, "product_id": p, "sku": EQ_PRODUCTS[p][0],
                              "name": EQ_PRODUCTS[p][1], "qty": q, "price": EQ_PRODUCTS[p][2],
                              "base_cost": EQ_PRODUCTS[p][3], "product_type": "simple"}
                             for c, cust, email, first, u, lines in EQ_CARTS for n, (p, q) in enumerate(lines)])
    db.insert("cataloginventory_stock_item", [{"product_id": p, "stock_id": 1, "qty": v[4]}
                                              for p, v in EQ_PRODUCTS.items()])
    db.insert("sales_order", [{"entity_id": o, "increment_id": str(o), "quote_id": 900 + o, "customer_id": cust,
                               "customer_email": email, "state": "complete" if done else "processing",
                               "grand_total": Decimal(50), "order_currency_code": "EUR", "created_at": created}
                              for o, cust, email, created, done in EQ_ORDERS])
    return {"type": "magento2", "url": db.url}


def eq_woocommerce(db: shopdb.ShopDb) -> dict:
    db.schema("woocommerce", prefix="wp_")

    def contents(lines) -> str:
        return phpserialize.dumps({f"key{p}": {"product_id": p, "variation_id": 0, "quantity": q,
                                               "line_subtotal": float(EQ_PRODUCTS[p][2] * q), "line_subtotal_tax": 0}
                                   for p, q in lines}).decode()

    db.insert("wp_cartflows_ca_cart_abandonment", [
        {"id": c, "checkout_id": 7, "email": email, "cart_contents": contents(lines), "cart_total": _total(lines),
         "session_id": f"s{c}", "order_status": "abandoned", "time": _local(u),
         "other_fields": phpserialize.dumps({"wcf_first_name": first}).decode()}
        for c, cust, email, first, u, lines in EQ_CARTS])
    db.insert("wp_posts", [{"ID": p, "post_title": v[1], "post_type": "product"} for p, v in EQ_PRODUCTS.items()])
    db.insert("wp_postmeta", [{"post_id": p, "meta_key": key, "meta_value": str(value)}
                              for p, v in EQ_PRODUCTS.items()
                              for key, value in (("_sku", v[0]), ("_price", v[2]), ("_wc_cog_cost", v[3]),
                                                 ("_stock", v[4]))])
    db.insert("wp_users", [{"ID": cust, "user_login": email, "user_email": email}
                           for c, cust, email, first, u, lines in EQ_CARTS if cust is not None])
    db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "EUR"},
                             {"option_name": "woocommerce_custom_orders_table_enabled", "option_value": "yes"}])
    db.insert("wp_wc_orders", [{"id": o, "status": "wc-completed" if done else "wc-processing", "type": "shop_order",
                                "currency": "EUR", "total_amount": Decimal(50), "customer_id": cust,
                                "billing_email": email, "date_created_gmt": created}
                               for o, cust, email, created, done in EQ_ORDERS])
    return {"type": "woocommerce", "url": db.url}


def eq_prestashop(db: shopdb.ShopDb) -> dict:
    db.schema("prestashop", prefix="ps_")
    stamp = datetime(2025, 1, 1)
    db.insert("ps_shop", [{"id_shop": 1, "id_shop_group": 1, "name": "Main"}])
    db.insert("ps_lang", [{"id_lang": 1, "name": "English", "iso_code": "en", "language_code": "en-us"}])
    db.insert("ps_currency", [{"id_currency": 1, "iso_code": "EUR"}])
    guests = {c: 100 + c for c, cust, *_ in EQ_CARTS if cust is None}  # PrestaShop's guest accounts
    db.insert("ps_customer", [{"id_customer": cust or guests[c], "email": email, "firstname": first,
                               "lastname": "", "is_guest": int(cust is None), "date_add": stamp, "date_upd": stamp}
                              for c, cust, email, first, u, lines in EQ_CARTS])
    db.insert("ps_product", [{"id_product": p, "reference": v[0], "price": v[2], "wholesale_price": v[3], "active": 1,
                              "date_add": stamp, "date_upd": stamp} for p, v in EQ_PRODUCTS.items()])
    db.insert("ps_product_lang", [{"id_product": p, "id_shop": 1, "id_lang": 1, "name": v[1], "link_rewrite": "x"}
                                  for p, v in EQ_PRODUCTS.items()])
    db.insert("ps_stock_available", [{"id_product": p, "id_product_attribute": 0, "id_shop": 1, "id_shop_group": 0,
                                      "quantity": v[4]} for p, v in EQ_PRODUCTS.items()])
    db.insert("ps_cart", [{"id_cart": c, "id_shop": 1, "id_lang": 1, "id_currency": 1, "delivery_option": "",
                           "id_customer": cust or guests[c], "date_add": _local(u), "date_upd": _local(u)}
                          for c, cust, email, first, u, lines in EQ_CARTS])
    db.insert("ps_cart_product", [{"id_cart": c, "id_product": p, "quantity": q, "date_add": _local(u)}
                                  for c, cust, email, first, u, lines in EQ_CARTS for p, q in lines])
    db.insert("ps_orders", [{"id_order": o, "id_customer": cust, "id_cart": 900 + o, "id_currency": 1,
                             "current_state": 5 if done else 3, "total_paid": Decimal(50), "date_add": _local(created),
                             "date_upd": _local(created)} for o, cust, email, created, done in EQ_ORDERS])
    return {"type": "prestashop", "url": db.url}


def _decisions(folder: Path, name: str, source: dict) -> list[dict]:
    config = folder / f"{name}.yaml"
    # Consent is left out (consent: none): Magento's quote says nothing about it, the others do;
    # each preset's tests cover its own mapping.
    config.write_text(json.dumps({"shop": {"timezone": "Europe/Stockholm"}, "source": source,
                                  "eligibility": {"consent": "none"},
                                  "ledger": {"url": f"sqlite:///{folder}/{name}-ledger.db"}}))
    result = subprocess.run(
        [sys.executable, "-m", "cartrescue.cli", "carts", "--config", str(config), "--json", "--all",
         "--now", EQ_NOW.strftime("%Y-%m-%dT%H:%M:%SZ")],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    keys = ("cart_id", "email", "action", "reason", "step", "score", "tier", "channel")
    decisions = [{key: decision.get(key) for key in keys} for decision in json.loads(result.stdout)["decisions"]]
    return sorted(decisions, key=lambda decision: str(decision["cart_id"]))


@pytest.mark.mariadb
@pytest.mark.slow
def test_same_logical_carts_give_the_same_decisions_from_every_source(tmp_path):
    with shopdb.shop_database("mariadb", "eqmagento") as magento, \
            shopdb.shop_database("mariadb", "eqwoo") as woo, \
            shopdb.shop_database("mariadb", "eqpresta") as presta:
        sources = {"csv": eq_csv(tmp_path), "magento2": eq_magento(magento),
                   "woocommerce": eq_woocommerce(woo), "prestashop": eq_prestashop(presta)}
        decided = {name: _decisions(tmp_path, name, source) for name, source in sources.items()}
    reference = decided.pop("csv")
    assert [d["cart_id"] for d in reference] == [str(c[0]) for c in EQ_CARTS]
    reasons = {d["cart_id"]: d["reason"] for d in reference}
    assert reasons["303"] == "ordered" and reasons["304"] == "pending_order", reference
    for name, decisions in decided.items():
        assert decisions == reference, name


def test_the_config_examples_in_docs_databases_md_load(tmp_path):
    import re as regex

    from cartrescue.config import load_config

    text = (Path(__file__).resolve().parent.parent / "docs" / "databases.md").read_text()
    blocks = regex.findall(r"```yaml\n(.*?)```", text, flags=regex.DOTALL)
    assert len(blocks) == 4
    env = {"SHOP_DB_PASSWORD": "pw", "PS_COOKIE_KEY": "key"}
    types = []
    for number, block in enumerate(blocks):
        path = tmp_path / f"example{number}.yaml"
        path.write_text(block)
        config = load_config(path, env=env)
        types.append(config.source.type)
        if config.source.type == "sql":
            SqlSource.from_config(config.source, shop_tz=ZoneInfo("UTC"), on_problem=lambda p: None).close()
    assert types == ["magento2", "woocommerce", "prestashop", "sql"]


def test_numbers_out_of_bounds_and_empty_carts_from_a_query(tmp_path):
    """A 27-digit price or a quantity of 1e9 costs its cart with its key (issue 8); a cart whose
    LEFT JOIN brings no line is an empty cart, for the pipeline to skip (issue 10)."""
    path = tmp_path / "bounds.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE c (cart_id text, email text, currency text, created_at text)")
    connection.execute("CREATE TABLE l (cart_id text, sku text, name text, quantity, unit_price)")
    connection.executemany("INSERT INTO c VALUES (?, ?, 'EUR', '2026-03-29 09:00:00')",
                           [(f"c{n}", f"c{n}@example.com") for n in range(1, 6)])
    connection.executemany("INSERT INTO l VALUES (?, 'A', 'Apple', ?, ?)", [
        ("c1", 1, "10"), ("c2", 1, "123456789012345678901234567"), ("c3", 1e9, "10"), ("c4", 2, "10")])
    connection.commit()
    connection.close()
    query = ("SELECT c.cart_id, c.email, c.currency, c.created_at, l.sku, l.name, l.quantity, l.unit_price "
             "FROM c LEFT JOIN l ON l.cart_id = c.cart_id ORDER BY c.cart_id")
    problems = shopdb.Problems()
    source = SqlSource(f"sqlite:///{path}", queries={"carts": query}, on_problem=problems)
    try:
        carts = {cart.id: cart for cart in source.carts(WINDOW)}
    finally:
        source.close()
    assert sorted(carts) == ["c1", "c4", "c5"] and carts["c5"].items == () and carts["c4"].total == Decimal("20")
    assert problems.reasons() == {
        "carts query cart_id=c2": "unit_price: out of range: 123456789012345678901234567 (amounts must be below 10^12)",
        "carts query cart_id=c3": "quantity: more than 10,000 units in one line: 1000000000.0"}


def test_database_values_are_bounded_and_odd_times_are_row_errors():
    from cartrescue.sources.sql import as_decimal, as_quantity, as_stock, as_utc, local_bound

    with pytest.raises(RowError, match="out of range"):
        as_decimal(Decimal("1e27"), "price")
    with pytest.raises(RowError, match="more than 10,000 units"):
        as_quantity(Decimal("1e9"))
    assert as_stock("1e30") is None and as_stock(Decimal("40.0000")) == 40
    assert as_utc(1772442000, UTC, "t") == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # seconds since 1970
    for odd in (10**15, "infinity", "0000-00-00 00:00:00", datetime(1, 1, 1)):
        with pytest.raises(RowError, match="^t: not a time"):
            as_utc(odd, ZoneInfo("Europe/Paris"), "t")
    assert local_bound(datetime.min.replace(tzinfo=UTC), ZoneInfo("America/New_York"), slack=-timedelta(hours=1)) \
        .year == 1000


def _placed(url: str, placed: str) -> dict:
    """The orders ``placed`` (an ``orders_placed`` query) finds from 9:00 to 11:00 on 29 March, by id."""
    source = SqlSource(url, queries={**QUERIES, "orders_placed": placed})
    try:
        return {o.id: o for o in source.orders(Window(datetime(2026, 3, 29, 9, 0, tzinfo=UTC),
                                                      datetime(2026, 3, 29, 11, 0, tzinfo=UTC)))}
    finally:
        source.close()


def test_orders_placed_in_a_window_from_a_named_query(url):
    orders = _placed(url, "SELECT id AS order_id, email, cart_id, created AS created_at, status, delivered, total, "
                          "'SAVE10' AS discount_code FROM orders WHERE created >= :start AND created <= :end ORDER BY id")
    assert set(orders) == {"9", "10", "12"}  # 11 is cancelled
    assert orders["10"].cart_id == "2" and orders["10"].total == Decimal("30")
    assert orders["9"].discount_codes == ("SAVE10",)


@pytest.mark.parametrize(("column", "told"), [(", NULL AS discount_code", True), ("", False)], ids=["column", "none"])
def test_orders_placed_tell_their_codes_where_the_query_returns_a_discount_code_column(url, column, told):
    """With a discount_code column an order whose code is NULL used none (the report then assumes
    no redemption); without one the query cannot say (the report keeps its upper bound)."""
    source = SqlSource(url, queries={**QUERIES, "orders_placed": (
        f"SELECT id AS order_id, email, cart_id, created AS created_at, status, delivered, total{column} "
        "FROM orders WHERE created >= :start AND created <= :end ORDER BY id")})
    try:
        orders = list(source.orders(Window(datetime(2026, 3, 29, 9, 0, tzinfo=UTC),
                                           datetime(2026, 3, 29, 11, 0, tzinfo=UTC))))
        assert [o.discount_codes for o in orders] == [(), (), ()]
        assert source.orders_carry_codes() is told
    finally:
        source.close()


def test_an_order_dated_without_a_time_is_placed_in_a_window_that_holds_part_of_its_day(url):
    """Read as the end of its day, an order dated the day a report runs (its window ends now)
    was left out: that day's orders counted only in a report of the next day."""
    orders = _placed(url, "SELECT id AS order_id, email, cart_id, DATE(created) AS created_at, status, delivered, "
                          "total FROM orders WHERE created >= :start AND created <= :end ORDER BY id")
    assert set(orders) == {"9", "10", "12"}
    assert (orders["9"].earliest, orders["9"].created_at) == (datetime(2026, 3, 29, tzinfo=UTC),
                                                              datetime.combine(date(2026, 3, 29), time.max, UTC))


def test_a_report_without_an_orders_placed_query_says_which_key_to_add(sqlite_url):
    source = SqlSource(sqlite_url, queries=QUERIES)
    with pytest.raises(ConfigError, match=r"source\.queries\.orders_placed"):
        list(source.orders(WINDOW))


def test_the_report_counts_an_order_net_of_its_refunded_column(tmp_path):
    """queries.orders_placed's refunded was not read: a partly refunded order counted its whole
    total, and one refunded in full counted as a sale."""
    from conftest import cli
    from reportdata import Row, write_ledger

    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path)
    for statement in DDL[:2]:
        connection.execute(statement)
    connection.execute("CREATE TABLE orders (id integer, email varchar(100), cart_id integer, created timestamp, "
                       "status varchar(20), total decimal(10,2), refunded decimal(10,2))")
    connection.executemany("INSERT INTO orders VALUES (?, ?, ?, '2026-03-29 10:00:00', 'paid', ?, ?)", [
        (1, "a@example.com", 601, "100.00", "30.00"),  # 70 kept
        (2, "b@example.com", 602, "40.00", "40.00"),   # all given back: no sale
        (3, "c@example.com", 603, "25.00", None),      # nothing refunded
        (4, "d@example.com", 604, "60.00", "-5.00"),   # a sign slipped: reported, not guessed
    ])
    connection.commit()
    connection.close()
    placed = ("SELECT id AS order_id, email, cart_id, created AS created_at, status, total, refunded AS Refunded "
              "FROM orders WHERE created >= :start AND created <= :end ORDER BY id")
    config = shopdb.write_config(tmp_path, {"type": "sql", "url": f"sqlite:///{path}",
                                            "queries": {"carts": QUERIES["carts"], "orders_placed": placed}})
    write_ledger(tmp_path / "ledger.db", [Row(str(cart), datetime(2026, 3, 29, 9, 0, tzinfo=UTC))
                                          for cart in range(601, 605)])
    result = cli("report", "--json", "--since", "2026-03-29", "--until", "2026-03-30", "--config", str(config),
                 "--now", "2026-04-05T12:00:00Z")
    assert result.exit_code in (0, 1), result.output
    assert (result.json["summary"]["orders"], result.json["summary"]["revenue"]) == (2, "95.00")  # 70 + 25
    assert result.json["problems"] == ["orders_placed query order_id=4: refunded: a refund cannot be negative, "
                                       "got -5"]


def _sql_shop(tmp_path: Path, url: str, carts_query: str = QUERIES["carts"]) -> Path:
    """The config (in ``tmp_path``) of a shop read by a ``sql`` source at ``url``."""
    config = tmp_path / "cartrescue.yaml"
    config.write_text(json.dumps({
        "now": NOW.isoformat(), "shop": {"timezone": "Europe/Berlin", "unsubscribe_secret": "test-secret-of-the-suite"},
        "source": {"type": "sql", "url": url, "queries": {"carts": carts_query}},
        "eligibility": {"consent": "none", "quiet_hours": None},
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"}}), encoding="utf-8")
    return config


def _apart_shop(tmp_path: Path, sqlite_url: str) -> Path:
    """A shop whose carts query orders by sku: cart 1's rows (A, B) stand apart."""
    return _sql_shop(tmp_path, sqlite_url, QUERIES["carts"].replace("ORDER BY c.id, l.sku", "ORDER BY l.sku, c.id"))


def test_doctor_names_the_key_and_the_path_of_a_shop_sqlite_file_that_does_not_exist(tmp_path):
    """A shop's database is only read: a mistyped path said "missing or unreadable" about the
    path as written, naming no key; it now names source.url and the file looked for."""
    from conftest import cli

    config = _sql_shop(tmp_path, "sqlite:///shpo.db")
    result = cli("doctor", "--no-smtp", "--json", "--config", str(config))
    source = {check["name"]: check for check in result.json["checks"]}["source"]
    assert source["status"] == "fail" and result.exit_code == ExitCode.SOURCE, source
    assert f"{config}: source.url: the SQLite file {tmp_path / 'shpo.db'} does not exist" in source["detail"]
    assert not (tmp_path / "shpo.db").exists()


def test_a_relative_shop_sqlite_path_is_read_beside_the_config_file(tmp_path, sqlite_url, monkeypatch):
    """As every path of the config (and the ledger's): ``--config /srv/shop/cartrescue.yaml`` run
    from another folder looked for the shop's database in that folder."""
    from conftest import cli

    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "shop.db").write_bytes(Path(sqlite_url.removeprefix("sqlite:///")).read_bytes())
    config = _sql_shop(shop, "sqlite:///shop.db")
    monkeypatch.chdir(tmp_path)
    result = cli("carts", "--json", "--config", str(config))
    assert result.exit_code in (0, 1), result.output
    assert "1" in {decision["cart_id"] for decision in result.json["decisions"]}


def test_a_cart_whose_rows_a_query_returns_apart_is_skipped_whole_and_named_with_the_fix(tmp_path, sqlite_url):
    """Never half a cart: the first pass (every cart's address) notes where each cart id comes,
    and the carts pass skips a cart met in two places, where it sent its first piece before."""
    from conftest import cli

    result = cli("carts", "--json", "--all", "--config", str(_apart_shop(tmp_path, sqlite_url)))
    assert result.exit_code == 1, result.output
    assert "1" not in {d["cart_id"] for d in result.json["decisions"]}
    assert [problem for problem in result.json["problems"] if "cart_id=1:" in problem] == [
        "carts query cart_id=1: its rows are not together (in 2 places): skipped whole, never half a cart "
        "(source.queries.carts returns its rows apart: give it ORDER BY cart_id (docs/databases.md))"]


def test_doctor_fails_a_carts_query_whose_rows_stand_apart(tmp_path, sqlite_url):
    from conftest import cli

    result = cli("doctor", "--no-smtp", "--json", "--config", str(_apart_shop(tmp_path, sqlite_url)))
    source = {check["name"]: check for check in result.json["checks"]}["source"]
    assert source["status"] == "fail" and "ORDER BY cart_id" in source["detail"], source
    assert result.exit_code == ExitCode.SOURCE


def test_run_strict_stops_on_a_carts_query_whose_rows_stand_apart(tmp_path):
    path = tmp_path / "apart.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE l (cart_id text, email text, currency text, created_at text, sku text, "
                       "name text, quantity integer, unit_price text)")
    connection.executemany("INSERT INTO l VALUES (?, ?, 'EUR', '2026-03-29 09:00:00', ?, ?, 1, '10')", [
        ("c1", "a@example.com", "A", "Apple"), ("c2", "b@example.com", "A", "Apple"),
        ("c1", "a@example.com", "B", "Banana")])
    connection.commit()
    connection.close()
    config = _apart_shop(tmp_path, f"sqlite:///{path}")
    settings = json.loads(config.read_text())
    settings["source"]["queries"]["carts"] = "SELECT * FROM l ORDER BY sku"
    config.write_text(json.dumps(settings))
    from conftest import cli

    result = cli("run", "--strict", "--json", "--workers", "1", "--config", str(config))
    assert result.exit_code == ExitCode.SOURCE, result.output
    assert result.json["error"]["message"] == (
        "sql:c1: cart c1: the same cart id again (source.queries.carts returns its rows apart: give it ORDER BY "
        "cart_id (docs/databases.md); --strict: nothing was delivered)")


def _rows_shop(tmp_path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A sql shop of one table ``l`` whose query returns ``rows`` (cart, email, sku, name) in that order."""
    path = tmp_path / "rows.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE l (n integer, cart_id text, email text, currency text, created_at text, "
                       "sku text, name text, quantity integer, unit_price text)")
    connection.executemany("INSERT INTO l VALUES (?, ?, ?, 'EUR', '2026-03-29 09:00:00', ?, ?, 1, '10')",
                           [(n, *row) for n, row in enumerate(rows)])
    connection.commit()
    connection.close()
    config = _apart_shop(tmp_path, f"sqlite:///{path}")
    settings = json.loads(config.read_text())
    settings["source"]["queries"]["carts"] = ("SELECT cart_id, email, currency, created_at, sku, name, quantity, "
                                              "unit_price FROM l ORDER BY n")
    config.write_text(json.dumps(settings))
    return config


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_cart_in_pieces_from_a_query_is_never_sent_as_half_a_cart(tmp_path, workers):
    from conftest import cli

    config = _rows_shop(tmp_path, [("c1", "a@example.com", "A", "Apple"), ("c2", "b@example.com", "A", "Apple"),
                                   ("c1", "a@example.com", "B", "Banana")])
    result = cli("run", "--outbox", str(tmp_path / "out"), "--json", "--workers", workers, "--config", str(config))
    assert result.exit_code == 1, result.output
    assert sorted(d["cart_id"] for d in result.json["decisions"] if d["delivery"] == "sent") == ["c2"]


def test_a_cart_a_query_lists_twice_alike_is_sent_once_from_its_first_appearance(tmp_path):
    from conftest import cli

    config = _rows_shop(tmp_path, [("c1", "a@example.com", "A", "Apple"), ("c2", "b@example.com", "A", "Apple"),
                                   ("c1", "a@example.com", "A", "Apple")])
    result = cli("run", "--outbox", str(tmp_path / "out"), "--json", "--workers", "1", "--config", str(config))
    assert sorted(d["cart_id"] for d in result.json["decisions"] if d["delivery"] == "sent") == ["c1", "c2"]
    assert result.json["problems"] == ["carts query cart_id=c1: the same cart id again (only its first appearance "
                                       "is used)"]


def test_a_newer_cart_a_query_returns_without_lines_leaves_the_older_cart_its_reminders(tmp_path):
    """A cart whose LEFT JOIN brings no line is empty: no address's newest, so the address's
    older cart with a line keeps its reminders (it was skipped as ``newer_cart_for_address``)."""
    from conftest import cli

    path = tmp_path / "emptied.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE c (cart_id text, email text, currency text, created_at text)")
    connection.execute("CREATE TABLE l (cart_id text, sku text, name text, quantity integer, unit_price text)")
    connection.executemany("INSERT INTO c VALUES (?, 'ann@example.com', 'EUR', ?)",
                           [("old", "2026-03-29 08:00:00"), ("new", "2026-03-29 10:00:00")])
    connection.execute("INSERT INTO l VALUES ('old', 'A', 'Apple', 1, '10')")
    connection.commit()
    connection.close()
    config = _apart_shop(tmp_path, f"sqlite:///{path}")
    settings = json.loads(config.read_text())
    settings["source"]["queries"]["carts"] = (
        "SELECT c.cart_id, c.email, c.currency, c.created_at, l.sku, l.name, l.quantity, l.unit_price "
        "FROM c LEFT JOIN l ON l.cart_id = c.cart_id ORDER BY c.cart_id")
    config.write_text(json.dumps(settings))
    result = cli("carts", "--json", "--config", str(config))
    found = {d["cart_id"]: (d["action"], d["reason"]) for d in result.json["decisions"]}
    assert found == {"old": ("send", "due"), "new": ("skip", "empty_cart")}, result.output


def test_a_customer_a_query_gives_a_number_and_no_address_gets_the_stream_of_their_newest_cart(tmp_path):
    """Without an address the customer is their number (``newest.customer_key``): the first pass
    gave such a cart no activity, so the older cart was called as well as the newer one."""
    from conftest import cli

    path = tmp_path / "phones.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE c (cart_id text, email text, phone text, currency text, created_at text)")
    connection.execute("CREATE TABLE l (cart_id text, sku text, name text, quantity integer, unit_price text)")
    connection.executemany("INSERT INTO c VALUES (?, NULL, ?, 'EUR', ?)",
                           [("old", "+46 8 123 456 78", "2026-03-29 08:00:00"),
                            ("new", "+46812345678", "2026-03-29 10:00:00"),
                            ("other", "+46 8 123 456 79", "2026-03-29 08:00:00")])
    connection.executemany("INSERT INTO l VALUES (?, 'A', 'Apple', 1, '10')", [("old",), ("new",), ("other",)])
    connection.commit()
    connection.close()
    config = _sql_shop(tmp_path, f"sqlite:///{path}", (
        "SELECT c.cart_id, c.email, c.phone, c.currency, c.created_at, l.sku, l.name, l.quantity, l.unit_price "
        "FROM c JOIN l ON l.cart_id = c.cart_id ORDER BY c.cart_id"))
    settings = json.loads(config.read_text())
    settings["priority"] = {"tiers": [{"name": "standard", "min_score": 0, "channel": "call-list"}]}
    config.write_text(json.dumps(settings))
    result = cli("carts", "--json", "--config", str(config))
    found = {d["cart_id"]: (d["action"], d["reason"], d["detail"]) for d in result.json["decisions"]}
    assert found == {"old": ("skip", "newer_cart_for_address", "newer cart sql:new"), "new": ("send", "due", ""),
                     "other": ("send", "due", "")}, result.output


def test_a_carts_no_to_marketing_reaches_the_first_pass_to_withdraw_an_older_carts_yes(url):
    # The query may give consent per cart (as a CSV export does): the first pass must carry a
    # cart's "no", or an older cart of the same address that said yes is reminded (NewestCarts.withdrawn).
    said_no = QUERIES["carts"].replace("c.consent AS marketing_consent",
                                       "CASE WHEN c.id = 1 THEN 0 ELSE c.consent END AS marketing_consent")
    first_pass = {}
    for query in (QUERIES["carts"], said_no):
        source, _problems = _query_source(url, carts=query)
        try:
            first_pass[query] = {item.cart_key: item for item in source.activity(WINDOW)}["sql:1"]
        finally:
            source.close()
    assert (first_pass[QUERIES["carts"]].no_marketing, first_pass[said_no].no_marketing) == (False, True)
    assert not first_pass[said_no].no_sms  # no sms_consent column: nothing said


def _text_with_nul(url: str) -> str:
    """SQL for the text ``C<NUL>1`` in ``url``'s dialect."""
    if url.startswith("sqlite"):
        return "'C' || char(0) || '1'"
    return "CONCAT('C', CHAR(0 USING utf8mb4), '1')"


@pytest.mark.parametrize(("column", "replaced"), [
    ("customer_id", "c.customer_no AS customer_id"),
    ("first_name", "c.currency, "),
])
def test_a_cart_whose_owner_holds_a_nul_is_reported_and_skipped_alone(url, column, replaced):
    """A NUL in text a cart takes to the ledger (its customer id) or into its message (a name):
    PostgreSQL refuses it in a ledger row, and the whole run stopped at that cart. Now it
    costs that cart alone, as the CSV source's row does. A PostgreSQL shop holds no NUL in text."""
    if url.startswith("postgresql"):
        pytest.skip("PostgreSQL keeps no NUL in text: a shop there cannot hand one over")
    nul = _text_with_nul(url)
    if column == "customer_id":
        changed = f"CASE WHEN c.id = 1 THEN {nul} ELSE c.customer_no END AS customer_id"
    else:
        changed = f"c.currency, CASE WHEN c.id = 1 THEN {nul} END AS first_name, "
    source, problems = _query_source(url, carts=QUERIES["carts"].replace(replaced, changed, 1))
    try:
        carts = {cart.id: cart for cart in source.carts(WINDOW)}
    finally:
        source.close()
    _, every, _ = read(url)
    assert "1" in every
    assert sorted(carts) == sorted(set(every) - {"1"})
    assert problems.reasons()["carts query cart_id=1"] == \
        f"{column}: holds a NUL character (\\x00), which no ledger can keep"


@pytest.mark.postgres
def test_a_nul_from_the_shop_costs_its_cart_not_a_run_on_a_postgresql_ledger(tmp_path):
    """The whole run stopped (exit 2, "PostgreSQL text fields cannot contain NUL") when a due
    cart's customer id from the shop database held a NUL: now that cart is a problem and the
    others go out."""
    import json
    import subprocess
    import sys

    shop = tmp_path / "shop.db"
    connection = sqlite3.connect(shop)
    for statement in DDL:
        connection.execute(statement)
    for cart_id, email, customer in ((6, "eve@example.com", "C\x006"), (7, "fred@example.com", "C7")):
        connection.execute("INSERT INTO carts VALUES (?, ?, ?, 'EUR', '2026-03-29 08:00:00', '2026-03-29 09:10:00', "
                           "12, 1)", (cart_id, email, customer))
        connection.execute("INSERT INTO cart_lines VALUES (?, 'A', 'Apple', 1, 12, NULL, NULL)", (cart_id,))
    connection.commit()
    connection.close()
    with shopdb.shop_database("postgres", "nulledger") as ledger:
        config = shopdb.write_config(tmp_path, {"type": "sql", "url": f"sqlite:///{shop}", "queries": QUERIES},
                                     ledger={"url": ledger.url})
        done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--outbox", str(tmp_path / "out"),
                               "--json", "--now", NOW.isoformat(), "--config", str(config)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr  # 1: delivered, with problems
    result = json.loads(done.stdout)
    assert result["counts"]["sent"] == 1
    assert [row["cart_id"] for row in result["decisions"] if row["action"] == "send"] == ["7"]
    assert result["problems"] == ["carts query cart_id=6: customer_id: holds a NUL character (\\x00), "
                                  "which no ledger can keep"]


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_customer_id_longer_than_the_ledger_keeps_costs_its_cart_not_a_run(tmp_path, kind):
    """A shop's customer id longer than the ledger's column stopped the whole run at that cart's
    claim on PostgreSQL (exit 2, "value too long for type character varying(191)"), every run
    after too, and MariaDB cut it: now that cart is a problem naming its row and the others go
    out, as from a CSV export, and a customer id as long as the column is kept whole."""
    import json
    import subprocess
    import sys

    from cartrescue.ledger import Ledger, cart_value_limits

    longest = cart_value_limits()["customer_id"]
    shop = tmp_path / "shop.db"
    connection = sqlite3.connect(shop)
    for statement in DDL:
        connection.execute(statement)
    for cart_id, email, customer in ((6, "eve@example.com", "C" * (longest + 1)), (7, "fred@example.com", "C7"),
                                     (8, "gus@example.com", "G" * longest)):
        connection.execute("INSERT INTO carts VALUES (?, ?, ?, 'EUR', '2026-03-29 08:00:00', '2026-03-29 09:10:00', "
                           "12, 1)", (cart_id, email, customer))
        connection.execute("INSERT INTO cart_lines VALUES (?, 'A', 'Apple', 1, 12, NULL, NULL)", (cart_id,))
    connection.commit()
    connection.close()
    with shopdb.shop_database(kind, "longledger") as ledger:
        config = shopdb.write_config(tmp_path, {"type": "sql", "url": f"sqlite:///{shop}", "queries": QUERIES},
                                     ledger={"url": ledger.url})
        results = []
        for now in (NOW, NOW + timedelta(minutes=10)):
            done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--outbox", str(tmp_path / "out"),
                                   "--json", "--now", now.isoformat(), "--config", str(config)],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 1, done.stderr  # 1: delivered, with problems
            results.append(json.loads(done.stdout))
        kept = Ledger(ledger.url)
        try:
            rows = kept.messages()
        finally:
            kept.close()
    assert [sorted(row["cart_id"] for row in result["decisions"] if row["action"] == "send")
            for result in results] == [["7", "8"], []]
    assert [result["problems"] for result in results] == [
        [f"carts query cart_id=6: customer_id: {longest + 1} characters, more than the ledger keeps ({longest})"]] * 2
    assert sorted((row["cart_id"], row["customer_id"]) for row in rows) == [("7", "C7"), ("8", "G" * longest)]


@pytest.mark.parametrize(("said", "reason"), [("'unsubscribed'", "'unsubscribed'"), ("3", "3")])
def test_a_consent_that_is_neither_yes_nor_no_costs_its_cart_rather_than_a_guess(url, said, reason):
    """A newsletter status the query hands over as it is (``unsubscribed``, a status code 3) was
    read as unknown, or a number other than 0 as yes: under soft-opt-in a customer who had opted
    out was mailed. Now it is refused as the CSV format refuses such a cell, naming the value."""
    source, problems = _query_source(url, carts=QUERIES["carts"].replace(
        "c.consent AS marketing_consent", f"CASE WHEN c.id = 1 THEN {said} END AS marketing_consent"))
    try:
        carts = {cart.id: cart for cart in source.carts(WINDOW)}
    finally:
        source.close()
    assert "1" not in carts and "2" in carts
    assert problems.reasons()["carts query cart_id=1"] == f"marketing_consent: expected yes/no, got {reason}"


@pytest.mark.mariadb
def test_a_bit_column_of_mariadb_reads_as_the_yes_or_no_it_holds():
    """MariaDB's BIT(1), a Java ORM's boolean there, comes as a byte (b'\\x00', b'\\x01'): read as
    text it was neither, so a customer whose consent said no was reminded under soft-opt-in and
    one who said yes was not, and an order not shipped held back none of its customer's carts."""
    with shopdb.shop_database("mariadb", "bitflags") as db:
        fill(db.execute, db.insert)
        db.execute("ALTER TABLE carts ADD consent_bit BIT(1) NULL, ADD guest_bit BIT(1) NULL")
        db.execute("ALTER TABLE orders ADD shipped BIT(1) NULL")
        db.execute("UPDATE carts SET consent_bit = b'0', guest_bit = b'0' WHERE id = 1")
        db.execute("UPDATE carts SET consent_bit = b'1', guest_bit = b'1' WHERE id = 2")
        db.execute("UPDATE orders SET shipped = CASE WHEN id = 10 THEN b'1' ELSE b'0' END")
        source, problems = _query_source(
            db.url,
            carts=QUERIES["carts"].replace("c.consent AS marketing_consent",
                                           "c.consent_bit AS marketing_consent, c.guest_bit AS is_guest"),
            orders=QUERIES["orders"].replace("delivered,", "shipped AS delivered,"))
        try:
            carts = {cart.id: cart for cart in source.carts(WINDOW)}
            orders = {order.id: order for order in source.orders_for(list(carts.values()))}
        finally:
            source.close()
    assert (carts["1"].customer.marketing_consent, carts["1"].customer.is_guest) == (False, False)
    assert (carts["2"].customer.marketing_consent, carts["2"].customer.is_guest) == (True, True)
    assert (orders["9"].delivered, orders["10"].delivered) == (False, True)
    assert set(problems.reasons()) == {"carts query cart_id=3", "carts query cart_id=5"}


@pytest.mark.parametrize(("key", "broken", "said"), [
    ("orders", QUERIES["orders"].replace("FROM orders", "FROM orders WHERE"), "database error in SQLite database"),
    ("carts", QUERIES["carts"].replace("JOIN cart_lines", "JOIN cart_linez"), "table cart_linez not found in"),
])
def test_an_error_in_one_of_the_queries_names_its_key_and_the_config_file(tmp_path, sqlite_url, key, broken, said):
    """A syntax error or a misnamed table in one of several queries said only what the database
    said (`near "WHERE": syntax error`): which query, and which config on a host of many shops,
    was the developer's to guess. The run's line and doctor's source check now name both."""
    from conftest import cli

    config = _sql_shop(tmp_path, sqlite_url)
    settings = json.loads(config.read_text(encoding="utf-8"))
    settings["source"]["queries"] = {**QUERIES, key: broken}
    config.write_text(json.dumps(settings), encoding="utf-8")
    result = cli("carts", "--json", "--config", str(config))
    assert result.exit_code == ExitCode.SOURCE, result.output
    assert result.json["error"]["message"].startswith(f"sql source: {config}: source.queries.{key}: {said}")
    doctor = cli("doctor", "--no-smtp", "--json", "--config", str(config))
    check = {check["name"]: check for check in doctor.json["checks"]}["source"]
    assert check["detail"].startswith(f"sql source: {config}: source.queries.{key}: {said}"), check


@pytest.mark.postgres
def test_a_connection_ended_mid_read_is_not_blamed_on_the_query():
    """A query's own error is named with its key and the advice to fix it; a connection the
    server ended while the carts streamed (a restart, pg_terminate_backend) is no fault of the
    query, and the line must not send the developer to rewrite it."""
    with shopdb.shop_database("postgres", "dropped") as db:
        fill(db.execute, db.insert)
        carts = ("SELECT g AS cart_id, 'a' || g || '@example.com' AS email, 'EUR' AS currency, "
                 "CAST(:start AS timestamp) AS created_at, 'A' AS sku, 1 AS quantity, 10 AS unit_price "
                 "FROM generate_series(1, 20000) g WHERE CAST(:end AS timestamp) IS NOT NULL ORDER BY g")
        source, _problems = _query_source(db.url, carts=carts)
        try:
            rows = source.carts(WINDOW)
            next(rows)
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = :name AND pid <> pg_backend_pid()", {"name": db.name})
            with pytest.raises(SourceError) as caught:
                list(rows)
        finally:
            source.close()
    assert "terminating connection" in str(caught.value) and "fix the query" not in str(caught.value)


def test_orders_placed_carry_a_phone_column_and_are_let_in_by_a_texted_number(url):
    """The report's key filter of a text to a customer known by number alone lets in the orders
    whose ``phone`` is that number as stored (typed in any form), and they carry it in E.164."""
    from cartrescue.report.attribution import KeyFilter

    def texted(number: str) -> KeyFilter:
        wanted = KeyFilter()
        wanted.add_rows([(None, None, None, number)])
        return wanted

    source = SqlSource(url, region="SE", queries={**QUERIES, "orders_placed": (
        "SELECT id AS order_id, email, cart_id, created AS created_at, status, delivered, total, "
        "'070-123 45 67' AS phone FROM orders WHERE created >= :start AND created <= :end ORDER BY id")})
    window = Window(datetime(2026, 3, 29, 9, 0, tzinfo=UTC), datetime(2026, 3, 29, 11, 0, tzinfo=UTC))
    try:
        found = {o.id: o.phone for o in source.orders(window, texted("+46701234567"))}
        elsewhere = [o.id for o in source.orders(window, texted("+46701234599"))]
    finally:
        source.close()
    assert found == {"9": "+46701234567", "10": "+46701234567", "12": "+46701234567"} and elsewhere == []
