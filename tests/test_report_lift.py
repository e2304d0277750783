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


def test_a_tier_without_a_holdout_is_left_out_of_the_lift_not_taken_for_what_the_reminders_caused(
        shop: Shop) -> None:
    """The VIP carts are called (a sequence without holdout) and 40 % of them order; the others
    get mail with a holdout of 0.5, and 10 % order whether mailed or held out: the reminders add
    nothing. Pooled with the mailed carts against the held-out ones, the VIP carts made it "The
    reminders added 15.0 points of conversion ... about 30 orders that would not have come
    anyway" and 3,000.00 of incremental revenue."""
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 50, "sequence": "call"},
                                       {"name": "standard", "min_score": 0}]},
                   sequences={"default": {"holdout": 0.5, "steps": [{"delay": "1h", "template": "reminder-1"}]},
                              "call": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    write_ledger(shop.folder / "ledger.db",
                 [Row(f"v{n}", NOW, tier="vip", sequence="call", channel="call-list") for n in range(100)]
                 + [Row(f"t{n}", NOW) for n in range(100)] + [Row(f"h{n}", NOW, held=True) for n in range(100)])
    shop.add_orders(*(order_row(f"o-{cart_id}", at=NOW + timedelta(hours=2), total="100.00", cart_id=cart_id)
                      for cart_id in [f"v{n}" for n in range(40)] + [f"t{n}" for n in range(10)]
                      + [f"h{n}" for n in range(10)]))
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    lift = result.json["incrementality"]
    assert lift["measured"] and (lift["treated"]["carts"], lift["holdout"]["carts"]) == (100, 100)
    assert lift["absolute"]["estimate"] == 0 and lift["incremental_revenue"]["estimate"] == "0.00"
    assert lift["left_out"] == [{"tier": "vip", "treated_carts": 100, "holdout_carts": 0}]
    assert any(note.startswith("the lift compares the tiers with both messaged and held-out carts; vip (100 "
                               "messaged, 0 held-out carts) has no control group") for note in result.json["notes"])
    assert result.json["summary"]["revenue"] == "5000.00"  # the attributed revenue still counts every tier


def test_an_order_without_a_rate_of_a_tier_left_out_of_the_lift_is_not_noted_as_the_lifts(shop: Shop) -> None:
    """The lift leaves out a tier without held-out carts; the note on its orders without a rate
    still counted that tier's, "of the carts compared for the lift"."""
    shop.configure(shop={"currency": "EUR"},
                   priority={"tiers": [{"name": "vip", "min_score": 50, "sequence": "call"},
                                       {"name": "standard", "min_score": 0}]},
                   sequences={"default": {"holdout": 0.5, "steps": [{"delay": "1h", "template": "reminder-1"}]},
                              "call": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    write_ledger(shop.folder / "ledger.db", [Row("v0", NOW, tier="vip", sequence="call", channel="call-list"),
                                             Row("t0", NOW), Row("h0", NOW, held=True)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=2), total="100.00", cart_id="v0", currency="USD"))
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    assert result.json["incrementality"]["treated"]["unconverted_orders"] == 0
    assert not [note for note in result.json["notes"] if "of the carts compared for the lift" in note]
    assert result.json["unconverted"] == [{"currency": "USD", "orders": 1}]  # the attributed side still says so
