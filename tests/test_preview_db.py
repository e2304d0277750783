"""``preview ID`` of a cart whose row the database source cannot read says why (exit 3), as it
does for a CSV export's: a Magento quote without a currency, a CartFlows row whose serialized
PHP is cut short, a PrestaShop cart in a deleted currency, a ``sql`` query's row without its
currency. It said "not found in the source" (exit 2) of a row that is there, on the real
MariaDB server and a SQLite file, through the real CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import shopdb
import test_source_magento as magento
import test_source_prestashop as prestashop
import test_source_woocommerce as woocommerce
from conftest import cli


def preview(config: Path, cart_id: str, now: str) -> tuple[int, str]:
    result = cli("preview", cart_id, "--config", str(config), "--now", now)
    return result.exit_code, " ".join(result.stderr.split())


@pytest.mark.mariadb
@pytest.mark.parametrize("shop, preset, cart_id, said", [
    (magento, "magento2", "108", "quote entity_id=108: currency: missing"),
    (woocommerce, "woocommerce", "4", "wp_cartflows_ca_cart_abandonment id=4: cart_contents: not valid"),
    (prestashop, "prestashop", "207", "ps_cart id_cart=207: currency: id_currency 9 not found"),
], ids=["magento2", "woocommerce", "prestashop"])
def test_preview_of_an_unreadable_preset_cart_says_why(shop, preset: str, cart_id: str, said: str,
                                                       tmp_path: Path) -> None:
    with shopdb.configured("mariadb", f"preview{preset}", shop.fill, tmp_path, {"type": preset}) as (_, config):
        code, told = preview(config, cart_id, "2026-03-29T12:00:00Z")
        assert code == 3, told
        assert f"cart '{cart_id}' cannot be read: {said}" in told
        assert preview(config, "4242", "2026-03-29T12:00:00Z")[0] == 2  # one that is not there: not found


def test_preview_of_an_unreadable_sql_row_says_why(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "erp.db") as db:
        db.execute("CREATE TABLE carts (id INTEGER, email TEXT, currency TEXT, created TEXT, sku TEXT, qty INT, "
                   "price TEXT)")
        db.executemany("INSERT INTO carts VALUES (?, ?, ?, ?, 'MUG', 1, '10')",
                       [(1, "ann@example.com", None, "2026-03-29 09:00:00"),
                        (2, "bob@example.com", "EUR", "2026-03-29 09:00:00")])
    query = ("SELECT id AS cart_id, email, currency, created AS created_at, sku, qty AS quantity, "
             "price AS unit_price FROM carts ORDER BY id")
    config = shopdb.write_config(tmp_path, {"type": "sql", "url": f"sqlite:///{tmp_path / 'erp.db'}",
                                            "queries": {"carts": query}})
    code, said = preview(config, "1", "2026-03-29T12:00:00Z")
    assert code == 3, said
    assert "cart '1' cannot be read: carts query cart_id=1: currency: missing" in said
