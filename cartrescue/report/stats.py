"""The statistics of the report, with the standard library only (no numpy, no scipy).

Owns the intervals and probabilities the report prints, each chosen for a reason a shop owner's
numbers need (docs/reporting.md says it in words):

- one conversion rate: the **Wilson** score interval (correct near 0 %, where conversion rates
  live; the textbook Wald interval collapses to zero width there);
- the difference of two rates (the lift): **Newcombe's hybrid score** interval (method 10 of
  Newcombe 1998), built from the two Wilson intervals. Closed form, no randomness, so two runs of
  the report print the same interval, and it keeps its 95 % coverage with few conversions where
  a bootstrap (and the Wald interval) runs short;
- the relative lift: the **Katz log** interval of the ratio of the rates, minus one;
- the lift over tiers that hold out different shares: per-tier differences weighted by the
  messaged carts, their interval **MOVER** (Zou & Donner 2008) from each tier's Wilson
  intervals, which is Newcombe's with one tier (the pooled difference mixes the tiers
  differently in the two arms: Simpson's paradox);
- revenue per cart: a **Welch** normal interval on the difference of two means (the per-cart
  amounts are mostly zero and heavy-tailed: fine with hundreds of carts, rough with a handful,
  which the report says);
- which A/B variant is better: **Beta-Binomial** posteriors with a uniform prior, compared by a
  seeded Monte Carlo (the same numbers on every run).

It must not read data or format anything.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

Z95 = 1.959963984540054  # the 97.5 % point of the standard normal


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / trials`` (``(0, 1)`` without trials)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 (or every one) of the trials the bound is exactly 0 (1); the floats gave 2.8e-17 in
    # ``report --json``'s interval of an A/B arm without conversions.
    lower = 0.0 if successes <= 0 else max(0.0, centre - half)
    upper = 1.0 if successes >= trials else min(1.0, centre + half)
    return lower, upper


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``p1 - p2`` and its Newcombe hybrid score interval (method 10)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    difference = p1 - p2
    lower = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return difference, lower, upper


def ratio_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float] | None:
    """``p1 / p2`` and its Katz log interval; ``None`` when either group has no conversion."""
    if x1 <= 0 or x2 <= 0:
        return None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    return ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se)


def mean_difference(sum1: float, squares1: float, n1: int, sum2: float, squares2: float, n2: int,
                    z: float = Z95) -> tuple[float, float | None, float | None]:
    """Difference of two means (per-cart revenue) with a Welch normal interval.

    A group whose carts show no spread (one cart, or every cart alike: nobody ordered) says
    nothing of how uncertain its mean is, and its sample variance of 0 made the interval
    exact: one cart a side read "100.00 (100.00 to 100.00)", no order on either side "0.00
    (0.00 to 0.00)". Such a group takes the other group's variance; where neither has one,
    there is no interval (``None`` for both bounds).
    """
    mean1, mean2 = sum1 / n1, sum2 / n2
    var1, var2 = _variance(sum1, squares1, n1), _variance(sum2, squares2, n2)
    difference = mean1 - mean2
    if var1 <= 0.0 and var2 <= 0.0:
        return difference, None, None
    se = math.sqrt((var1 or var2) / n1 + (var2 or var1) / n2)
    return difference, difference - z * se, difference + z * se


def _variance(total: float, squares: float, n: int) -> float:
    """The sample variance of ``n`` values from their sum and sum of squares (0 for one value)."""
    if n <= 1:
        return 0.0
    mean = total / n
    return max(0.0, (squares - n * mean * mean) / (n - 1))


#: One stratum (tier) of two groups' conversions: (x1, n1, x2, n2), both ``n`` above zero.
Counts = tuple[int, int, int, int]


def _weights(sizes: Sequence[int]) -> list[float]:
    """Each stratum's share of the first group (the messaged carts): the effect on those."""
    total = sum(sizes)
    return [size / total for size in sizes]


def stratified_difference(strata: Sequence[Counts], z: float = Z95) -> tuple[float, float, float]:
    """``sum(w * (p1 - p2))`` over ``strata``, ``w`` each stratum's share of group 1, with its
    MOVER interval (Zou & Donner 2008): the bounds of each stratum's two Wilson intervals, as
    Newcombe's method 10 combines them for one stratum (whose result this is, exactly).

    Pooled over strata that hold out different shares, the two groups mix the strata in
    different proportions and their difference measures the mix (Simpson's paradox); within a
    stratum the groups are comparable, and weighting by group 1 gives the effect on its carts.
    """
    weights = _weights([n1 for _x1, n1, _x2, _n2 in strata])
    difference = below = above = 0.0
    for w, (x1, n1, x2, n2) in zip(weights, strata):
        p1, p2 = x1 / n1, x2 / n2
        l1, u1 = wilson(x1, n1, z)
        l2, u2 = wilson(x2, n2, z)
        difference += w * (p1 - p2)
        below += w * w * ((p1 - l1) ** 2 + (u2 - p2) ** 2)
        above += w * w * ((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return difference, difference - math.sqrt(below), difference + math.sqrt(above)


def stratified_ratio(strata: Sequence[Counts], z: float = Z95) -> tuple[float, float, float] | None:
    """The ratio of the two weighted rates of :func:`stratified_difference` (group 2's is what
    group 1 would have converted without the treatment) and its log interval from the
    per-stratum binomial variances: Katz's with one stratum. ``None`` when either is 0."""
    weights = _weights([n1 for _x1, n1, _x2, _n2 in strata])
    rate1 = sum(w * x1 / n1 for w, (x1, n1, _x2, _n2) in zip(weights, strata))
    rate2 = sum(w * x2 / n2 for w, (_x1, _n1, x2, n2) in zip(weights, strata))
    if rate1 <= 0 or rate2 <= 0:
        return None
    var1 = sum(w * w * (x1 / n1) * (1 - x1 / n1) / n1 for w, (x1, n1, _x2, _n2) in zip(weights, strata))
    var2 = sum(w * w * (x2 / n2) * (1 - x2 / n2) / n2 for w, (_x1, _n1, x2, n2) in zip(weights, strata))
    se = math.sqrt(var1 / (rate1 * rate1) + var2 / (rate2 * rate2))
    ratio = rate1 / rate2
    return ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se)


#: One stratum of two groups' amounts: (sum1, squares1, n1, sum2, squares2, n2), both n above 0.
Sums = tuple[float, float, int, float, float, int]


def stratified_mean_difference(strata: Sequence[Sums], z: float = Z95) -> tuple[float, float | None, float | None]:
    """``sum(w * (mean1 - mean2))``, ``w`` each stratum's share of group 1, with a normal
    interval from the per-stratum variances (Welch's with one stratum, :func:`mean_difference`).
    A group without spread takes the other group's variance of its stratum, else the variance
    of its whole group over the strata, else the other whole group's; where none varies there
    is no interval (``None`` for both bounds)."""
    weights = _weights([s[2] for s in strata])
    whole1 = _variance(sum(s[0] for s in strata), sum(s[1] for s in strata), sum(s[2] for s in strata))
    whole2 = _variance(sum(s[3] for s in strata), sum(s[4] for s in strata), sum(s[5] for s in strata))
    difference = variance = 0.0
    for w, (sum1, squares1, n1, sum2, squares2, n2) in zip(weights, strata):
        var1, var2 = _variance(sum1, squares1, n1), _variance(sum2, squares2, n2)
        difference += w * (sum1 / n1 - sum2 / n2)
        variance += w * w * ((var1 or var2 or whole1 or whole2) / n1 + (var2 or var1 or whole2 or whole1) / n2)
    if variance <= 0.0:
        return difference, None, None
    se = math.sqrt(variance)
    return difference, difference - z * se, difference + z * se


def holdout_needed(n_holdout: int, half_width: float, target: float) -> int:
    """Held-out carts needed for an interval of ``±target`` at today's treated/held-out ratio.

    The width shrinks with the square root of the sample, so ``n * (half / target)²``.
    """
    if half_width <= target or n_holdout <= 0:
        return n_holdout
    return int(math.ceil(n_holdout * (half_width / target) ** 2))


def beta_probabilities(arms: Mapping[str, tuple[int, int]], control: str, draws: int = 20_000,
                       seed: int = 20261123) -> tuple[dict[str, float], dict[str, float]]:
    """P(arm beats ``control``) and P(arm is best) from Beta(1 + x, 1 + n - x) posteriors.

    ``arms`` maps a name to (conversions, recipients). Seeded Monte Carlo: the same input gives
    the same probabilities on every run; 20,000 draws put them within about ±0.7 points.
    """
    rng = random.Random(seed)
    names: Sequence[str] = sorted(arms)
    beats = dict.fromkeys(names, 0)
    best = dict.fromkeys(names, 0)
    params = {name: (1 + x, 1 + max(0, n - x)) for name, (x, n) in arms.items()}
    for _ in range(draws):
        sample = {name: rng.betavariate(*params[name]) for name in names}
        top = max(names, key=sample.__getitem__)
        best[top] += 1
        for name in names:
            if sample[name] > sample[control]:
                beats[name] += 1
    return ({name: beats[name] / draws for name in names if name != control},
            {name: best[name] / draws for name in names})
