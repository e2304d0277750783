"""``doctor``'s source check says when the shop database's account may not read the coupon tables
(WooCommerce's ``woocommerce_order_items``, PrestaShop's ``order_cart_rule`` and ``cart_rule``):
before, only a ``report`` found it, falling back to its upper bound. A warning, not a failure:
runs never read them. On the real MariaDB and PostgreSQL servers, with a role refused them."""

from __future__ import annotations

import pytest

import shopdb
from conftest import cli
from test_report_order_codes import COUPON_TABLES
from test_report_order_rates import SEQUENCES, SHOP


def _source_check(kind, tmp_path, preset, fill, refused=()):
    """``doctor --json``'s source check of a ``preset`` shop filled by ``fill``, read by an account
    that may not SELECT from the ``refused`` tables when there are any."""
    with shopdb.configured(kind, f"{preset}doctorgrant", fill, tmp_path, {"type": preset}, shop=SHOP,
                           sequences=SEQUENCES) as (db, config):
        if refused:
            shopdb.write_config(config.parent, {"type": preset, "url": db.read_only_user(refused)}, shop=SHOP,
                                sequences=SEQUENCES)
        doctor = cli("doctor", "--no-smtp", "--json", "--config", str(config))
    return next(check for check in doctor.json["checks"] if check["name"] == "source")


@pytest.mark.slow
@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.parametrize(("preset", "tables", "fill", "email"), COUPON_TABLES)
def test_doctor_warns_that_the_account_may_not_read_the_coupon_tables(kind, preset, tables, fill, email, tmp_path):
    check = _source_check(kind, tmp_path, preset, fill, refused=tables)
    assert (check["status"], check["exit_code"]) == ("warn", 0), check
    assert "may not SELECT" in check["detail"] and "GRANT SELECT" in check["detail"], check
    assert all(table in check["detail"] for table in tables), check


@pytest.mark.slow
@pytest.mark.parametrize("kind", shopdb.KINDS)
@pytest.mark.parametrize(("preset", "tables", "fill", "email"), COUPON_TABLES)
def test_doctor_says_nothing_of_the_coupon_tables_to_an_account_that_may_read_them(kind, preset, tables, fill, email,
                                                                                    tmp_path):
    check = _source_check(kind, tmp_path, preset, fill)
    assert check["status"] in ("ok", "warn") and "may not SELECT" not in check["detail"], check
