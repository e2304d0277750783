"""Shopify's exports read through the shopify_csv preset (a header mapping, nothing more)."""

from __future__ import annotations

from pathlib import Path

from cartrescue.config import load_config
from cartrescue.sources import open_source
from conftest import REPO, cli


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "cartrescue.yaml"
    fixtures = REPO / "tests" / "fixtures"
    path.write_text(
        "shop: {timezone: Europe/Stockholm}\n"
        f"source: {{type: shopify_csv, carts: '{fixtures / 'shopify_checkouts.csv'}', "
        f"orders: '{fixtures / 'shopify_orders.csv'}'}}\n"
        f"ledger: {{url: 'sqlite:///{tmp_path / 'l.db'}'}}\n", encoding="utf-8")
    return path


def test_the_checkouts_export_reads_into_carts_without_problems(tmp_path: Path) -> None:
    problems: list[object] = []
    with open_source(load_config(_config(tmp_path)), problems.append) as source:
        carts = list(source.carts(None))  # type: ignore[arg-type]
        orders = list(source.orders_for(carts))
    assert problems == []
    assert len(carts) == 5 and all(c.source == "shopify" and c.items for c in carts)
    assert all(c.customer.email and c.customer.email.endswith(("example.com", "example.org", "example.net")) for c in carts)
    assert {o.status for o in orders}.isdisjoint({"voided", "refunded", "cancelled"})


def test_the_carts_command_decides_on_shopify_exports(tmp_path: Path) -> None:
    result = cli("carts", "--json", "--config", str(_config(tmp_path)), "--now", "2026-11-20T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert len(result.json["decisions"]) == 5


def test_orders_by_time_read_one_order_per_name_with_its_discount_code(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from cartrescue.sources.base import Window

    problems: list[object] = []
    window = Window(datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 12, 31, tzinfo=timezone.utc))
    with open_source(load_config(_config(tmp_path)), problems.append) as source:
        orders = list(source.orders(window))
        later = list(source.orders(Window(datetime(2026, 11, 1, tzinfo=timezone.utc), window.end)))
    assert problems == []  # the line rows after an order's first row are not orders of their own
    assert [(o.id, o.discount_code, str(o.total)) for o in orders] == [("#1001", None, "2499.00"),
                                                                       ("#1002", "WELCOME10", "49.70")]
    assert orders[0].created_at == datetime(2026, 11, 20, 7, 15, tzinfo=timezone.utc)  # voided #1003 left out
    assert [o.id for o in later] == ["#1001"]
