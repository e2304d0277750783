"""``doctor``'s source check reads the orders as ``cartrescue report`` reads them (an empty
window): a column only the report's query needs (Magento's ``sales_order.coupon_code``, gone in
a trimmed replica) failed every Monday digest with exit 3, while the hourly ``doctor --quiet``
said all was well. On the real MariaDB and PostgreSQL servers."""

from __future__ import annotations

import pytest

import shopdb
from conftest import cli
from test_report_order_rates import SEQUENCES, SHOP


def _magento(drop: str | None):
    def fill(db: shopdb.ShopDb) -> None:
        db.schema("magento2")
        if drop:
            db.execute(f"ALTER TABLE sales_order DROP COLUMN {drop}")
    return fill


def _source_check(kind, tmp_path, drop):
    with shopdb.configured(kind, "doctorreport", _magento(drop), tmp_path, {"type": "magento2"}, shop=SHOP,
                           sequences=SEQUENCES) as (_db, config):
        doctor = cli("doctor", "--no-smtp", "--json", "--config", str(config))
    return next(check for check in doctor.json["checks"] if check["name"] == "source")


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_column_only_the_report_reads_fails_the_doctors_source_check(kind, tmp_path):
    check = _source_check(kind, tmp_path, "coupon_code")
    assert (check["status"], check["exit_code"]) == ("fail", 3), check
    assert "column sales_order.coupon_code not found" in check["detail"], check
    assert "(cartrescue report reads it)" in check["detail"], check


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_schema_the_report_can_read_passes(kind, tmp_path):
    check = _source_check(kind, tmp_path, None)
    assert check["status"] in ("ok", "warn") and "cartrescue report" not in check["detail"], check
