"""Which incentive an order of a shop database redeemed, from the discount codes it used:
Magento's ``sales_order.coupon_code``, WooCommerce's coupon order items (HPOS and legacy
storage), PrestaShop's vouchers (``order_cart_rule`` and ``cart_rule.code``). A preset always
says which codes an order used, so an order with another promotion's code, or none, redeemed no
reminder's incentive, and the report assumes nothing (no upper-bound note). A PrestaShop 1.7.7+
voucher removed from its order (``order_cart_rule.deleted``) is none of its codes; an account that
may not read the coupon tables gets the upper bound, told why. On the real MariaDB and PostgreSQL
servers, end to end through ``report --json``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

import shopdb
from test_report_order_rates import ASSUMED, _magento_order, _money, _report, _voucher

W1 = "w1@example.com"  # the customer of cart 606 and of WooCommerce order 1


def _woo_order(db: shopdb.ShopDb, hpos: bool, *codes: str, items: bool = True) -> None:
    """WooCommerce order 1 of w1@example.com: 220 SEK at 10:00 UTC on 29 March, in HPOS
    ``wc_orders`` (``hpos``) or legacy ``posts``/``postmeta``, with a coupon item of each of
    ``codes`` beside its product line; without ``items``, a shop whose order items table is gone."""
    db.schema("woocommerce", prefix="wp_")
    db.insert("wp_options", [{"option_name": "woocommerce_currency", "option_value": "SEK"},
                             {"option_name": "woocommerce_custom_orders_table_enabled",
                              "option_value": "yes" if hpos else "no"}])
    placed = datetime(2026, 3, 29, 10, 0)
    if hpos:
        db.insert("wp_wc_orders", [{"id": 1, "status": "wc-processing", "type": "shop_order", "currency": "SEK",
                                    "total_amount": Decimal("220"), "customer_id": 0, "billing_email": W1,
                                    "date_created_gmt": placed}])
    else:
        db.insert("wp_posts", [{"ID": 1, "post_type": "shop_order", "post_status": "wc-processing",
                                "post_date_gmt": placed}])
        db.insert("wp_postmeta", [{"post_id": 1, "meta_key": key, "meta_value": value} for key, value in (
            ("_billing_email", W1), ("_order_total", "220"), ("_order_currency", "SEK"))])
    db.insert("wp_woocommerce_order_items", [{"order_id": 1, "order_item_name": "Mug", "order_item_type": "line_item"}]
              + [{"order_id": 1, "order_item_name": code, "order_item_type": "coupon"} for code in codes])
    if not items:
        db.execute("DROP TABLE wp_woocommerce_order_items")


STORAGES = [pytest.param(True, id="hpos"), pytest.param(False, id="legacy")]


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.parametrize("hpos", STORAGES)
def test_a_woocommerce_order_placed_with_another_coupon_redeems_no_incentive(kind, tmp_path, hpos):
    """WooCommerce keeps an order's coupons as order items of type coupon. Unread, the order
    placed with the shop's blackfriday counted the reminder's SEK110 as redeemed (11.00 EUR)
    under the "no discount code" note."""
    assert _money(kind, tmp_path, "woocommerce", lambda db: _woo_order(db, hpos, "blackfriday"), W1) == {
        "revenue": "22.00", "incentive_cost": "0.00", "redeemed": 0, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.parametrize("hpos", STORAGES)
def test_a_woocommerce_order_placed_with_the_steps_coupon_redeems_it(kind, tmp_path, hpos):
    """The step's SEK110, which WooCommerce keeps in lower case, is its incentive redeemed:
    known from the order, not assumed."""
    assert _money(kind, tmp_path, "woocommerce", lambda db: _woo_order(db, hpos, "sek110"), W1) == {
        "revenue": "22.00", "incentive_cost": "11.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_woocommerce_order_with_stacked_coupons_redeems_the_steps_once(kind, tmp_path):
    """Coupons stack: the step's code beside the shop's own is the step's incentive, once."""
    assert _money(kind, tmp_path, "woocommerce", lambda db: _woo_order(db, False, "blackfriday", "sek110"), W1) == {
        "revenue": "22.00", "incentive_cost": "11.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_woocommerce_order_without_a_coupon_redeems_nothing(kind, tmp_path):
    """No coupon item: no code used, so no incentive redeemed, and nothing assumed."""
    assert _money(kind, tmp_path, "woocommerce", lambda db: _woo_order(db, True), W1) == {
        "revenue": "22.00", "incentive_cost": "0.00", "redeemed": 0, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_woocommerce_shop_without_its_order_items_keeps_the_upper_bound(kind, tmp_path):
    """Without woocommerce_order_items the codes are unknown: the incentive is assumed used (an
    upper bound of its cost), and the report says so."""
    assert _money(kind, tmp_path, "woocommerce", lambda db: _woo_order(db, True, "blackfriday", items=False),
                  W1) == {"revenue": "22.00", "incentive_cost": "11.00", "redeemed": 1, "codes_in_orders": False,
                          "assumed": True}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_magento_period_whose_orders_used_no_coupon_redeems_nothing(kind, tmp_path):
    """Magento says which coupon each order used: an order without one used none. Whether codes
    were known was decided by whether some order of the period carried one, so a period without
    any coupon took the order for a redemption (10.00 EUR) with the "no discount code" note."""
    assert _money(kind, tmp_path, "magento2", lambda db: _magento_order(db, "20")) == {
        "revenue": "20.00", "incentive_cost": "0.00", "redeemed": 0, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.parametrize("codes", [("BLACKFRIDAY",), ("",)], ids=["another", "automatic"])
def test_a_prestashop_order_placed_with_another_voucher_redeems_no_incentive(kind, tmp_path, codes):
    """PrestaShop keeps the vouchers an order used in order_cart_rule, the code in cart_rule.code
    (empty for a rule the shop applies by itself). Unread, the order placed with BLACKFRIDAY, or
    with an automatic rule, counted the reminder's SEK110 as redeemed (10.00 EUR)."""
    assert _money(kind, tmp_path, "prestashop", lambda db: _voucher(db, "11", *codes)) == {
        "revenue": "15.00", "incentive_cost": "0.00", "redeemed": 0, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_prestashop_order_with_the_steps_voucher_beside_another_redeems_it(kind, tmp_path):
    """Vouchers stack: the step's code (in any case) beside the shop's own is the step's
    incentive redeemed, once."""
    assert _money(kind, tmp_path, "prestashop", lambda db: _voucher(db, "11", "BLACKFRIDAY", "sek110")) == {
        "revenue": "15.00", "incentive_cost": "10.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}


def _removed(db: shopdb.ShopDb, sql_type: str, deleted: bool) -> None:
    """PrestaShop 1.7.7's ``order_cart_rule.deleted``, typed ``sql_type``, set on every voucher of
    order 106 (``deleted``): one removed from the order in the back office keeps its row."""
    default, value = ("FALSE", "TRUE" if deleted else "FALSE") if sql_type == "BOOLEAN" else ("0", str(int(deleted)))
    db.execute(f"ALTER TABLE ps_order_cart_rule ADD COLUMN deleted {sql_type} NOT NULL DEFAULT {default}")
    db.execute(f"UPDATE ps_order_cart_rule SET deleted = {value}")


#: ``order_cart_rule.deleted`` as PrestaShop types it, and as a PostgreSQL copy may (BOOLEAN).
DELETED_TYPES = [pytest.param("mariadb", "TINYINT(1) UNSIGNED", marks=pytest.mark.mariadb, id="mariadb"),
                 pytest.param("postgres", "SMALLINT", marks=pytest.mark.postgres, id="postgres"),
                 pytest.param("postgres", "BOOLEAN", marks=pytest.mark.postgres, id="postgres-boolean")]


@pytest.mark.parametrize(("kind", "sql_type"), DELETED_TYPES)
def test_a_prestashop_voucher_removed_from_the_order_redeems_nothing(kind, sql_type, tmp_path):
    """A voucher removed from an order in the back office keeps its order_cart_rule row with
    deleted = 1 (PrestaShop 1.7.7+): the order did not get it. Read as the order's code, the
    step's SEK110 counted as redeemed and cost 10.00 EUR."""
    def fill(db: shopdb.ShopDb) -> None:
        _voucher(db, "11", "SEK110")
        _removed(db, sql_type, deleted=True)

    assert _money(kind, tmp_path, "prestashop", fill) == {
        "revenue": "15.00", "incentive_cost": "0.00", "redeemed": 0, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize(("kind", "sql_type"), DELETED_TYPES)
def test_a_prestashop_voucher_kept_on_the_order_still_redeems_it(kind, sql_type, tmp_path):
    """With the deleted column, a voucher the order kept (deleted = 0, or FALSE where the column is
    BOOLEAN) is still its code."""
    def fill(db: shopdb.ShopDb) -> None:
        _voucher(db, "11", "SEK110")
        _removed(db, sql_type, deleted=False)

    assert _money(kind, tmp_path, "prestashop", fill) == {
        "revenue": "15.00", "incentive_cost": "10.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}


#: Each preset's coupon tables, and a shop whose order used the step's code in them.
COUPON_TABLES = [
    pytest.param("prestashop", ("ps_order_cart_rule", "ps_cart_rule"), lambda db: _voucher(db, "11", "SEK110"), None,
                 id="prestashop"),
    pytest.param("woocommerce", ("wp_woocommerce_order_items",), lambda db: _woo_order(db, True, "sek110"), W1,
                 id="woocommerce"),
]


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.parametrize(("preset", "tables", "fill", "email"), COUPON_TABLES)
def test_an_account_refused_the_coupon_tables_reports_the_upper_bound_and_says_why(kind, preset, tables, fill, email,
                                                                                    tmp_path):
    """A read-only role limited to the tables the shop was told of (no SELECT on the coupon
    tables) made the report fail. It reports as a shop without those tables does (every
    attributed order after an incentive assumed to have used it, with the note), and a note and
    a warning on stderr name the tables the account may not SELECT from; --json stays one
    document."""
    result = _report(kind, tmp_path, preset, fill, email, refused=tables)
    assert result.exit_code == 0, result.output
    document = result.json
    assert document["money"]["codes_in_orders"] is False
    assert any(ASSUMED in note for note in document["notes"])
    (why,) = [note for note in document["notes"] if "may not SELECT" in note]
    assert all(table in why for table in tables) and why in document["warnings"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:") and "may not SELECT" in line]
    assert len(warnings) == 1 and all(table in warnings[0] for table in tables)


@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.parametrize(("preset", "tables", "fill", "email"), COUPON_TABLES)
def test_an_account_refused_the_coupon_tables_changes_nothing_else_in_the_report(kind, preset, tables, fill, email,
                                                                                 tmp_path):
    """The order used the step's code, so its upper bound is what it redeemed: apart from whether
    the codes were read, and the notes and warnings saying so, the document is the one an account
    that may read everything gets."""
    (tmp_path / "all").mkdir()
    (tmp_path / "some").mkdir()
    full = _report(kind, tmp_path / "all", preset, fill, email).json
    limited = _report(kind, tmp_path / "some", preset, fill, email, refused=tables).json
    for document in (full, limited):
        del document["notes"], document["money"]["codes_in_orders"]
        document.pop("warnings", None)
    assert limited == full
