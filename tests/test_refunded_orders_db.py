"""A shop database's order refunded in full by amount, its state still saying it is to ship,
awaits no delivery: it holds back no reminder to its customer. A partly refunded one still does,
and an order the customer placed after the cart, refunded in full, still means they bought, as
does one whose state says refunded (Magento's ``closed``, PrestaShop's ``PS_OS_REFUND``,
WooCommerce's ``wc-refunded``). On the real MariaDB and PostgreSQL servers, end to end through
``carts --json``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

import shopdb
from test_source_magento import line, quote
from test_source_prestashop import cart, customer, product_line
from test_source_prestashop_details import _minimal
from test_source_woocommerce import abandonment, php_cart

NOW = "2026-03-02T12:00:00Z"
PLACED = datetime(2026, 2, 27, 10, 0)  # three days before: within pending_within (30 days)
D = Decimal


# -- Magento: a credit memo's adjustment refund (no item returned) leaves the order processing --


def _magento_order(entity_id: int, email: str, refunded: Decimal | None, *, placed: datetime = PLACED,
                   ) -> dict[str, object]:
    """A ``processing`` order of 80 EUR (invoiced, not shipped) with credit memos summing to ``refunded``."""
    return {"entity_id": entity_id, "increment_id": f"M{entity_id}", "quote_id": 900 + entity_id,
            "customer_email": email, "state": "processing", "status": "processing", "grand_total": D("80"),
            "base_grand_total": D("80"), "order_currency_code": "EUR", "base_currency_code": "EUR",
            "created_at": placed, "total_refunded": refunded, "base_total_refunded": refunded}


def _fill_magento(db: shopdb.ShopDb) -> None:
    emails = {601: "full@example.com", 602: "part@example.com", 603: "after@example.com", 604: "none@example.com",
              605: "minus@example.com"}
    db.schema("magento2")
    db.insert("quote", [quote(number, "2026-03-02 09:00:00", customer_email=email) for number, email in emails.items()])
    db.insert("quote_item", [line(number * 10, number, "A", "1", "10") for number in emails])
    db.insert("newsletter_subscriber", [{"customer_id": 0, "subscriber_email": email, "store_id": 1,
                                         "subscriber_status": 1} for email in emails.values()])
    db.insert("sales_order", [
        _magento_order(61, "full@example.com", D("80")),  # an adjustment refund of it all: still processing
        _magento_order(62, "part@example.com", D("30")),
        # placed after the cart's last activity (another quote), then refunded in full
        _magento_order(63, "after@example.com", D("80"), placed=datetime(2026, 3, 2, 10, 30)),
        _magento_order(64, "none@example.com", None),  # nothing refunded: NULL
        _magento_order(65, "minus@example.com", D("-5")),  # no refund anyone made
    ])


# -- PrestaShop: credit slips (order_slip) leave the order's state as it was ------------------------


def _prestashop_order(id_order: int, customer: int, placed: datetime = PLACED) -> dict[str, object]:
    """An order of 80 EUR in state 2 (Payment accepted: paid, not shipped)."""
    return {"id_order": id_order, "id_customer": customer, "id_cart": 900 + id_order, "id_currency": 1,
            "current_state": 2, "total_paid": D("80"), "conversion_rate": D("1"), "date_add": placed,
            "date_upd": placed}


def _slip(id_order: int, products: str, shipping: str) -> dict[str, object]:
    return {"id_order": id_order, "id_customer": 1, "partial": 1, "date_add": PLACED, "date_upd": PLACED,
            "total_products_tax_incl": D(products), "total_shipping_tax_incl": D(shipping)}


def _fill_prestashop(db: shopdb.ShopDb) -> None:
    emails = {11: "full@example.com", 12: "part@example.com", 13: "after@example.com", 14: "none@example.com",
              15: "minus@example.com"}
    _minimal(db)
    db.insert("ps_customer", [customer(number, email, "Kim", newsletter=1) for number, email in emails.items()])
    db.insert("ps_cart", [cart(700 + number, number, "2026-03-02 09:00:00") for number in emails])
    db.insert("ps_cart_product", [product_line(700 + number, 1, 1) for number in emails])
    db.insert("ps_orders", [_prestashop_order(71, 11), _prestashop_order(72, 12),
                            _prestashop_order(73, 13, placed=datetime(2026, 3, 2, 10, 30)),
                            _prestashop_order(74, 14), _prestashop_order(75, 15)])
    db.insert("ps_order_slip", [
        _slip(71, "50", "0"), _slip(71, "20", "10"),  # a standard refund of it all, in two slips
        _slip(72, "30", "0"),
        _slip(73, "70", "10"),  # placed after the cart, then refunded in full
        _slip(75, "-5", "0"),  # a sign slipped
    ])


# -- both presets ------------------------------------------------------------------------------

#: Per preset: how to fill its database, its cart ids by the customer's order (refunded in full,
#: in part, placed after the cart and refunded in full, not refunded, a negative refund), and the
#: problem that negative refund is reported as.
PRESETS = {
    "magento2": (_fill_magento, {"full": "601", "part": "602", "after": "603", "none": "604", "minus": "605"},
                 "sales_order entity_id=65: total_refunded: a refund cannot be negative, got -5.0000"),
    "prestashop": (_fill_prestashop, {"full": "711", "part": "712", "after": "713", "none": "714", "minus": "715"},
                   "ps_orders id_order=75: order_slip total_products_tax_incl: a refund cannot be negative, "
                   "got -5.000000"),
}


@pytest.fixture(scope="module", params=[pytest.param((preset, kind.values[0]), marks=kind.marks,
                                                      id=f"{preset}-{kind.id}")
                                         for preset in PRESETS for kind in shopdb.KINDS])
def planned(request, tmp_path_factory) -> tuple[Any, dict[str, str], str]:
    """A run's outcome, its decisions' reasons by the role of the customer's order, and the
    problem expected of the negative refund."""
    preset, kind = request.param
    fill, carts, problem = PRESETS[preset]
    with shopdb.configured(kind, f"{preset}runrefund", fill, tmp_path_factory.mktemp(preset),
                           {"type": preset}) as (_, config):
        result, decided = shopdb.plan(config, NOW)
    assert result.exit_code in (0, 1), result.output  # 1: the row problem of the negative refund
    return result, {role: decided[cart_id]["reason"] for role, cart_id in carts.items()}, problem


def test_an_order_refunded_in_full_by_amount_holds_back_no_reminder(planned) -> None:
    """Magento's total_refunded and PrestaShop's credit slips were read by the report only: the
    order, still 'processing' / 'Payment accepted', held back every reminder to its customer."""
    assert planned[1]["full"] == "due"


def test_an_order_refunded_in_part_still_holds_back_reminders(planned) -> None:
    assert planned[1]["part"] == "pending_order"


def test_an_order_placed_after_the_cart_and_refunded_in_full_still_means_it_was_ordered(planned) -> None:
    assert planned[1]["after"] == "ordered"


def test_an_order_with_nothing_refunded_holds_back_reminders(planned) -> None:
    assert planned[1]["none"] == "pending_order"


def test_a_negative_refund_is_reported_and_the_order_still_holds_back_reminders(planned) -> None:
    """A run reads it as no refund, as before runs read refunds; unreadable, the row would have
    held back the customer's carts as ``unreadable_order``."""
    result, reasons, problem = planned
    assert reasons["minus"] == "pending_order"
    assert result.json["problems"] == [problem]


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_prestashop_shop_without_order_slip_runs_with_its_orders_unrefunded(kind, tmp_path) -> None:
    def fill(db: shopdb.ShopDb) -> None:
        _fill_prestashop(db)
        db.execute("DROP TABLE ps_order_slip")

    with shopdb.configured(kind, "psnoslips", fill, tmp_path, {"type": "prestashop"}) as (_, config):
        result, decided = shopdb.plan(config, NOW)
    assert result.exit_code == 0, result.output
    assert decided["711"]["reason"] == "pending_order"


# -- an order whose state says refunded: Magento closed, PrestaShop PS_OS_REFUND, WooCommerce refunded --

#: The customers of the refunded-state orders: one placed after the cart (it bought the cart), one
#: three days before it and not delivered (refunded, nothing is coming).
REFUNDED_STATE = {"after": "closed.after@example.com", "before": "closed.before@example.com"}
AFTER = datetime(2026, 3, 2, 10, 30)


def _fill_magento_refunded(db: shopdb.ShopDb) -> None:
    db.schema("magento2")
    db.insert("quote", [quote(610 + number, "2026-03-02 09:00:00", customer_email=email)
                        for number, email in enumerate(REFUNDED_STATE.values(), 1)])
    db.insert("quote_item", [line(6110 + number, 610 + number, "A", "1", "10") for number in (1, 2)])
    db.insert("sales_order", [
        dict(_magento_order(60 + number, email, D("80"), placed=placed), state="closed", status="closed")
        for number, (email, placed) in enumerate(zip(REFUNDED_STATE.values(), (AFTER, PLACED)), 1)])


def _fill_prestashop_refunded(db: shopdb.ShopDb) -> None:
    _minimal(db)
    db.insert("ps_customer", [customer(20 + number, email, "Kim", newsletter=1)
                              for number, email in enumerate(REFUNDED_STATE.values(), 1)])
    db.insert("ps_cart", [cart(720 + number, 20 + number, "2026-03-02 09:00:00") for number in (1, 2)])
    db.insert("ps_cart_product", [product_line(720 + number, 1, 1) for number in (1, 2)])
    db.insert("ps_orders", [dict(_prestashop_order(80 + number, 20 + number, placed), current_state=7)  # PS_OS_REFUND
                            for number, placed in ((1, AFTER), (2, PLACED))])


def _fill_woocommerce_refunded(db: shopdb.ShopDb) -> None:
    db.schema("woocommerce", prefix="wp_")
    nul = db.kind == "mariadb"
    db.insert("wp_cartflows_ca_cart_abandonment", [
        abandonment(730 + number, email, "2026-03-02 09:00:00", php_cart((50, 0, 1, 10.0), nul=nul), "10")
        for number, email in enumerate(REFUNDED_STATE.values(), 1)])
    db.insert("wp_posts", [{"ID": 50, "post_title": "Mug", "post_type": "product", "post_parent": 0}])
    db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "EUR"},
                             {"option_name": "woocommerce_custom_orders_table_enabled", "option_value": "yes"},
                             {"option_name": "timezone_string", "option_value": "UTC"}])
    db.insert("wp_wc_orders", [
        {"id": 9000 + number, "status": "wc-refunded", "type": "shop_order", "currency": "EUR",
         "total_amount": D("80"), "customer_id": 0, "billing_email": email, "date_created_gmt": placed}
        for number, (email, placed) in enumerate(zip(REFUNDED_STATE.values(), (AFTER, PLACED)), 1)])


#: Per preset: how to fill its database, and its cart ids by the role of the customer's order.
REFUNDED_PRESETS = {
    "magento2": (_fill_magento_refunded, {"after": "611", "before": "612"}),
    "prestashop": (_fill_prestashop_refunded, {"after": "721", "before": "722"}),
    "woocommerce": (_fill_woocommerce_refunded, {"after": "731", "before": "732"}),
}


@pytest.fixture(scope="module", params=[pytest.param((preset, kind.values[0]), marks=kind.marks,
                                                      id=f"{preset}-{kind.id}")
                                         for preset in REFUNDED_PRESETS for kind in shopdb.KINDS])
def refunded_state(request, tmp_path_factory) -> dict[str, str]:
    """A run's decisions' reasons by the role of the customer's refunded-state order."""
    preset, kind = request.param
    fill, carts = REFUNDED_PRESETS[preset]
    with shopdb.configured(kind, f"{preset}refundstate", fill, tmp_path_factory.mktemp(preset),
                           {"type": preset}, eligibility={"consent": "none"}) as (_, config):
        result, decided = shopdb.plan(config, NOW)
    assert result.exit_code == 0, result.output
    return {role: decided[cart_id]["reason"] for role, cart_id in carts.items()}


def test_an_order_placed_after_the_cart_whose_state_says_refunded_still_means_it_was_ordered(refunded_state) -> None:
    """The presets read the refunded state as no order at all: the customer who bought (and sent
    back) was reminded of the cart."""
    assert refunded_state["after"] == "ordered"


def test_an_earlier_order_whose_state_says_refunded_holds_back_no_reminder(refunded_state) -> None:
    """Counted as the purchase it was, a refunded order is still not one still to be delivered."""
    assert refunded_state["before"] == "due"
