"""Magento 2 preset against a fixture schema on the real MariaDB and PostgreSQL servers."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import shopdb
from cartrescue.errors import SourceError
from cartrescue.sources.base import Window
from cartrescue.sources.magento import MagentoSource

UTC = timezone.utc
NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=7), NOW - timedelta(minutes=45))


def at(text: str) -> datetime:
    """A naive UTC time as Magento stores it."""
    return datetime.fromisoformat(text)


def quote(entity_id: int, updated: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "entity_id": entity_id, "store_id": 1, "created_at": at(updated) - timedelta(hours=1),
        "updated_at": at(updated), "is_active": 1, "items_count": 1, "quote_currency_code": "EUR",
        "base_currency_code": "EUR", "grand_total": Decimal("10"), "customer_is_guest": 0,
    }
    row.update(values)
    return row


def line(item_id: int, quote_id: int, sku: str, qty: str, price: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "item_id": item_id, "quote_id": quote_id, "sku": sku, "name": f"Product {sku}", "qty": Decimal(qty),
        "price": Decimal(price), "product_type": "simple", "product_id": item_id, "parent_item_id": None,
    }
    row.update(values)
    return row


QUOTES = [
    # 101 registered customer, two simple lines, cost and stock known
    quote(101, "2026-03-29 09:00:00", customer_id=7, customer_email="Alice@Example.com", customer_firstname="Alice",
          customer_lastname="Andersson", items_count=2, grand_total=Decimal("125.0000")),
    # 102 guest: the email is only in the billing address
    quote(102, "2026-03-29 08:00:00", customer_email=None, customer_is_guest=1, grand_total=Decimal("40")),
    # 103 configurable product: parent line carries the price, the child row is skipped
    quote(103, "2026-03-28 20:00:00", customer_id=8, customer_email="erik@example.com", grand_total=Decimal("30")),
    # 104 converted although still active (order placed, quote not yet deactivated)
    quote(104, "2026-03-29 10:00:00", customer_email="frank@example.com"),
    # 105 converted the usual way: inactive
    quote(105, "2026-03-29 10:00:00", customer_email="frank@example.com", is_active=0,
          converted_at=at("2026-03-29 10:05:00")),
    # 106 customer who ordered since (order found by email, another quote)
    quote(106, "2026-03-29 07:00:00", customer_email="bob@example.com", grand_total=Decimal("99.5")),
    # 107 customer with an order not yet delivered
    quote(107, "2026-03-27 07:00:00", customer_email="carol@example.com", customer_id=9),
    # 108 NULL where a value is needed (currency)
    quote(108, "2026-03-29 06:00:00", customer_email="gina@example.com", quote_currency_code=None),
    # 109 unknown currency
    quote(109, "2026-03-29 06:00:00", customer_email="hans@example.com", quote_currency_code="XXQ"),
    # 110 outside the window (too old)
    quote(110, "2026-03-10 06:00:00", customer_email="old@example.com"),
    # 111 empty
    quote(111, "2026-03-29 06:00:00", customer_email="empty@example.com", items_count=0),
    # 112 shown in SEK, base currency EUR: cost converted with base_to_quote_rate
    quote(112, "2026-03-29 05:00:00", customer_email="ivan@example.com", quote_currency_code="SEK",
          base_to_quote_rate=Decimal("11.5"), grand_total=Decimal("1150")),
    # 113 a cancelled order by the same address does not count
    quote(113, "2026-03-29 05:00:00", customer_email="dave@example.com"),
    # 114 a fractional quantity (sold by weight) cannot be a whole-unit line
    quote(114, "2026-03-29 05:00:00", customer_email="jana@example.com"),
    # 115 an address that is not one
    quote(115, "2026-03-29 05:00:00", customer_email="not-an-email"),
    # 116 right at the window's end (inclusive) and one a minute later (not yet idle enough)
    quote(116, "2026-03-29 11:15:00", customer_email="kim@example.com"),
    quote(117, "2026-03-29 11:16:00", customer_email="lea@example.com"),
    # 118 restored after its order was canceled (a payment that failed: Magento makes the quote
    # active again for another try); 119 active beside an order still pending payment
    quote(118, "2026-03-29 06:00:00", customer_email="retry@example.com"),
    quote(119, "2026-03-29 06:00:00", customer_email="paying@example.com"),
]
ITEMS = [
    line(1011, 101, "A", "2", "50", base_cost=Decimal("20"), product_id=11),
    line(1012, 101, "B", "1", "25", product_id=12),
    line(1021, 102, "C", "1", "40", product_id=13),
    line(1031, 103, "TSHIRT-RED-M", "1", "30", product_id=30, product_type="configurable", name="T-shirt"),
    line(1032, 103, "TSHIRT-RED-M", "1", "0", product_id=31, parent_item_id=1031, name="T-shirt red M"),
    line(1041, 104, "A", "1", "50"), line(1051, 105, "A", "1", "50"),
    line(1061, 106, "D", "1", "99.5", base_cost=Decimal("0")), line(1071, 107, "E", "1", "10"),  # 0: no cost set
    line(1081, 108, "E", "1", "10"), line(1091, 109, "E", "1", "10"), line(1101, 110, "E", "1", "10"),
    line(1121, 112, "F", "1", "1150", base_cost=Decimal("10")),
    line(1131, 113, "E", "1", "10"), line(1141, 114, "CHEESE", "1.5", "10"), line(1151, 115, "E", "1", "10"),
    line(1161, 116, "E", "1", "10"), line(1171, 117, "E", "1", "10"), line(1181, 118, "E", "1", "10"),
    line(1191, 119, "E", "1", "10"),
]
ADDRESSES = [
    {"address_id": 1, "quote_id": 102, "address_type": "shipping", "email": None, "telephone": None,
     "firstname": "Gus"},
    {"address_id": 2, "quote_id": 102, "address_type": "billing", "email": "Guest@Example.com",
     "telephone": "+46701234567", "firstname": "Gustav", "lastname": "Gäst"},
    {"address_id": 3, "quote_id": 101, "address_type": "billing", "email": "alice.billing@example.com",
     "telephone": "+4670111"},
]
ORDERS = [
    {"entity_id": 1, "increment_id": "000000001", "quote_id": 104, "customer_email": "frank@example.com",
     "state": "new", "status": "pending", "grand_total": Decimal("50"), "order_currency_code": "EUR",
     "created_at": at("2026-03-29 10:01:00")},
    {"entity_id": 2, "increment_id": "000000002", "quote_id": 90, "customer_email": "BOB@example.com",
     "state": "complete", "status": "complete", "grand_total": Decimal("99.5"), "order_currency_code": "EUR",
     "created_at": at("2026-03-29 10:00:00")},
    {"entity_id": 3, "increment_id": "000000003", "quote_id": 91, "customer_email": "carol@example.com",
     "customer_id": 9, "state": "processing", "status": "processing", "grand_total": Decimal("20"),
     "order_currency_code": "EUR", "created_at": at("2026-03-20 10:00:00")},
    {"entity_id": 4, "increment_id": "000000004", "quote_id": 92, "customer_email": "dave@example.com",
     "state": "canceled", "status": "canceled", "grand_total": Decimal("10"), "order_currency_code": "EUR",
     "created_at": at("2026-03-29 06:00:00")},
    {"entity_id": 5, "increment_id": "000000005", "quote_id": 93, "customer_email": "zed@example.com",
     "state": "complete", "status": "complete", "grand_total": Decimal("10"), "order_currency_code": "EUR",
     "created_at": at("2026-03-29 06:00:00")},
    {"entity_id": 6, "increment_id": "000000006", "quote_id": 118, "customer_email": "retry@example.com",
     "state": "canceled", "status": "canceled", "grand_total": Decimal("10"), "order_currency_code": "EUR",
     "created_at": at("2026-03-29 05:50:00")},
    {"entity_id": 7, "increment_id": "000000007", "quote_id": 119, "customer_email": "paying@example.com",
     "state": "pending_payment", "status": "pending_payment", "grand_total": Decimal("10"),
     "order_currency_code": "EUR", "created_at": at("2026-03-29 05:50:00")},
    # a guest's order whose address the checkout stored decomposed (e + combining acute)
    {"entity_id": 8, "increment_id": "000000008", "quote_id": 95, "customer_email": "Jose\u0301@example.com",
     "state": "processing", "status": "processing", "grand_total": Decimal("10"), "order_currency_code": "EUR",
     "created_at": at("2026-03-20 10:00:00")},
]
STOCK = [
    {"product_id": 11, "stock_id": 1, "qty": Decimal("150")}, {"product_id": 12, "stock_id": 1, "qty": Decimal("3")},
    {"product_id": 30, "stock_id": 1, "qty": Decimal("0")}, {"product_id": 31, "stock_id": 1, "qty": Decimal("500")},
]


def fill(db: shopdb.ShopDb, prefix: str = "") -> None:
    db.schema("magento2", prefix=prefix)
    db.insert(f"{prefix}quote", QUOTES)
    db.insert(f"{prefix}quote_item", [row for row in ITEMS if row["parent_item_id"] is None])
    db.insert(f"{prefix}quote_item", [row for row in ITEMS if row["parent_item_id"] is not None])
    db.insert(f"{prefix}quote_address", ADDRESSES)
    db.insert(f"{prefix}sales_order", ORDERS)
    db.insert(f"{prefix}cataloginventory_stock_item", STOCK)


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request):
    with shopdb.shop_database(request.param, "magento") as db:
        fill(db)
        yield db


@pytest.fixture
def read(shop):
    problems = shopdb.Problems()
    source = MagentoSource(shop.url, shop_tz=ZoneInfo("Europe/Stockholm"), on_problem=problems)
    carts = {cart.id: cart for cart in source.carts(WINDOW)}
    yield source, carts, problems
    source.close()


def carts_after(shop: shopdb.ShopDb, change: str, undo: str) -> tuple[dict[str, Any], shopdb.Problems]:
    """The carts and problems of one read of ``shop`` after ``change`` to its rows; ``undo`` after
    the read restores them for the module's other tests."""
    shop.execute(change)
    problems = shopdb.Problems()
    source = MagentoSource(shop.url, shop_tz=ZoneInfo("Europe/Stockholm"), on_problem=problems)
    try:
        return {cart.id: cart for cart in source.carts(WINDOW)}, problems
    finally:
        source.close()
        shop.execute(undo)


def test_abandoned_quotes_in_the_window(read):
    _, carts, _ = read
    assert sorted(carts) == ["101", "102", "103", "106", "107", "112", "113", "116", "118"]


def test_a_quote_restored_after_its_order_was_canceled_is_a_cart_again(read):
    """Any order of a quote hid it: a customer whose payment failed (Magento cancels the order
    and makes the quote active again for another try) and who then left was never reminded.
    An order still pending payment hides its quote: the customer may be paying."""
    source, carts, _ = read
    assert "118" in carts and carts["118"].customer.email == "retry@example.com"
    assert "119" not in carts
    assert source.cart("118") is not None and source.cart("119") is None


def test_a_store_views_locale_is_read_as_template_folders_are_named(shop):
    """``store_locales`` values were only given ``_`` for ``-``: Magento's own ``SV-se`` or ``DE``
    matched no template folder (``sv``, ``de``), and those customers got the default language."""
    source = MagentoSource(shop.url, options={"store_locales": {1: "SV-se"}})
    other = MagentoSource(shop.url, options={"store_locales": {"1": "DE"}})
    try:
        assert {cart.customer.locale for cart in source.carts(WINDOW)} == {"sv_SE"}
        assert {cart.customer.locale for cart in other.carts(WINDOW)} == {"de"}
    finally:
        source.close()
        other.close()


def test_registered_customer_cart(read):
    _, carts, _ = read
    cart = carts["101"]
    assert cart.key == "magento2:101"
    assert cart.customer.email == "alice@example.com"  # the quote's own address wins, normalized
    assert cart.customer.id == "7" and not cart.customer.is_guest
    assert (cart.customer.first_name, cart.customer.last_name) == ("Alice", "Andersson")
    assert cart.customer.phone == "+4670111"
    assert cart.currency == "EUR" and cart.total == Decimal("125")
    assert cart.updated_at == datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
    assert cart.created_at == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    a, b = cart.items
    assert (a.sku, a.quantity, a.unit_price, a.unit_cost, a.stock_on_hand) == ("A", 2, Decimal("50"), Decimal("20"), 150)
    assert (b.sku, b.unit_cost, b.stock_on_hand) == ("B", None, 3)
    assert cart.store_id == "1"


def test_guest_email_and_phone_come_from_the_billing_address(read):
    _, carts, _ = read
    customer = carts["102"].customer
    assert customer.email == "guest@example.com"
    assert customer.phone == "+46701234567"
    assert customer.is_guest and customer.id is None
    assert customer.first_name == "Gustav"


def test_an_unusable_quote_email_falls_back_to_the_billing_address(shop):
    """``quote.customer_email`` of ``n/a`` (a checkout extension's placeholder) dropped the cart as
    a problem though the billing address had the customer's."""
    carts, problems = carts_after(
        shop, "UPDATE quote SET customer_email = 'n/a', updated_at = updated_at WHERE entity_id = 102",
        "UPDATE quote SET customer_email = NULL, updated_at = updated_at WHERE entity_id = 102")
    assert carts["102"].customer.email == "guest@example.com"
    assert "quote entity_id=102" not in problems.reasons()


def test_configurable_product_is_one_line_priced_by_the_parent_stocked_by_the_child(read):
    _, carts, _ = read
    (only,) = carts["103"].items
    assert (only.sku, only.name, only.unit_price, only.quantity) == ("TSHIRT-RED-M", "T-shirt", Decimal("30"), 1)
    assert only.stock_on_hand == 500


def test_a_cost_of_0_is_no_cost_set_not_a_free_product(read):
    """Magento writes 0 where a product has no cost, as WooCommerce and PrestaShop do: read as a
    real cost, every such cart scored a 100 % margin and took the high-margin rule's weight."""
    _, carts, _ = read
    (line,) = carts["106"].items
    assert line.unit_cost is None


def test_cost_is_converted_from_base_to_quote_currency(read):
    _, carts, _ = read
    (only,) = carts["112"].items
    assert carts["112"].currency == "SEK"
    assert only.unit_cost == Decimal("115")


def test_unreadable_rows_are_reported_with_their_key_and_skipped(read):
    _, _, problems = read
    reasons = problems.reasons()
    assert set(reasons) == {"quote entity_id=108", "quote entity_id=109", "quote entity_id=114",
                            "quote entity_id=115"}
    assert reasons["quote entity_id=108"] == "currency: missing"
    assert "XXQ" in reasons["quote entity_id=109"]
    assert "whole number" in reasons["quote entity_id=114"]
    assert "not a valid address" in reasons["quote entity_id=115"]


def test_orders_by_quote_email_and_customer(read):
    source, carts, _ = read
    orders = {order.id: order for order in source.orders_for(list(carts.values()))}
    # bob ordered by email (any case) from another quote; carol's order is not delivered yet;
    # dave's cancelled order does not count; zed is not among the carts.
    assert set(orders) == {"000000002", "000000003"}
    bob, carol = orders["000000002"], orders["000000003"]
    assert bob.email == "bob@example.com" and bob.cart_id == "90" and bob.delivered is True
    assert bob.created_at == datetime(2026, 3, 29, 10, 0, tzinfo=UTC)
    assert carol.delivered is False and carol.status == "processing" and carol.customer_id == "9"
    assert carol.total == Decimal("20") and carol.currency == "EUR"


def test_orders_for_the_converted_quote_are_found_by_quote_id(shop):
    source = MagentoSource(shop.url)
    from cartrescue.model import Cart, Customer

    cart = Cart(id="104", source="magento2", customer=Customer(email=None), currency="EUR", items=(),
                total=Decimal("50"), created_at=NOW, updated_at=NOW)
    try:
        (order,) = list(source.orders_for([cart]))
    finally:
        source.close()
    assert order.cart_id == "104" and order.id == "000000001"


def test_an_order_stored_with_a_decomposed_address_is_found_for_the_composed_one(shop):
    """The orders of a cart's address were looked up by its composed form (NFC) alone: a buyer
    whose order the shop stored decomposed had, for cartrescue, no order, and was reminded."""
    from cartrescue.model import Cart, Customer

    source = MagentoSource(shop.url)
    probe = Cart(id="500", source="magento2", customer=Customer(email="jos\u00e9@example.com"), currency="EUR",
                 items=(), total=Decimal("10"), created_at=NOW, updated_at=NOW)
    try:
        (order,) = list(source.orders_for([probe]))
    finally:
        source.close()
    assert order.id == "000000008" and order.email == "jos\u00e9@example.com" and order.delivered is False


def test_activity_matches_the_carts(read):
    source, carts, _ = read
    activity = {a.cart_key: a for a in source.activity(WINDOW)}
    assert activity["magento2:102"].email == "guest@example.com"
    assert activity["magento2:101"].updated_at == carts["101"].updated_at
    assert "magento2:110" not in activity and "magento2:104" not in activity


def test_table_prefix(request):
    kind = "mariadb"
    with shopdb.shop_database(kind, "magentoprefix") as db:
        fill(db, prefix="mg_")
        source = MagentoSource(db.url, prefix="mg_")
        try:
            assert sorted(cart.id for cart in source.carts(WINDOW)) == \
                ["101", "102", "103", "106", "107", "112", "113", "116", "118"]
        finally:
            source.close()


test_table_prefix = pytest.mark.mariadb(test_table_prefix)


def test_doctor_reports_the_missing_index_until_it_exists(shop):
    source = MagentoSource(shop.url)
    try:
        (problem,) = source.check()
        assert "no index on quote(is_active, updated_at)" in problem
        assert "CREATE INDEX" in problem
        shop.execute("CREATE INDEX cr_test_quote_updated ON quote (updated_at)")
        assert source.check() == []
    finally:
        shop.execute("DROP INDEX cr_test_quote_updated ON quote" if shop.kind == "mariadb"
                     else "DROP INDEX cr_test_quote_updated")
        source.close()


def _quoted_schema(db: shopdb.ShopDb, prefix: str, tmp_path: Path) -> None:
    """The Magento schema with each table's prefixed name quoted, as a PostgreSQL shop whose
    prefix has capitals has them ("Shop_quote"; unquoted, PostgreSQL folds it to shop_quote)."""
    text = (shopdb.FIXTURES / "magento2.postgres.sql").read_text()
    quoted = tmp_path / "quoted.sql"
    quoted.write_text(re.sub(r"\{prefix\}(\w+)", rf'"{prefix}\1"', text))
    db.run_file(quoted)


@pytest.mark.postgres
def test_the_index_advice_for_a_prefix_with_capitals_creates_the_index_on_postgresql(tmp_path):
    """doctor advised ``CREATE INDEX … ON Shop_quote``: PostgreSQL folds the unquoted name to
    shop_quote, which does not exist, so the owner's copy of the advice failed."""
    with shopdb.shop_database("postgres", "magentocaps") as db:
        _quoted_schema(db, "Shop_", tmp_path)
        source = MagentoSource(db.url, prefix="Shop_")
        try:
            (problem,) = source.check()
            assert "no index on Shop_quote(is_active, updated_at)" in problem
            db.execute(problem.split("Create it with: ", 1)[1])
            assert source.check() == []
        finally:
            source.close()


@pytest.mark.postgres
def test_doctor_names_a_table_whose_capitals_postgresql_folded_as_missing():
    """Tables created unquoted with prefix Shop_ are shop_quote…: the run's queries ask for
    "Shop_quote" and stop on a missing table, so doctor says so, not a bare database error."""
    with shopdb.shop_database("postgres", "magentofolded") as db:
        db.schema("magento2", prefix="Shop_")
        source = MagentoSource(db.url, prefix="Shop_")
        try:
            problems = source.check()
        finally:
            source.close()
    assert any("table Shop_quote not found" in problem for problem in problems), problems
    assert not any("database error" in problem for problem in problems), problems


def test_doctor_reports_missing_tables(shop):
    source = MagentoSource(shop.url, prefix="nope_")
    try:
        problems = source.check()
    finally:
        source.close()
    assert any("table nope_quote not found" in problem for problem in problems)


def test_missing_table_is_one_clear_source_error(shop):
    source = MagentoSource(shop.url, prefix="nope_")
    try:
        with pytest.raises(SourceError) as caught:
            list(source.carts(WINDOW))
    finally:
        source.close()
    message = str(caught.value)
    assert message.startswith("magento2 source: table nope_quote not found")
    assert "\n" not in message and caught.value.__cause__ is None


def test_the_doctor_command_warns_about_the_missing_index(shop, tmp_path):
    from conftest import cli

    config = tmp_path / "cartrescue.yaml"
    config.write_text(f"source: {{type: magento2, url: '{shop.url}'}}\n"
                      f"ledger: {{url: 'sqlite:///{tmp_path / 'ledger.db'}'}}\n", encoding="utf-8")
    result = cli("doctor", "--no-smtp", "--json", "--config", str(config))
    found = {check["name"]: check for check in result.json["checks"]}
    assert found["source"]["status"] == "warn"
    assert "no index on quote(is_active, updated_at)" in found["source"]["detail"]
    assert ";;" not in found["source"]["detail"]


def test_orders_placed_in_a_window_stream_with_their_base_amount(shop):
    source = MagentoSource(shop.url)
    try:
        found = {o.id: o for o in source.orders(Window(datetime(2026, 3, 29, tzinfo=UTC),
                                                       datetime(2026, 3, 29, 23, 0, tzinfo=UTC)))}
    finally:
        source.close()
    # 3 was placed on the 20th, 4 and 6 are cancelled (7, pending payment, is placed as 1 is)
    assert set(found) == {"000000001", "000000002", "000000005", "000000007"}
    assert found["000000002"].email == "bob@example.com" and found["000000002"].cart_id == "90"
    assert found["000000002"].total == Decimal("99.5") and found["000000002"].created_at == datetime(2026, 3, 29, 10, 0, tzinfo=UTC)


def test_the_progress_total_is_the_count_of_the_window(read):
    """One COUNT over the carts query's filter: the carts read and the unreadable quotes."""
    source, carts, problems = read
    total = source.progress_total(WINDOW)
    assert total is not None and (total.unit, total.position) == ("carts", None)
    assert total.total == len(carts) + len(problems.reasons()) == 13


@pytest.mark.mariadb
def test_a_shop_without_the_newsletter_module_is_told_how_to_do_without_it():
    with shopdb.shop_database("mariadb", "magento-nonews") as db:
        fill(db)
        db.execute("DROP TABLE newsletter_subscriber")
        source = MagentoSource(db.url)
        try:
            problems = source.check()
            with pytest.raises(SourceError) as caught:
                list(source.carts(WINDOW))
        finally:
            source.close()
    hint = "without Magento's newsletter module, set source.options.consent: none"
    assert any("table newsletter_subscriber not found" in problem and hint in problem for problem in problems)
    assert "table newsletter_subscriber not found" in str(caught.value) and hint in str(caught.value)
    assert "source.prefix" not in str(caught.value)


def _refund_orders(db: shopdb.ShopDb) -> None:
    """Orders of quotes 501-505 placed an hour after their reminders, some refunded in part."""
    def order(entity_id: int, total: str, **values: object) -> dict[str, object]:
        return {"entity_id": entity_id, "increment_id": f"R{entity_id}", "quote_id": 300 + entity_id,
                "customer_email": f"q{entity_id}@example.com", "state": "complete", "status": "complete",
                "grand_total": Decimal(total), "base_grand_total": Decimal(total), "order_currency_code": "EUR",
                "base_currency_code": "EUR", "created_at": at("2026-03-29 10:00:00"), **values}

    db.schema("magento2")
    db.insert("sales_order", [
        order(201, "100", total_refunded=Decimal("30"), base_total_refunded=Decimal("30")),
        # shown in SEK, base EUR: the base refund is what the report deducts
        order(202, "1150", base_grand_total=Decimal("100"), order_currency_code="SEK",
              total_refunded=Decimal("115"), base_total_refunded=Decimal("10")),
        # refunded in full by a credit memo, its state not (yet) closed: no sale
        order(203, "40", total_refunded=Decimal("40"), base_total_refunded=Decimal("40")),
        order(204, "25"),  # nothing refunded: NULL
        order(205, "60", total_refunded=Decimal("-5"), base_total_refunded=Decimal("-5")),
    ])


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_the_report_counts_an_order_net_of_its_credit_memos(kind, tmp_path):
    """sales_order.total_refunded was not read: a partly refunded order counted its grand total."""
    from conftest import cli
    from reportdata import Row, write_ledger

    with shopdb.configured(kind, "magentorefund", _refund_orders, tmp_path, {"type": "magento2"}) as (_, config):
        write_ledger(tmp_path / "ledger.db", [Row(str(300 + n), at("2026-03-29 09:00:00").replace(tzinfo=UTC))
                                              for n in range(201, 206)])
        result = cli("report", "--json", "--since", "2026-03-29", "--until", "2026-03-30", "--config", str(config),
                     "--now", "2026-04-05T12:00:00Z")
    assert result.exit_code in (0, 1), result.output
    summary = result.json["summary"]
    assert (summary["orders"], summary["revenue"]) == (3, "185.00")  # 70 + 90 + 25 EUR
    assert result.json["problems"] == ["sales_order entity_id=205: total_refunded: a refund cannot be negative, "
                                       "got -5.0000"]


def test_a_name_holding_a_nul_costs_its_quote_alone(shop):
    """A NUL in a customer's name would reach a PostgreSQL ledger row or a message: the quote is
    reported and skipped, the others read. A PostgreSQL shop keeps no NUL in text."""
    if shop.kind == "postgres":
        pytest.skip("PostgreSQL keeps no NUL in text: a shop there cannot hand one over")
    carts, problems = carts_after(
        shop, "UPDATE quote SET customer_firstname = CONCAT('Al', CHAR(0 USING utf8mb4), 'ice'), "
              "updated_at = updated_at WHERE entity_id = 101",
        "UPDATE quote SET customer_firstname = 'Alice', updated_at = updated_at WHERE entity_id = 101")
    assert sorted(carts) == ["102", "103", "106", "107", "112", "113", "116", "118"]
    assert problems.reasons()["quote entity_id=101"] == \
        "first_name: holds a NUL character (\\x00), which no ledger can keep"


@pytest.mark.postgres
def test_the_index_doctor_advises_can_be_created_for_a_second_prefix_in_one_postgresql_database(tmp_path):
    """PostgreSQL names indexes per schema, not per table: two shops' tables under two prefixes
    in one database (a replica of two stores) got the same advice, ``CREATE INDEX
    CARTRESCUE_QUOTE_IS_ACTIVE_UPDATED_AT ON …``, and the second failed, ``relation … already
    exists``. There the index's name carries the prefix, and each one's advice runs as written."""
    with shopdb.shop_database("postgres", "magindex") as db:
        for prefix in ("shop1_", "shop2_"):
            schema = tmp_path / f"{prefix}.sql"  # the fixture's own index names made the prefix's too
            schema.write_text(re.sub(r"CREATE INDEX (\w+)", rf"CREATE INDEX {prefix}\1",
                                     (shopdb.FIXTURES / "magento2.postgres.sql").read_text()))
            db.run_file(schema, prefix=prefix)
        for prefix in ("shop1_", "shop2_"):
            source = MagentoSource(db.url, prefix=prefix)
            try:
                (problem,) = [p for p in source.check() if "no index on" in p]
                db.execute(problem.split("Create it with: ", 1)[1])
                assert not [p for p in source.check() if "no index on" in p]
            finally:
                source.close()


def _digits_quotes(db: shopdb.ShopDb) -> None:
    """Quotes stored as Magento stores amounts, with 4 decimals, in currencies of 2, 0 and 3."""
    db.schema("magento2")
    db.insert("quote", [
        quote(601, "2026-03-29 09:00:00", customer_email="eur@example.com", grand_total=Decimal("60.0000"),
              base_grand_total=Decimal("60.0000")),
        quote(602, "2026-03-29 09:00:00", customer_email="jpy@example.com", quote_currency_code="JPY",
              base_currency_code="JPY", grand_total=Decimal("1500.0000"), base_grand_total=Decimal("1500.0000")),
        quote(603, "2026-03-29 09:00:00", customer_email="kwd@example.com", quote_currency_code="KWD",
              base_currency_code="KWD", grand_total=Decimal("12.3450"), base_grand_total=Decimal("12.3450")),
        # a stored half cent: shown half up, as Magento's price formatting rounds it
        quote(604, "2026-03-29 09:00:00", customer_email="half@example.com", grand_total=Decimal("19.9850"),
              base_grand_total=Decimal("19.9850")),
    ])
    db.insert("quote_item", [line(6011, 601, "A", "2", "30.0000"), line(6021, 602, "B", "1", "1500.0000"),
                             line(6031, 603, "C", "1", "12.3450"), line(6041, 604, "D", "1", "19.9850")])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def digits(request, tmp_path_factory):
    with shopdb.configured(request.param, "magentodigits", _digits_quotes, tmp_path_factory.mktemp("digits"),
                           {"type": "magento2"}) as found:
        yield found


def test_a_carts_total_is_given_in_its_currencys_digits(digits):
    """``carts --json`` gave a quote's total as Magento stores it, ``"60.0000"``, where the other
    presets give ``"60.00"``: scripts and the report comparing them saw two figures."""
    result, decisions = shopdb.plan(digits[1], NOW.isoformat().replace("+00:00", "Z"))
    assert result.exit_code in (0, 1), result.output
    totals = {cart_id: decisions[cart_id]["total"] for cart_id in ("601", "602", "603", "604")}
    assert totals == {"601": "60.00", "602": "1500", "603": "12.345", "604": "19.99"}


def test_line_prices_and_base_totals_are_in_their_currencys_digits(digits):
    source = MagentoSource(digits[0].url)
    try:
        carts = {cart.id: cart for cart in source.carts(WINDOW)}
    finally:
        source.close()
    assert [str(carts[n].items[0].unit_price) for n in ("601", "602", "603", "604")] == \
        ["30.00", "1500", "12.345", "19.99"]
    assert [str(carts[n].base_total) for n in ("601", "602", "603", "604")] == ["60.00", "1500", "12.345", "19.99"]
