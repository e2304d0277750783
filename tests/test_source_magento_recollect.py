"""A quote's ``updated_at`` that Magento moved itself: applying catalog price rules (on a rule's
save, and nightly by cron) flags every quote holding a product with a rule price for
recollection, ``UPDATE quote SET trigger_recollect = 1``, and the column's ``ON UPDATE
CURRENT_TIMESTAMP`` makes that "now". Read as the customer's last activity, a cart left 20 days
ago was reminded as if left an hour ago, and a fresh one's reminders moved to the night of the
cron. A flagged quote (the customer has not been back since: loading it recollects it and clears
the flag) is as old as the latest change of its lines and addresses. On the real MariaDB and
PostgreSQL servers, through the real CLI."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import shopdb
from test_source_magento import line, quote

NOW = datetime(2026, 3, 29, 12, 0)  # UTC, as Magento stores it
BUMPED = NOW - timedelta(hours=1)   # the catalog rules applied an hour ago


def at(**ago: float) -> datetime:
    return NOW - timedelta(**ago)


def fill(db: shopdb.ShopDb) -> None:
    db.schema("magento2")
    db.insert("quote", [
        # left 20 days ago; the rules' update flagged it an hour ago
        quote(1, BUMPED.isoformat(" "), customer_email="old@example.com", trigger_recollect=1,
              created_at=at(days=20, hours=1)),
        # left 3 hours ago (its shipping address typed in last); flagged an hour ago
        quote(2, BUMPED.isoformat(" "), customer_email="fresh@example.com", trigger_recollect=1,
              created_at=at(hours=5)),
        # not flagged: its updated_at is the customer's
        quote(3, at(hours=2).isoformat(" "), customer_email="plain@example.com"),
    ])
    db.insert("quote_item", [
        line(11, 1, "MUG", "1", "10", created_at=at(days=20, hours=1), updated_at=at(days=20)),
        line(21, 2, "MUG", "1", "10", created_at=at(hours=5), updated_at=at(hours=4)),
        line(31, 3, "MUG", "1", "10", created_at=at(hours=3), updated_at=at(hours=3)),
    ])
    db.insert("quote_address", [
        {"address_id": 1, "quote_id": 2, "address_type": "shipping", "email": "fresh@example.com",
         "created_at": at(hours=5), "updated_at": at(hours=3)},
    ])


@pytest.fixture(scope="module", params=shopdb.KINDS)
def planned(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("recollect")
    with shopdb.configured(request.param, "magentorecollect", fill, folder, {"type": "magento2"},
                           eligibility={"consent": "none", "quiet_hours": None}) as (_, config):
        yield shopdb.plan(config, NOW.isoformat() + "Z")


def test_a_quote_flagged_for_recollection_long_after_it_was_left_is_not_reminded_as_new(planned):
    result, decisions = planned
    assert result.exit_code == 0, result.output
    assert "1" not in decisions  # 20 days old: outside the week a run reads


def test_a_flagged_quotes_last_activity_is_the_latest_change_of_its_lines_and_addresses(planned):
    _, decisions = planned
    assert decisions["2"]["last_activity"] == "2026-03-29T09:00:00Z"
    assert decisions["2"]["action"] == "send"


def test_a_quote_not_flagged_keeps_its_updated_at(planned):
    _, decisions = planned
    assert decisions["3"]["last_activity"] == "2026-03-29T10:00:00Z"
