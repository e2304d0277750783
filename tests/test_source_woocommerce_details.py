"""WooCommerce (CartFlows) end to end through the CLI, on the real MariaDB and PostgreSQL
servers: thresholds in the shop's base currency, WooCommerce's own cost of goods on a
variation, CartFlows' GDPR notice as consent, an empty cart, unreadable times, and retyped time
columns (issue 10)."""

from __future__ import annotations

from decimal import Decimal

import pytest

import shopdb
from conftest import cli
from cartrescue.compose.render import format_money
from test_source_woocommerce import abandonment, php_cart, php_fields

NOW = "2026-03-02T12:00:00Z"
MONEY = {"currency": "EUR", "exchange_rates": {"SEK": "0.087"}}  # the shop's base is EUR, WooCommerce sells in SEK
BAD_TIME = {"mariadb": "0000-00-00 00:00:00", "postgres": "infinity"}


def carts(nul: bool) -> list[dict]:
    at = "2026-03-02 10:00:00"  # Stockholm: 09:00Z
    return [
        abandonment(1, "big@example.com", at, php_cart((50, 0, 1, 6000.0), nul=nul), "6000"),    # 522 EUR
        abandonment(2, "mid@example.com", at, php_cart((50, 0, 1, 5000.0), nul=nul), "5000"),    # 435 EUR
        abandonment(3, "child@example.com", at, php_cart((60, 61, 1, 100.0), nul=nul), "100"),   # cost on the variation
        abandonment(4, "adds@example.com", at, php_cart((70, 71, 1, 100.0), nul=nul), "100"),    # additive cost
        abandonment(5, "gone@example.com", at, php_cart((50, 0, 1, 10.0), nul=nul), "10", unsubscribed=1),
        abandonment(6, "empty@example.com", at, "a:0:{}", "0"),
        # 9 the same address's older cart, with a mug in it: cart 6 emptied a later session's
        abandonment(9, "empty@example.com", "2026-03-02 08:00:00", php_cart((50, 0, 1, 10.0), nul=nul), "10"),
        abandonment(7, "orderdate@example.com", at, php_cart((50, 0, 1, 10.0), nul=nul), "10"),
    ]


POSTS = [{"ID": 50, "post_title": "Mug", "post_type": "product", "post_parent": 0},
         {"ID": 60, "post_title": "Hoodie", "post_type": "product", "post_parent": 0},
         {"ID": 61, "post_title": "Hoodie - L", "post_type": "product_variation", "post_parent": 60},
         {"ID": 70, "post_title": "Lamp", "post_type": "product", "post_parent": 0},
         {"ID": 71, "post_title": "Lamp - brass", "post_type": "product_variation", "post_parent": 70}]
META = [(50, "_sku", "MUG"), (61, "_sku", "HOODIE-L"), (61, "_cogs_total_value", "30"),
        (70, "_cogs_total_value", "20"), (71, "_cogs_total_value", "50"), (71, "_cogs_value_is_additive", "yes")]


def fill(db: shopdb.ShopDb) -> None:
    db.schema("woocommerce", prefix="wp_")
    db.insert("wp_cartflows_ca_cart_abandonment", carts(nul=db.kind == "mariadb"))
    db.insert("wp_posts", POSTS)
    db.insert("wp_postmeta", [{"post_id": p, "meta_key": k, "meta_value": v} for p, k, v in META])
    db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "SEK"},
                             {"option_name": "woocommerce_custom_orders_table_enabled", "option_value": "yes"},
                             {"option_name": "timezone_string", "option_value": "Europe/Stockholm"},
                             {"option_name": "wcf_ca_gdpr_status", "option_value": "on"}])
    db.execute_unchecked(
        "INSERT INTO wp_wc_orders (id, status, type, currency, total_amount, customer_id, billing_email, "
        f"date_created_gmt) VALUES (1001, 'wc-processing', 'shop_order', 'SEK', 10, 0, 'orderdate@example.com', "
        f"'{BAD_TIME[db.kind]}')")
    if db.kind == "mariadb":  # an invalid date in the window: MariaDB keeps it under ALLOW_INVALID_DATES
        db.insert("wp_cartflows_ca_cart_abandonment", [
            abandonment(8, "baddate@example.com", "2026-03-01 10:00:00", php_cart((50, 0, 1, 10.0)), "10")])
        db.execute_unchecked("UPDATE wp_cartflows_ca_cart_abandonment SET `time` = '2026-02-31 10:00:00' WHERE id = 8")


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop(request, tmp_path_factory):
    with shopdb.configured(request.param, "woodetails", fill, tmp_path_factory.mktemp("woocommerce"),
                           {"type": "woocommerce"}, shop=MONEY) as found:
        yield found


@pytest.fixture(scope="module")
def planned(shop):
    return shopdb.plan(shop[1], NOW)


def test_high_value_is_judged_in_the_shops_base_currency(planned):
    _, decisions = planned
    assert (decisions["1"]["score"], decisions["2"]["score"]) == (1, 0)  # 522 and 435 EUR against 500
    assert (decisions["2"]["currency"], Decimal(decisions["2"]["total"])) == ("SEK", Decimal("5000"))


def test_the_message_shows_the_amount_in_the_shops_selling_currency(shop):
    _, config = shop
    result = cli("preview", "2", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert format_money(Decimal("5000"), "SEK", "en") in result.json["text"]


def test_woocommerce_core_cost_of_goods_on_a_variation(planned):
    _, decisions = planned
    assert decisions["3"]["score"] == 10  # the variation's _cogs_total_value 30 of 100: high margin
    assert decisions["4"]["score"] == 0   # additive: 20 (lamp) + 50 (brass) = 70 of 100: not high margin


def test_a_products_cost_that_is_no_number_leaves_its_carts_of_unknown_margin_not_unsent(shop):
    """Cost feeds the high-margin rule only: ``1,234.50`` in product 50's cost meta dropped every
    cart holding it (four here) as a problem."""
    db, config = shop
    db.insert("wp_postmeta", [{"post_id": 50, "meta_key": "_wc_cog_cost", "meta_value": "1,234.50"}])
    try:
        result, decisions = shopdb.plan(config, NOW)
    finally:
        db.execute("DELETE FROM wp_postmeta WHERE meta_key = '_wc_cog_cost'")
    assert {"1", "2", "7"} <= set(decisions)
    assert not [problem for problem in result.json["problems"] if "cost" in problem]


def test_a_cart_kept_under_cartflows_gdpr_notice_has_consent_unless_unsubscribed(planned):
    _, decisions = planned
    assert [decisions[cart]["action"] for cart in ("1", "2", "3", "4")] == ["send"] * 4
    assert (decisions["5"]["reason"], decisions["5"]["detail"]) == ("no_consent", "consent=False, policy soft-opt-in")


def test_without_the_gdpr_notice_consent_is_unknown(shop, tmp_path):
    db, _ = shop
    config = shopdb.write_config(tmp_path, {"type": "woocommerce", "url": db.url, "options": {"gdpr_consent": False}},
                                 shop=MONEY)
    result = cli("carts", "--json", "--config", str(config), "--now", NOW)
    decisions = {row["cart_id"]: row for row in result.json["decisions"]}
    assert (decisions["1"]["reason"], decisions["1"]["detail"]) == ("no_consent", "consent=None, policy soft-opt-in")


def test_an_empty_cart_is_an_empty_cart_skip_not_a_problem(planned):
    result, decisions = planned
    assert (decisions["6"]["action"], decisions["6"]["reason"]) == ("skip", "empty_cart")
    assert not any("id=6" in problem for problem in result.json["problems"])


def test_an_emptied_newer_cart_leaves_the_older_cart_its_reminders(planned):
    """CartFlows keeps a row of a session whose cart was emptied (``a:0:{}``): taken as the
    address's newest cart, it silenced the address's older cart with a mug in it."""
    _, decisions = planned
    assert (decisions["9"]["action"], decisions["9"]["reason"], decisions["6"]["reason"]) == (
        "send", "due", "empty_cart")


def test_a_customer_known_by_the_phone_number_they_gave_gets_the_stream_of_their_newest_cart(shop, tmp_path):
    """CartFlows rows with a phone number and no address (the call list reaches them): the first
    pass knew addresses only, so the customer's older cart was called as well as the newer one."""
    db, _ = shop
    mug = php_cart((50, 0, 1, 10.0), nul=db.kind == "mariadb")
    db.insert("wp_cartflows_ca_cart_abandonment", [
        abandonment(20, None, "2026-03-02 08:00:00", mug, "10", fields=php_fields("Ann", "A", "+46 8 123 456 78")),
        abandonment(21, None, "2026-03-02 10:00:00", mug, "10", fields=php_fields("Ann", "A", "+46812345678")),
        abandonment(22, None, "2026-03-02 08:00:00", mug, "10", fields=php_fields("Bo", "B", "+46 8 123 456 79"))])
    config = shopdb.write_config(tmp_path, {"type": "woocommerce", "url": db.url}, shop=MONEY,
                                 priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "call-list"}]})
    try:
        _, decisions = shopdb.plan(config, NOW)
    finally:
        db.execute("DELETE FROM wp_cartflows_ca_cart_abandonment WHERE id IN (20, 21, 22)")
    assert {key: (decisions[key]["action"], decisions[key]["reason"]) for key in ("20", "21", "22")} == {
        "20": ("skip", "newer_cart_for_address"), "21": ("send", "due"), "22": ("send", "due")}


def test_unreadable_times_cost_their_rows_with_their_keys(shop, planned):
    db, _ = shop
    result, decisions = planned
    assert result.exit_code == 1
    expected = {f"wp_wc_orders id=1001: date_created_gmt: not a time: {BAD_TIME[db.kind]!r}"}
    if db.kind == "mariadb":
        expected.add("wp_cartflows_ca_cart_abandonment id=8: time: not a time: '2026-02-31 10:00:00'")
    assert set(result.json["problems"]) == expected
    # The unreadable order may be the one that converted cart 7: its customer waits, no one else.
    assert (decisions["7"]["action"], decisions["7"]["reason"]) == ("defer", "unreadable_order")
    assert decisions["7"]["detail"] == "order 1001 (wp_wc_orders id=1001) could not be read"
    assert "8" not in decisions


# -- retyped time columns ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_bigint_epoch_time_is_read_as_seconds_since_1970(kind, tmp_path):
    with shopdb.shop_database(kind, "wooepoch") as db:
        db.schema("woocommerce", prefix="wp_")
        db.retype("wp_cartflows_ca_cart_abandonment", "time", "BIGINT")
        cart = php_cart((50, 0, 1, 10.0), nul=kind == "mariadb")
        db.insert("wp_cartflows_ca_cart_abandonment", [
            dict(abandonment(1, "a@example.com", None, cart, "10"), time=shopdb.epoch("2026-03-02 09:00:00")),
            dict(abandonment(2, "b@example.com", None, cart, "10"), time=shopdb.epoch("2026-02-01 09:00:00"))])
        db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "EUR"}])
        config = shopdb.write_config(tmp_path, {"type": "woocommerce", "url": db.url})
        result = cli("carts", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    (only,) = result.json["decisions"]
    assert (only["cart_id"], only["last_activity"]) == ("1", "2026-03-02T09:00:00Z")


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.slow
def test_a_time_column_of_another_type_stops_the_run_with_exit_3(kind, tmp_path):
    with shopdb.shop_database(kind, "woovarchar") as db:
        db.schema("woocommerce", prefix="wp_")
        db.retype("wp_cartflows_ca_cart_abandonment", "time", "VARCHAR(32)")
        db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "EUR"}])
        config = shopdb.write_config(tmp_path, {"type": "woocommerce", "url": db.url})
        result = cli("run", "--json", "--config", str(config), "--now", NOW)
    assert result.exit_code == 3
    assert result.json["error"]["message"].startswith(
        "woocommerce source: column wp_cartflows_ca_cart_abandonment.time is VARCHAR(32), but cartrescue "
        "reads it as a time")
