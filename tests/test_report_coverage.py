"""The lift interval is honest: a known truth (the reminders lift conversion from 8 % to 12 %,
1,000 carts a side) drawn again and again with fixed seeds.

- 100 draws through the real ``report --json``: the attributed revenue is exact every time, and
  the interval is exactly the Newcombe interval of the drawn counts. Seeds 0-99 cover the true
  lift 91 times: a calibrated 95 % interval covers it 93 or more times in only ~87 % of seed
  sets of 100 (the exact coverage of this design, enumerated over both binomials, is 95.0 %),
  so the count over 100 is held to 90 and coverage is judged over 1,000 draws;
- 1,000 draws (seeds 0-999) of the same fixture, through the same interval the report printed
  above: it covers the true lift at least 93 % of the time (946 of 1,000 here).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from cartrescue.report.stats import newcombe
from conftest import NOW, Shop
from reportdata import Experiment, write_ledger, write_orders

TRUTH = Experiment(treated=1000, held=1000, p_treated=0.12, p_held=0.08)


def counts(orders: list[dict[str, str]]) -> tuple[int, int]:
    treated = sum(order["cart_id"].startswith("t") for order in orders)
    return treated, len(orders) - treated


@pytest.mark.slow
def test_the_report_recovers_revenue_exactly_and_its_interval_covers_the_true_lift(shop: Shop) -> None:
    write_ledger(shop.folder / "ledger.db", TRUTH.rows(NOW))
    shop.write()
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # each draw writes its own orders
    covered = 0
    for seed in range(100):
        orders, attributed = TRUTH.orders(NOW, seed)
        write_orders(shop.folder / "orders.csv", orders)
        result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21",
                          now=NOW + timedelta(days=6))
        assert result.exit_code == 0, result.output
        document = result.json
        assert Decimal(document["summary"]["revenue"]) == attributed, seed
        lift = document["incrementality"]
        treated, held = counts(orders)
        assert (lift["treated"]["converted"], lift["holdout"]["converted"]) == (treated, held)
        low, high = lift["absolute"]["interval"]
        assert (low, high) == pytest.approx(newcombe(treated, 1000, held, 1000)[1:])
        covered += low <= TRUTH.true_lift <= high
    assert covered >= 90, covered


@pytest.mark.slow
def test_over_1000_seeded_draws_the_interval_covers_the_true_lift_at_least_93_percent_of_the_time() -> None:
    covered = 0
    for seed in range(1000):
        treated, held = counts(TRUTH.orders(NOW, seed)[0])
        _difference, low, high = newcombe(treated, TRUTH.treated, held, TRUTH.held)
        covered += low <= TRUTH.true_lift <= high
    assert covered >= 930, covered


@pytest.mark.slow
def test_over_1000_seeded_draws_the_stratified_interval_covers_the_true_lift_at_least_93_percent_of_the_time() -> None:
    """Two tiers holding out 10 % and 50 % (900/100 and 500/500 carts), lifted from 8 to 12 % and
    from 2 to 3 %: the per-tier lift weighted by messaged carts (0.9 x 4 + 0.5 x 1 points over
    1.4) is covered by the stratified interval at least 93 % of the time (951 of 1,000 here);
    the pooled difference of these draws is centred near 5.8 points, not 2.9."""
    import random

    from cartrescue.report.stats import stratified_difference

    tiers = [(900, 100, 0.12, 0.08), (500, 500, 0.03, 0.02)]
    truth = sum(treated * (p_treated - p_held) for treated, _held, p_treated, p_held in tiers) / 1400
    covered = 0
    for seed in range(1000):
        rng = random.Random(seed)
        draws = [(sum(rng.random() < p_treated for _ in range(treated)), treated,
                  sum(rng.random() < p_held for _ in range(held)), held) for treated, held, p_treated, p_held in tiers]
        _difference, low, high = stratified_difference(draws)
        covered += low <= truth <= high
    assert covered >= 930, covered
