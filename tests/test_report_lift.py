"""The lift against the holdout where part of it is missing: an order of a messaged or held-out
cart that cannot be converted to ``shop.currency`` is left out of the incremental revenue,
counted and noted, never dropped silently; a tier without held-out (or messaged) carts says why
its lift is not measured. Through the CLI, with a real SQLite ledger and orders CSV."""

from __future__ import annotations

from datetime import timedelta

from conftest import NOW, Shop
from reportdata import Row, order_row, write_ledger

LATER = NOW + timedelta(days=6)


def test_a_held_out_carts_order_without_a_rate_is_counted_and_noted_in_the_lift(shop: Shop) -> None:
    """h0's order is in USD, without a rate: the held-out arm's revenue lost it, the incremental
    revenue (50 EUR a messaged cart - 0 a held-out one) came out 100 EUR too high, and nothing
    said so: the currency note counted only the orders of messages, none here."""
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.1"}},
                   sequences={"default": {"holdout": 0.5, "steps": [{"delay": "1h", "template": "reminder-1"}]}})
    write_ledger(shop.folder / "ledger.db", [Row("t0", NOW), Row("t1", NOW), Row("h0", NOW, held=True),
                                             Row("h1", NOW, held=True)])
    shop.add_orders(order_row("o-t0", at=NOW + timedelta(hours=2), total="100.00", cart_id="t0"),
                    order_row("o-h0", at=NOW + timedelta(hours=2), total="100.00", cart_id="h0", currency="USD"))
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    lift = result.json["incrementality"]
    assert lift["measured"] and lift["holdout"]["converted"] == 1  # it still converted its cart
    assert ("1 order of the carts compared for the lift (1 in USD, 1 of a held-out cart) cannot be converted to "
            "EUR (add shop.exchange_rates): the incremental revenue leaves its amount out, so it is not exact; "
            "its conversion counts") in result.json["notes"]
    assert (lift["treated"]["unconverted_orders"], lift["holdout"]["unconverted_orders"]) == (0, 1)


def test_a_tier_without_held_out_carts_says_why_its_lift_is_not_measured(shop: Shop) -> None:
    """The whole lift says ``measured`` and the reason when it is not; a tier whose carts were
    all messaged (none held out) had neither, and its lift.csv row a blank note."""
    import csv

    shop.configure(sequences={"default": {"holdout": 0.5, "steps": [{"delay": "1h", "template": "reminder-1"}]}})
    write_ledger(shop.folder / "ledger.db", [Row("t0", NOW), Row("h0", NOW, held=True),
                                             Row("v0", NOW, tier="vip"), Row("w0", NOW, tier="wholesale", held=True)])
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", "--csv",
                      str(shop.folder / "tables"), now=LATER)
    assert result.exit_code == 0, result.output
    tiers = {entry["tier"]: entry for entry in result.json["incrementality"]["by_tier"]}
    assert (tiers["vip"].get("measured"), tiers["vip"].get("reason")) == (
        False, "no held-out stream of this tier began in this period")
    assert (tiers["wholesale"].get("measured"), tiers["wholesale"].get("reason")) == (
        False, "no messaged stream of this tier began in this period")
    assert tiers["standard"]["measured"] is True and "absolute" in tiers["standard"]
    with (shop.folder / "tables" / "lift.csv").open(encoding="utf-8") as handle:
        notes = {row["group"]: (row["measured"], row["note"]) for row in csv.DictReader(handle)}
    assert notes["vip"] == ("False", "no held-out stream of this tier began in this period")
