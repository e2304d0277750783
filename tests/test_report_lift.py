"""The lift against the holdout where part of it is missing: an order of a messaged or held-out
cart that cannot be converted to ``shop.currency`` is left out of the incremental revenue,
counted and noted, never dropped silently; a tier without held-out (or messaged) carts says why
its lift is not measured. Through the CLI, with a real SQLite ledger and orders CSV."""

from __future__ import annotations

from datetime import timedelta

import pytest

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


def _two_tiers(shop: Shop, *, high_share: float, standard_share: float,
               carts: dict[tuple[str, bool], tuple[int, int]]) -> None:
    """Tiers ``high`` and ``standard`` on sequences of their own, holding out ``high_share`` and
    ``standard_share``; ``carts`` maps (tier, held out) to (carts, of which ordered 100.00)."""
    shop.configure(priority={"tiers": [{"name": "high", "min_score": 50, "sequence": "high"},
                                       {"name": "standard", "min_score": 0, "sequence": "default"}]},
                   sequences={"high": {"holdout": high_share, "steps": [{"delay": "1h", "template": "reminder-1"}]},
                              "default": {"holdout": standard_share,
                                          "steps": [{"delay": "1h", "template": "reminder-1"}]}})
    rows, ordered = [], []
    for (tier, held), (count, orders) in carts.items():
        sequence = "high" if tier == "high" else "default"
        ids = [f"{tier}-{'h' if held else 't'}{n}" for n in range(count)]
        rows += [Row(cart_id, NOW, tier=tier, sequence=sequence, held=held) for cart_id in ids]
        ordered += ids[:orders]
    write_ledger(shop.folder / "ledger.db", rows)
    shop.add_orders(*(order_row(f"o-{cart_id}", at=NOW + timedelta(hours=2), total="100.00", cart_id=cart_id)
                      for cart_id in ordered))


def test_tiers_holding_out_different_shares_show_no_lift_where_the_reminders_add_none(shop: Shop) -> None:
    """``high`` holds out 10 % and converts 40 % of its carts, ``standard`` holds out 50 % and
    converts 10 %, messaged or not: the reminders add nothing. The messaged carts are mostly
    ``high``, the held-out ones mostly ``standard``, and the pooled rates (29.3 % against 15.0 %)
    made it "The reminders added 14.3 points of conversion ... about 20 orders"."""
    _two_tiers(shop, high_share=0.1, standard_share=0.5,
               carts={("high", False): (90, 36), ("high", True): (10, 4),
                      ("standard", False): (50, 5), ("standard", True): (50, 5)})
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    lift = result.json["incrementality"]
    assert abs(lift["absolute"]["estimate"]) < 1e-9 and lift["incremental_revenue"]["estimate"] == "0.00"
    assert lift["stratified"] is True and lift["method"].startswith("stratified by tier")
    low, high = lift["absolute"]["interval"]
    assert low < 0 < high
    assert abs(lift["incremental_orders"]["estimate"]) < 1e-6
    assert lift["sentence"].startswith("Too few carts to tell whether the reminders add orders: the lift is +0.0 points")
    assert any(note.startswith("the tiers compared hold out different shares of their carts (high 0.1, standard 0.5)")
               and "(+14.3 points) is not the lift" in note for note in result.json["notes"])


def test_tiers_holding_out_different_shares_weigh_each_tiers_lift_by_its_messaged_carts(shop: Shop) -> None:
    """``high`` (10 % held out) converts 40 % of messaged carts against 20 % held out (+20
    points, 270 messaged carts), ``standard`` (50 %) 20 % against 10 % (+10 points, 150 carts):
    the reminders added 0.2 x 270 + 0.1 x 150 = 69 orders. The pooled rates said 21.2 points and
    89 orders."""
    _two_tiers(shop, high_share=0.1, standard_share=0.5,
               carts={("high", False): (270, 108), ("high", True): (30, 6),
                      ("standard", False): (150, 30), ("standard", True): (150, 15)})
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    lift = result.json["incrementality"]
    assert lift["absolute"]["estimate"] == pytest.approx(69 / 420)
    assert lift["incremental_orders"]["estimate"] == pytest.approx(69)
    assert lift["incremental_revenue"]["estimate"] == "6900.00"
    low, high = lift["absolute"]["interval"]
    assert 0 < low < 69 / 420 < high
    assert lift["sentence"].startswith("The reminders added 16.4 points of conversion")
    # against what the messaged carts would have converted unmessaged: 0.2 x 270 + 0.1 x 150 = 69 of 420
    assert lift["relative"]["estimate"] == pytest.approx((138 / 420) / (69 / 420) - 1)
    tiers = {entry["tier"]: entry for entry in lift["by_tier"]}
    assert tiers["high"]["absolute"]["estimate"] == pytest.approx(0.2)  # each tier's own lift as before


def test_tiers_holding_out_the_same_share_keep_the_pooled_lift(shop: Shop) -> None:
    """With one holdout share in every tier the two arms mix the tiers alike: the lift stays the
    pooled one (Newcombe, Katz, Welch on all compared carts), whatever the tiers' base rates."""
    from cartrescue.report import stats

    _two_tiers(shop, high_share=0.5, standard_share=0.5,
               carts={("high", False): (30, 12), ("high", True): (20, 6),
                      ("standard", False): (40, 6), ("standard", True): (50, 5)})
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    lift = result.json["incrementality"]
    difference, low, high = stats.newcombe(18, 70, 11, 70)
    assert (lift["absolute"]["estimate"], lift["absolute"]["interval"]) == (difference, [low, high])
    ratio = stats.ratio_interval(18, 70, 11, 70)
    assert ratio is not None and lift["relative"]["estimate"] == ratio[0] - 1
    assert lift["incremental_orders"]["estimate"] == difference * 70
    assert lift["incremental_revenue"]["estimate"] == "700.00"  # (1800 - 1100) / 70 per cart x 70
    assert not any(note.startswith("the tiers compared hold out different shares") for note in result.json["notes"])
    assert lift["stratified"] is False and lift["method"].startswith("Newcombe hybrid score interval")


@pytest.mark.parametrize("trials", [1, 12, 1000, 987_654])
def test_an_interval_without_conversions_starts_at_exactly_zero_and_one_of_all_ends_at_exactly_one(
        trials: int) -> None:
    """The formula's float noise made ``report --json`` give an A/B arm without conversions the
    interval ``[2.7755575615628914e-17, 0.24]`` (a variant with 12 recipients)."""
    from cartrescue.report.stats import wilson

    assert wilson(0, trials)[0] == 0.0
    assert wilson(trials, trials)[1] == 1.0


def test_the_lift_sentence_of_one_held_out_cart_says_cart_not_carts(shop: Shop) -> None:
    """"With 1 held-out carts the interval is ±64.9 points": the sentence every digest quotes."""
    write_ledger(shop.folder / "ledger.db", [Row("t0", NOW), Row("t1", NOW), Row("h0", NOW, held=True)])
    shop.add_orders(order_row("o-t0", at=NOW + timedelta(hours=2), total="100.00", cart_id="t0"))
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    sentence = result.json["incrementality"]["sentence"]
    assert "With 1 held-out cart the interval" in sentence, sentence
