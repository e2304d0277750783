"""PrestaShop end to end through the CLI, on the real MariaDB and PostgreSQL servers: a cart in
another currency than the shop's default (shown converted, judged in the default), a
combination's own cost, newsletter consent (the partners' offers box is none), an unreadable
time, and retyped time columns (issue 10)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

import shopdb
from conftest import cli
from cartrescue.model import UNREADABLE, Cart, Customer
from cartrescue.compose.render import format_money
from cartrescue.sources.base import Window
from cartrescue.sources.prestashop import PrestaShopSource, _shown
from test_source_prestashop import cart, customer, local, product_line

UTC = timezone.utc
NOW = "2026-03-02T12:00:00Z"
AT = "2026-03-02 10:00:00"  # Paris: 09:00Z
BAD_TIME = {"mariadb": "0000-00-00 00:00:00", "postgres": "infinity"}
STAMP = local("2025-01-01 00:00:00")

CARTS = [
    cart(801, 1, AT),               # EUR, 600: high value
    cart(802, 2, AT, currency=2),   # browsing in SEK: 45 EUR shown as 517.50 kr, judged as 45 EUR
    cart(803, 3, AT),               # a combination with its own cost
    cart(804, 4, AT),               # no newsletter, no opt-in: consent unknown
    cart(805, 5, AT),               # date_add unreadable (below)
    cart(806, 6, AT),               # "Receive offers from our partners" ticked, the newsletter not
    cart(807, 7, AT),               # EUR, 2 × 19.985 (6 decimals kept): shown 2 × 19.99, half up
]
LINES = [product_line(801, 2, 1), product_line(802, 1, 1), product_line(803, 3, 1, combination=31),
         product_line(804, 1, 1), product_line(805, 1, 1), product_line(806, 1, 1), product_line(807, 4, 2)]
CUSTOMERS = [customer(1, "eur@example.com", "Eva", newsletter=1), customer(2, "sek@example.com", "Sven", newsletter=1),
             customer(3, "combo@example.com", "Carl", newsletter=1), customer(4, "nobody@example.com", "Nina"),
             customer(5, "badtime@example.com", "Bo", newsletter=1),
             customer(6, "partners@example.com", "Pia", optin=1),
             customer(7, "cents@example.com", "Cleo", newsletter=1)]
PRODUCTS = [{"id_product": 1, "reference": "MUG", "price": Decimal("45"), "wholesale_price": Decimal("0")},
            {"id_product": 2, "reference": "LAMP", "price": Decimal("600"), "wholesale_price": Decimal("0")},
            {"id_product": 3, "reference": "SHIRT", "price": Decimal("100"), "wholesale_price": Decimal("0")},
            {"id_product": 4, "reference": "PEN", "price": Decimal("19.985"), "wholesale_price": Decimal("0")}]


def fill(db: shopdb.ShopDb) -> None:
    db.schema("prestashop", prefix="ps_")
    db.insert("ps_shop", [{"id_shop": 1, "id_shop_group": 1, "name": "Main"}])
    db.insert("ps_lang", [{"id_lang": 1, "name": "English", "iso_code": "en", "language_code": "en-us"}])
    db.insert("ps_currency", [{"id_currency": 1, "iso_code": "EUR", "conversion_rate": Decimal("1")},
                              {"id_currency": 2, "iso_code": "SEK", "conversion_rate": Decimal("11.5")}])
    db.insert("ps_configuration", [
        {"name": name, "value": value, "date_add": STAMP, "date_upd": STAMP}
        for name, value in (("PS_CURRENCY_DEFAULT", "1"), ("PS_TIMEZONE", "Europe/Paris"))])
    db.insert("ps_customer", CUSTOMERS)
    db.insert("ps_product", [dict(row, active=1, date_add=STAMP, date_upd=STAMP) for row in PRODUCTS])
    db.insert("ps_product_shop", [{"id_product": row["id_product"], "price": row["price"], "id_shop": 1, "active": 1,
                                   "wholesale_price": row["wholesale_price"], "date_add": STAMP, "date_upd": STAMP}
                                  for row in PRODUCTS])
    db.insert("ps_product_lang", [{"id_product": n, "id_shop": 1, "id_lang": 1, "name": name, "link_rewrite": name}
                                  for n, name in ((1, "Mug"), (2, "Lamp"), (3, "Shirt"), (4, "Pen"))])
    db.insert("ps_product_attribute", [{"id_product_attribute": 31, "id_product": 3, "reference": "SHIRT-L",
                                        "price": Decimal("0"), "wholesale_price": Decimal("30")}])
    db.insert("ps_cart", CARTS)
    db.insert("ps_cart_product", LINES)
    db.execute_unchecked(f"UPDATE ps_cart SET date_add = '{BAD_TIME[db.kind]}' WHERE id_cart = 805")


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request, tmp_path_factory):
    with shopdb.configured(request.param, "psdetails", fill, tmp_path_factory.mktemp("prestashop"),
                           {"type": "prestashop"}) as found:
        yield found


@pytest.fixture(scope="module")
def planned(shop):
    return shopdb.plan(shop[1], NOW)


def test_a_cart_in_another_currency_is_shown_converted_and_judged_in_the_default(planned):
    _, decisions = planned
    sek = decisions["802"]
    assert (sek["currency"], Decimal(sek["total"]), sek["score"]) == ("SEK", Decimal("517.50"), 0)
    eur = decisions["801"]
    assert (eur["currency"], Decimal(eur["total"]), eur["score"]) == ("EUR", Decimal("600"), 1)


def test_a_converted_price_is_rounded_half_up_as_prestashop_shows_it():
    assert _shown(Decimal("99.99"), Decimal("11.5"), "SEK") == Decimal("1149.89")  # 1149.885
    assert _shown(Decimal("0.5"), Decimal("1"), "JPY") == Decimal("1")


def test_the_message_reads_what_the_customer_saw_correctly_labelled(shop):
    _, config = shop
    sek = cli("preview", "802", "--json", "--config", str(config), "--now", NOW)
    eur = cli("preview", "801", "--json", "--config", str(config), "--now", NOW)
    assert (sek.exit_code, eur.exit_code) == (0, 0), sek.output + eur.output
    assert format_money(Decimal("517.50"), "SEK", "en") in sek.json["text"]
    assert format_money(Decimal("45"), "SEK", "en") not in sek.json["text"]  # the catalogue's EUR figure, mislabelled
    assert format_money(Decimal("600"), "EUR", "en") in eur.json["text"]


def test_a_default_currency_total_has_the_currencys_digits_and_sums_the_prices_as_shown(planned):
    """PrestaShop keeps prices with 6 decimals: a EUR cart's total read ``600.000000`` where a SEK
    cart's read ``517.50``, and 2 × 19.985 summed as stored (39.97) where the shop shows 2 × 19.99."""
    _, decisions = planned
    assert (decisions["801"]["total"], decisions["807"]["total"]) == ("600.00", "39.98")


def test_a_default_currency_carts_base_total_is_its_total_as_shown(shop):
    """The base total is the ledger's ``cart_value`` and what thresholds compare: it read
    ``39.970000`` for a cart shown as 39.98."""
    db, _ = shop
    source = PrestaShopSource(db.url, shop_tz=ZoneInfo("Europe/Paris"), base_currency="EUR")
    try:
        found = source.cart("807")
    finally:
        source.close()
    assert found is not None
    assert (str(found.total), str(found.base_total)) == ("39.98", "39.98")


def test_a_default_currency_price_reads_half_up_in_the_message(shop):
    """19.985 was left for Babel to round half-even (€19.98) where the shop shows €19.99."""
    _, config = shop
    result = cli("preview", "807", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert format_money(Decimal("19.99"), "EUR", "en") in result.json["text"]
    assert format_money(Decimal("19.98"), "EUR", "en") not in result.json["text"]


def test_a_combinations_own_cost_counts(planned):
    _, decisions = planned
    assert decisions["803"]["score"] == 10  # wholesale 30 on the combination, 0 on the product: margin 0.7


def test_the_newsletter_box_is_consent(planned):
    _, decisions = planned
    assert [decisions[cart]["action"] for cart in ("801", "802", "803")] == ["send"] * 3
    assert (decisions["804"]["reason"], decisions["804"]["detail"]) == ("no_consent", "consent=None, policy soft-opt-in")


def test_the_partners_offers_box_alone_is_no_consent_to_the_shops_reminders(planned):
    """``ps_customer.optin`` is PrestaShop's "Receive offers from our partners": it was read as a
    yes to the shop's own marketing, and the customer got reminders they never asked for."""
    _, decisions = planned
    assert (decisions["806"]["reason"], decisions["806"]["detail"]) == ("no_consent", "consent=None, policy soft-opt-in")


def test_an_unreadable_time_costs_its_row_with_its_key(shop, planned):
    db, _ = shop
    result, decisions = planned
    assert result.exit_code == 1
    assert result.json["problems"] == [f"ps_cart id_cart=805: date_add: not a time: {BAD_TIME[db.kind]!r}"]
    assert "805" not in decisions and len(decisions) == 6


def test_an_orders_base_total_uses_its_own_conversion_rate(shop):
    db, _ = shop
    db.insert("ps_orders", [{"id_order": 9, "id_customer": 2, "id_cart": 700, "id_currency": 2, "current_state": 2,
                             "total_paid": Decimal("517.50"), "conversion_rate": Decimal("11.5"),
                             "date_add": local("2026-02-20 10:00:00"), "date_upd": local("2026-02-20 10:00:00")}])
    source = PrestaShopSource(db.url, shop_tz=ZoneInfo("Europe/Paris"), base_currency="EUR")
    probe = Cart(id="1", source="prestashop", customer=Customer(email=None, id="2"), currency="EUR", items=(),
                 total=Decimal(0), created_at=datetime.now(UTC), updated_at=datetime.now(UTC))
    try:
        (order,) = source.orders_for([probe])
    finally:
        source.close()
        db.execute("DELETE FROM ps_orders")
    assert (order.currency, order.total, order.base_total) == ("SEK", Decimal("517.50"), Decimal("45"))


def test_a_default_currency_set_for_the_shop_only_is_the_default(shop):
    """A multistore may keep PS_CURRENCY_DEFAULT per shop: without a global row, a SEK cart
    showed the EUR catalogue price labelled SEK."""
    db, _ = shop
    db.execute("UPDATE ps_configuration SET id_shop = 1 WHERE name = 'PS_CURRENCY_DEFAULT'")
    source = PrestaShopSource(db.url, shop_tz=ZoneInfo("Europe/Paris"))
    try:
        default = source.default_currency()
    finally:
        source.close()
        db.execute("UPDATE ps_configuration SET id_shop = NULL WHERE name = 'PS_CURRENCY_DEFAULT'")
    assert (default.iso, default.rate) == ("EUR", Decimal("1"))


def test_an_order_whose_date_cannot_be_read_holds_its_customers_carts_back(shop):
    """Found but not read, it is kept as unreadable (the cart waits: unreadable_order), as in every
    other source; dropped, it let a customer who had bought be reminded."""
    db, _ = shop
    db.insert("ps_orders", [{"id_order": 10, "id_customer": 3, "id_cart": 803, "id_currency": 1, "current_state": 2,
                             "total_paid": Decimal("100"), "conversion_rate": Decimal("1"),
                             "date_add": local("2026-03-02 11:00:00"), "date_upd": local("2026-03-02 11:00:00")}])
    db.execute_unchecked(f"UPDATE ps_orders SET date_add = '{BAD_TIME[db.kind]}' WHERE id_order = 10")
    problems: list[str] = []
    source = PrestaShopSource(db.url, shop_tz=ZoneInfo("Europe/Paris"),
                              on_problem=lambda problem: problems.append(f"{problem.location}: {problem.reason}"))
    probe = Cart(id="803", source="prestashop", customer=Customer(email="combo@example.com", id="3"), currency="EUR",
                 items=(), total=Decimal(0), created_at=datetime.now(UTC), updated_at=datetime.now(UTC))
    try:
        (order,) = source.orders_for([probe])
    finally:
        source.close()
        db.execute("DELETE FROM ps_orders")
    assert (order.id, order.status, order.cart_id, order.customer_id) == ("10", UNREADABLE, "803", "3")
    assert order.unreadable == "ps_orders id_order=10"
    assert problems == [f"ps_orders id_order=10: date_add: not a time: {BAD_TIME[db.kind]!r}"]


# -- retyped time columns ----------------------------------------------------------------------


def _minimal(db: shopdb.ShopDb, *, shops: tuple[dict, ...] = ({"id_shop": 1, "id_shop_group": 1, "name": "Main"},),
             retyped: tuple[tuple[str, str, str], ...] = ()) -> None:
    """One customer and product; ``retyped`` (table, column, type) are retyped before any row."""
    db.schema("prestashop", prefix="ps_")
    for table, column, sql_type in retyped:
        db.retype(table, column, sql_type)
    db.insert("ps_shop", list(shops))
    db.insert("ps_currency", [{"id_currency": 1, "iso_code": "EUR"}])
    db.insert("ps_customer", CUSTOMERS[:1])
    db.insert("ps_product", [dict(PRODUCTS[0], active=1, date_add=STAMP, date_upd=STAMP)])


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_bigint_epoch_date_upd_is_read_as_seconds_since_1970(kind, tmp_path):
    with shopdb.shop_database(kind, "psepoch") as db:
        _minimal(db)
        db.retype("ps_cart", "date_upd", "BIGINT")
        db.insert("ps_cart", [dict(cart(901, 1, AT), date_upd=shopdb.epoch("2026-03-02 09:00:00")),
                              dict(cart(902, 1, AT), date_upd=shopdb.epoch("2026-02-01 09:00:00"))])
        db.insert("ps_cart_product", [product_line(901, 1, 1), product_line(902, 1, 1)])
        config = shopdb.write_config(tmp_path, {"type": "prestashop", "url": db.url})
        result = cli("carts", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    (only,) = result.json["decisions"]
    assert (only["cart_id"], only["last_activity"]) == ("901", "2026-03-02T09:00:00Z")


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_boolean_shop_flags_are_compared_as_booleans(kind, tmp_path):
    """A copy of the shop on PostgreSQL with ``ps_shop.active``/``deleted`` typed BOOLEAN (as
    pgloader turns MySQL's ``tinyint(1)``): ``active = 1`` stopped every run without
    ``shop_ids`` with the database's own error. Only the open shop's cart is read."""
    shops = ({"id_shop": 1, "id_shop_group": 1, "name": "Main", "active": True, "deleted": False},
             {"id_shop": 2, "id_shop_group": 1, "name": "Paused", "active": False, "deleted": False},
             {"id_shop": 3, "id_shop_group": 1, "name": "Closed", "active": True, "deleted": True})
    with shopdb.shop_database(kind, "psboolshop") as db:
        _minimal(db, shops=shops, retyped=(("ps_shop", "active", "BOOLEAN"), ("ps_shop", "deleted", "BOOLEAN")))
        db.insert("ps_cart", [cart(911, 1, AT), cart(912, 1, AT, shop=2), cart(913, 1, AT, shop=3)])
        db.insert("ps_cart_product", [product_line(911, 1, 1), product_line(912, 1, 1, shop=2),
                                      product_line(913, 1, 1, shop=3)])
        config = shopdb.write_config(tmp_path, {"type": "prestashop", "url": db.url})
        result = cli("carts", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert [d["cart_id"] for d in result.json["decisions"]] == ["911"]


def _multistore_timezones(db: shopdb.ShopDb, *own: dict) -> None:
    """Shop 1 in group 1, shop 2 in group 2; a global PS_TIMEZONE (Paris), then group 2's own
    (New York), then ``own`` rows; cart 921 of shop 1 last touched at 10:00 local time."""
    _minimal(db, shops=({"id_shop": 1, "id_shop_group": 1, "name": "Paris"},
                        {"id_shop": 2, "id_shop_group": 2, "name": "New York"}))
    rows = [{"name": "PS_TIMEZONE", "value": "Europe/Paris"},
            {"name": "PS_TIMEZONE", "value": "America/New_York", "id_shop_group": 2}, *own]
    db.insert("ps_configuration", [{"id_shop": None, "id_shop_group": None, **row, "date_add": STAMP,
                                    "date_upd": STAMP} for row in rows])
    db.insert("ps_cart", [cart(921, 1, AT)])
    db.insert("ps_cart_product", [product_line(921, 1, 1)])


def _updated(db: shopdb.ShopDb) -> datetime:
    source = PrestaShopSource(db.url, options={"shop_ids": [1]})
    try:
        found = source.cart("921")
    finally:
        source.close()
    assert found is not None
    return found.updated_at


@pytest.mark.mariadb
def test_another_shop_groups_timezone_does_not_apply_to_the_shop():
    """PrestaShop's Configuration::get: the shop's own row, else its group's, else the global one.
    Every row with ``id_shop`` NULL was read, so group 2's New York (read last) won for shop 1."""
    with shopdb.shop_database("mariadb", "psgroupzone") as db:
        _multistore_timezones(db)
        assert _updated(db) == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Paris


@pytest.mark.mariadb
def test_the_shops_own_timezone_wins_over_its_group_and_the_global_one():
    with shopdb.shop_database("mariadb", "psshopzone") as db:
        _multistore_timezones(db, {"name": "PS_TIMEZONE", "value": "Asia/Tokyo", "id_shop": 1, "id_shop_group": 1},
                              {"name": "PS_TIMEZONE", "value": "Europe/Lisbon", "id_shop_group": 1})
        assert _updated(db) == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.slow
def test_a_time_column_of_another_type_stops_the_run_with_exit_3(kind, tmp_path):
    with shopdb.shop_database(kind, "psvarchar") as db:
        _minimal(db)
        db.retype("ps_cart", "date_upd", "VARCHAR(32)")
        config = shopdb.write_config(tmp_path, {"type": "prestashop", "url": db.url})
        result = cli("run", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 3
    assert result.json["error"]["message"].startswith(
        "prestashop source: column ps_cart.date_upd is VARCHAR(32), but cartrescue reads it as a time")


# -- refunds (report) ---------------------------------------------------------------------------


def _refund_orders(db: shopdb.ShopDb) -> None:
    """Orders of carts 601-605 placed an hour after their reminders, some with credit slips."""
    _minimal(db)
    placed = local("2026-03-29 10:00:00")
    db.insert("ps_orders", [{"id_order": n, "id_customer": 1, "id_cart": 500 + n, "id_currency": 1,
                             "current_state": 2, "total_paid": Decimal(total), "date_add": placed, "date_upd": placed}
                            for n, total in ((101, "100"), (102, "40"), (103, "25"), (104, "60"), (105, "50"))])

    def slip(order: int, products: str | None, shipping: str | None, **values: object) -> dict[str, object]:
        return {"id_order": order, "id_customer": 1, "partial": 1, "date_add": placed, "date_upd": placed,
                "total_products_tax_incl": None if products is None else Decimal(products),
                "total_shipping_tax_incl": None if shipping is None else Decimal(shipping), **values}

    db.insert("ps_order_slip", [
        slip(101, "25", "5"),                       # a product and the shipping given back: 70 kept
        slip(102, "30", "0"), slip(102, "10", "0"),  # two slips give back all of it: no sale
        # 103: nothing refunded
        slip(104, None, None, amount=Decimal("12"), shipping_cost_amount=Decimal("3")),  # an old slip: 45 kept
        slip(105, "-5", "0"),                       # a sign slipped: reported, not guessed
    ])


def _report(config) -> object:
    from reportdata import Row, write_ledger

    write_ledger(config.parent / "ledger.db", [Row(str(500 + n), datetime(2026, 3, 29, 9, 0, tzinfo=UTC))
                                               for n in range(101, 106)])
    return cli("report", "--json", "--since", "2026-03-29", "--until", "2026-03-30", "--config", str(config),
               "--now", "2026-04-05T12:00:00Z")


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_the_report_counts_an_order_net_of_its_credit_slips(kind, tmp_path):
    """order_slip was not read: a partly refunded order counted its whole total_paid, and one
    refunded in full by credit slips (its state not PS_OS_REFUND) counted as a sale."""
    with shopdb.configured(kind, "psrefund", _refund_orders, tmp_path, {"type": "prestashop"}) as (_, config):
        result = _report(config)
    assert result.exit_code in (0, 1), result.output
    summary = result.json["summary"]
    assert (summary["orders"], summary["revenue"]) == (3, "140.00")  # 70 + 25 + 45 EUR
    assert result.json["problems"] == ["ps_orders id_order=105: order_slip total_products_tax_incl: a refund "
                                       "cannot be negative, got -5.000000"]


def _order_in_the_second_shop(db: shopdb.ShopDb) -> None:
    """Shops 1 and 2 share customer 1 (eur@example.com), who ordered in shop 2 only: order 107
    of shop 2's cart 701, placed an hour after the reminders below."""
    _minimal(db, shops=({"id_shop": 1, "id_shop_group": 1, "name": "Main"},
                        {"id_shop": 2, "id_shop_group": 1, "name": "Outlet"}))
    placed = local("2026-03-29 10:00:00")
    db.insert("ps_orders", [{"id_order": 107, "id_customer": 1, "id_cart": 701, "id_currency": 1, "id_shop": 2,
                             "current_state": 2, "total_paid": Decimal("90"), "date_add": placed,
                             "date_upd": placed}])


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_an_order_in_another_shop_is_not_credited_to_this_shops_reminder(kind, tmp_path):
    """Each shop with its own config and ledger: shop 1's report read every shop's orders and
    credited shop 2's order to shop 1's reminder of the same customer (won back twice, once
    in each report). Now it is shop 2's alone."""
    from reportdata import Row, write_ledger

    def summary(folder, cart_id: str) -> tuple[int, str]:
        write_ledger(folder / "ledger.db", [Row(cart_id, datetime(2026, 3, 29, 9, 0, tzinfo=UTC),
                                                email="eur@example.com", customer_id="1")])
        result = cli("report", "--json", "--since", "2026-03-29", "--until", "2026-03-30",
                     "--config", str(folder / "cartrescue.yaml"), "--now", "2026-04-05T12:00:00Z")
        assert result.exit_code == 0, result.output
        return result.json["summary"]["orders"], result.json["summary"]["revenue"]

    main, outlet = tmp_path / "main", tmp_path / "outlet"
    outlet.mkdir()
    main.mkdir()
    with shopdb.configured(kind, "pstwoshops", _order_in_the_second_shop, main,
                           {"type": "prestashop", "options": {"shop_ids": [1]}}) as (db, _):
        shopdb.write_config(outlet, {"type": "prestashop", "url": db.url, "options": {"shop_ids": [2]}})
        assert summary(main, "601") == (0, "0.00")
        assert summary(outlet, "701") == (1, "90.00")


def _foreign_order(db: shopdb.ShopDb, rate: str = "11") -> None:
    """Order 106 of cart 606, paid 220 SEK when a euro was ``rate`` kronor (the order's
    conversion_rate; the currency's rate today is 10), and 55 SEK of it refunded by a credit slip."""
    _minimal(db)
    db.insert("ps_currency", [{"id_currency": 2, "iso_code": "SEK", "conversion_rate": Decimal("10")}])
    db.execute("UPDATE ps_currency SET conversion_rate = 1 WHERE id_currency = 1")
    db.insert("ps_configuration", [{"name": "PS_CURRENCY_DEFAULT", "value": "1", "date_add": STAMP,
                                    "date_upd": STAMP}])
    placed = local("2026-03-29 10:00:00")
    db.insert("ps_orders", [{"id_order": 106, "id_customer": 1, "id_cart": 606, "id_currency": 2,
                             "conversion_rate": Decimal(rate), "current_state": 2, "total_paid": Decimal("220"),
                             "date_add": placed, "date_upd": placed}])
    db.insert("ps_order_slip", [{"id_order": 106, "id_customer": 1, "partial": 1, "date_add": placed,
                                 "date_upd": placed, "total_products_tax_incl": Decimal("55"),
                                 "total_shipping_tax_incl": Decimal("0")}])


def _foreign_revenue(kind: str, tmp_path, rate: str) -> tuple[int, str]:
    """The report's (orders, revenue) for :func:`_foreign_order` at ``rate``, with
    ``shop.exchange_rates`` SEK 0.1 (ten kronor to the euro) configured."""
    from reportdata import Row, write_ledger

    with shopdb.configured(kind, "psorderrate", lambda db: _foreign_order(db, rate), tmp_path, {"type": "prestashop"},
                           shop={"currency": "EUR", "exchange_rates": {"SEK": "0.1"}}) as (_, config):
        write_ledger(config.parent / "ledger.db", [Row("606", datetime(2026, 3, 29, 9, 0, tzinfo=UTC))])
        result = cli("report", "--json", "--since", "2026-03-29", "--until", "2026-03-30", "--config", str(config),
                     "--now", "2026-04-05T12:00:00Z")
    assert result.exit_code == 0, result.output
    return result.json["summary"]["orders"], result.json["summary"]["revenue"]


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_the_report_converts_an_order_with_its_own_conversion_rate(kind, tmp_path):
    """The report converted with shop.exchange_rates (0.1 here: 16.50 EUR), where the shop's back
    office and every run use the order's own rate: (220 - 55) SEK at 11 to the euro is 15.00 EUR."""
    assert _foreign_revenue(kind, tmp_path, "11") == (1, "15.00")


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_the_report_converts_an_order_without_a_usable_rate_with_shop_exchange_rates(kind, tmp_path):
    """An order whose conversion_rate is 0 says nothing about its rate: the report falls back to
    shop.exchange_rates, (220 - 55) SEK × 0.1 = 16.50 EUR, rather than dividing by it or taking
    the kronor for euros."""
    assert _foreign_revenue(kind, tmp_path, "0") == (1, "16.50")


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_shop_without_order_slip_is_reported_gross_with_a_note(kind, tmp_path):
    """A copy of the shop without the credit slips table still reports, its orders at their whole
    total_paid, and the report's notes say refunds were not deducted."""
    def fill(db: shopdb.ShopDb) -> None:
        _refund_orders(db)
        db.execute("DROP TABLE ps_order_slip")

    with shopdb.configured(kind, "psnoslip", fill, tmp_path, {"type": "prestashop"}) as (_, config):
        result = _report(config)
    assert result.exit_code == 0, result.output
    assert (result.json["summary"]["orders"], result.json["summary"]["revenue"]) == (5, "275.00")
    assert any("ps_order_slip not found" in note and "refunds not deducted" in note for note in result.json["notes"])


# -- a cart whose only order failed or was cancelled ------------------------------------------------

#: Customer, cart and order state (as this shop's ps_configuration numbers them: PS_OS_ERROR is 18
#: here, PS_OS_CANCELED the default 6) by what became of the cart's only order.
UNBOUGHT = {"failed": (11, 911, 18), "cancelled": (12, 912, 6)}


def _fill_unbought(db: shopdb.ShopDb) -> None:
    _minimal(db)
    db.insert("ps_configuration", [{"name": "PS_OS_ERROR", "value": "18", "date_add": STAMP, "date_upd": STAMP}])
    db.insert("ps_customer", [customer(number, f"{role}@example.com", "Kim", newsletter=1)
                              for role, (number, _, _) in UNBOUGHT.items()])
    db.insert("ps_cart", [cart(cart_id, number, AT) for number, cart_id, _ in UNBOUGHT.values()])
    db.insert("ps_cart_product", [product_line(cart_id, 1, 1) for _, cart_id, _ in UNBOUGHT.values()])
    placed = local("2026-03-02 10:05:00")
    db.insert("ps_orders", [{"id_order": cart_id - 800, "id_customer": number, "id_cart": cart_id, "id_currency": 1,
                             "current_state": state, "total_paid": Decimal("45"), "conversion_rate": Decimal("1"),
                             "date_add": placed, "date_upd": placed} for number, cart_id, state in UNBOUGHT.values()])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def unbought(request, tmp_path_factory):
    """The shop's database and its run's decisions by cart id."""
    with shopdb.configured(request.param, "psunbought", _fill_unbought, tmp_path_factory.mktemp("prestashop"),
                           {"type": "prestashop"}) as (db, config):
        result, decided = shopdb.plan(config, NOW)
        assert result.exit_code == 0, result.output
        yield db, decided


def test_a_cart_whose_only_order_failed_is_reminded(unbought):
    """Any ps_orders row hid its cart: a payment refused (PS_OS_ERROR) left a cart nobody bought
    that was never reminded, where Magento and WooCommerce remind it."""
    _, decided = unbought
    assert decided["911"]["reason"] == "due"


def test_a_cart_whose_only_order_was_cancelled_is_reminded(unbought):
    _, decided = unbought
    assert decided["912"]["reason"] == "due"


def test_the_progress_total_counts_the_carts_whose_order_failed_or_was_cancelled(unbought):
    db, _ = unbought
    source = PrestaShopSource(db.url, shop_tz=UTC)
    try:
        total = source.count_carts(Window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)))
    finally:
        source.close()
    assert total == 2


def test_a_shop_id_the_database_does_not_have_stops_the_run_naming_the_key(shop, tmp_path):
    """``shop_ids: [9]`` (a typo, or another install's id) read no cart, every run and every
    day, and ``doctor`` said ``ok: 0 carts``: a shop whose reminders had silently stopped.
    It stops the run and fails doctor's source check (exit 3), naming the file, the key, the id
    and the shops there are."""
    db, _ = shop
    config = shopdb.write_config(tmp_path, {"type": "prestashop", "url": db.url, "options": {"shop_ids": [1, 9]}})
    for line in shopdb.refused_by_the_source(config, NOW):
        assert f"{config}: source.options.shop_ids: no shop 9 in ps_shop (its shops: 1)" in line, line
