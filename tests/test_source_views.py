"""A shop table that is a view: a DBA who gives cartrescue's account views of the shop's tables
(the columns it needs, never the password hashes), or a reporting schema of views over a
replica. The queries read a view as they read a table; the checks that ask which tables exist
took the catalogue's tables alone, so a view was "not found": ``doctor`` failed its source
check, and a run skipped the newsletter sends it reads through views. On the real MariaDB and
PostgreSQL servers, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

import shopdb
from cartrescue.sources.magento import MagentoSource
from test_newsletters_db import EXPECTED, decisions, doctor_source, magento_carts, magento_newsletters, reasons


def as_view(db: shopdb.ShopDb, table: str) -> None:
    """``table``'s rows moved to ``table_data``, and ``table`` a view of them."""
    db.execute(f"ALTER TABLE {table} RENAME TO {table}_data")
    db.execute(f"CREATE VIEW {table} AS SELECT * FROM {table}_data")


@pytest.fixture(scope="module", params=shopdb.KINDS)
def viewed(request):
    """Magento whose quote and newsletter tables are views."""
    with shopdb.shop_database(request.param, "magentoviews") as db:
        magento_carts(db, "")
        magento_newsletters(db)
        for table in ("quote", "newsletter_subscriber", "newsletter_queue_link", "newsletter_queue"):
            as_view(db, table)
        yield db


def test_newsletter_sends_read_through_views_defer_todays_addresses(viewed, tmp_path: Path) -> None:
    found, notes = decisions(tmp_path, {"type": "magento2", "url": viewed.url})
    assert reasons(found) == EXPECTED
    assert notes == []


def test_doctor_finds_a_table_that_is_a_view(viewed) -> None:
    source = MagentoSource(viewed.url)
    try:
        problems = source.check()
    finally:
        source.close()
    assert problems == []  # no "not found"; a view's indexes are its tables' (no advice on them)


def test_the_doctor_command_passes_a_source_of_views(viewed, tmp_path: Path) -> None:
    source = doctor_source(tmp_path, viewed.url)
    assert "not found" not in source["detail"], source["detail"]
