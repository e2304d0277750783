"""WooCommerce (CartFlows) carts valued by the lines they still have, end to end through the
CLI on the real MariaDB and PostgreSQL servers: a line of a deleted product is left out, and the
cart's total is then the sum of the lines left, in the currency's digits as the shop shows it."""

from __future__ import annotations

import pytest

import shopdb
from test_source_woocommerce import abandonment, php_cart

NOW = "2026-03-02T12:00:00Z"
AT = "2026-03-02 10:00:00"  # Stockholm: 09:00Z


def carts(nul: bool) -> list[dict]:
    return [
        # three mugs for 100.00 (33.33… each) and a line of product 99, deleted since
        abandonment(1, "thirds@example.com", AT, php_cart((50, 0, 3, 100.0), (99, 0, 1, 5.0), nul=nul), "131.25"),
        # 100 + 45 left of a cart that had a deleted line too
        abandonment(2, "whole@example.com", AT, php_cart((50, 0, 1, 100.0), (60, 0, 1, 45.0), (99, 0, 1, 5.0),
                                                         nul=nul), "187.50"),
    ]


def fill(db: shopdb.ShopDb) -> None:
    db.schema("woocommerce", prefix="wp_")
    db.insert("wp_cartflows_ca_cart_abandonment", carts(nul=db.kind == "mariadb"))
    db.insert("wp_posts", [{"ID": 50, "post_title": "Mug", "post_type": "product", "post_parent": 0},
                           {"ID": 60, "post_title": "Hoodie", "post_type": "product", "post_parent": 0}])
    db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "SEK"},
                             {"option_name": "woocommerce_custom_orders_table_enabled", "option_value": "yes"},
                             {"option_name": "timezone_string", "option_value": "Europe/Stockholm"},
                             {"option_name": "wcf_ca_gdpr_status", "option_value": "on"}])  # consent


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request, tmp_path_factory):
    with shopdb.configured(request.param, "woototals", fill, tmp_path_factory.mktemp("woocommerce"),
                           {"type": "woocommerce"}, eligibility={"min_total": 100}) as found:
        yield found


@pytest.fixture(scope="module")
def planned(shop):
    return shopdb.plan(shop[1], NOW)


def test_a_total_summed_from_the_lines_left_is_in_the_currencys_digits(planned):
    """Summed from unit prices (100.00 / 3 each), the total was ``99.99999999`` in ``carts --json``
    and the ledger's cart value, and a whole one ``145`` where WooCommerce's own is ``187.50``."""
    _, decisions = planned
    assert (decisions["1"]["total"], decisions["2"]["total"]) == ("100.00", "145.00")


def test_a_cart_worth_the_minimum_by_its_lines_left_is_not_below_it(planned):
    """``eligibility.min_total: 100`` skipped three mugs for 100.00 (``zero_value``, its total 99.99999999)."""
    _, decisions = planned
    assert (decisions["1"]["action"], decisions["1"]["reason"]) == ("send", "due")
