"""Not on a newsletter day, read from the shop's database: Magento 2's core newsletter queue,
MailPoet's sending statistics (WooCommerce) and a generic SQL query, on the real MariaDB and
PostgreSQL servers, through the real CLI.

The shop is in Stockholm (UTC+1 in November); NOW is Friday 2026-11-20 10:00 UTC, 11:00 there,
and every cart is idle two hours (step 1 due). Per address:

- ``today``: the newsletter went out at 07:00 UTC today -> ``newsletter_today``
- ``dawn``: at 23:30 UTC yesterday, which is 00:30 today in Stockholm -> ``newsletter_today``
- ``yesterday``: at 22:30 UTC yesterday, 23:30 yesterday in Stockholm -> due
- ``later``: scheduled for 15:00 today, not sent yet (no send time / no statistics row) -> due
- ``future``: recorded as sent at 11:00 UTC, after ``now`` (a replay of an earlier instant) -> due
- ``none``: no newsletter -> due
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

import shopdb
from conftest import NOW, cli, iso
from test_source_woocommerce import abandonment, php_cart

NAIVE_NOW = NOW.replace(tzinfo=None)  # UTC, as Magento and MySQL TIMESTAMP columns hold it
ADDRESSES = ("today", "dawn", "yesterday", "later", "future", "none")
SENT = {"today": datetime(2026, 11, 20, 7, 0), "dawn": datetime(2026, 11, 19, 23, 30),
        "yesterday": datetime(2026, 11, 19, 22, 30), "future": datetime(2026, 11, 20, 11, 0)}
EXPECTED = {"today": "newsletter_today", "dawn": "newsletter_today", "yesterday": "due", "later": "due",
            "future": "due", "none": "due"}


def email(who: str) -> str:
    return f"{who}@example.com"


def decisions(tmp_path: Path, source: dict[str, Any], *, now: datetime = NOW) -> tuple[dict[str, dict], list[str]]:
    """``carts --json`` over ``source``: decisions by address, and the run's notes."""
    config = {
        "shop": {"name": "Test Shop", "timezone": "Europe/Stockholm", "unsubscribe_secret": "test-secret-of-the-suite"},
        "source": source, "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "eligibility": {"consent": "none", "quiet_hours": None},
        "priority": {"tiers": [{"name": "standard", "min_score": 0}]},
    }
    path = tmp_path / "cartrescue.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = cli("carts", "--json", "--config", str(path), "--now", iso(now))
    assert result.exit_code == 0, result.output
    return {row["email"]: row for row in result.json["decisions"]}, result.json["notes"]


def reasons(found: dict[str, dict]) -> dict[str, str]:
    return {address.split("@")[0]: row["reason"] for address, row in found.items()}


# -- Magento 2 ---------------------------------------------------------------------------------

def magento_carts(db: shopdb.ShopDb, prefix: str) -> None:
    db.schema("magento2", prefix=prefix)
    db.insert(f"{prefix}quote", [
        {"entity_id": n, "store_id": 1, "created_at": NAIVE_NOW - timedelta(hours=3),
         "updated_at": NAIVE_NOW - timedelta(hours=2), "is_active": 1, "items_count": 1, "quote_currency_code": "EUR",
         "base_currency_code": "EUR", "grand_total": Decimal("40"), "customer_is_guest": 1, "customer_email": email(who)}
        for n, who in enumerate(ADDRESSES, 1)])
    db.insert(f"{prefix}quote_item", [
        {"item_id": 100 + n, "quote_id": n, "sku": "MUG", "name": "Mug", "qty": Decimal("1"), "price": Decimal("40"),
         "product_type": "simple", "product_id": 7, "parent_item_id": None} for n in range(1, len(ADDRESSES) + 1)])


def magento_newsletters(db: shopdb.ShopDb) -> None:
    db.schema("magento2-newsletter")
    db.insert("newsletter_subscriber", [
        {"subscriber_id": n, "subscriber_email": email(who).upper() if who == "today" else email(who),
         "subscriber_status": 1} for n, who in enumerate(ADDRESSES, 1)])
    db.insert("newsletter_queue", [
        {"queue_id": 1, "newsletter_subject": "Week 47 deals", "queue_status": 2,
         "queue_start_at": datetime(2026, 11, 20, 6, 0), "queue_finish_at": datetime(2026, 11, 20, 7, 5)},
        {"queue_id": 2, "newsletter_subject": "Week 46", "queue_status": 2,
         "queue_start_at": datetime(2026, 11, 19, 22, 0)},
        {"queue_id": 3, "newsletter_subject": "Black Friday", "queue_status": 0,  # scheduled for 15:00 UTC today
         "queue_start_at": datetime(2026, 11, 20, 15, 0)},
    ])
    db.insert("newsletter_queue_link", [
        {"queue_id": 1, "subscriber_id": 1, "letter_sent_at": SENT["today"]},
        {"queue_id": 2, "subscriber_id": 2, "letter_sent_at": SENT["dawn"]},
        {"queue_id": 2, "subscriber_id": 3, "letter_sent_at": SENT["yesterday"]},
        {"queue_id": 3, "subscriber_id": 4, "letter_sent_at": None},  # queued, not sent
        {"queue_id": 1, "subscriber_id": 5, "letter_sent_at": SENT["future"]},
    ])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def magento(request):
    """Magento with its newsletter tables."""
    with shopdb.shop_database(request.param, "magentonews") as db:
        magento_carts(db, "")
        magento_newsletters(db)
        yield db


@pytest.fixture(scope="module", params=shopdb.KINDS)
def bare_magento(request):
    """A Magento database without the newsletter tables (a trimmed copy, a replica of some tables)."""
    with shopdb.shop_database(request.param, "magentobare") as db:
        magento_carts(db, "")
        yield db


def test_magento_newsletter_queue_defers_todays_addresses(magento, tmp_path: Path) -> None:
    found, notes = decisions(tmp_path, {"type": "magento2", "url": magento.url})
    assert reasons(found) == EXPECTED
    assert notes == []
    today = found[email("today")]
    assert "Week 47 deals" in today["detail"] and today["not_before"] == "2026-11-20T23:00:00Z"


def test_magento_without_newsletter_tables_sends_and_says_why(bare_magento, tmp_path: Path) -> None:
    found, notes = decisions(tmp_path, {"type": "magento2", "url": bare_magento.url})
    assert set(reasons(found).values()) == {"due"}
    assert len(notes) == 1
    assert "newsletter_queue_link, newsletter_queue not found" in notes[0]
    assert "not read" in notes[0]


def test_magento_newsletters_can_be_switched_off(magento, tmp_path: Path) -> None:
    found, notes = decisions(tmp_path, {"type": "magento2", "url": magento.url,
                                        "newsletters": {"shop_database": False}})
    assert set(reasons(found).values()) == {"due"} and notes == []


# -- WooCommerce with MailPoet -------------------------------------------------------------------

def woo_carts(db: shopdb.ShopDb, prefix: str) -> None:
    db.schema("woocommerce", prefix=prefix)
    local = (NOW - timedelta(hours=2)).astimezone(ZoneInfo("Europe/Stockholm"))
    db.insert(f"{prefix}cartflows_ca_cart_abandonment", [
        abandonment(n, email(who), local.strftime("%Y-%m-%d %H:%M:%S"),
                    php_cart((50, 0, 1, 40.0), nul=db.kind == "mariadb"), "40.00")
        for n, who in enumerate(ADDRESSES, 1)])
    db.insert(f"{prefix}posts", [{"ID": 50, "post_title": "Coffee mug", "post_type": "product", "post_parent": 0}])
    db.insert(f"{prefix}options", [{"option_name": "woocommerce_currency", "option_value": "SEK"},
                                   {"option_name": "timezone_string", "option_value": "Europe/Stockholm"}])


def mailpoet(db: shopdb.ShopDb) -> None:
    db.schema("woocommerce-mailpoet", prefix="wp_")
    db.insert("wp_mailpoet_subscribers", [{"id": n, "email": email(who), "status": "subscribed"}
                                          for n, who in enumerate(ADDRESSES, 1)])
    db.insert("wp_mailpoet_newsletters", [
        {"id": 1, "subject": "Week 47 deals", "type": "standard", "status": "sent", "sent_at": SENT["today"]},
        {"id": 2, "subject": "Week 46", "type": "standard", "status": "sent", "sent_at": SENT["yesterday"]},
        {"id": 3, "subject": "Black Friday", "type": "standard", "status": "scheduled"},  # no statistics yet
    ])
    db.insert("wp_mailpoet_statistics_newsletters", [
        {"newsletter_id": 1, "subscriber_id": 1, "queue_id": 1, "sent_at": SENT["today"]},
        {"newsletter_id": 2, "subscriber_id": 2, "queue_id": 2, "sent_at": SENT["dawn"]},
        {"newsletter_id": 2, "subscriber_id": 3, "queue_id": 2, "sent_at": SENT["yesterday"]},
        {"newsletter_id": 1, "subscriber_id": 5, "queue_id": 1, "sent_at": SENT["future"]},
    ])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def woocommerce(request):
    """WooCommerce with MailPoet (``wp_``), and a site without MailPoet (``wq_``)."""
    with shopdb.shop_database(request.param, "woomailpoet") as db:
        woo_carts(db, "wp_")
        mailpoet(db)
        woo_carts(db, "wq_")
        yield db


def test_mailpoet_statistics_defer_todays_addresses(woocommerce, tmp_path: Path) -> None:
    found, notes = decisions(tmp_path, {"type": "woocommerce", "url": woocommerce.url,
                                        "options": {"orders_table": "legacy"}})
    assert reasons(found) == EXPECTED
    assert notes == []
    assert "Week 47 deals" in found[email("today")]["detail"]


def test_woocommerce_without_mailpoet_sends_and_says_why(woocommerce, tmp_path: Path) -> None:
    found, notes = decisions(tmp_path, {"type": "woocommerce", "url": woocommerce.url, "prefix": "wq_",
                                        "options": {"orders_table": "legacy"}})
    assert set(reasons(found).values()) == {"due"}
    assert len(notes) == 1 and "wq_mailpoet_statistics_newsletters" in notes[0] and "MailPoet" in notes[0]


# -- generic SQL ---------------------------------------------------------------------------------

CARTS_QUERY = """
SELECT q.entity_id AS cart_id, q.customer_email AS email, q.quote_currency_code AS currency,
       q.created_at, q.updated_at, i.sku, i.name, i.qty AS quantity, i.price AS unit_price
FROM quote q JOIN quote_item i ON i.quote_id = q.entity_id
WHERE q.updated_at >= :start AND q.updated_at <= :end
ORDER BY q.entity_id
"""
SENDS_QUERY = """
SELECT s.subscriber_email AS email, l.letter_sent_at AS sent_at, 'core queue' AS campaign
FROM newsletter_subscriber s JOIN newsletter_queue_link l ON l.subscriber_id = s.subscriber_id
WHERE LOWER(s.subscriber_email) IN :emails AND l.letter_sent_at >= :start AND l.letter_sent_at <= :end
"""


def test_a_named_sql_query_defers_todays_addresses(magento, tmp_path: Path) -> None:
    found, notes = decisions(tmp_path, {"type": "sql", "url": magento.url,
                                        "queries": {"carts": CARTS_QUERY, "newsletters": SENDS_QUERY}})
    assert reasons(found) == EXPECTED
    assert notes == [] and "core queue" in found[email("today")]["detail"]


def test_a_named_query_that_writes_is_refused_when_the_config_loads(magento, tmp_path: Path) -> None:
    config = {"source": {"type": "sql", "url": magento.url,
                         "queries": {"carts": CARTS_QUERY, "newsletters": "DELETE FROM newsletter_queue_link"}}}
    path = tmp_path / "cartrescue.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = cli("carts", "--config", str(path))
    assert result.exit_code == 2 and "source.queries.newsletters" in result.stderr


def doctor_source(tmp_path: Path, url: str) -> dict[str, Any]:
    """``doctor --json``'s source check of a Magento config reading ``url``."""
    path = tmp_path / "cartrescue.yaml"
    path.write_text(yaml.safe_dump({"source": {"type": "magento2", "url": url},
                                    "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"}}), encoding="utf-8")
    result = cli("doctor", "--no-smtp", "--json", "--config", str(path))
    return {check["name"]: check for check in result.json["checks"]}["source"]


def test_doctor_warns_when_the_newsletter_tables_are_missing(bare_magento, tmp_path: Path) -> None:
    source = doctor_source(tmp_path, bare_magento.url)
    assert source["status"] == "warn" and "newsletter_queue_link" in source["detail"]
