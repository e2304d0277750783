"""`report`'s period on the days the clocks change: bounds given as shop-local times or days tile
(no hour counted twice, none left out), and a `report.period` with a part of a day lasts that
long. Through the CLI, with a real SQLite ledger and orders CSV."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from conftest import Shop
from reportdata import Row, order_row, write_ledger

UTC = timezone.utc


def _counted(shop: Shop, *args: str, now: datetime) -> dict:
    result = shop.cli("report", "--json", *args, now=now)
    assert result.exit_code == 0, result.output
    return result.json["summary"] | {"period": result.json["period"]}


def test_periods_split_at_a_local_time_just_after_the_clocks_go_forward_count_a_message_once(shop: Shop) -> None:
    """Stockholm skips 02:00-03:00 on 29 March 2026. ``--until 2026-03-29T03:00`` ended the
    period at 02:59:59.999999 local, a time that does not exist and was read an hour late
    (01:59:59Z), so a message at 03:30 local (01:30Z) was counted in both halves."""
    at = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    write_ledger(shop.folder / "ledger.db", [Row("t1", at)])
    shop.add_orders(order_row("o1", at=at + timedelta(hours=2), total="80.00", cart_id="t1"))
    later = datetime(2026, 4, 10, tzinfo=UTC)
    first = _counted(shop, "--since", "2026-03-28", "--until", "2026-03-29T03:00", now=later)
    second = _counted(shop, "--since", "2026-03-29T03:00", "--until", "2026-03-30", now=later)
    assert (first["messages"], second["messages"]) == (0, 1)
    assert (first["orders"], second["orders"]) == (0, 1)
    assert first["period"]["until"] == "2026-03-29T00:59:59.999999Z"


def test_consecutive_days_tile_where_the_clocks_go_back_at_midnight(shop: Shop) -> None:
    """Santiago de Chile turns 24:00 back to 23:00 on 4 April 2026: Saturday has 25 hours.
    ``--until 2026-04-04`` ended at the first 23:59:59 (02:59:59Z), ``--since 2026-04-05`` began
    at Sunday's midnight (04:00Z): a message in the repeated hour was in neither day."""
    shop.configure(shop={"timezone": "America/Santiago"})
    at = datetime(2026, 4, 5, 3, 30, tzinfo=UTC)  # the second 23:30 of Saturday
    write_ledger(shop.folder / "ledger.db", [Row("t1", at)])
    later = datetime(2026, 4, 20, tzinfo=UTC)
    saturday = _counted(shop, "--since", "2026-04-04", "--until", "2026-04-04", now=later)
    sunday = _counted(shop, "--since", "2026-04-05", "--until", "2026-04-05", now=later)
    assert (saturday["messages"], sunday["messages"]) == (1, 0)
    assert saturday["period"]["until"] == "2026-04-05T03:59:59.999999Z"


def test_a_report_period_of_hours_lasts_that_long_over_a_clock_change(shop: Shop) -> None:
    """``report.period: 12h`` is a plain duration (docs/reporting.md): the report at 07:00 CEST
    on 29 March began at 19:00 local the evening before, 11 hours back across the skipped hour,
    and a message 11.5 hours before it was left out."""
    shop.configure(report={"period": "12h"})
    now = datetime(2026, 3, 29, 5, 0, tzinfo=UTC)  # 07:00 in Stockholm, after the clocks went forward
    write_ledger(shop.folder / "ledger.db", [Row("t1", now - timedelta(hours=11, minutes=30))])
    summary = _counted(shop, now=now)
    assert summary["messages"] == 1
    assert summary["period"]["since"] == "2026-03-28T17:00:00.000001Z"
