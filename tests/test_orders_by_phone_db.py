"""The database presets match a cart without an address (a guest known by phone number alone)
to the orders placed under that number, on the real MariaDB and PostgreSQL servers: the number
is stored as typed (``+46 70 123 45 67`` on the order, ``070-123 45 67`` on the cart) and read
as E.164 on both sides. Before, such a guest who ordered from another cart got a call (or a
text) about the cart they had bought."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

import shopdb
from test_source_magento import line, quote
from test_source_woocommerce import abandonment, php_cart, php_fields

NOW = "2026-03-02T12:00:00Z"
#: A Swedish shop whose tier goes on the call list (any valid number reaches it; nothing is sent).
SECTIONS = {"shop": {"country": "SE"}, "eligibility": {"consent": "none"},
            "priority": {"tiers": [{"name": "standard", "min_score": 0, "channel": "call-list"}]}}


def _decisions(kind: str, preset: str, fill: Callable[[shopdb.ShopDb], None], folder: Path, prefix: str = "",
               **options: str) -> dict[str, str]:
    """Each cart's reason in ``carts --json`` over a fresh ``preset`` database filled by ``fill``."""
    with shopdb.shop_database(kind, "phonematch") as db:
        db.schema(preset, prefix=prefix)
        fill(db)
        config = shopdb.write_config(folder, {"type": preset, "url": db.url, "options": options}, **SECTIONS)
        result, decisions = shopdb.plan(config, NOW)
    assert result.exit_code == 0, result.output
    return {cart: decision["reason"] for cart, decision in decisions.items()}


def _magento(db: shopdb.ShopDb) -> None:
    """Two guests' quotes known by a number alone; the first guest ordered from another quote."""
    db.insert("quote", [quote(number, "2026-03-02 09:00:00", customer_email=None, customer_is_guest=1)
                        for number in (401, 402)])
    db.insert("quote_item", [line(number * 10 + 1, number, "C", "1", "10") for number in (401, 402)])
    db.insert("quote_address", [{"address_id": number, "quote_id": number, "address_type": "billing", "email": None,
                                 "telephone": phone} for number, phone in ((401, "070-123 45 67"), (402, "070-123 45 99"))])
    db.insert("sales_order", [{"entity_id": 9001, "increment_id": "000009001", "quote_id": 499, "state": "processing",
                               "status": "processing", "customer_email": "ann@example.com", "grand_total": Decimal("10"),
                               "order_currency_code": "EUR", "created_at": datetime(2026, 3, 2, 10)}])
    db.insert("sales_order_address", [{"entity_id": 1, "parent_id": 9001, "address_type": "billing",
                                       "telephone": "+46 70 123 45 67"}])


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_magento_a_guest_known_by_number_who_ordered_from_another_quote_is_skipped_as_ordered(
        kind: str, tmp_path: Path) -> None:
    assert _decisions(kind, "magento2", _magento, tmp_path) == {"401": "ordered", "402": "due"}


def _woocommerce(mode: str) -> Callable[[shopdb.ShopDb], None]:
    """Two CartFlows checkouts known by a number alone; the first one's number ordered since,
    stored in the orders table ``mode`` uses (HPOS: ``wc_order_addresses``; legacy: ``_billing_phone``)."""
    def fill(db: shopdb.ShopDb) -> None:
        mug = php_cart((50, 0, 1, 12.5), nul=db.kind == "mariadb")
        db.insert("wp_cartflows_ca_cart_abandonment", [
            abandonment(number, None, "2026-03-02 09:00:00", mug, "12.50", fields=php_fields("Ann", "A", phone))
            for number, phone in ((1, "070-123 45 67"), (2, "070-123 45 99"))])
        db.insert("wp_posts", [{"ID": 50, "post_title": "Coffee mug", "post_type": "product", "post_parent": 0}])
        meta = [(50, "_sku", "MUG"), (50, "_price", "12.5")]
        db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "EUR"},
                                 {"option_name": "timezone_string", "option_value": "UTC"}])
        placed = datetime(2026, 3, 2, 10)
        if mode == "hpos":
            db.insert("wp_wc_orders", [{"id": 3001, "status": "wc-processing", "type": "shop_order", "currency": "EUR",
                                        "total_amount": Decimal("12.50"), "customer_id": 0,
                                        "billing_email": "ann@example.com", "date_created_gmt": placed}])
            db.insert("wp_wc_order_addresses", [{"order_id": 3001, "address_type": "billing",
                                                 "phone": "+46 70 123 45 67"}])
        else:
            db.insert("wp_posts", [{"ID": 3001, "post_title": "Order", "post_type": "shop_order",
                                    "post_status": "wc-processing", "post_date_gmt": placed}])
            meta += [(3001, "_billing_email", "ann@example.com"), (3001, "_billing_phone", "+46 70 123 45 67"),
                     (3001, "_order_total", "12.50"), (3001, "_order_currency", "EUR")]
        db.insert("wp_postmeta", [{"post_id": post, "meta_key": key, "meta_value": value} for post, key, value in meta])
    return fill


@pytest.mark.parametrize("mode", ["hpos", "legacy"])
@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_woocommerce_a_checkout_known_by_number_whose_number_ordered_is_skipped_as_ordered(
        kind: str, mode: str, tmp_path: Path) -> None:
    assert _decisions(kind, "woocommerce", _woocommerce(mode), tmp_path, "wp_", orders_table=mode) == {
        "1": "ordered", "2": "due"}
