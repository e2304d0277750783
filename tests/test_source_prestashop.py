"""PrestaShop preset against a fixture schema on the real MariaDB and PostgreSQL servers."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

import shopdb
from cartrescue.errors import SourceError
from cartrescue.model import Cart, Customer
from cartrescue.sources.base import Window
from cartrescue.sources.prestashop import PrestaShopSource

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")  # DST starts 2026-03-29 02:00 local
NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=7), NOW - timedelta(minutes=45))


def local(text: str) -> datetime:
    """A naive Paris time as PrestaShop stores it."""
    return datetime.fromisoformat(text)


def cart(id_cart: int, customer: int, updated: str, *, shop: int = 1, lang: int = 1, currency: int = 1) -> dict:
    return {"id_cart": id_cart, "id_shop": shop, "id_shop_group": 1, "id_lang": lang, "id_currency": currency,
            "id_customer": customer, "delivery_option": "", "date_add": local(updated) - timedelta(minutes=30),
            "date_upd": local(updated)}


def product_line(id_cart: int, product: int, quantity: int, combination: int = 0, shop: int = 1) -> dict:
    return {"id_cart": id_cart, "id_product": product, "id_product_attribute": combination, "quantity": quantity,
            "id_shop": shop, "date_add": local("2026-03-20 10:00:00")}


def customer(id_customer: int, email: str, first: str, **values: object) -> dict:
    row = {"id_customer": id_customer, "email": email, "firstname": first, "lastname": "Test",
           "date_add": local("2025-01-01 10:00:00"), "date_upd": local("2025-01-01 10:00:00")}
    row.update(values)
    return row


CARTS = [
    cart(201, 1, "2026-03-29 10:00:00"),            # after the DST change (CEST): 08:00Z
    cart(202, 2, "2026-03-29 01:30:00", lang=2),    # before it (CET): 00:30Z
    cart(203, 3, "2026-03-28 10:00:00"),            # converted: an order has its id_cart
    cart(204, 4, "2026-03-28 10:00:00"),            # customer deleted (GDPR): no contact
    cart(205, 5, "2026-03-28 09:00:00"),            # dave ordered since, from a guest account
    cart(206, 1, "2026-03-28 09:00:00", currency=2),  # unknown currency
    cart(207, 1, "2026-03-28 09:00:00", currency=9),  # currency id not in ps_currency
    cart(208, 0, "2026-03-28 09:00:00"),            # anonymous visitor: nobody to remind
    cart(209, 1, "2026-03-28 09:00:00"),            # no products
    cart(210, 1, "2026-03-10 09:00:00"),            # too old
    cart(211, 1, "2026-03-22 12:30:00"),            # 11:30Z: half an hour before the window
    cart(212, 1, "2026-03-22 13:30:00"),            # 12:30Z: inside
    cart(213, 1, "2026-03-28 09:00:00", shop=3),    # a shop that is not configured
    cart(214, 7, "2026-03-28 09:00:00", shop=4),    # a deleted shop's
    cart(215, 7, "2026-03-28 09:00:00", shop=5),    # a disabled shop's
]
LINES = [
    product_line(201, 1, 3), product_line(201, 3, 1, combination=31),
    product_line(202, 2, 1), product_line(203, 1, 1), product_line(204, 1, 1), product_line(205, 1, 2),
    product_line(206, 1, 1), product_line(207, 1, 1), product_line(208, 1, 1), product_line(210, 1, 1),
    product_line(211, 1, 1), product_line(212, 1, 1), product_line(213, 1, 1, shop=3),
    product_line(214, 1, 1, shop=4), product_line(215, 1, 1, shop=5),
]
CUSTOMERS = [
    customer(1, "Alice@Example.com", "Alice", newsletter=1),
    customer(2, "bob@example.com", "Bob", is_guest=1),
    customer(3, "carol@example.com", "Carol", optin=1),
    customer(4, "anonymous@psgdpr.com", "Anonymous", deleted=1),
    customer(5, "dave@example.com", "Dave"),
    customer(6, "DAVE@Example.com", "Dave", is_guest=1),  # his guest checkout, in capitals
    customer(7, "erin@example.com", "Erin"),
    customer(8, "finn@example.com", "Finn"),
    customer(9, "Jose\u0301@example.com", "José", is_guest=1),  # stored decomposed (e + combining acute)
]
ORDERS = [
    {"id_order": 1, "reference": "AAAAAAAAA", "id_customer": 3, "id_cart": 203, "id_currency": 1,
     "current_state": 2, "total_paid": Decimal("10"), "date_add": local("2026-03-28 10:10:00"),
     "date_upd": local("2026-03-28 10:10:00")},
    {"id_order": 2, "reference": "BBBBBBBBB", "id_customer": 6, "id_cart": 150, "id_currency": 1,
     "current_state": 5, "total_paid": Decimal("20"), "date_add": local("2026-03-28 11:00:00"),
     "date_upd": local("2026-03-28 11:00:00")},
    {"id_order": 3, "reference": "CCCCCCCCC", "id_customer": 3, "id_cart": 151, "id_currency": 1,
     "current_state": 6, "total_paid": Decimal("20"), "date_add": local("2026-03-28 11:00:00"),
     "date_upd": local("2026-03-28 11:00:00")},
    {"id_order": 4, "reference": "DDDDDDDDD", "id_customer": 1, "id_cart": 152, "id_currency": 1,
     "current_state": 3, "total_paid": Decimal("30"), "date_add": local("2026-03-01 11:00:00"),
     "date_upd": local("2026-03-01 11:00:00")},
    {"id_order": 6, "reference": "FFFFFFFFF", "id_customer": 9, "id_cart": 154, "id_currency": 1,
     "current_state": 3, "total_paid": Decimal("15"), "date_add": local("2026-03-01 12:00:00"),
     "date_upd": local("2026-03-01 12:00:00")},
    # placed in shop 3, which this config does not read
    {"id_order": 5, "reference": "EEEEEEEEE", "id_customer": 8, "id_cart": 153, "id_currency": 1, "id_shop": 3,
     "current_state": 2, "total_paid": Decimal("40"), "date_add": local("2026-03-28 10:15:00"),
     "date_upd": local("2026-03-28 10:15:00")},
]
PRODUCTS = [
    {"id_product": 1, "reference": "MUG", "price": Decimal("10"), "wholesale_price": Decimal("4")},
    {"id_product": 2, "reference": None, "price": Decimal("20"), "wholesale_price": Decimal("0")},
    {"id_product": 3, "reference": "TSHIRT", "price": Decimal("15"), "wholesale_price": Decimal("5")},
]
NAMES = [
    {"id_product": 1, "id_shop": 1, "id_lang": 1, "name": "Mug", "link_rewrite": "mug"},
    {"id_product": 1, "id_shop": 1, "id_lang": 2, "name": "Tasse", "link_rewrite": "tasse"},
    {"id_product": 2, "id_shop": 1, "id_lang": 2, "name": "Affiche", "link_rewrite": "affiche"},
    {"id_product": 3, "id_shop": 1, "id_lang": 1, "name": "T-shirt", "link_rewrite": "t-shirt"},
]


def fill(db: shopdb.ShopDb) -> None:
    db.schema("prestashop", prefix="ps_")
    db.insert("ps_shop", [{"id_shop": 1, "id_shop_group": 1, "name": "Main"},
                          {"id_shop": 2, "id_shop_group": 1, "name": "Outlet"},
                          # Read only where configured (shop_ids: [3]): a paused shop, as 5 is.
                          {"id_shop": 3, "id_shop_group": 1, "name": "Pop-up", "active": 0},
                          {"id_shop": 4, "id_shop_group": 1, "name": "Closed", "deleted": 1},
                          {"id_shop": 5, "id_shop_group": 1, "name": "Paused", "active": 0}])
    db.insert("ps_lang", [{"id_lang": 1, "name": "English", "iso_code": "en", "language_code": "en-us"},
                          {"id_lang": 2, "name": "Français", "iso_code": "fr", "language_code": "fr-fr"}])
    db.insert("ps_currency", [{"id_currency": 1, "iso_code": "EUR"}, {"id_currency": 2, "iso_code": "XXQ"}])
    stamp = local("2025-01-01 00:00:00")
    db.insert("ps_configuration", [
        {"name": name, "value": value, "date_add": stamp, "date_upd": stamp}
        for name, value in (("PS_OS_DELIVERED", "5"), ("PS_OS_CANCELED", "6"), ("PS_OS_REFUND", "7"),
                            ("PS_OS_ERROR", "8"), ("PS_TIMEZONE", "Europe/Paris"))])
    db.insert("ps_customer", CUSTOMERS)
    db.insert("ps_product", [dict(row, active=1, date_add=stamp, date_upd=stamp) for row in PRODUCTS])
    db.insert("ps_product_shop", [{"id_product": row["id_product"], "id_shop": 1, "price": row["price"], "active": 1,
                                   "wholesale_price": row["wholesale_price"], "date_add": stamp, "date_upd": stamp}
                                  for row in PRODUCTS])
    db.insert("ps_product_lang", NAMES)
    db.insert("ps_product_attribute", [{"id_product_attribute": 31, "id_product": 3, "reference": "TSHIRT-L",
                                        "price": Decimal("2.5"), "wholesale_price": Decimal("6")}])
    db.insert("ps_stock_available", [
        {"id_product": 1, "id_product_attribute": 0, "id_shop": 1, "id_shop_group": 0, "quantity": 120},
        {"id_product": 3, "id_product_attribute": 31, "id_shop": 0, "id_shop_group": 1, "quantity": 7},
        {"id_product": 2, "id_product_attribute": 0, "id_shop": 1, "id_shop_group": 0, "quantity": 0},
    ])
    db.insert("ps_cart", CARTS)
    db.insert("ps_cart_product", LINES)
    db.insert("ps_orders", ORDERS)


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request):
    with shopdb.shop_database(request.param, "prestashop") as db:
        fill(db)
        yield db


@pytest.fixture
def read(shop):
    problems = shopdb.Problems()
    source = PrestaShopSource(shop.url, shop_tz=PARIS, on_problem=problems,
                              options={"recovery_url": "https://shop.example/index.php?controller=order&step=1"
                                                       "&recover_cart={cart_id}&token_cart={token}",
                                       "cookie_key": "s3cr3t"})
    carts = {c.id: c for c in source.carts(WINDOW)}
    yield source, carts, problems
    source.close()


def test_abandoned_carts_of_the_shops_in_the_window(read):
    _, carts, _ = read
    assert sorted(carts) == ["201", "202", "204", "205", "212"]


def test_cart_lines_prices_costs_stock_and_total(read):
    _, carts, _ = read
    alice = carts["201"]
    assert alice.key == "prestashop:201" and alice.currency == "EUR" and alice.store_id == "1"
    mug, shirt = alice.items
    assert (mug.sku, mug.name, mug.quantity, mug.unit_price, mug.unit_cost, mug.stock_on_hand) == \
        ("MUG", "Mug", 3, Decimal("10"), Decimal("4"), 120)
    # the combination: its reference, the product's price plus its impact, its own cost, shared stock
    assert (shirt.sku, shirt.name, shirt.unit_price, shirt.unit_cost, shirt.stock_on_hand) == \
        ("TSHIRT-L", "T-shirt", Decimal("17.5"), Decimal("6"), 7)
    assert alice.total == Decimal("47.5")
    token = hashlib.md5(b"s3cr3trecover_cart_201").hexdigest()
    assert alice.recovery_url == ("https://shop.example/index.php?controller=order&step=1"
                                  f"&recover_cart=201&token_cart={token}")


def test_customer_fields(read):
    _, carts, _ = read
    alice, bob = carts["201"].customer, carts["202"].customer
    assert (alice.email, alice.id, alice.first_name, alice.locale, alice.is_guest, alice.marketing_consent) == \
        ("alice@example.com", "1", "Alice", "en_US", False, True)
    assert (bob.email, bob.is_guest, bob.locale, bob.marketing_consent) == ("bob@example.com", True, "fr_FR", None)
    (poster,) = carts["202"].items
    assert (poster.sku, poster.name, poster.unit_cost, poster.stock_on_hand) == ("2", "Affiche", None, 0)


def test_deleted_customer_has_no_contact(read):
    _, carts, _ = read
    assert carts["204"].customer.email is None and carts["204"].customer.first_name is None


def test_local_times_across_the_dst_change(read):
    _, carts, _ = read
    assert carts["201"].updated_at == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)   # CEST, +02:00
    assert carts["202"].updated_at == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # CET, +01:00
    assert carts["212"].updated_at == datetime(2026, 3, 22, 12, 30, tzinfo=UTC)


def test_unreadable_carts_are_reported_and_skipped(read):
    _, _, problems = read
    reasons = problems.reasons()
    assert set(reasons) == {"ps_cart id_cart=206", "ps_cart id_cart=207"}
    assert "XXQ" in reasons["ps_cart id_cart=206"]
    assert "id_currency 9 not found" in reasons["ps_cart id_cart=207"]


def test_orders_by_cart_customer_and_email(read):
    source, carts, _ = read
    orders = {o.id: o for o in source.orders_for(list(carts.values()))}
    # 2: dave ordered from his guest account (his address in capitals: matched on PostgreSQL too);
    # 4: alice's earlier order (by customer id);
    # 3 is cancelled; 1 belongs to carol, whose cart is converted and not among these carts.
    assert set(orders) == {"2", "4"}
    assert orders["2"].email == "dave@example.com" and orders["2"].delivered is True
    assert orders["2"].created_at == datetime(2026, 3, 28, 10, 0, tzinfo=UTC)
    assert orders["4"].delivered is False and orders["4"].customer_id == "1" and orders["4"].status == "state 3"


def test_an_order_of_a_customer_stored_with_a_decomposed_address_is_found_for_the_composed_one(shop):
    """A guest checkout's address stored decomposed: its order was not found for the cart of
    the same address (composed), and the buyer was reminded."""
    source = PrestaShopSource(shop.url, shop_tz=PARIS)
    probe = Cart(id="500", source="prestashop", customer=Customer(email="jos\u00e9@example.com"), currency="EUR",
                 items=(), total=Decimal(0), created_at=NOW, updated_at=NOW)
    try:
        (order,) = source.orders_for([probe])
    finally:
        source.close()
    assert order.id == "6" and order.email == "jos\u00e9@example.com" and order.delivered is False


def test_converted_cart_order_is_found_by_cart_id(shop):
    source = PrestaShopSource(shop.url, shop_tz=PARIS)
    probe = Cart(id="203", source="prestashop", customer=Customer(email=None), currency="EUR", items=(),
                 total=Decimal(0), created_at=NOW, updated_at=NOW)
    try:
        (order,) = source.orders_for([probe])
    finally:
        source.close()
    assert order.cart_id == "203" and order.delivered is False


def test_configured_shops_only(shop):
    source = PrestaShopSource(shop.url, shop_tz=PARIS, options={"shop_ids": [3]})
    try:
        assert [c.id for c in source.carts(WINDOW)] == ["213"]
    finally:
        source.close()


def test_a_deleted_or_disabled_shops_carts_are_read_only_when_configured(shop):
    """Without ``shop_ids`` every row of ``ps_shop`` was read, a deleted or disabled shop's too:
    its customers were reminded of carts in a storefront they cannot go back to."""
    by_default = PrestaShopSource(shop.url, shop_tz=PARIS)
    configured = PrestaShopSource(shop.url, shop_tz=PARIS, options={"shop_ids": [4, 5]})
    try:
        assert not {"214", "215"} & {c.id for c in by_default.carts(WINDOW)}
        assert sorted(c.id for c in configured.carts(WINDOW)) == ["214", "215"]
    finally:
        by_default.close()
        configured.close()


def test_the_reports_orders_are_the_configured_shops_own(shop):
    """The report read every shop's orders: a customer of two shops, each with its own config,
    had an order of one shop credited to the other's reminders as well."""
    window = Window(datetime(2026, 3, 28, 9, 0, tzinfo=UTC), datetime(2026, 3, 28, 9, 30, tzinfo=UTC))
    by_default = PrestaShopSource(shop.url, shop_tz=PARIS)
    shop_3 = PrestaShopSource(shop.url, shop_tz=PARIS, options={"shop_ids": [3]})
    try:
        assert {o.id for o in by_default.orders(window)} == {"1"}
        assert {o.id for o in shop_3.orders(window)} == {"5"}
    finally:
        by_default.close()
        shop_3.close()


def test_a_runs_checks_still_see_the_customers_orders_in_every_shop(shop):
    """Only the report keeps to the configured shops: an order not yet delivered in another shop
    of the same owner is still this customer's (ids and addresses are one table's), and holds
    back the reminder as it would in one shop."""
    source = PrestaShopSource(shop.url, shop_tz=PARIS, options={"shop_ids": [1]})
    probe = Cart(id="999", source="prestashop", customer=Customer(email="finn@example.com", id="8"), currency="EUR",
                 items=(), total=Decimal(0), created_at=NOW, updated_at=NOW)
    try:
        (order,) = source.orders_for([probe])
    finally:
        source.close()
    assert (order.id, order.delivered) == ("5", False)


def test_doctor_is_happy_with_prestashops_own_index(shop):
    source = PrestaShopSource(shop.url)
    try:
        assert source.check() == []
    finally:
        source.close()


def test_wrong_prefix_is_one_clear_error(shop):
    source = PrestaShopSource(shop.url, prefix="shop_")
    try:
        with pytest.raises(SourceError, match=r"^prestashop source: table shop_\w+ not found"):
            list(source.carts(WINDOW))
        assert any("table shop_cart not found" in p for p in source.check())
    finally:
        source.close()


def test_times_are_read_in_ps_timezone_even_if_the_shop_config_says_otherwise(shop):
    source = PrestaShopSource(shop.url, shop_tz=ZoneInfo("UTC"))
    try:
        carts = {c.id: c for c in source.carts(WINDOW)}
    finally:
        source.close()
    assert carts["201"].updated_at == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    assert carts["202"].updated_at == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def test_orders_placed_in_a_window_in_shop_local_time(shop):
    source = PrestaShopSource(shop.url, shop_tz=ZoneInfo("UTC"))
    try:
        orders = {o.id: o for o in source.orders(Window(datetime(2026, 3, 28, 9, 0, tzinfo=UTC),
                                                         datetime(2026, 3, 28, 9, 30, tzinfo=UTC)))}
    finally:
        source.close()
    # 10:10 in Paris (PS_TIMEZONE) is 09:10 UTC; order 2 (11:00 Paris) is outside, 3 is cancelled
    assert set(orders) == {"1"}
    assert orders["1"].cart_id == "203" and orders["1"].email == "carol@example.com"
    assert orders["1"].created_at == datetime(2026, 3, 28, 9, 10, tzinfo=UTC) and orders["1"].currency == "EUR"


def test_the_progress_total_is_the_count_of_the_window(read):
    """One COUNT over the carts query's filter and time range (widened by a few hours for the
    store's local times, so a row or so more than the window holds): never fewer than read."""
    source, carts, problems = read
    total = source.progress_total(WINDOW)
    assert total is not None and (total.unit, total.position) == ("carts", None)
    assert len(carts) + len(problems.reasons()) <= total.total <= len(carts) + len(problems.reasons()) + 1


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_line_whose_product_was_deleted_or_disabled_is_left_out_and_the_cart_kept(kind):
    # PrestaShop's own cart page drops such a line; the reminder shows what can still be bought.
    # 999: deleted, its name left behind in product_lang; 4: disabled in this shop.
    with shopdb.shop_database(kind, "prestashop-deleted") as db:
        fill(db)
        db.insert("ps_product_lang", [{"id_product": 999, "id_shop": 1, "id_lang": 1, "name": "Gone", "link_rewrite": "g"},
                                      {"id_product": 4, "id_shop": 1, "id_lang": 1, "name": "Off", "link_rewrite": "o"}])
        db.insert("ps_product", [{"id_product": 4, "reference": "OFF", "price": Decimal("5"), "active": 1,
                                  "wholesale_price": Decimal("1"), "date_add": local("2025-01-01 10:00:00"),
                                  "date_upd": local("2025-01-01 10:00:00")}])
        db.insert("ps_product_shop", [{"id_product": 4, "id_shop": 1, "price": Decimal("5"), "active": 0,
                                       "wholesale_price": Decimal("1"), "date_add": local("2025-01-01 10:00:00"),
                                       "date_upd": local("2025-01-01 10:00:00")}])
        db.insert("ps_cart", [cart(302, 1, "2026-03-29 09:00:00")])
        db.insert("ps_cart_product", [product_line(302, 1, 2), product_line(302, 999, 1), product_line(302, 4, 1)])
        problems = shopdb.Problems()
        source = PrestaShopSource(db.url, shop_tz=PARIS, on_problem=problems)
        try:
            carts = {c.id: c for c in source.carts(WINDOW)}
        finally:
            source.close()
    (mug,) = carts["302"].items
    assert (mug.sku, mug.quantity) == ("MUG", 2) and carts["302"].total == Decimal("20")
    assert "ps_cart id_cart=302" not in problems.reasons()


def test_a_name_holding_a_nul_costs_its_cart_alone(shop):
    """A NUL in a customer's name would reach a PostgreSQL ledger row or a message: the cart is
    reported and skipped, the others read. A PostgreSQL shop keeps no NUL in text."""
    if shop.kind == "postgres":
        pytest.skip("PostgreSQL keeps no NUL in text: a shop there cannot hand one over")
    shop.execute("UPDATE ps_customer SET firstname = CONCAT('B', CHAR(0 USING utf8mb4), 'ob') WHERE id_customer = 2")
    problems = shopdb.Problems()
    source = PrestaShopSource(shop.url, shop_tz=PARIS, on_problem=problems,
                              options={"recovery_url": "https://shop.example/index.php?controller=order&step=1"
                                                       "&recover_cart={cart_id}&token_cart={token}"})
    try:
        carts = {c.id: c for c in source.carts(WINDOW)}
    finally:
        source.close()
        shop.execute("UPDATE ps_customer SET firstname = 'Bob' WHERE id_customer = 2")
    assert sorted(carts) == ["201", "204", "205", "212"]
    assert problems.reasons()["ps_cart id_cart=202"] == \
        "first_name: holds a NUL character (\\x00), which no ledger can keep"


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_shipped_order_awaits_no_delivery(kind):
    """PrestaShop's "Shipped" (``PS_OS_SHIPPING``) is what Magento's ``complete`` and WooCommerce's
    ``completed`` are, the last state most shops set ("Delivered" is a manual step many skip):
    read as not delivered, each such order held back every later cart of its customer for
    ``pending_within``. A shop's own id for it is read from ``ps_configuration``."""
    with shopdb.shop_database(kind, "psshipped") as db:
        fill(db)
        db.insert("ps_configuration", [{"name": "PS_OS_SHIPPING", "value": "14", "date_add": local("2025-01-01 00:00:00"),
                                        "date_upd": local("2025-01-01 00:00:00")}])
        db.execute("UPDATE ps_orders SET current_state = 14 WHERE id_order = 4")   # alice's: shipped
        db.execute("UPDATE ps_orders SET current_state = 4, id_customer = 1 WHERE id_order = 6")  # 4: another state here
        source = PrestaShopSource(db.url, options={"shop_ids": [1]})
        try:
            orders = {o.id: o for o in source.orders_for(list(source.carts(WINDOW)))}
        finally:
            source.close()
    assert orders["4"].delivered is True and not orders["4"].awaits_delivery
    assert orders["6"].delivered is False


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_customer_who_unsubscribed_from_the_newsletter_has_no_consent(kind):
    """PrestaShop's newsletter module unsubscribes a customer with ``newsletter = 0`` and leaves
    ``newsletter_date_add``, the day they subscribed: a no to the shop's marketing mail, as
    Magento's unsubscribed subscriber is. Read as unknown, soft opt-in sent a returning customer
    who had unsubscribed cart reminders all the same. Never subscribed (no date, or MariaDB's
    zero date) stays unknown."""
    with shopdb.shop_database(kind, "psunsubscribed") as db:
        fill(db)
        db.execute("UPDATE ps_customer SET newsletter = 0, newsletter_date_add = :at WHERE id_customer = 1",
                   {"at": local("2025-06-01 10:00:00")})          # alice: subscribed, then unsubscribed
        if kind == "mariadb":
            db.execute_unchecked("UPDATE ps_customer SET newsletter_date_add = '0000-00-00 00:00:00' "
                                 "WHERE id_customer = 2")          # bob: never subscribed, a zero date
        source = PrestaShopSource(db.url, options={"shop_ids": [1]})
        try:
            consent = {cart.id: cart.customer.marketing_consent for cart in source.carts(WINDOW)}
        finally:
            source.close()
    assert consent["201"] is False
    assert consent["202"] is None and consent["205"] is None
