"""The report's orders of a period (``orders(window, wanted)``) from the database presets carry
the buyer's phone number (E.164, read from the order's address as the run's orders of carts do),
and the key filter lets in the orders of a number it was given: the report credits a text to a
customer known by number alone with that customer's order. Before, those window queries read no
number, and such an order was never counted recovered."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

import shopdb
from cartrescue.report.attribution import KeyFilter
from cartrescue.sources.base import Window
from cartrescue.sources.magento import MagentoSource
from cartrescue.sources.woocommerce import WooCommerceSource
from test_orders_by_phone_db import _magento, _woocommerce

WINDOW = Window(datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 3, 3, tzinfo=timezone.utc))


def _texted(number: str | None) -> KeyFilter:
    """The report's key filter of one row sent to a cart without an address (``number``), or to
    an address (``None``: no number asked for)."""
    wanted = KeyFilter()
    wanted.add_rows([(None, None if number else "someone@example.com", None, number)])
    return wanted


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_magento_window_orders_carry_the_order_addresses_number(kind: str, tmp_path: Path) -> None:
    with shopdb.shop_database(kind, "reportphone") as db:
        db.schema("magento2")
        _magento(db)
        source = MagentoSource(db.url, region="SE")
        found = [(o.id, o.phone) for o in source.orders(WINDOW, _texted("+46701234567"))]
        elsewhere = [o.id for o in source.orders(WINDOW, _texted("+46701234599"))]
        source.close()
    assert found == [("000009001", "+46701234567")] and elsewhere == []


@pytest.mark.parametrize("mode", ["hpos", "legacy"])
@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_woocommerce_window_orders_carry_the_billing_number(kind: str, mode: str, tmp_path: Path) -> None:
    with shopdb.shop_database(kind, "reportphone") as db:
        db.schema("woocommerce", prefix="wp_")
        _woocommerce(mode)(db)
        source = WooCommerceSource(db.url, prefix="wp_", options={"orders_table": mode}, region="SE")
        found = [(o.id, o.phone) for o in source.orders(WINDOW, _texted("+46701234567"))]
        elsewhere = [o.id for o in source.orders(WINDOW, _texted("+46701234599"))]
        source.close()
    assert found == [("3001", "+46701234567")] and elsewhere == []
