"""`report`: attributed revenue exactly, incremental revenue against the holdout with an honest
interval, A/B results, money per tier, the funnel, and every edge case with a clear answer."""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import shopdb

from cartrescue.config import load_config
from cartrescue.compose.incentives import Codes
from cartrescue.ledger import Ledger, Promoted
from conftest import NOW, Shop, cart, iso, write_csv
from reportdata import Experiment, Row, order_row, orders_with_column, write_ledger, write_orders

LATER = NOW + timedelta(days=6)  # every attribution window of the period has closed
PERIOD = ("--since", "2026-11-19", "--until", "2026-11-21")


def report(shop: Shop, *args: str, now: datetime = LATER) -> dict:
    result = shop.cli("report", "--json", *PERIOD, *args, now=now)
    assert result.exit_code == 0, result.output
    document = result.json
    return document


def ledger_of(shop: Shop) -> Path:
    return shop.folder / "ledger.db"


# -- the known truth, through the real pipeline ---------------------------------------------------

def test_report_recovers_the_attributed_revenue_of_a_real_run_exactly(shop: Shop) -> None:
    import random

    shop.add(*(cart(f"c{n}") for n in range(400))).configure(
        sequences={"default": {"holdout": 0.25, "steps": [{"delay": "1h", "template": "reminder-1"},
                                                          {"delay": "24h", "template": "reminder-2"}]}})
    run = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert run.exit_code == 0, run.output
    rows = Ledger(f"sqlite:///{ledger_of(shop)}").messages()
    held = {r["cart_id"] for r in rows if r["status"] == "held_out"}
    sent = {r["cart_id"] for r in rows if r["status"] == "sent"}
    assert len(held) > 60 and len(sent) > 250 and not held & sent
    rng = random.Random(7)
    expected = Decimal(0)
    converted = {"sent": 0, "held": 0}
    for n in range(400):
        cart_id = f"c{n}"
        is_held = cart_id in held
        if rng.random() < (0.10 if is_held else 0.30):  # the reminders triple conversion
            total = Decimal(rng.randrange(500, 30000)) / 100
            at = NOW + timedelta(minutes=rng.randrange(10, 4 * 1440))
            shop.add_orders(order_row(f"o{n}", at=at, total=total, cart_id=cart_id))
            converted["held" if is_held else "sent"] += 1
            if not is_held:
                expected += total
        elif n % 7 == 0:  # noise: before the message, or after the window: never attributed
            at = NOW - timedelta(hours=1) if n % 2 else NOW + timedelta(days=5, minutes=5)
            shop.add_orders(order_row(f"x{n}", at=at, total="99.99", cart_id=cart_id))
    document = report(shop)
    assert Decimal(document["summary"]["revenue"]) == expected
    assert document["summary"]["converted_carts"] == converted["sent"]
    assert document["summary"]["recipients"] == len(sent)
    lift = document["incrementality"]
    assert lift["measured"] and lift["treated"]["carts"] == len(sent) and lift["holdout"]["carts"] == len(held)
    assert lift["holdout"]["converted"] == converted["held"]
    low, high = lift["absolute"]["interval"]
    assert low < 0.20 < high and low > 0  # the true lift is 20 points, and it is clearly positive
    assert document["breakdowns"]["step"][0]["step"] == 1


# -- edge cases ----------------------------------------------------------------------------------

def test_no_orders_gives_zeros_and_a_measured_zero_lift(shop: Shop) -> None:
    write_ledger(ledger_of(shop), Experiment(50, 50, 0, 0).rows(NOW))
    document = report(shop)
    assert document["summary"]["revenue"] == "0.00" and document["summary"]["orders"] == 0
    lift = document["incrementality"]
    assert lift["measured"] and lift["absolute"]["estimate"] == 0 and lift["relative"] is None
    low, high = lift["absolute"]["interval"]
    assert low < 0 < high and "Too few carts to tell" in lift["sentence"]


def test_revenue_that_varies_in_neither_group_has_no_interval_not_a_zero_width_one(shop: Shop) -> None:
    """No order on either side: revenue per cart is 0 everywhere, and its sample variance of 0
    made "0.00 (0.00 to 0.00)" beside an orders interval of -2 to 2."""
    write_ledger(ledger_of(shop), Experiment(50, 50, 0, 0).rows(NOW))
    assert report(shop)["incrementality"]["incremental_revenue"] == {"estimate": "0.00", "interval": None}
    printed = shop.cli("report", *PERIOD, now=LATER)
    assert "0.00 (no interval)" in printed.stdout, printed.output


def test_a_group_whose_revenue_does_not_vary_takes_the_others_spread(shop: Shop) -> None:
    """Three of 20 messaged carts ordered (20.00 each), none of 20 held out: the held-out side's
    variance of 0 said nothing of its uncertainty; it takes the messaged side's."""
    write_ledger(ledger_of(shop), Experiment(20, 20, 0, 0).rows(NOW))
    shop.add_orders(*(order_row(f"o{n}", at=NOW + timedelta(hours=1), total="20.00", cart_id=f"t{n}")
                      for n in range(3)))
    revenue = report(shop)["incrementality"]["incremental_revenue"]
    per_cart = [20.0] * 3 + [0.0] * 17
    mean = sum(per_cart) / 20
    half = 1.959963984540054 * (2 * sum((x - mean) ** 2 for x in per_cart) / 19 / 20) ** 0.5 * 20
    assert revenue["estimate"] == "60.00"
    assert [float(bound) for bound in revenue["interval"]] == pytest.approx([60 - half, 60 + half], abs=0.01)


@pytest.mark.parametrize("name", ["shop #3", "shop?x", "100% shop"])
def test_a_shop_in_a_folder_named_with_a_hash_a_question_mark_or_a_percent_reports_its_own_ledger(
        tmp_path: Path, name: str) -> None:
    """The folder is part of the ledger's URL: a '#' cut the report's read-only URI (an internal
    error and an empty file beside the folder), a '?' made SQLAlchemy read another file."""
    shop = Shop(tmp_path / name)
    shop.folder.mkdir()
    write_ledger(shop.folder / "ledger.db", [Row(f"t{n}", NOW) for n in range(3)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="40.00", cart_id="t1"))
    document = report(shop)
    assert document["summary"]["messages"] == 3 and document["summary"]["revenue"] == "40.00"
    assert [path.name for path in tmp_path.iterdir()] == [name]  # nothing made beside it


def test_a_ledger_path_with_a_typo_is_noted_and_no_empty_ledger_is_made(shop: Shop) -> None:
    """A typo in the path made an empty ledger and said "0.00 won back" with nothing else; a
    digest set up before the first run is no error either: the note says which file is missing."""
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    shop.configure(ledger={"url": "sqlite:///ledgr.db"})
    document = report(shop)
    assert document["summary"]["messages"] == 0
    assert document["notes"][0] == (f"{shop.config_path}: ledger.url: {shop.folder / 'ledgr.db'} does not exist: "
                                    "no run has recorded anything there yet (a typo in the path?): read as an empty "
                                    "ledger, left unchanged")
    assert not (shop.folder / "ledgr.db").exists()


def test_a_ledger_whose_folder_does_not_exist_is_noted_as_a_missing_ledger(shop: Shop) -> None:
    """A report before the first run, its ledger in a folder the run has not made yet (state/),
    stopped with exit 2 ("unable to open database file"), where a missing file in an existing
    folder got the note: both are "no ledger yet", and neither file nor folder is made."""
    shop.configure(ledger={"url": "sqlite:///state/ledger.db"})
    document = report(shop)
    assert document["summary"]["messages"] == 0
    assert document["notes"][0] == (f"{shop.config_path}: ledger.url: {shop.folder / 'state' / 'ledger.db'} does not "
                                    "exist: no run has recorded anything there yet (a typo in the path?): read as an "
                                    "empty ledger, left unchanged")
    shown = shop.cli("report", *PERIOD, now=LATER)
    assert shown.exit_code == 0 and "does not exist" in shown.stdout + shown.stderr, shown.output
    assert not (shop.folder / "state").exists()


def test_amounts_that_add_up_past_what_a_sum_holds_are_a_source_error_not_an_internal_one(shop: Shop) -> None:
    """Each within the bounds of an amount (below 10**12), a thousand of them overflowed SQLite's
    64-bit sum: exit 70, "a bug in cartrescue"."""
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    shop.add_orders(*(order_row(f"o{n}", at=NOW + timedelta(hours=1), total="999999999999.00", cart_id="t1")
                      for n in range(1000)))
    result = shop.cli("report", "--json", *PERIOD, now=LATER)
    assert result.exit_code == 3, result.output
    assert "the period's amounts add up past 922,337,203,685,477 in the shop's currency" in result.json["error"]["message"]


def test_orders_a_quote_left_open_took_in_are_reported_and_noted_not_dropped_without_a_word(shop: Shop) -> None:
    """o1's status opens a quote that closes in o3's line: the run's reader reported it, the
    report's read o1 with o3's time and left o2 and o3 out, silently showing less won back."""
    write_ledger(ledger_of(shop), [Row(f"t{n}", NOW) for n in range(4)])
    shop.add_orders(*(order_row(f"o{n}", at=NOW + timedelta(hours=1), total="10.00", cart_id=f"t{n}")
                      for n in range(4)))
    shop.write()
    path = shop.folder / "orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace(",complete,", ',"complete,', 1)
    lines[4] = lines[4].replace(",complete,", ',complete",', 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    document = report(shop)
    assert (document["summary"]["orders"], document["summary"]["revenue"]) == (1, "10.00")  # o0's alone
    assert document["problems"] == [
        f"{path}:3: a quoted cell runs to line 5 and holds 1 row(s) of the file (order o1, o2, o3): a quote left "
        "open? Those orders are not counted: the revenue shown may be short until it is fixed"]
    assert any(note.startswith("1 problem(s) reading the shop's orders") and "may be more than shown" in note
               for note in document["notes"]), document["notes"]


def test_an_order_total_with_a_thousands_dot_is_reported_not_read_a_thousand_times_too_small(shop: Shop) -> None:
    """A European export's 1.299 (EUR) is a sale of 1,299: read as 1.30 it showed a thousandth of
    what the reminder won back, without a word, where a cart's price like it is refused."""
    write_ledger(ledger_of(shop), [Row("t0", NOW), Row("t1", NOW)])
    shop.add_orders(order_row("o0", at=NOW + timedelta(hours=1), total="1.299", cart_id="t0"),
                    order_row("o1", at=NOW + timedelta(hours=1), total="20.00", cart_id="t1"))
    document = report(shop)
    assert (document["summary"]["orders"], document["summary"]["revenue"]) == (1, "20.00")
    (problem,) = document["problems"]
    assert problem.startswith(f"{shop.folder / 'orders.csv'}:2: order o0: total: ambiguous: '1.299'"), problem


def test_orders_without_the_delimiter_that_ends_the_header_are_counted(shop: Shop) -> None:
    """``…,delivered,``: every order row was one cell short of the header, "cut short?", and none counted."""
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="40.00", cart_id="t1"))
    shop.write()
    path = shop.folder / "orders.csv"
    header, rest = path.read_text(encoding="utf-8").split("\n", 1)
    path.write_text(header + ",\n" + rest, encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    document = report(shop)
    assert (document["summary"]["revenue"], document["problems"]) == ("40.00", [])


def test_without_a_holdout_lift_is_not_measured_and_says_why(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row(f"t{n}", NOW) for n in range(20)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(days=1), total="40.00", cart_id="t1"))
    document = report(shop)
    lift = document["incrementality"]
    assert lift["measured"] is False
    assert "no sequence has a holdout" in lift["reason"] and "sequences.NAME.holdout" in lift["reason"]
    assert document["summary"]["revenue"] == "40.00"
    text = shop.cli("report", *PERIOD, now=LATER)
    assert text.exit_code == 0 and "not measured" in text.stdout and "40.00" in text.stdout


def test_without_shop_currency_the_report_names_no_currency(shop: Shop) -> None:
    """The demo's carts are in eight currencies; its one GBP order made every sum "GBP", the
    cart value of rubles, tenge and forints included. Without shop.currency nothing is converted,
    so no currency is named."""
    write_ledger(ledger_of(shop), [Row(f"t{n}", NOW) for n in range(2)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=2), total="10.00", cart_id="t0", currency="GBP"))
    document = report(shop)
    assert document["currency"] is None
    assert document["summary"]["revenue"] == "10.00"
    text = shop.cli("report", *PERIOD, now=LATER)
    assert "amounts as the shop gives them" in text.stdout and "GBP" not in text.stdout


def test_an_order_in_another_currency_is_converted_or_reported_never_guessed(shop: Shop) -> None:
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.1"}})
    write_ledger(ledger_of(shop), [Row(f"t{n}", NOW) for n in range(3)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=2), total="10.00", cart_id="t0"),
                    order_row("o2", at=NOW + timedelta(hours=2), total="250.00", cart_id="t1", currency="SEK"),
                    order_row("o3", at=NOW + timedelta(hours=2), total="70.00", cart_id="t2", currency="USD"))
    document = report(shop)
    assert document["currency"] == "EUR"
    assert Decimal(document["summary"]["revenue"]) == Decimal("35.00")  # 10 EUR + 250 SEK at 0.1
    assert document["summary"]["converted_carts"] == 3  # the USD order still converted its cart
    assert document["unconverted"] == [{"currency": "USD", "orders": 1}]
    assert any("1 in USD" in note and "shop.exchange_rates" in note for note in document["notes"])


def test_only_attributed_orders_are_listed_as_not_convertible(shop: Shop) -> None:
    """An order the report read but credited to no message (placed before it) is none of the
    period's conversions: it was listed among those "that count as conversions" all the same."""
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.1"}})
    write_ledger(ledger_of(shop), [Row("t0", NOW)])
    shop.add_orders(order_row("before", at=NOW - timedelta(hours=5), total="70.00", cart_id="t0", currency="USD"),
                    order_row("after", at=NOW + timedelta(hours=2), total="50.00", cart_id="t0", currency="USD"))
    document = report(shop)
    assert document["summary"]["orders"] == document["summary"]["unconverted_orders"] == 1
    assert document["unconverted"] == [{"currency": "USD", "orders": 1}]
    assert any("(1 in USD;" in note for note in document["notes"])


def test_a_message_without_a_cart_value_in_the_shop_currency_is_noted_not_counted_as_zero(shop: Shop) -> None:
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.1"}})
    write_ledger(ledger_of(shop), [Row("t0", NOW), Row("t1", NOW), Row("t2", NOW, cart_value=None)])
    document = report(shop)
    assert document["summary"]["cart_value"] == "100.00" and document["summary"]["messages_without_value"] == 1
    assert ("1 message of the period has no cart value in EUR (a currency without a rate in shop.exchange_rates "
            "when it was sent): left out of cart value, not guessed") in document["notes"]


def test_a_message_whose_relay_reply_was_lost_counts_as_sent_and_takes_its_order(shop: Shop) -> None:
    """`unconfirmed`: the relay took it, its reply was lost; a run counts it as done, the report too."""
    write_ledger(ledger_of(shop), [Row("t1", NOW, status="unconfirmed"), Row("t2", NOW)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=3), total="80.00", cart_id="t1"))
    document = report(shop)
    assert document["summary"]["messages"] == 2 and document["summary"]["orders"] == 1
    assert document["summary"]["revenue"] == "80.00"
    assert document["ledger"]["reply_lost"] == 1 and document["ledger"]["unconfirmed"] == 0
    assert ("1 message reached the relay without its reply (unconfirmed): counted as sent, as a run counts them"
            in document["notes"])


def test_one_claim_without_an_outcome_is_noted_in_the_singular(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row("t1", NOW, status="claimed"), Row("t2", NOW)])
    notes = report(shop)["notes"]
    assert ("1 claim has no outcome yet (a run still sending, or one that was killed): not counted as sent"
            in notes), notes


def test_an_sms_whose_gateway_reply_was_lost_is_said_to_have_reached_the_sms_gateway(shop: Shop) -> None:
    """The note said "reached the relay" of an SMS too: an SMS gateway is no relay."""
    write_ledger(ledger_of(shop), [Row("t1", NOW, status="unconfirmed", channel="sms"), Row("t2", NOW)])
    notes = report(shop)["notes"]
    assert ("1 message reached the SMS gateway without its reply (unconfirmed): counted as sent, as a run counts "
            "them") in notes, notes
    assert not any("relay" in note for note in notes)


def test_an_order_placed_before_the_message_is_not_attributed(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    shop.add_orders(order_row("early", at=NOW - timedelta(minutes=1), total="30.00", cart_id="t1"))
    document = report(shop)
    assert document["summary"]["orders"] == 0 and document["summary"]["revenue"] == "0.00"


def test_a_refund_written_as_an_order_row_does_not_lower_the_recovered_revenue(shop: Shop) -> None:
    """A row with a negative total (a refund or credit note some exports list with the orders)
    was attributed like a sale: the recovered revenue fell by it, with no word."""
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=3), total="80.00", cart_id="t1"),
                    order_row("r1", at=NOW + timedelta(hours=5), total="-80.00", cart_id="t1"))
    document = report(shop)
    assert document["summary"]["orders"] == 1 and document["summary"]["revenue"] == "80.00"


def test_an_order_dated_without_a_time_counts_in_a_report_run_that_day(shop: Shop) -> None:
    """Read as the end of its day, an order of today's date came after the report's end (now):
    a report run that afternoon left out the order a morning reminder had won back."""
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    shop.add_orders({**order_row("o1", at=NOW, total="80.00", cart_id="t1"), "created_at": "2026-11-20"})
    document = report(shop, now=NOW + timedelta(hours=5))
    assert document["summary"]["orders"] == 1 and document["summary"]["revenue"] == "80.00"


def test_an_order_dated_without_a_time_on_the_last_day_of_the_window_is_attributed(shop: Shop) -> None:
    """An order dated the day the attribution window ends may have been placed before its end:
    read as the end of that day, it fell out of the window."""
    write_ledger(ledger_of(shop), [Row("t1", NOW), Row("t2", NOW)])
    shop.add_orders({**order_row("o1", at=NOW, total="80.00", cart_id="t1"), "created_at": "2026-11-25"},
                    {**order_row("o2", at=NOW, total="30.00", cart_id="t2"), "created_at": "2026-11-26"})
    document = report(shop)
    assert document["summary"]["orders"] == 1 and document["summary"]["revenue"] == "80.00"


def test_two_messages_then_one_order_is_attributed_once_to_the_latest(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row("t1", NOW - timedelta(hours=23)), Row("t1", NOW, step=2)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=3), total="80.00", cart_id="t1"))
    document = report(shop)
    assert document["summary"]["orders"] == 1 and document["summary"]["revenue"] == "80.00"
    assert document["summary"]["messages"] == 2 and document["summary"]["recipients"] == 1
    steps = {row["step"]: row for row in document["breakdowns"]["step"]}
    assert steps[1]["orders"] == 0 and steps[2]["orders"] == 1 and steps[2]["revenue"] == "80.00"


def test_an_order_after_a_message_of_the_next_period_is_credited_there_and_only_there(shop: Shop) -> None:
    # Step 1 in this period, step 2 in the next, the order after step 2: the latest row wins it,
    # so this week's report does not credit it and next week's does; once in all.
    write_ledger(ledger_of(shop), [Row("t1", NOW), Row("t1", NOW + timedelta(days=2), step=2)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(days=2, hours=3), total="80.00", cart_id="t1"))
    this = report(shop)
    following = report(shop, "--since", "2026-11-22", "--until", "2026-11-24", now=LATER + timedelta(days=2))
    assert this["summary"]["orders"] == 0 and this["summary"]["revenue"] == "0.00"
    assert this["summary"]["messages"] == 1  # the later message is read, never counted here
    assert following["summary"]["orders"] == 1 and following["summary"]["revenue"] == "80.00"
    assert {row["step"]: row["orders"] for row in following["breakdowns"]["step"]} == {2: 1}


def _summary(shop: Shop, *args: str, now: datetime = LATER) -> dict:
    result = shop.cli("report", "--json", *args, now=now)
    assert result.exit_code == 0, result.output
    return result.json["summary"] | {"period": result.json["period"]}


def test_adjacent_periods_given_as_times_tile_without_counting_a_message_twice(shop: Shop) -> None:
    """``--until T`` ends the period just before T, where ``--since T`` begins the next: the
    message claimed at T, and the order it won, were counted in both halves."""
    boundary = NOW + timedelta(days=1)
    write_ledger(ledger_of(shop), [Row("t1", NOW), Row("t1", boundary, step=2)])
    shop.add_orders(order_row("o1", at=boundary + timedelta(hours=2), total="80.00", cart_id="t1"))
    first = _summary(shop, "--since", "2026-11-19", "--until", iso(boundary))
    second = _summary(shop, "--since", iso(boundary), "--until", "2026-11-24")
    whole = _summary(shop, "--since", "2026-11-19", "--until", "2026-11-24")
    assert (first["messages"], second["messages"], whole["messages"]) == (1, 1, 2)
    assert (first["orders"], second["orders"], whole["orders"]) == (0, 1, 1)


def test_weekly_digests_on_the_default_period_tile_across_a_clock_change(shop: Shop) -> None:
    """The default period is ``report.period`` of the shop's days: Monday 07:00 to Monday 07:00,
    167 hours over the night the clocks go forward. Counted as 168 hours, the second digest
    began at 06:00 and counted again a message and an order of the first."""
    monday = datetime(2026, 3, 23, 5, 30, tzinfo=timezone.utc)  # 06:30 in Stockholm
    write_ledger(ledger_of(shop), [Row("t1", monday)])
    shop.add_orders(order_row("o1", at=monday + timedelta(minutes=15), total="80.00", cart_id="t1"))
    first = _summary(shop, now=datetime(2026, 3, 23, 6, 0, tzinfo=timezone.utc))  # Monday 07:00 CET
    second = _summary(shop, now=datetime(2026, 3, 30, 5, 0, tzinfo=timezone.utc))  # Monday 07:00 CEST
    assert first["period"]["until"] == "2026-03-23T06:00:00Z"  # inclusive
    assert second["period"]["since"] == "2026-03-23T06:00:00.000001Z"  # just after it
    assert (first["messages"], first["orders"]) == (1, 1)
    assert (second["messages"], second["orders"]) == (0, 0)


@pytest.mark.parametrize(("first_at", "second_at"), [("00.200", "00.400"), ("00.400", "00.200"), ("00.0", "59.9")])
def test_weekly_digests_in_the_same_minute_tile_whatever_their_seconds(shop: Shop, first_at: str,
                                                                       second_at: str) -> None:
    """Cron starts Monday's digest and a `run --send` in the same second: a run 0.3 s into 07:00
    was in neither digest when they ran at .2 and .4, in both when at .4 and .2."""
    run = datetime(2026, 11, 23, 6, 0, 0, 300_000, tzinfo=timezone.utc)  # Monday 07:00:00.3 in Stockholm
    write_ledger(ledger_of(shop), [Row("t1", run)])
    shop.add_orders(order_row("o1", at=run + timedelta(hours=3), total="100.00", cart_id="t1"))

    def at(week: int, seconds: str) -> datetime:
        minute = run.replace(second=0, microsecond=0) + timedelta(weeks=week)
        return minute + timedelta(seconds=float(seconds))

    counted = [_summary(shop, now=at(0, first_at))["messages"], _summary(shop, now=at(1, second_at))["messages"]]
    assert sum(counted) == 1


def test_until_a_day_without_since_covers_the_seven_days_it_ends(shop: Shop) -> None:
    period = _summary(shop, "--until", "2026-11-22", now=LATER)["period"]
    assert (period["first_day"], period["last_day"]) == ("2026-11-16", "2026-11-22")
    assert period["since"] == "2026-11-15T23:00:00Z"  # Monday 00:00 in Stockholm


def test_the_incremental_columns_follow_a_stream_of_the_period_to_its_last_step(shop: Shop) -> None:
    """A one-day period, streams of three steps (1 h, 24 h, 72 h): the orders their third steps
    win, and the held-out streams' at the same moments, come after the period's attribution
    window, and were left out of both arms though the docs promise them."""
    shop.configure(sequences={"default": {"holdout": 0.5, "steps": [
        {"delay": "1h", "template": "reminder-1"}, {"delay": "24h", "template": "reminder-2"},
        {"delay": "72h", "template": "reminder-3"}]}})
    late = NOW + timedelta(days=6)  # 3 days after step 3, inside its window; after the period + its window
    rows = []
    for cart_id, held in (("m", False), ("h", True)):
        rows += [Row(cart_id, NOW, held=held), Row(cart_id, NOW + timedelta(hours=23), step=2, held=held),
                 Row(cart_id, NOW + timedelta(hours=71), step=3, held=held)]
    write_ledger(ledger_of(shop), rows)
    shop.add_orders(order_row("om", at=late, total="80.00", cart_id="m"),
                    order_row("oh", at=late, total="30.00", cart_id="h"))
    document = report(shop, "--since", "2026-11-20", "--until", "2026-11-20", now=NOW + timedelta(days=20))
    arms = document["incrementality"]
    assert (arms["treated"]["converted"], arms["treated"]["revenue"]) == (1, "80.00")
    assert (arms["holdout"]["converted"], arms["holdout"]["revenue"]) == (1, "30.00")
    assert document["summary"]["orders"] == 0  # step 1's message, the period's only one, won none


def test_a_later_step_of_a_stream_that_began_long_before_the_period_starts_no_stream_in_it(shop: Shop) -> None:
    """A customer came back to the cart 12 days after step 1, which re-timed step 2 (24 h after
    the last activity) to day 13: the report of that day reads rows back to max_age + the window
    (12 days) only, took step 2 for the first row of a stream that began in the period, and
    counted both carts again in the lift (one of them a conversion) after their week's report."""
    shop.configure(sequences={"default": {"holdout": 0.5, "steps": [
        {"delay": "1h", "template": "reminder-1"}, {"delay": "24h", "template": "reminder-2"}]}})
    carts = [f"c{n}" for n in range(8)]
    shop.add(*(cart(cart_id) for cart_id in carts))
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), "--json").exit_code == 0
    back = NOW + timedelta(days=13, hours=12)
    shop.carts = []
    shop.add(*(cart(cart_id, now=back, idle=timedelta(hours=25)) for cart_id in carts))
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=back).exit_code == 0
    steps = {(row["cart_id"], row["step"]): row["status"] for row in shop.messages()}
    assert {step for _cart, step in steps} == {1, 2} and "held_out" in steps.values() and "sent" in steps.values()
    shop.add_orders(*(order_row(f"o{cart_id}", at=back + timedelta(hours=2), total="70.00", cart_id=cart_id)
                      for cart_id in carts))
    day = "2026-12-03"  # step 2's day, 23:00 in Stockholm
    document = report(shop, "--since", day, "--until", day, now=back + timedelta(days=20))
    lift = document["incrementality"]
    assert document["summary"]["messages"] == sum(status == "sent" for (_c, step), status in steps.items() if step == 2)
    assert (lift["treated"]["carts"], lift["holdout"]["carts"]) == (0, 0)
    assert lift["reason"].startswith("no stream began in this period")


def test_a_period_reaching_past_a_pinned_now_ends_now(shop: Shop) -> None:
    """A replay with `--now` and `--until` a later day counted the orders placed after that
    moment as if they had already happened."""
    write_ledger(ledger_of(shop), [Row("t1", NOW), Row("t2", NOW)])
    shop.add_orders(order_row("before", at=NOW + timedelta(hours=1), total="30.00", cart_id="t1"),
                    order_row("after", at=NOW + timedelta(hours=5), total="80.00", cart_id="t2"))
    document = report(shop, now=NOW + timedelta(hours=3))
    assert document["summary"]["orders"] == 1 and document["summary"]["revenue"] == "30.00"


def test_an_order_whose_first_row_is_refunded_is_no_order_whatever_a_later_row_says(shop: Shop) -> None:
    """First row wins, as in a run: an export that appends a row per change credited a refunded
    order as won back (and the run, reading the same file, treated it as refunded)."""
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    at = NOW + timedelta(hours=2)
    shop.add_orders(dict(order_row("Z", at=at, total="100.00", cart_id="t1"), status="refunded"),
                    order_row("other", at=at, total="5.00", cart_id="nobody"),
                    order_row("Z", at=at, total="100.00", cart_id="t1"))
    document = report(shop)
    assert document["summary"]["orders"] == 0 and document["summary"]["revenue"] == "0.00"


def test_an_order_without_cart_id_is_matched_by_address_or_customer_id(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row("t1", NOW, email="ann@example.com"), Row("t2", NOW, customer_id="C2")])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="10.00", email="ann@example.com"),
                    order_row("o2", at=NOW + timedelta(hours=1), total="20.00", customer_id="C2"),
                    order_row("o3", at=NOW + timedelta(hours=1), total="40.00", email="someone@example.com"))
    document = report(shop)
    assert document["summary"]["orders"] == 2 and document["summary"]["revenue"] == "30.00"


@pytest.mark.parametrize("address", ["ann@xn--bcher-kva.example", "jose\u0301@example.com"], ids=["idna", "nfd"])
def test_an_order_to_the_address_an_older_version_kept_is_attributed_to_its_message(shop: Shop, address: str) -> None:
    """The export writes the address with its domain in IDNA form, or decomposed; an older
    cartrescue kept it so in the ledger (lower-cased alone), where the sources now read the same
    export's orders composed and with the domain in Unicode: the order, without a cart id, of the
    very address the message went to was attributed to nothing (0.00 won back)."""
    write_ledger(ledger_of(shop), [Row("t1", NOW, email=address)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="10.00", email=address))
    document = report(shop)
    assert (document["summary"]["orders"], document["summary"]["revenue"]) == (1, "10.00")


def test_a_cart_held_out_then_messaged_by_another_stream_stays_in_the_control_group(shop: Shop) -> None:
    rows = Experiment(30, 30, 0, 0).rows(NOW)
    rows.append(Row("h0", NOW + timedelta(hours=2), channel="call-list", tier="vip", sequence="call"))
    write_ledger(ledger_of(shop), rows)
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=5), total="500.00", cart_id="h0"))
    document = report(shop)
    lift = document["incrementality"]
    assert lift["holdout"]["carts"] == 30 and lift["holdout"]["converted"] == 1  # intention to treat
    assert lift["treated"]["carts"] == 30 and lift["contaminated"] == 1
    assert "stay in the control group" in lift["contamination_note"]
    assert document["summary"]["revenue"] == "500.00"  # the call won the order: attributed to it
    assert {row["channel"]: row["orders"] for row in document["breakdowns"]["channel"]} == {"call-list": 1, "email": 0}


def test_messages_outside_the_period_are_left_out(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row("old", NOW - timedelta(days=3)), Row("new", NOW)])
    shop.add_orders(order_row("o1", at=NOW - timedelta(days=2), total="10.00", cart_id="old"),
                    order_row("o2", at=NOW + timedelta(hours=1), total="20.00", cart_id="new"))
    document = report(shop)
    assert document["summary"]["recipients"] == 1 and document["summary"]["revenue"] == "20.00"


def test_a_young_period_says_orders_may_still_come(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    document = report(shop, now=NOW + timedelta(days=1))
    assert document["summary"]["maturing_carts"] == 1
    assert any("their orders may still come" in note for note in document["notes"])


# -- A/B, money, funnel, breakdowns -----------------------------------------------------------------

def _ab_shop(shop: Shop, **report_config: object) -> None:
    shop.configure(report={"min_sample": 100, **report_config}, sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}}]}})
    rows = [Row(f"{v}{n}", NOW, variant=v) for v in "ab" for n in range(300)]
    write_ledger(ledger_of(shop), rows)
    for n in range(300):
        if n % 10 == 0:  # a converts 10 %
            shop.add_orders(order_row(f"oa{n}", at=NOW + timedelta(hours=1), total="10.00", cart_id=f"a{n}"))
        if n % 4 == 0:  # b converts 25 %
            shop.add_orders(order_row(f"ob{n}", at=NOW + timedelta(hours=1), total="10.00", cart_id=f"b{n}"))


def test_ab_results_name_a_winner_only_past_the_minimum_sample(shop: Shop) -> None:
    _ab_shop(shop)
    (experiment,) = report(shop)["experiments"]
    arms = {arm["variant"]: arm for arm in experiment["variants"]}
    assert experiment["control"] == "a" and (arms["a"]["conversions"], arms["b"]["conversions"]) == (30, 75)
    assert arms["b"]["p_beats_control"] > 0.99 and experiment["winner"] == "b"
    assert arms["b"]["revenue_per_recipient"] == "2.50"
    shop.configure(report={"min_sample": 1000})
    (experiment,) = report(shop)["experiments"]
    assert experiment["winner"] is None and "needs 1,000 recipients" in experiment["verdict"]


def test_auto_promote_records_the_winner_and_later_runs_give_every_address_that_variant(shop: Shop) -> None:
    _ab_shop(shop, auto_promote=True)
    document = report(shop)
    (experiment,) = document["experiments"]
    assert experiment["promoted"]["variant"] == "b" and experiment["promoted"]["now"] is True
    assert any("promoted variant b of default step 1" in note for note in document["notes"])
    assert Ledger(f"sqlite:///{ledger_of(shop)}").promotions() == {("default", 1): Promoted("b", LATER)}
    (experiment,) = report(shop)["experiments"]
    assert "now" not in experiment["promoted"]  # promoted once
    shop.add(*(cart(f"new{n}", now=LATER + timedelta(hours=1)) for n in range(40)))
    decisions = shop.decisions(now=LATER + timedelta(hours=1))
    assert sum(d["action"] == "send" for d in decisions.values()) == 40
    assert {d["variant"] for d in decisions.values() if d["action"] == "send"} == {"b"}


def test_a_promoted_winner_of_step_2_reaches_every_stream_that_starts_after_it(shop: Shop) -> None:
    """Steps 1 and 2 share the test and `report` promoted b of step 2. A stream that started
    after the promotion kept, at step 2, the arm its step 1 had been drawn into (40 new carts got
    17 a, 23 b), though the docs promise the winner to every stream that starts after it; a
    stream already under way when it was promoted still finishes in its own arm."""
    steps = [{"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}},
             {"delay": "24h", "template": "reminder-2", "variants": {"a": 1, "b": 1}}]
    shop.configure(report={"min_sample": 100, "auto_promote": True}, sequences={"default": {"steps": steps}})
    write_ledger(ledger_of(shop), [Row(f"{v}{n}", NOW, step=2, variant=v) for v in "ab" for n in range(300)])
    shop.add_orders(*(order_row(f"o{v}{n}", at=NOW + timedelta(hours=1), total="10.00", cart_id=f"{v}{n}")
                      for v, every in (("a", 10), ("b", 4)) for n in range(0, 300, every)))
    outbox = str(shop.folder / "out")

    def run(at: datetime) -> None:
        result = shop.cli("run", "--outbox", outbox, "--json", now=at)
        assert result.exit_code == 0, result.output

    def arms(prefix: str, step: int) -> dict[str, str]:
        return {m["cart_id"]: m["variant"] for m in shop.messages()
                if m["cart_id"].startswith(prefix) and m["step"] == step and m["status"] == "sent"}

    shop.add(*(cart(f"old{n}", now=LATER - timedelta(hours=1)) for n in range(40)))
    run(LATER - timedelta(hours=1))  # step 1 of streams under way before the promotion
    document = report(shop)  # at LATER
    (experiment,) = [e for e in document["experiments"] if e["step"] == 2]
    assert experiment["winner"] == "b" and experiment["promoted"]["now"] is True, experiment
    assert any("promoted variant b of default step 2" in note for note in document["notes"])
    shop.add(*(cart(f"new{n}", now=LATER + timedelta(hours=1)) for n in range(40)))
    run(LATER + timedelta(hours=1))  # step 1 of streams that start after it
    run(LATER + timedelta(hours=26))  # step 2 of both
    old, new = arms("old", 1), arms("new", 1)
    assert len(old) == len(new) == 40 and set(old.values()) == set(new.values()) == {"a", "b"}
    assert arms("old", 2) == old  # under way: one variant throughout
    assert arms("new", 2) == {cart_id: "b" for cart_id in new}


def test_a_ledger_that_refuses_the_promotion_still_gets_its_report_with_a_note(shop: Shop) -> None:
    """A reporting role may only read (README: `report` runs on SELECT): with ``auto_promote``
    on, the promotion's write failed and the whole report with it (exit 2, nothing printed)."""
    _ab_shop(shop, auto_promote=True)
    with sqlite3.connect(ledger_of(shop)) as db:  # SQLite fails the write (an OperationalError, as a read-only file's)
        db.execute("CREATE TRIGGER refused BEFORE INSERT ON cr_promotion BEGIN INSERT INTO no_write_here VALUES (1); END")
    db.close()
    document = report(shop)
    (experiment,) = document["experiments"]
    assert experiment["winner"] == "b" and experiment["promoted"] is None, experiment
    (note,) = [note for note in document["notes"] if "not promoted" in note]
    assert "variant b of default step 1" in note and "no such table: main.no_write_here" in note, note
    assert Ledger(f"sqlite:///{ledger_of(shop)}").promotions() == {}


def test_money_per_tier_counts_sending_and_incentive_costs(shop: Shop) -> None:
    shop.configure(
        priority={"tiers": [{"name": "vip", "min_score": 50, "sequence": "call", "channel": "call-list"},
                            {"name": "standard", "min_score": 0}]},
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                         {"delay": "24h", "template": "reminder-3",
                                          "incentive": {"kind": "percent", "value": 20, "code": "BACK20"}}]},
                   "call": {"steps": [{"delay": "1h", "template": "reminder-1"}]}},
        report={"costs": {"email": "0.01", "call-list": "3.00"}, "margin": "0.5"})
    write_ledger(ledger_of(shop), [Row(f"s{n}", NOW, step=2) for n in range(10)]
                 + [Row(f"v{n}", NOW, tier="vip", channel="call-list", sequence="call") for n in range(4)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="80.00", cart_id="s1"),
                    order_row("o2", at=NOW + timedelta(hours=1), total="200.00", cart_id="v1"))
    money = {row["tier"]: row for row in report(shop)["money"]["by_tier"]}
    standard, vip = money["standard"], money["vip"]
    # 80 paid after 20 % off: the discount was 20; margin 40; 10 e-mails cost 0.10
    assert (standard["incentive_cost"], standard["channel_cost"], standard["gross"]) == ("20.00", "0.10", "40.00")
    assert standard["net"] == "19.90" and standard["orders_with_incentive"] == 1
    assert (vip["channel_cost"], vip["gross"], vip["net"]) == ("12.00", "100.00", "88.00")
    assert vip["roi"] == pytest.approx(88 / 12)


def test_a_unit_cost_below_a_cent_is_shown_as_configured(shop: Shop) -> None:
    shop.configure(report={"costs": {"email": "0.001", "call-list": "2.5"}})
    write_ledger(ledger_of(shop), [Row(f"s{n}", NOW) for n in range(10)])
    money = report(shop)["money"]
    assert money["costs"] == {"email": "0.001", "call-list": "2.50"}
    assert {row["tier"]: row["channel_cost"] for row in money["by_tier"]} == {"standard": "0.01"}


def test_a_discount_code_on_the_order_decides_whether_the_incentive_was_used(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": {
        "kind": "fixed", "value": 5, "code": "FIVE"}}]}})
    write_ledger(ledger_of(shop), [Row(f"s{n}", NOW) for n in range(3)])
    orders = [order_row("o1", at=NOW + timedelta(hours=1), total="50.00", cart_id="s0"),
              order_row("o2", at=NOW + timedelta(hours=1), total="50.00", cart_id="s1")]
    orders[0]["discount_code"] = "five"
    orders[1]["discount_code"] = ""
    shop.write()
    write_orders(shop.folder / "orders.csv", orders, ["discount_code"])
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # keep the orders file with codes
    (row,) = report(shop)["money"]["by_tier"]
    assert row["orders_with_incentive"] == 2 and row["codes_redeemed"] == 1 and row["incentive_cost"] == "5.00"


def _one_fixed_incentive(shop: Shop) -> None:
    """A 5 EUR incentive (FIVE) at step 1, sent to s0 and s1, each of whom ordered (50 EUR)."""
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": {
        "kind": "fixed", "value": 5, "code": "FIVE"}}]}})
    write_ledger(ledger_of(shop), [Row(f"s{n}", NOW) for n in range(2)])


ASSUMED = "the orders carry no discount code"


def test_an_orders_file_with_a_blank_discount_code_column_redeems_nothing(shop: Shop) -> None:
    """The file has the discount_code column, blank in every row: no order used a code. Whether
    codes were known was decided by some order carrying one, so both orders counted FIVE
    redeemed (10.00) with the "no discount code" upper-bound note."""
    _one_fixed_incentive(shop)
    orders_with_column(shop, [order_row(f"o{n}", at=NOW + timedelta(hours=1), total="50.00", cart_id=f"s{n}")
                              for n in range(2)], {}, "discount_code")
    document = report(shop)
    (row,) = document["money"]["by_tier"]
    assert (row["orders_with_incentive"], row["codes_redeemed"], row["incentive_cost"]) == (2, 0, "0.00")
    assert document["money"]["codes_in_orders"] is True
    assert not [note for note in document["notes"] if ASSUMED in note]


def test_an_orders_file_without_a_discount_code_column_assumes_the_incentive_used(shop: Shop) -> None:
    """Without the column the file cannot say which code an order used: every attributed order
    after the incentive is assumed to have used it, an upper bound the report's note names."""
    _one_fixed_incentive(shop)
    shop.add_orders(*[order_row(f"o{n}", at=NOW + timedelta(hours=1), total="50.00", cart_id=f"s{n}")
                      for n in range(2)])
    document = report(shop)
    (row,) = document["money"]["by_tier"]
    assert (row["orders_with_incentive"], row["codes_redeemed"], row["incentive_cost"]) == (2, 2, "10.00")
    assert document["money"]["codes_in_orders"] is False
    assert [note for note in document["notes"] if ASSUMED in note]


def test_an_order_using_an_earlier_steps_code_counts_that_steps_incentive(shop: Shop) -> None:
    """The order after step 2 is attributed to step 2's message; it used step 1's code, which was
    not step 2's, so the discount the customer really got was counted nowhere: not redeemed, no
    cost, an ROI too good. A code the cart never got (s2 had only step 2) stays unredeemed."""
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "incentive": {"kind": "fixed", "value": 5, "code": "FIVE"}},
        {"delay": "12h", "template": "reminder-2", "incentive": {"kind": "fixed", "value": 10, "code": "TEN"}}]}})
    later = NOW + timedelta(hours=12)
    write_ledger(ledger_of(shop), [Row("s0", NOW), Row("s0", later, step=2), Row("s1", NOW), Row("s1", later, step=2),
                                   Row("s2", later, step=2)])
    orders = [order_row(f"o{n}", at=later + timedelta(hours=2), total="50.00", cart_id=f"s{n}") for n in range(3)]
    for order, used in zip(orders, ["five", "TEN", "FIVE"]):
        order["discount_code"] = used
    shop.write()
    write_orders(shop.folder / "orders.csv", orders, ["discount_code"])
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # keep the orders file with codes
    (row,) = report(shop)["money"]["by_tier"]
    assert (row["orders_with_incentive"], row["codes_redeemed"], row["incentive_cost"]) == (3, 2, "15.00")


def test_an_earlier_steps_code_is_what_the_order_redeemed_not_a_later_steps_offer_without_a_code(
        shop: Shop) -> None:
    """Step 2 offers free shipping with no code (the shop grants it at checkout): its codes
    unknown, any code counted as its redemption, so s0's order with step 1's FIVE cost the
    shipping (4.90) and never the 5 EUR the customer got. s1 got step 2 only and used a code of
    its own: free shipping, as before. s2 used no code: nothing redeemed."""
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "incentive": {"kind": "fixed", "value": 5, "code": "FIVE"}},
        {"delay": "12h", "template": "reminder-2", "incentive": {"kind": "free_shipping"}}]}},
        report={"free_shipping_cost": "4.90"})
    later = NOW + timedelta(hours=12)
    write_ledger(ledger_of(shop), [Row("s0", NOW), Row("s0", later, step=2), Row("s1", later, step=2),
                                   Row("s2", later, step=2)])
    orders = [order_row(f"o{n}", at=later + timedelta(hours=2), total="50.00", cart_id=f"s{n}") for n in range(3)]
    for order, used in zip(orders, ["FIVE", "SHIPIT", ""]):
        order["discount_code"] = used
    orders_with_column(shop, orders, {order["order_id"]: order.pop("discount_code") for order in orders},
                       "discount_code")
    (row,) = report(shop)["money"]["by_tier"]
    assert (row["orders_with_incentive"], row["codes_redeemed"], row["incentive_cost"]) == (3, 2, "9.90")


def test_an_earlier_steps_code_costs_its_own_tiers_offer_in_the_row_of_the_order(shop: Shop) -> None:
    """s0 was vip at step 1 (8 EUR off, EIGHT) and standard at step 2, after its cart shrank; it
    ordered with EIGHT. The cost is what EIGHT gave (8, not the standard tier's 5), counted in
    the standard row, beside the order and revenue it bought: the vip row gets no redemption
    without an order, and each row's net and ROI stay those of its own orders."""
    shop.configure(
        priority={"tiers": [{"name": "vip", "min_score": 50}, {"name": "standard", "min_score": 0}]},
        sequences={"default": {"steps": [
            {"delay": "1h", "template": "reminder-1", "incentive": {"kind": "fixed", "value": 5, "code": "FIVE"},
             "tier_incentives": {"vip": {"kind": "fixed", "value": 8, "code": "EIGHT"}}},
            {"delay": "12h", "template": "reminder-2"}]}})
    write_ledger(ledger_of(shop), [Row("s0", NOW, tier="vip"), Row("s0", NOW + timedelta(hours=12), step=2)])
    orders = [order_row("o0", at=NOW + timedelta(hours=14), total="50.00", cart_id="s0")]
    orders_with_column(shop, orders, {"o0": "eight"}, "discount_code")
    money = {row["tier"]: row for row in report(shop)["money"]["by_tier"]}
    assert [(tier, row["orders"], row["codes_redeemed"], row["incentive_cost"]) for tier, row in money.items()] == [
        ("standard", 1, 1, "8.00"), ("vip", 0, 0, "0.00")]


@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_an_order_using_the_code_a_retry_replaced_counts_as_redeemed_for_its_message(shop: Shop, kind: str) -> None:
    """s0's first attempt carried POOL-0000 (it may have reached the customer: unconfirmed, or
    the relay lied); its retry after that code expired carried POOL-0002. The customer ordered
    with the first code: the incentive was redeemed, and cost its 5 EUR, for s0's message."""
    (shop.folder / "codes.txt").write_text("POOL-0000\nPOOL-0001\nPOOL-0002\nPOOL-0003\n", encoding="utf-8")
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": {
        "kind": "fixed", "value": 5, "valid_for": "1d", "codes": {"pool": "welcome", "file": "codes.txt"}}}]}})
    with contextlib.ExitStack() as stack:
        if kind != "sqlite":
            shop.configure(ledger={"url": stack.enter_context(shopdb.shop_database(kind, "ledger")).url})
        shop.write()
        config = load_config(shop.config_path)
        write_ledger(config.ledger_url, [Row(f"s{n}", NOW) for n in range(3)])
        ledger = stack.enter_context(contextlib.closing(Ledger(config.ledger_url)))
        claims = {row["cart_id"]: row["id"] for row in ledger.messages()}
        codes = Codes(config, ledger)

        def allocate(cart_id: str, at: datetime) -> str:
            return codes.allocate("welcome", claims[cart_id], cart_key=f"csv:{cart_id}", email=None, step=1, now=at).code

        assert [allocate("s0", NOW), allocate("s1", NOW), allocate("s0", NOW + timedelta(days=3)),
                allocate("s2", NOW)] == ["POOL-0000", "POOL-0001", "POOL-0002", "POOL-0003"]
        orders = [order_row(f"o{n}", at=NOW + timedelta(hours=2), total="50.00", cart_id=f"s{n}") for n in range(3)]
        for order, used in zip(orders, ["pool-0000", "POOL-0001", "POOL-0002"]):  # s2 used s0's fresh code
            order["discount_code"] = used
        write_orders(shop.folder / "orders.csv", orders, ["discount_code"])
        shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # keep the orders file with codes
        (row,) = report(shop)["money"]["by_tier"]
    assert (row["orders_with_incentive"], row["codes_redeemed"], row["incentive_cost"]) == (3, 2, "10.00")


@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_forget_leaves_the_redeemed_codes_and_incentive_cost_of_its_messages_as_they_were(
        shop: Shop, kind: str) -> None:
    """Step 1 gives 5 EUR off (its own code; s0's retry replaced W-0000 with W-0002), step 2
    15 % off (its own code). s0 ordered after step 2 with step 1's first code: step 1's 5 EUR
    were redeemed. s1 used s0's code: nothing of s1's was. ``forget`` kept the codes spent but
    took them off their messages, so the report no longer knew them: s0's order counted as step
    2's 15 % and s1's, any code being taken for a message whose codes are unknown, too."""
    for pool, prefix in (("welcome", "W"), ("back15", "B")):
        (shop.folder / f"{pool}.txt").write_text("".join(f"{prefix}-000{n}\n" for n in range(4)), encoding="utf-8")
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "incentive": {
            "kind": "fixed", "value": 5, "valid_for": "1d", "codes": {"pool": "welcome", "file": "welcome.txt"}}},
        {"delay": "12h", "template": "reminder-2", "incentive": {
            "kind": "percent", "value": 15, "codes": {"pool": "back15", "file": "back15.txt"}}}]}})
    later = NOW + timedelta(hours=12)
    with contextlib.ExitStack() as stack:
        if kind != "sqlite":
            shop.configure(ledger={"url": stack.enter_context(shopdb.shop_database(kind, "ledger")).url})
        shop.write()
        config = load_config(shop.config_path)
        write_ledger(config.ledger_url, [Row(f"s{n}", moment, step=step) for n in range(2)
                                         for step, moment in ((1, NOW), (2, later))])
        ledger = stack.enter_context(contextlib.closing(Ledger(config.ledger_url)))
        claims = {(row["cart_id"], row["step"]): row["id"] for row in ledger.messages()}
        codes = Codes(config, ledger)

        def allocate(pool: str, cart_id: str, step: int, at: datetime) -> str:
            return codes.allocate(pool, claims[(cart_id, step)], cart_key=f"csv:{cart_id}", email=None, step=step,
                                  now=at).code

        assert [allocate("welcome", "s0", 1, NOW), allocate("welcome", "s1", 1, NOW),
                allocate("welcome", "s0", 1, NOW + timedelta(days=3)), allocate("back15", "s0", 2, later),
                allocate("back15", "s1", 2, later)] == ["W-0000", "W-0001", "W-0002", "B-0000", "B-0001"]
        orders = [order_row(f"o{n}", at=later + timedelta(hours=2), total="85.00", cart_id=f"s{n}") for n in range(2)]
        for order, used in zip(orders, ["w-0000", "W-0002"]):
            order["discount_code"] = used
        write_orders(shop.folder / "orders.csv", orders, ["discount_code"])
        shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # keep the orders file with codes
        before = report(shop)["money"]["by_tier"]
        for cart_id in ("s0", "s1"):
            forgotten = shop.cli("forget", f"{cart_id}@example.com", "--json", now=None)
            assert forgotten.exit_code == 0, forgotten.output
        after = report(shop)["money"]["by_tier"]
    (row,) = before
    assert (row["orders_with_incentive"], row["codes_redeemed"], row["incentive_cost"]) == (2, 1, "5.00")
    assert after == before


def test_a_fixed_incentive_costs_its_value_in_the_carts_currency_converted(shop: Shop) -> None:
    # "15 kr off" in a Swedish cart is 15 SEK, not 15 EUR; a currency without a rate is not guessed.
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.1"}},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": {
                       "kind": "fixed", "value": 15, "code": "FIFTEEN"}}]}})
    write_ledger(ledger_of(shop), [Row(f"s{n}", NOW) for n in range(3)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="500.00", cart_id="s0", currency="SEK"),
                    order_row("o2", at=NOW + timedelta(hours=1), total="40.00", cart_id="s1", currency="EUR"),
                    order_row("o3", at=NOW + timedelta(hours=1), total="9000", cart_id="s2", currency="HUF"))
    document = report(shop)
    (row,) = document["money"]["by_tier"]
    assert row["codes_redeemed"] == 3 and row["incentive_cost"] == "16.50"  # 15 SEK = 1.50 EUR, + 15 EUR
    assert any(note.startswith("incentives redeemed on orders in HUF have no exchange rate to EUR")
               for note in document["notes"])


def test_funnel_counts_carts_by_their_latest_decision_and_lists_skip_reasons(shop: Shop) -> None:
    shop.add(*(cart(f"c{n}") for n in range(10)), cart("nocon", consent="no"), cart("empty", email=""))
    run = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert run.exit_code == 0, run.output
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="10.00", cart_id="c1"))
    funnel = report(shop)["funnel"]
    assert (funnel["seen"], funnel["eligible"], funnel["messaged"], funnel["ordered"]) == (12, 10, 10, 1)
    assert {s["reason"]: s["carts"] for s in funnel["skips"]} == {"no_consent": 1, "no_contact": 1}
    assert funnel["runs"]["runs"] == 1 and funnel["runs"]["sent"] == 10


def test_carts_waiting_for_the_next_run_of_a_capped_run_count_as_eligible(shop: Shop) -> None:
    # `run --limit 2` (the README's careful first live run): the other three carts were due and
    # passed every gate; they wait with run_limit. The funnel counted them in no stage after
    # seen, neither eligible nor skipped: 5 seen, 2 eligible, and no reason for the other three.
    shop.add(*(cart(f"c{n}") for n in range(5)))
    run = shop.cli("run", "--outbox", str(shop.folder / "out"), "--limit", "2", "--json")
    assert run.exit_code == 0, run.output
    assert run.json["counts"]["reasons"].get("run_limit") == 3, run.json["counts"]
    funnel = report(shop)["funnel"]
    assert (funnel["seen"], funnel["eligible"], funnel["messaged"]) == (5, 5, 2), funnel
    assert funnel["skips"] == []


def test_carts_waiting_for_the_day_after_a_newsletter_count_as_eligible(shop: Shop) -> None:
    # Reminded tomorrow rather than on the newsletter's day: eligible as one messaged today waits.
    shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bob@example.com"))
    write_csv(shop.folder / "sends.csv", [{"email": "ann@example.com", "sent_at": iso(NOW - timedelta(hours=2)),
                                           "campaign": "Friday deals"}], ["email", "sent_at", "campaign"])
    shop.configure(source={"newsletters": {"file": "sends.csv"}})
    run = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert run.exit_code == 0, run.output
    assert run.json["counts"]["reasons"] == {"due": 1, "newsletter_today": 1}, run.json["counts"]
    funnel = report(shop)["funnel"]
    assert (funnel["seen"], funnel["eligible"], funnel["messaged"]) == (2, 2, 1), funnel


def test_every_cart_seen_and_not_eligible_is_in_the_skips_with_the_reason_it_waits(shop: Shop) -> None:
    # A cart still being shopped (idle_below_cutoff) and one whose customer's order row could not be
    # read (unreadable_order) wait, passing no gate: the funnel had them in no stage after seen and
    # no skip, so seen - eligible was more than the skips listed, and a held-back customer unseen.
    shop.add(cart("c1"), cart("busy", idle=timedelta(minutes=10)), cart("held", email="held@example.com"))
    shop.add_orders({"order_id": "o9", "email": "held@example.com", "cart_id": "", "total": "12.00", "currency": "EUR",
                     "status": "paid", "created_at": "20/11/2026", "delivered": "no"})
    run = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert run.json["counts"]["reasons"] == {"due": 1, "idle_below_cutoff": 1, "unreadable_order": 1}, run.output
    funnel = report(shop)["funnel"]
    assert (funnel["seen"], funnel["eligible"], funnel["messaged"]) == (3, 1, 1), funnel
    assert {s["reason"]: s["carts"] for s in funnel["skips"]} == {"idle_below_cutoff": 1, "unreadable_order": 1}
    assert funnel["seen"] == funnel["eligible"] + sum(s["carts"] for s in funnel["skips"])


def test_carts_decided_again_after_the_period_still_count_as_eligible_in_it(shop: Shop) -> None:
    # cr_decision keeps each cart's latest decision; the runs after the period replace those of
    # the period, and the funnel must not show fewer eligible carts than messaged ones.
    shop.add(*(cart(f"c{n}") for n in range(10)), cart("nocon", consent="no"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    later = NOW + timedelta(days=2)  # the next period's run decides every cart again
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), now=later).exit_code == 0
    funnel = report(shop)["funnel"]
    assert funnel["messaged"] == 10 and funnel["eligible"] == 10 and funnel["seen"] == 10
    assert funnel["seen"] >= funnel["eligible"] >= funnel["messaged"]


def test_carts_messaged_before_the_period_and_skipped_in_it_are_its_skips_not_its_eligible_carts(shop: Shop) -> None:
    shop.add(*(cart(f"c{n}") for n in range(4)))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="10.00", cart_id="c1"))
    weeks_later = NOW + timedelta(days=15)  # c1 ordered, the others too old for another step
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), now=weeks_later).exit_code == 0
    result = shop.cli("report", "--json", "--since", (weeks_later - timedelta(days=1)).date().isoformat(),
                      "--until", (weeks_later + timedelta(days=1)).date().isoformat(), now=weeks_later + timedelta(days=6))
    funnel = result.json["funnel"]
    assert (funnel["seen"], funnel["eligible"], funnel["messaged"]) == (4, 0, 0), funnel
    assert {s["reason"]: s["carts"] for s in funnel["skips"]} == {"ordered": 1, "too_old": 3}


def test_a_report_without_an_orders_file_says_it_reads_no_order_not_just_zero(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row(f"t{n}", NOW) for n in range(3)])
    shop.configure(source={"orders": None})
    document = report(shop)
    assert document["summary"]["revenue"] == "0.00"
    assert any(note.endswith("source.orders is not set: no order is read, so nothing is attributed and no cart "
                             "counts as converted (revenue 0.00 and the lift say nothing); point it at the shop's "
                             "orders export") for note in document["notes"]), document["notes"]


def test_breakdowns_by_locale_tier_and_day(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row("t1", NOW, locale="sv"), Row("t2", NOW, locale="en"),
                                   Row("t3", NOW + timedelta(hours=20), locale="sv")])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="10.00", cart_id="t1"),
                    order_row("o3", at=NOW + timedelta(days=1), total="30.00", cart_id="t3"))
    document = report(shop)
    locales = {row["locale"]: (row["recipients"], row["orders"], row["revenue"]) for row in document["breakdowns"]["locale"]}
    assert locales == {"en": (1, 0, "0.00"), "sv": (2, 2, "40.00")}
    days = {row["day"]: row for row in document["breakdowns"]["day"]}  # Stockholm days
    assert days["2026-11-20"]["messages"] == 2 and days["2026-11-21"]["messages"] == 1
    assert days["2026-11-20"]["revenue"] == "10.00" and days["2026-11-21"]["revenue"] == "30.00"
    text = shop.cli("report", *PERIOD, "--by", "locale", "--by", "day", now=LATER)
    assert text.exit_code == 0 and "By locale" in text.stdout and "By day" in text.stdout


def test_a_breakdown_without_rows_says_so_instead_of_an_empty_table(shop: Shop) -> None:
    """An empty ledger printed "By step" over headers and no row; the HTML page leaves an empty
    breakdown out, the terminal was asked for it with --by and answers in one line."""
    write_ledger(ledger_of(shop), [])
    text = shop.cli("report", *PERIOD, "--by", "step", "--by", "tier", now=LATER)
    assert text.exit_code == 0, text.output
    assert "By step: no messages in this period.\nBy tier: no messages in this period.\n" in text.stdout
    assert "recipients" not in text.stdout  # no table's header


def test_csv_writes_one_file_per_table(shop: Shop, tmp_path: Path) -> None:
    write_ledger(ledger_of(shop), Experiment(20, 20, 0, 0).rows(NOW))
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="10.00", cart_id="t1"))
    folder = tmp_path / "csv"
    document = report(shop, "--csv", str(folder))
    names = sorted(Path(p).name for p in document["outputs"]["csv"])
    assert names == sorted(["by_step.csv", "by_tier.csv", "by_variant.csv", "by_locale.csv", "by_channel.csv",
                            "by_day.csv", "summary.csv", "lift.csv", "experiments.csv", "money.csv", "funnel.csv",
                            "survey.csv"])
    with (folder / "by_step.csv").open(encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["sequence"], row["step"], row["recipients"], row["revenue"]) == ("default", "1", "20", "10.00")
    with (folder / "lift.csv").open(encoding="utf-8") as handle:
        lift = list(csv.DictReader(handle))
    assert lift[0]["group"] == "all" and lift[0]["holdout_carts"] == "20"


# -- errors and the one JSON document ------------------------------------------------------------------

@pytest.mark.parametrize("args,code,fragment", [
    (("--since", "last week"), 2, "--since: expected a date"),
    (("--by", "colour"), 2, "--by colour: expected one of"),
    (("--since", "2026-11-22", "--until", "2026-11-20"), 2, "is not before --until"),
    (("--since", "2026-12-01", "--until", "2026-12-05"), 2, "is not before now"),
    (("--since", "2026-12-01"), 2, "is not before now"),
])
def test_usage_errors_exit_2_with_one_json_document(shop: Shop, args: tuple[str, ...], code: int,
                                                    fragment: str) -> None:
    result = shop.cli("report", "--json", *args, now=LATER)
    assert result.exit_code == code
    document = json.loads(result.stdout)
    assert document["error"]["exit_code"] == code and fragment in document["error"]["message"]


def test_at_80_columns_the_terminal_report_shows_every_figure_and_header_whole(shop: Shop,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A krona shop's week at 80 columns (a terminal, or any pipe: rich's default) printed its
    money per tier as "SEK34,2…", "SEK2,40…", "SEK31,…" and its tier "standa…", its headers
    "recipien…": figures an owner cannot read, or misreads."""
    monkeypatch.setenv("COLUMNS", "80")
    shop.configure(shop={"currency": "SEK"}, report={"margin": 0.4, "costs": {"email": 0.01}})
    write_ledger(ledger_of(shop), [Row(f"h{n}", NOW, tier="high", cart_value="48000.00") for n in range(3)]
                 + [Row(f"s{n}", NOW, tier="standard", cart_value="41000.00") for n in range(3)]
                 + [Row("x1", NOW, held=True)])
    shop.add_orders(*(order_row(f"o{name}", at=NOW + timedelta(hours=2), total="42800.00", currency="SEK", cart_id=name)
                      for name in ("h0", "h1", "s0")))
    result = shop.cli("report", *PERIOD, "--by", "step", "--by", "tier", now=LATER)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert rows and not any("…" in row for row in rows), result.stdout
    for figure in ("SEK34,240.00", "SEK17,120.00", "SEK34,239.97", "SEK128,400.00", "standard"):
        assert figure in result.stdout, (figure, result.stdout)


def test_at_80_columns_a_table_that_fits_with_shorter_headers_stays_within_80_columns(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures kept whole must not cost a euro shop's everyday tables their fit: the money table
    then shortens a header ("messa…") rather than fold every line in the owner's terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    shop.configure(shop={"currency": "EUR"})
    write_ledger(ledger_of(shop), [Row(f"h{n}", NOW, tier="high") for n in range(3)]
                 + [Row(f"s{n}", NOW, tier="standard") for n in range(3)])
    shop.add_orders(order_row("oh0", at=NOW + timedelta(hours=2), total="856.00", cart_id="h0"))
    result = shop.cli("report", *PERIOD, "--by", "step", "--by", "tier", now=LATER)
    assert result.exit_code == 0, result.output
    assert max(len(line.rstrip()) for line in result.stdout.splitlines()) <= 80, result.stdout
    assert "€856.00" in result.stdout and "standard" in result.stdout


def test_a_period_in_the_future_names_the_days_the_owner_gave_in_the_shops_time_not_utc_ones(shop: Shop) -> None:
    """``--since 2026-12-01`` in Stockholm said "--since 2026-11-30 23:00 UTC is not before now":
    a day the owner never typed, in a zone the shop does not keep."""
    result = shop.cli("report", "--json", "--since", "2026-12-01", now=LATER)
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert message.startswith("--since 2026-12-01 is not before now:"), message
    assert "2026-12-01 00:00" in message and "Europe/Stockholm" in message and "UTC" not in message


def test_days_in_the_wrong_order_are_said_as_given_as_report_all_says_them(shop: Shop) -> None:
    """``--since 2026-11-22 --until 2026-11-20`` said "--since 2026-11-21 23:00 UTC is not before
    --until 2026-11-20 22:59 UTC"; ``report-all`` says the same mistake with the days given."""
    result = shop.cli("report", "--json", "--since", "2026-11-22", "--until", "2026-11-20", now=LATER)
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"].startswith("--since 2026-11-22 is not before --until 2026-11-20:")
    assert "UTC" not in result.json["error"]["message"]


def test_an_until_alone_whose_period_begins_after_now_names_until_not_a_since_never_given(shop: Shop) -> None:
    """``--until 2027-01-31`` alone said "--since 2027-01-24 23:00 UTC is not before now": the
    owner gave no --since, and the period counted back from --until had not begun yet."""
    result = shop.cli("report", "--json", "--until", "2027-01-31", now=LATER)
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert message.startswith("--until 2027-01-31:"), message
    assert "--since 2027" not in message and "report.period" in message and "UTC" not in message


def test_a_since_within_the_minute_the_report_runs_in_does_not_name_an_until_never_given(shop: Shop) -> None:
    """Without --until the period ends at the start of the current minute: ``--since`` 30 seconds
    into it said "--since 2026-11-26 10:00 UTC is not before --until 2026-11-26 10:00 UTC"."""
    at = LATER + timedelta(seconds=45)
    result = shop.cli("report", "--json", "--since", (LATER + timedelta(seconds=30)).isoformat(), now=at)
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert "--until" not in message and "start of the minute" in message and "11:00:30" in message, message


def test_a_csv_table_that_cannot_be_written_is_a_usage_error_naming_csv_not_an_internal_one(shop: Shop,
                                                                                            tmp_path: Path) -> None:
    """A folder in the way of by_step.csv: the report said "internal error: IsADirectoryError ...
    (a bug in cartrescue)", exit 70, where --html's file says what cannot be written, exit 2."""
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    (tmp_path / "csv" / "by_step.csv").mkdir(parents=True)
    result = shop.cli("report", "--json", *PERIOD, "--csv", str(tmp_path / "csv"), now=LATER)
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"]["code"] == "config"
    assert document["error"]["message"].startswith(f"--csv {tmp_path / 'csv'}: cannot write: Is a directory")


def test_an_unreadable_source_exits_3(shop: Shop) -> None:
    write_ledger(ledger_of(shop), [Row("t1", NOW)])
    shop.configure(source={"orders": "missing-orders.csv"})
    result = shop.cli("report", "--json", *PERIOD, now=LATER)
    assert result.exit_code == 3 and result.json["error"]["code"] == "source"
    assert "missing-orders.csv" in result.json["error"]["message"]


def test_an_older_ledger_gets_the_report_columns_and_reports_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE cr_message (id INTEGER PRIMARY KEY, cart_key VARCHAR(191) NOT NULL, cart_id VARCHAR(191)"
                   " NOT NULL, email VARCHAR(254), step INTEGER NOT NULL, channel VARCHAR(32) NOT NULL, transport"
                   " VARCHAR(32) NOT NULL, template VARCHAR(191) NOT NULL, variant VARCHAR(64), tier VARCHAR(64), score"
                   " FLOAT, status VARCHAR(32) NOT NULL, reply VARCHAR(1000) NOT NULL, message_id VARCHAR(255) NOT NULL,"
                   " attempts INTEGER NOT NULL, run_id INTEGER, claimed_at DATETIME NOT NULL, finished_at DATETIME)")
        db.execute("INSERT INTO cr_message (cart_key, cart_id, email, step, channel, transport, template, status, reply,"
                   " message_id, attempts, claimed_at) VALUES ('csv:1', '1', 'a@example.com', 1, 'email', 'smtp', 'r',"
                   " 'sent', '', '', 1, '2026-11-20 10:00:00.000000')")
    ledger = Ledger(f"sqlite:///{path}")
    try:
        (row,) = ledger.messages()
        assert row["sequence"] is None and row["locale"] is None and "cart_value" in row
        rows = list(ledger.report_messages(NOW - timedelta(days=1), NOW + timedelta(days=1)))
        assert [(r[1], r[11]) for r in rows] == [("csv:1", "sent")]
    finally:
        ledger.close()


def test_a_percent_incentive_on_an_order_without_a_rate_is_left_out_with_a_note_not_costed_zero(shop: Shop) -> None:
    shop.configure(shop={"currency": "EUR"}, sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3", "incentive": {"kind": "percent", "value": 20, "code": "PCT20"}}]}})
    write_ledger(ledger_of(shop), [Row(f"s{n}", NOW) for n in range(2)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=1), total="240.00", cart_id="s0", currency="EUR"),
                    order_row("o2", at=NOW + timedelta(hours=1), total="260.00", cart_id="s1", currency="USD"))
    document = report(shop)
    (row,) = document["money"]["by_tier"]
    assert row["codes_redeemed"] == 2 and row["incentive_cost"] == "60.00"  # 20 % of 300 before the discount
    assert any(note.startswith("incentives redeemed on orders in USD have no exchange rate to EUR")
               for note in document["notes"])


def test_an_empty_period_says_nothing_was_messaged_not_that_nothing_was_held_out(shop: Shop) -> None:
    shop.configure(sequences={"default": {"holdout": 0.1, "steps": [{"delay": "1h", "template": "reminder-1"}]}})
    write_ledger(ledger_of(shop), [])
    assert report(shop)["incrementality"]["reason"].startswith("no stream began in this period")


def test_a_period_of_later_steps_only_says_no_stream_began_in_it_not_that_nothing_was_messaged(shop: Shop) -> None:
    """Step 2 of carts whose step 1 went out the period before: messages in the period, and
    a lift that compares streams by their first row has none of its own."""
    shop.configure(sequences={"default": {"holdout": 0.1, "steps": [{"delay": "1h", "template": "reminder-1"}]}})
    write_ledger(ledger_of(shop), [Row("t1", NOW - timedelta(days=3)), Row("t1", NOW, step=2)])
    document = report(shop)
    assert document["summary"]["messages"] == 1
    assert document["incrementality"]["reason"].startswith("no stream began in this period")
