"""Magento 2 end to end through the CLI, on the real MariaDB and PostgreSQL servers: thresholds
in the base currency, a configurable's cost on its child, newsletter consent, an empty quote, an
unreadable time, and retyped time columns (issue 10)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import shopdb
from conftest import cli
from cartrescue.compose.render import format_money
from cartrescue.sources.base import Window
from cartrescue.sources.magento import MagentoSource
from test_source_magento import line, quote

UTC = timezone.utc
NOW = "2026-03-02T12:00:00Z"
D = Decimal

QUOTES = [
    # 301 EUR, 600: high value; registered customer subscribed by customer id
    quote(301, "2026-03-02 09:00:00", customer_id=11, customer_email="eur@example.com", grand_total=D("600"),
          base_grand_total=D("600")),
    # 302 shown in SEK: 517.50 kr, 45 EUR in the base currency, so not high value; a guest subscribed by email
    quote(302, "2026-03-02 09:00:00", customer_email=None, customer_is_guest=1, quote_currency_code="SEK",
          base_to_quote_rate=D("11.5"), grand_total=D("517.50"), base_grand_total=D("45.00")),
    # 303 a configurable product: no cost on its own row, 30 on the chosen child
    quote(303, "2026-03-02 09:00:00", customer_email="child@example.com", grand_total=D("100"),
          base_grand_total=D("100")),
    quote(304, "2026-03-02 09:00:00", customer_email="unsub@example.com"),     # unsubscribed: no consent
    quote(305, "2026-03-02 09:00:00", customer_email="unknown@example.com"),   # no subscription row: unknown
    quote(306, "2026-03-02 09:00:00", customer_email="badtime@example.com"),   # created_at unreadable (below)
    quote(307, "2026-03-02 09:00:00", customer_email="empty@example.com"),     # items_count 1, no line left
    # 308 flagged for recollection (a product deleted since): its stored totals still count the gone line
    quote(308, "2026-03-02 09:00:00", customer_email="recollect@example.com", items_count=2,
          grand_total=D("600"), base_grand_total=D("600"), trigger_recollect=1),
    # 321 a product deleted without that flag (its line removed): items_count still counts 2 lines
    quote(321, "2026-03-02 09:00:00", customer_email="deleted@example.com", items_count=2,
          grand_total=D("600"), base_grand_total=D("600")),
    # 322 a product deleted with items_count taken down (subtractProductFromQuotes): its one line
    # left is 10, its subtotal still 590 and its grand_total 600; 323 a quote whose subtotal is
    # its lines' (10) and whose grand_total adds shipping (15): valued by its grand_total
    quote(322, "2026-03-02 09:00:00", customer_email="subtracted@example.com", subtotal=D("590"),
          grand_total=D("600"), base_grand_total=D("600")),
    quote(323, "2026-03-02 09:00:00", customer_email="shipping@example.com", subtotal=D("10"),
          grand_total=D("15"), base_grand_total=D("15")),
    # 324 an address's older quote; 325 its newer one, once free (a grand total of 0) but with a
    # subtotal of 50 counting a deleted product's line: its line left (10) is to pay
    quote(324, "2026-03-02 08:00:00", customer_email="stale@example.com"),
    quote(325, "2026-03-02 09:30:00", customer_email="stale@example.com", subtotal=D("50"), grand_total=D("0"),
          base_grand_total=D("0")),
    # 309 an older quote of an address; 310 its newer one, whose customer_email is "n/a" and whose
    # address is on its billing address
    quote(309, "2026-03-02 08:00:00", customer_email="twice@example.com"),
    quote(310, "2026-03-02 09:30:00", customer_email="n/a", customer_is_guest=1),
    quote(311, "2026-03-02 09:00:00", customer_email="padded@example.com"),  # its buyer's address is padded
    quote(320, "2026-03-02 09:00:00", customer_email="leading@example.com"),  # ... with a blank before it
    # 312 an address's older quote; 313 its newer one, a free sample: nothing to pay
    quote(312, "2026-03-02 08:00:00", customer_email="sample@example.com"),
    quote(313, "2026-03-02 09:30:00", customer_email="sample@example.com", grand_total=D("0"),
          base_grand_total=D("0")),
    quote(314, "2026-03-02 08:00:00", customer_email="empty@example.com"),  # older than 307, a line in it
    # 330 its address unsubscribed, the subscriber row stored decomposed (o + combining diaeresis)
    quote(330, "2026-03-02 09:00:00", customer_email="zo\u00eb@example.com"),
    # 350 a shop that shows prices with VAT (19 %): the line's price is 39.3277 without it, 46.80
    # with it (what the cart page showed), as is the grand total; 351's line has no price_incl_tax
    quote(350, "2026-03-02 09:00:00", customer_email="vat@example.com", grand_total=D("46.80")),
    quote(351, "2026-03-02 09:00:00", customer_email="notax@example.com", grand_total=D("10")),
]
ITEMS = [
    line(3011, 301, "A", "1", "600", product_id=1),
    line(3021, 302, "B", "1", "517.5", product_id=2),
    line(3031, 303, "SHIRT-M", "1", "100", product_id=30, product_type="configurable", name="Shirt"),
    line(3032, 303, "SHIRT-M", "1", "0", product_id=31, parent_item_id=3031, base_cost=D("30"), name="Shirt M"),
    line(3041, 304, "C", "1", "10"), line(3051, 305, "C", "1", "10"), line(3061, 306, "C", "1", "10"),
    line(3081, 308, "C", "2", "5"), line(3091, 309, "C", "1", "10"), line(3101, 310, "C", "1", "10"),
    line(3111, 311, "C", "1", "10"), line(3121, 312, "C", "1", "10"), line(3131, 313, "FREE", "1", "0"),
    line(3141, 314, "C", "1", "10"), line(3201, 320, "C", "1", "10"), line(3211, 321, "C", "2", "5"),
    line(3301, 330, "C", "1", "10"),
    line(3501, 350, "VAT", "1", "39.3277", price_incl_tax=D("46.8000")), line(3511, 351, "C", "1", "10"),
    line(3221, 322, "C", "2", "5", row_total=D("10")), line(3231, 323, "C", "1", "10", row_total=D("10")),
    line(3241, 324, "C", "1", "10", row_total=D("10")), line(3251, 325, "C", "1", "10", row_total=D("10")),
]
SUBSCRIBERS = [
    {"customer_id": 11, "subscriber_email": "eur@example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "SEK@Example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "child@example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "unsub@example.com", "store_id": 1, "subscriber_status": 3},
    {"customer_id": 0, "subscriber_email": "twice@example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "padded@example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "leading@example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "sample@example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "empty@example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "stale@example.com", "store_id": 1, "subscriber_status": 1},
    {"customer_id": 0, "subscriber_email": "Zoe\u0308@example.com", "store_id": 1, "subscriber_status": 3},
    {"customer_id": 0, "subscriber_email": "vat@example.com", "store_id": 1, "subscriber_status": 1},
]
BAD_TIME = {"mariadb": "0000-00-00 00:00:00", "postgres": "infinity"}


def fill(db: shopdb.ShopDb) -> None:
    db.schema("magento2")
    db.insert("quote", QUOTES)
    db.insert("quote_item", [row for row in ITEMS if row["parent_item_id"] is None])
    db.insert("quote_item", [row for row in ITEMS if row["parent_item_id"] is not None])
    db.insert("quote_address", [{"address_id": 1, "quote_id": 302, "address_type": "billing",
                                 "email": "sek@example.com"},
                                {"address_id": 2, "quote_id": 310, "address_type": "billing",
                                 "email": "twice@example.com"}])
    db.insert("newsletter_subscriber", SUBSCRIBERS)
    db.insert("sales_order", [{"entity_id": 1, "increment_id": "000000001", "quote_id": 900,
                               "customer_email": "Padded@Example.com ", "state": "processing", "status": "processing",
                               "grand_total": D("10"), "order_currency_code": "EUR",
                               "created_at": datetime(2026, 3, 2, 10, 30)},
                              {"entity_id": 2, "increment_id": "000000002", "quote_id": 901,
                               "customer_email": " Leading@Example.com", "state": "processing", "status": "processing",
                               "grand_total": D("10"), "order_currency_code": "EUR",
                               "created_at": datetime(2026, 3, 2, 10, 30)}])
    db.execute_unchecked(f"UPDATE quote SET created_at = '{BAD_TIME[db.kind]}', updated_at = updated_at "
                         "WHERE entity_id = 306")  # MariaDB would otherwise stamp updated_at with now


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request, tmp_path_factory):
    with shopdb.configured(request.param, "magentodetails", fill, tmp_path_factory.mktemp("magento"),
                           {"type": "magento2"}) as found:
        yield found


@pytest.fixture(scope="module")
def planned(shop):
    return shopdb.plan(shop[1], NOW)


def test_high_value_is_judged_on_the_base_grand_total(planned):
    _, decisions = planned
    assert decisions["301"]["score"] == 1  # 600 EUR
    sek = decisions["302"]
    assert (sek["currency"], Decimal(sek["total"]), sek["score"]) == ("SEK", Decimal("517.50"), 0)  # 45 EUR


def test_the_message_shows_the_amount_in_the_quotes_currency(shop):
    _, config = shop
    result = cli("preview", "302", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert format_money(Decimal("517.50"), "SEK", "en") in result.json["text"]


def test_a_configurables_cost_comes_from_its_child(planned):
    _, decisions = planned
    assert decisions["303"]["score"] == 10  # margin (100 - 30) / 100 >= 0.4


def test_newsletter_subscription_is_consent_and_unsubscribing_is_not(planned):
    _, decisions = planned
    assert [decisions[cart]["action"] for cart in ("301", "302", "303")] == ["send", "send", "send"]
    assert (decisions["304"]["reason"], decisions["304"]["detail"]) == ("no_consent", "consent=False, policy soft-opt-in")
    assert (decisions["305"]["reason"], decisions["305"]["detail"]) == ("no_consent", "consent=None, policy soft-opt-in")


def test_an_unsubscription_stored_with_a_decomposed_address_is_seen(planned):
    """The subscriber rows were looked up by the quote's address in normal form C alone: an
    unsubscription the newsletter form stored decomposed read as no row (consent unknown)."""
    _, decisions = planned
    assert (decisions["330"]["reason"], decisions["330"]["detail"]) == ("no_consent", "consent=False, policy soft-opt-in")


def test_an_unreadable_time_costs_its_row_with_its_key(shop, planned):
    db, _ = shop
    result, decisions = planned
    assert result.exit_code == 1
    assert result.json["problems"] == [f"quote entity_id=306: created_at: not a time: {BAD_TIME[db.kind]!r}"]
    assert "306" not in decisions and len(decisions) == len(QUOTES) - 1


def test_a_quote_flagged_for_recollection_is_valued_by_the_lines_it_has(shop, planned):
    """Magento recalculates such a quote when the customer comes back; until then its grand_total
    still counts a deleted (or repriced) product: the message and the high-value rule use the lines."""
    _, decisions = planned
    assert (Decimal(decisions["308"]["total"]), decisions["308"]["score"]) == (Decimal("10"), 0)  # not 600: not high value
    _, config = shop
    result = cli("preview", "308", "--step", "1", "--json", "--config", str(config), "--now", NOW)  # its message, whatever a run does
    assert result.exit_code == 0, result.output
    assert format_money(Decimal("10"), "EUR", "en") in result.json["text"]
    assert format_money(Decimal("600"), "EUR", "en") not in result.json["text"]


def test_a_quote_with_fewer_lines_than_its_items_count_is_valued_by_the_lines_it_has(planned):
    """A deleted product's quote lines go (Magento's QuoteItemsCleaner, the catalogue's foreign
    key) without the quote being flagged for recollection: its grand_total of 600 still counted
    the gone line, and the cart of 10 was reminded as a high-value one at 600."""
    _, decisions = planned
    assert (Decimal(decisions["321"]["total"]), decisions["321"]["score"]) == (Decimal("10"), 0)


def test_a_quote_whose_subtotal_is_more_than_its_lines_is_valued_by_the_lines_it_has(shop, planned):
    """A deleted product's line gone and ``items_count`` taken down with it (Magento's
    ``subtractProductFromQuotes``), the quote not flagged for recollection: its subtotal (590)
    and grand_total (600) still counted the gone line, and the cart of 10 was reminded as a
    high-value one at 600. A subtotal equal to its lines' keeps its grand_total (shipping)."""
    _, decisions = planned
    assert (Decimal(decisions["322"]["total"]), decisions["322"]["score"]) == (Decimal("10"), 0)
    assert Decimal(decisions["323"]["total"]) == Decimal("15")
    _, config = shop
    result = cli("preview", "322", "--step", "1", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert format_money(Decimal("10"), "EUR", "en") in result.json["text"]
    assert format_money(Decimal("600"), "EUR", "en") not in result.json["text"]


def test_a_newer_quote_whose_subtotal_counts_a_gone_line_is_the_addresss_cart(planned):
    """Quote 325's grand_total of 0 predates a deleted product's line (its subtotal, 50, still
    counts it); its line left is 10 to pay. It is the address's newest cart, reminded; the older
    quote 324 waits behind it as any address's older quote does."""
    _, decisions = planned
    assert (Decimal(decisions["325"]["total"]), decisions["325"]["reason"]) == (Decimal("10"), "due")
    assert decisions["324"]["reason"] == "newer_cart_for_address"


def test_the_newest_quote_of_an_address_is_found_by_the_address_its_cart_gets(planned):
    """A ``customer_email`` of ``n/a``: the cart takes its billing address, and the pass that
    finds each address's newest cart filed it under ``n/a``, so the older quote was reminded
    as the newest one and the newer skipped as "newer cart magento2:309"."""
    _, decisions = planned
    assert (decisions["310"]["reason"], decisions["309"]["reason"]) == ("due", "newer_cart_for_address")


def test_a_guest_known_by_the_number_of_their_address_gets_the_stream_of_their_newest_quote(shop, tmp_path):
    """A guest's quote with a telephone and no address anywhere (the call list reaches them): the
    first pass read addresses only (its join took no ``quote_address`` without an e-mail), so
    the guest's older quote was called as well as the newer one."""
    db, _ = shop
    guests = [(340, "2026-03-02 08:00:00", "+46 8 123 456 78"), (341, "2026-03-02 09:30:00", "+46812345678"),
              (342, "2026-03-02 08:00:00", "+46 8 123 456 79")]
    db.insert("quote", [quote(number, at, customer_email=None, customer_is_guest=1) for number, at, _ in guests])
    db.insert("quote_item", [line(number * 10 + 1, number, "C", "1", "10") for number, _, _ in guests])
    db.insert("quote_address", [{"address_id": number, "quote_id": number, "address_type": "billing", "email": None,
                                 "telephone": phone} for number, _, phone in guests])
    config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url}, eligibility={"consent": "none"},
                                 priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "call-list"}]})
    try:
        _, decisions = shopdb.plan(config, NOW)
    finally:
        for table, column in (("quote_address", "quote_id"), ("quote_item", "quote_id"), ("quote", "entity_id")):
            db.execute(f"DELETE FROM {table} WHERE {column} IN (340, 341, 342)")
    assert {number: (decisions[number]["action"], decisions[number]["reason"]) for number in ("340", "341", "342")} \
        == {"340": ("skip", "newer_cart_for_address"), "341": ("send", "due"), "342": ("send", "due")}


def test_an_order_whose_address_has_blanks_around_it_is_the_carts_order(planned):
    """PostgreSQL compared LOWER(customer_email) with the carts' trimmed addresses: an order
    typed with a trailing blank was not found, and its buyer was reminded of the cart."""
    _, decisions = planned
    assert (decisions["311"]["action"], decisions["311"]["reason"]) == ("skip", "ordered")


def test_an_order_whose_address_has_a_blank_before_it_is_the_carts_order(planned):
    """MySQL's and MariaDB's collations ignore a trailing blank but not a leading one: an order
    typed as ' leading@example.com' was not found there (it was on PostgreSQL), and its buyer
    was reminded of the cart."""
    _, decisions = planned
    assert (decisions["320"]["action"], decisions["320"]["reason"]) == ("skip", "ordered")


def test_a_newer_quote_with_nothing_to_pay_leaves_the_older_quote_its_reminders(planned):
    """A free sample's quote (a grand total of 0) is skipped as ``zero_value``: taken as the
    address's newest quote, it silenced the older one, which has something in it to buy."""
    _, decisions = planned
    assert (decisions["312"]["action"], decisions["312"]["reason"], decisions["313"]["reason"]) == (
        "send", "due", "zero_value")


def test_a_quote_without_lines_is_an_empty_cart(planned):
    _, decisions = planned
    assert (decisions["307"]["action"], decisions["307"]["reason"]) == ("skip", "empty_cart")


def test_a_newer_quote_without_lines_leaves_the_older_quote_its_reminders(planned):
    """``items_count`` still counts a line of quote 307, but it has none left: an empty cart, so
    the address's older quote 314 is its newest that can be reminded."""
    _, decisions = planned
    assert (decisions["314"]["action"], decisions["314"]["reason"]) == ("send", "due")


def _unreadable_newer_quotes(db: shopdb.ShopDb) -> None:
    """Three addresses, each with an older quote that reads and a newer one that does not:
    702's line has a fractional quantity, 704's currency is no currency; 99 and 100 were touched
    in the same second, and the newest-cart index breaks that tie by key ("magento2:99" is
    the larger), not by the id the query orders by."""
    db.schema("magento2")
    db.insert("quote", [quote(701, "2026-03-02 08:00:00", customer_email="ann@example.com"),
                        quote(702, "2026-03-02 09:30:00", customer_email="ann@example.com"),
                        quote(703, "2026-03-02 08:00:00", customer_email="bo@example.com"),
                        quote(704, "2026-03-02 09:30:00", customer_email="bo@example.com", quote_currency_code="XXQ"),
                        quote(99, "2026-03-02 09:00:00", customer_email="cy@example.com"),
                        quote(100, "2026-03-02 09:00:00", customer_email="cy@example.com")])
    db.insert("quote_item", [line(7011, 701, "A", "1", "10"), line(7021, 702, "CHEESE", "1.5", "10"),
                             line(7031, 703, "A", "1", "10"), line(7041, 704, "A", "1", "10"),
                             line(991, 99, "CHEESE", "0.5", "10"), line(1001, 100, "A", "1", "10")])


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_newer_quote_that_cannot_be_read_leaves_the_older_quote_its_reminders(kind, tmp_path):
    """The pass that finds each address's newest quote read only its address and time: a newer
    quote the carts pass then could not build (reported, no reminder) was still the newest, and
    the customer's older quote, which reads, was skipped as ``newer_cart_for_address`` too. Only
    a cart that can be reminded competes for the newest, as in the WooCommerce, PrestaShop and
    ``sql`` sources, whose first pass builds the carts."""
    with shopdb.configured(kind, "magentobadnewer", _unreadable_newer_quotes, tmp_path,
                           {"type": "magento2"}, eligibility={"consent": "none"}) as (db, config):
        result, decisions = shopdb.plan(config, NOW)
        source = MagentoSource(db.url)
        source.chunk_size = 1  # the pass's batches: quotes of one second are never cut apart
        try:
            keys = [activity.cart_key for activity in source.activity(Window(datetime(2026, 2, 23, tzinfo=UTC),
                                                                             datetime(2026, 3, 3, tzinfo=UTC)))]
        finally:
            source.close()
    assert result.exit_code == 1
    assert sorted(result.json["problems"]) == ["quote entity_id=702: quantity: not a whole number: 1.5000",
                                               "quote entity_id=704: currency: unknown currency code 'XXQ'",
                                               "quote entity_id=99: quantity: not a whole number: 0.5000"]
    assert {cart: (decision["action"], decision["reason"]) for cart, decision in decisions.items()} == {
        "701": ("send", "due"), "703": ("send", "due"), "100": ("send", "due")}
    assert keys == ["magento2:701", "magento2:703", "magento2:100"]


def _capital_accents(db: shopdb.ShopDb) -> None:
    """Åsa's quote, and an order of hers under another quote, typed in capitals; Örjan's quote,
    and his unsubscription typed in capitals."""
    db.schema("magento2")
    db.insert("quote", [quote(811, "2026-03-02 09:00:00", customer_email="Åsa@Example.com"),
                        quote(812, "2026-03-02 09:00:00", customer_email="örjan@example.com")])
    db.insert("quote_item", [line(8111, 811, "A", "1", "10"), line(8121, 812, "A", "1", "10")])
    _order_and_unsubscription(db, 11, 990, "ÅSA@EXAMPLE.COM", "ÖRJAN@EXAMPLE.COM")


def _order_and_unsubscription(db: shopdb.ShopDb, entity_id: int, quote_id: int, buyer: str, unsubscribed: str) -> None:
    """A complete order of ``buyer`` under another quote, and ``unsubscribed``'s unsubscription."""
    db.insert("sales_order", [{"entity_id": entity_id, "increment_id": f"{entity_id:09d}", "quote_id": quote_id,
                               "customer_email": buyer, "state": "complete", "status": "complete",
                               "grand_total": D("10"), "order_currency_code": "EUR",
                               "created_at": datetime(2026, 3, 2, 10, 30)}])
    db.insert("newsletter_subscriber", [{"customer_id": 0, "subscriber_email": unsubscribed, "store_id": 1,
                                         "subscriber_status": 3}])


@pytest.mark.parametrize("kind, ctype_c", [
    pytest.param("mariadb", False, marks=pytest.mark.mariadb, id="mariadb"),
    pytest.param("postgres", False, marks=pytest.mark.postgres, id="postgres"),
    pytest.param("postgres", True, marks=pytest.mark.postgres, id="postgres-ctype-c"),
])
def test_an_address_with_capital_accents_finds_its_orders_and_unsubscription_whatever_the_ctype(
        kind, ctype_c, tmp_path):
    """PostgreSQL's ``LOWER()`` folds what the database's ``LC_CTYPE`` says is a letter: under
    ``C`` (``initdb --no-locale``, many a container's database) ASCII alone, so an order and an
    unsubscription stored as ``ÅSA@…`` and ``ÖRJAN@…`` were not found by the carts' ``åsa@…`` and
    ``örjan@…``: Åsa was reminded of a cart she had bought, and Örjan, who had unsubscribed, was
    sent a reminder."""
    with shopdb.shop_database(kind, "magentoctype", ctype_c=ctype_c) as db:
        _capital_accents(db)
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url}, eligibility={"consent": "none"})
        result, decisions = shopdb.plan(config, NOW)
    assert result.exit_code == 0, result.output
    assert (decisions["811"]["reason"], decisions["811"]["detail"]) == ("ordered", "order 000000011")
    assert (decisions["812"]["reason"], decisions["812"]["detail"]) == ("no_consent", "consent=False, policy none")


@pytest.mark.mariadb
def test_an_invalid_updated_at_in_the_window_is_a_row_problem_not_a_traceback():
    """MariaDB keeps ``2026-02-31`` in a DATETIME column under ALLOW_INVALID_DATES; the driver
    gives it back as text. It used to crash the activity pass (issue 10)."""
    with shopdb.shop_database("mariadb", "magentobaddate") as db:
        db.schema("magento2")
        db.retype("quote", "updated_at", "DATETIME")
        db.insert("quote", [quote(401, "2026-03-01 09:00:00", customer_email="ok@example.com")])
        db.insert("quote_item", [line(4011, 401, "A", "1", "10")])
        db.execute_unchecked("INSERT INTO quote (entity_id, created_at, updated_at, is_active, items_count, "
                             "quote_currency_code, customer_email) VALUES (402, '2026-02-28 09:00:00', "
                             "'2026-02-31 09:00:00', 1, 1, 'EUR', 'bad@example.com')")
        db.insert("quote_item", [line(4021, 402, "A", "1", "10")])
        problems = shopdb.Problems()
        source = MagentoSource(db.url, on_problem=problems)
        now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
        window = Window(now - timedelta(days=7), now)
        try:
            assert [a.cart_key for a in source.activity(window)] == ["magento2:401"]
            assert [cart.id for cart in source.carts(window)] == ["401"]
        finally:
            source.close()
    assert [str(p) for p in problems] == ["quote entity_id=402: updated_at: not a time: '2026-02-31 09:00:00'"]


# -- retyped time columns ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_bigint_epoch_updated_at_is_read_as_seconds_since_1970(kind, tmp_path):
    with shopdb.shop_database(kind, "magentoepoch") as db:
        db.schema("magento2")
        db.retype("quote", "updated_at", "BIGINT")
        db.insert("quote", [dict(quote(501, "2026-03-02 09:00:00", customer_email="a@example.com"),
                                 updated_at=shopdb.epoch("2026-03-02 09:00:00")),
                            dict(quote(502, "2026-02-01 09:00:00", customer_email="b@example.com"),
                                 updated_at=shopdb.epoch("2026-02-01 09:00:00"))])  # too old: outside the window
        db.insert("quote_item", [line(5011, 501, "A", "1", "10"), line(5021, 502, "A", "1", "10")])
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url})
        result = cli("carts", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    (only,) = result.json["decisions"]
    assert (only["cart_id"], only["last_activity"]) == ("501", "2026-03-02T09:00:00Z")


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_boolean_is_active_is_compared_as_a_boolean(kind, tmp_path):
    """PostgreSQL's BOOLEAN is no integer: ``is_active = 1`` passed the column check and then
    stopped every run with the database's own error."""
    with shopdb.shop_database(kind, "magentobool") as db:
        db.schema("magento2")
        db.retype("quote", "is_active", "BOOLEAN")
        db.insert("quote", [dict(quote(511, "2026-03-02 09:00:00", customer_email="a@example.com"), is_active=True),
                            dict(quote(512, "2026-03-02 09:00:00", customer_email="b@example.com"), is_active=False)])
        db.insert("quote_item", [line(5111, 511, "A", "1", "10"), line(5121, 512, "A", "1", "10")])
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url})
        result = cli("carts", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert [d["cart_id"] for d in result.json["decisions"]] == ["511"]


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.slow
def test_a_time_column_of_another_type_stops_run_and_doctor_with_exit_3(kind, tmp_path):
    with shopdb.shop_database(kind, "magentovarchar") as db:
        db.schema("magento2")
        db.retype("quote", "updated_at", "VARCHAR(32)")
        db.insert("quote", [dict(quote(601, "2026-03-02 09:00:00", customer_email="a@example.com"),
                                 updated_at="2026-03-02 09:00:00")])
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url})
        run = cli("run", "--json", "--config", str(config), "--now", NOW)
        doctor = cli("doctor", "--no-smtp", "--json", "--config", str(config))
    assert run.exit_code == 3
    error = run.json["error"]
    assert (error["code"], error["exit_code"]) == ("source", 3)
    assert error["message"].startswith(
        "magento2 source: column quote.updated_at is VARCHAR(32), but cartrescue reads it as a time")
    source = next(check for check in doctor.json["checks"] if check["name"] == "source")
    assert (source["status"], source["exit_code"]) == ("fail", 3) and "quote.updated_at" in source["detail"]
    assert doctor.exit_code == 3


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.slow
def test_a_column_only_the_orders_query_needs_fails_the_doctor_as_it_would_fail_the_run(kind, tmp_path):
    # The carts read fine, so the doctor used to pass; every run then failed at its first chunk.
    # The doctor has no --now: the cart is two hours old by the clock.
    recent = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None, microsecond=0)
    with shopdb.shop_database(kind, "magentoordercols") as db:
        db.schema("magento2")
        db.insert("quote", [quote(801, str(recent), customer_email="a@example.com")])
        db.insert("quote_item", [line(8011, 801, "A", "1", "10")])
        db.execute("ALTER TABLE sales_order DROP COLUMN order_currency_code")
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url})
        doctor = cli("doctor", "--no-smtp", "--json", "--config", str(config))
        run = cli("run", "--json", "--config", str(config))
    source = next(check for check in doctor.json["checks"] if check["name"] == "source")
    assert (source["status"], source["exit_code"]) == ("fail", 3), source
    assert "column sales_order.order_currency_code not found" in source["detail"]
    assert run.exit_code == 3 and "column sales_order.order_currency_code not found" in run.json["error"]["message"]


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_missing_column_of_a_one_table_query_is_named_by_its_table(kind, tmp_path):
    # "column telephone not found": several of Magento's tables have one.
    with shopdb.shop_database(kind, "magentoaddresscols") as db:
        db.schema("magento2")
        db.insert("quote", [quote(401, "2026-03-02 09:00:00", customer_email="a@example.com")])
        db.insert("quote_item", [line(4011, 401, "C", "1", "10")])
        db.execute("ALTER TABLE quote_address DROP COLUMN telephone")
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url})
        run = cli("run", "--json", "--now", NOW, "--config", str(config))
    assert run.exit_code == 3
    assert "column quote_address.telephone not found in" in run.json["error"]["message"]


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_missing_column_is_named_by_its_table_not_the_querys_alias(kind, tmp_path):
    # The databases say "q.trigger_recollect": q is the preset's alias, nothing the owner wrote.
    with shopdb.shop_database(kind, "magentoquotecols") as db:
        db.schema("magento2")
        db.execute("ALTER TABLE quote DROP COLUMN trigger_recollect")
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url})
        run = cli("run", "--json", "--config", str(config))
    assert run.exit_code == 3
    assert "column quote.trigger_recollect not found in" in run.json["error"]["message"]


@pytest.mark.mariadb
def test_whole_numbers_that_are_not_seconds_stop_the_run(tmp_path):
    """ALTER ... BIGINT on a filled TIMESTAMP column leaves 20260302090000, not seconds: refused
    by name instead of matching no window (a run of zero carts that looks fine)."""
    with shopdb.shop_database("mariadb", "magentoyyyymmdd") as db:
        db.schema("magento2")
        db.insert("quote", [quote(701, "2026-03-02 09:00:00", customer_email="a@example.com")])
        db.retype("quote", "updated_at", "BIGINT", keep=True)
        assert db.execute("SELECT updated_at FROM quote") == [(20260302090000,)]
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url})
        result = cli("carts", "--config", str(config), "--now", NOW)
    assert result.exit_code == 3
    assert "column quote.updated_at holds whole numbers that are not seconds since 1970 (for example " \
           "20260302090000)" in " ".join(result.stderr.split())


def test_a_base_amount_in_another_currency_than_shop_currency_is_left_to_the_exchange_rates(shop):
    """Magento's base is EUR here; a config whose ``shop.currency`` is SEK gets no base amount
    from Magento (cartrescue.currency then converts with ``shop.exchange_rates``)."""
    db, _ = shop
    readings = {}
    for base in ("EUR", "SEK", None):
        source = MagentoSource(db.url, base_currency=base)
        try:
            readings[base] = source.cart("302").base_total
        finally:
            source.close()
    assert readings == {"EUR": Decimal("45.00"), "SEK": None, None: Decimal("45.00")}


def test_line_prices_include_tax_shows_the_price_the_cart_page_showed(shop):
    """``quote_item.price`` is without tax; a shop whose cart shows prices with tax (Magento's
    "Display Cart Prices: Including Tax", as EU shops do) showed 46.80 on its cart page, as its
    grand total, and the reminder listed the line at 39.33 under a total of 46.80.
    ``line_prices_include_tax`` reads ``price_incl_tax``, else ``price`` where Magento left none."""
    db, _ = shop
    prices = {}
    for include in (False, True):
        source = MagentoSource(db.url, options={"line_prices_include_tax": include})
        try:
            prices[include] = [source.cart(cart).items[0].unit_price for cart in ("350", "351")]
        finally:
            source.close()
    assert prices == {False: [D("39.33"), D("10.00")], True: [D("46.80"), D("10.00")]}


def test_line_prices_include_tax_is_a_magento_option(shop, tmp_path):
    """The option is the preset's, as WooCommerce's of the same name: the config takes it
    (``"yes"`` from a ``${VAR}`` too) and the message shows the price with tax."""
    db, _ = shop
    config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url,
                                            "options": {"line_prices_include_tax": "yes"}})
    result = cli("preview", "350", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert result.json["text"].count(format_money(D("46.80"), "EUR", "en")) == 2  # the line and the total


def _three_byte_tables(db: shopdb.ShopDb) -> None:
    """An old shop whose orders and subscribers are in MariaDB's 3-byte ``utf8mb3``: Ann's order,
    Zed's unsubscription, Kim's newsletter of this morning, and a cart of an address beyond the
    BMP (``𝓫ob@…``) beside theirs."""
    db.schema("magento2")
    db.schema("magento2-newsletter")
    for table in ("sales_order", "newsletter_subscriber"):
        db.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb3")
    db.insert("quote", [quote(821, "2026-03-02 09:00:00", customer_email="\U0001d4ebob@example.com"),
                        quote(822, "2026-03-02 09:00:00", customer_email="ann@example.com"),
                        quote(823, "2026-03-02 09:00:00", customer_email="zed@example.com"),
                        quote(824, "2026-03-02 09:00:00", customer_email="kim@example.com")])
    db.insert("quote_item", [line(8211, 821, "A", "1", "10"), line(8221, 822, "A", "1", "10"),
                             line(8231, 823, "A", "1", "10"), line(8241, 824, "A", "1", "10")])
    _order_and_unsubscription(db, 21, 991, "ann@example.com", "zed@example.com")
    db.insert("newsletter_subscriber", [{"subscriber_id": 900, "customer_id": 0, "subscriber_email": "kim@example.com",
                                         "store_id": 1, "subscriber_status": 1}])
    db.insert("newsletter_queue", [{"queue_id": 1, "newsletter_subject": "March deals", "queue_status": 2,
                                    "queue_start_at": datetime(2026, 3, 2, 7, 0)}])
    db.insert("newsletter_queue_link", [{"queue_id": 1, "subscriber_id": 900,
                                         "letter_sent_at": datetime(2026, 3, 2, 7, 0)}])


@pytest.mark.mariadb
def test_an_address_beyond_the_bmp_costs_no_other_customer_their_lookups_in_utf8mb3_tables(tmp_path):
    """MariaDB answered a ``utf8mb3`` column compared with ``𝓫ob@…`` by "Illegal mix of
    collations" (1267, 1270, 1271), and the run stopped (exit 3). Such an address cannot be stored
    there, so it matches nothing: Ann's order, Zed's unsubscription and Kim's newsletter are still
    found, and Bob's cart goes on."""
    with shopdb.shop_database("mariadb", "magentoutf8mb3") as db:
        _three_byte_tables(db)
        config = shopdb.write_config(tmp_path, {"type": "magento2", "url": db.url}, eligibility={"consent": "none"})
        result, decisions = shopdb.plan(config, NOW)
    assert result.exit_code == 0, result.output
    assert (decisions["822"]["reason"], decisions["822"]["detail"]) == ("ordered", "order 000000021")
    assert decisions["823"]["reason"] == "no_consent"
    assert (decisions["824"]["reason"], "March deals" in decisions["824"]["detail"]) == ("newsletter_today", True)
    assert (decisions["821"]["action"], decisions["821"]["reason"]) == ("send", "due")
