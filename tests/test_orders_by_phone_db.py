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

NOW = "2026-03-02T12:00:00Z"
#: A Swedish shop whose tier goes on the call list (any valid number reaches it; nothing is sent).
SECTIONS = {"shop": {"country": "SE"}, "eligibility": {"consent": "none"},
            "priority": {"tiers": [{"name": "standard", "min_score": 0, "channel": "call-list"}]}}


def _decisions(kind: str, preset: str, fill: Callable[[shopdb.ShopDb], None], folder: Path) -> dict[str, str]:
    """Each cart's reason in ``carts --json`` over a fresh ``preset`` database filled by ``fill``."""
    with shopdb.shop_database(kind, "phonematch") as db:
        db.schema(preset)
        fill(db)
        config = shopdb.write_config(folder, {"type": preset, "url": db.url}, **SECTIONS)
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
