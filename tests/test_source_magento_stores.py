"""Magento 2 with several store views on their own domains: ``options.store_ids`` gives each
its own config (its links, sender and ``shop.url``), on the real MariaDB and PostgreSQL servers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import shopdb
from conftest import cli

UTC = timezone.utc
NOW = "2026-11-20T10:00:00Z"


def _quote(entity_id: int, store_id: int, email: str, currency: str, total: str, rate: str) -> dict[str, object]:
    updated = datetime(2026, 11, 20, 8, 0)
    return {"entity_id": entity_id, "store_id": store_id, "created_at": updated - timedelta(hours=1),
            "updated_at": updated, "is_active": 1, "items_count": 1, "customer_email": email,
            "customer_is_guest": 1, "quote_currency_code": currency, "base_currency_code": "EUR",
            "base_to_quote_rate": Decimal(rate), "grand_total": Decimal(total), "subtotal": Decimal(total),
            "base_grand_total": Decimal(total) / Decimal(rate)}


def _two_store_views(db: shopdb.ShopDb) -> None:
    """Store view 1 (shop.example.com, EUR) and 2 (shop.example.se, SEK): a quote in each, and
    an order in each by another customer (cy, di), placed after the reminders of the report's ledger."""
    db.schema("magento2")
    db.execute("CREATE TABLE store (store_id smallint NOT NULL PRIMARY KEY, code varchar(32), "
               "website_id smallint NOT NULL DEFAULT 0, is_active smallint NOT NULL DEFAULT 1)")
    db.insert("store", [{"store_id": 0, "code": "admin"}, {"store_id": 1, "code": "en"}, {"store_id": 2, "code": "sv"}])
    db.insert("quote", [_quote(601, 1, "anna@example.com", "EUR", "40", "1"),
                        _quote(701, 2, "bo@example.com", "SEK", "448", "11.2")])
    db.insert("quote_item", [
        {"item_id": 6011, "quote_id": 601, "sku": "MUG", "name": "Mug", "qty": Decimal("1"), "price": Decimal("40"),
         "row_total": Decimal("40"), "product_type": "simple", "product_id": 1},
        {"item_id": 7011, "quote_id": 701, "sku": "MUG", "name": "Mugg", "qty": Decimal("1"), "price": Decimal("448"),
         "row_total": Decimal("448"), "product_type": "simple", "product_id": 1}])
    placed = datetime(2026, 11, 21, 9, 0)
    db.insert("sales_order", [
        {"entity_id": 1, "increment_id": "100000001", "store_id": 1, "quote_id": 600,
         "customer_email": "cy@example.com", "state": "processing", "status": "processing",
         "grand_total": Decimal("90"), "base_grand_total": Decimal("90"), "order_currency_code": "EUR",
         "base_currency_code": "EUR", "created_at": placed},
        {"entity_id": 2, "increment_id": "200000001", "store_id": 2, "quote_id": 700,
         "customer_email": "di@example.com", "state": "processing", "status": "processing",
         "grand_total": Decimal("224"), "base_grand_total": Decimal("20"), "order_currency_code": "SEK",
         "base_currency_code": "EUR", "created_at": placed}])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request):
    with shopdb.shop_database(request.param, "magentostores") as db:
        _two_store_views(db)
        yield db


def _config(db: shopdb.ShopDb, folder, store_ids: object, url: str):
    folder.mkdir()
    return shopdb.write_config(folder, {"type": "magento2", "url": db.url,
                                        "options": {"store_ids": store_ids, "recovery_url": url + "{cart_id}"}},
                               shop={"url": url}, eligibility={"consent": "none"})


def test_a_store_views_config_reads_its_own_quotes_with_its_own_links(shop, tmp_path):
    """Every store view's quotes were one config's: the Swedish store's customer was sent the
    English store's link, and no option could give each store view its own."""
    english = _config(shop, tmp_path / "en", [1], "https://shop.example.com/cart/")
    swedish = _config(shop, tmp_path / "sv", 2, "https://shop.example.se/cart/")  # one id needs no list
    _, en = shopdb.plan(english, NOW)
    _, sv = shopdb.plan(swedish, NOW)
    assert sorted(en) == ["601"] and sorted(sv) == ["701"]
    outbox = tmp_path / "sv" / "out"
    result = cli("run", "--json", "--outbox", str(outbox), "--config", str(swedish), "--now", NOW)
    assert result.exit_code == 0, result.output
    (message,) = outbox.glob("*.eml")
    assert "https://shop.example.se/cart/701" in message.read_text(encoding="utf-8")


def test_preview_of_another_store_views_quote_says_why(shop, tmp_path):
    config = _config(shop, tmp_path / "en", [1], "https://shop.example.com/cart/")
    result = cli("preview", "701", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2, result.output
    assert "it is store view 2's, which the source does not read (store_ids: 1)" in result.json["error"]["message"]


def test_each_store_views_report_counts_its_own_orders(shop, tmp_path):
    """Two store views with a config each: each report read every store's orders and credited
    the other store's order to its own reminder of the same customer (won back twice)."""
    from reportdata import Row, write_ledger

    def summary(config, cart_id: str, email: str) -> tuple[int, str]:
        write_ledger(config.parent / "ledger.db", [Row(cart_id, datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
                                                       email=email)])
        result = cli("report", "--json", "--since", "2026-11-20", "--until", "2026-11-22",
                     "--config", str(config), "--now", "2026-11-24T12:00:00Z")
        assert result.exit_code == 0, result.output
        return result.json["summary"]["orders"], result.json["summary"]["revenue"]

    english = _config(shop, tmp_path / "en", [1], "https://shop.example.com/cart/")
    swedish = _config(shop, tmp_path / "sv", [2], "https://shop.example.se/cart/")
    # cy bought in store view 1, di in store view 2; each was reminded by the other store's config
    assert summary(english, "601", "di@example.com") == (0, "0.00")
    assert summary(swedish, "701", "cy@example.com") == (0, "0.00")
    everything = _config(shop, tmp_path / "all", None, "https://shop.example.com/cart/")
    assert summary(everything, "601", "di@example.com") == (1, "20.00")


def test_a_store_id_the_database_does_not_have_stops_the_run_naming_the_key(shop, tmp_path):
    """A typo read no quote, every run, and ``doctor`` said ok."""
    config = _config(shop, tmp_path / "typo", [1, 9], "https://shop.example.com/cart/")
    for line in shopdb.refused_by_the_source(config, NOW):
        assert f"{config}: source.options.store_ids: no store view 9 in store (its store views: 0, 1, 2)" in line, line


def test_an_account_not_granted_the_store_table_reads_the_store_views_given(shop, tmp_path):
    """An account granted the tables docs/databases.md lists, ``store`` not among them: the ids
    are taken as given (the check of them stopped every run, exit 3)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    config = shopdb.write_config(folder, {"type": "magento2", "url": shop.read_only_user(refused=["store"]),
                                          "options": {"store_ids": [2]}}, eligibility={"consent": "none"})
    result, decisions = shopdb.plan(config, NOW)
    assert result.exit_code == 0, result.output
    assert sorted(decisions) == ["701"]
