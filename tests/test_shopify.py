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
