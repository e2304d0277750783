"""Priority: four weighted rules give a score, the score picks a tier.

Owns "which carts deserve more effort" (high value, returning customer, high margin, overstock).
It must not look at eligibility or the ledger; the pipeline applies tiers' budgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import combinations

from cartrescue.config import PriorityConfig, Tier
from cartrescue.currency import Basis
from cartrescue.model import Cart, quick_init, quick_new


@quick_init
@dataclass(frozen=True, slots=True)
class Score:
    value: float
    rules: tuple[str, ...]  # names of the rules that matched
    margin: Decimal | None  # None: no cost data ("unknown", not zero)


_score = quick_new(Score)  # Score(...) for fewer instructions (a run makes one per cart)


_ZERO = Decimal("0")


def margin_share(cart: Cart) -> Decimal | None:
    """Margin as a share of revenue over the lines that have a unit cost; None if none has."""
    revenue = cost = _ZERO  # a constant: ``Decimal("0")`` parsed its text twice a cart
    known = False
    for item in cart.items:
        if item.unit_cost is None:
            continue
        known = True
        revenue += item.unit_price * item.quantity
        cost += item.unit_cost * item.quantity
    if not known or revenue <= 0:
        return None
    return (revenue - cost) / revenue


def _sums(weights: dict[str, float]) -> dict[tuple[str, ...], float]:
    """The score of every set of matched rules (in ``weights``' order), added up as the decimals
    the config wrote: in binary floats 0.1 + 0.7 is 0.7999999999999999, below a tier's
    ``min_score: 0.8``, and the cart fell to the tier below."""
    names = list(weights)
    return {chosen: float(sum((Decimal(repr(weights[name])) for name in chosen), Decimal(0)))
            for size in range(len(names) + 1) for chosen in combinations(names, size)}


class Prioritizer:
    """Scores carts and maps scores to tiers, per the ``priority:`` config."""

    def __init__(self, config: PriorityConfig, basis: Basis | None = None) -> None:
        self.basis = basis or Basis(None)
        self.rules = config.rules
        self.tiers = config.tiers  # sorted by min_score, highest first
        self._overstock_skus = frozenset(self.rules.overstock.skus)
        self._values = _sums({"high_value": self.rules.high_value.weight,
                              "returning_customer": self.rules.returning_customer.weight,
                              "high_margin": self.rules.high_margin.weight, "overstock": self.rules.overstock.weight})
        self.unpriced: dict[str, int] = {}  # currency -> carts whose value the shop's currency cannot tell
        # Without shop.currency each total is taken as it is: the currencies of the carts valued
        # so (at most two kept; two are what :meth:`notes` needs to tell).
        self.as_they_are: set[str] = set()
        self._no_basis = self.basis.currency is None  # no shop.currency: each total is valued as it is
        # The rules' limits and the tiers' floors as plain values: :meth:`score` and :meth:`tier`
        # read them for every cart, and each read of a config model's field costs ~450
        # instructions (pydantic's models have a ``__getattr__``), a local ~40.
        self._high_value = self.rules.high_value.threshold
        self._min_orders = self.rules.returning_customer.min_orders
        self._overstock = self.rules.overstock.threshold
        self._high_margin = self.rules.high_margin.threshold
        self._floors = [tier.min_score for tier in self.tiers]

    def score(self, cart: Cart, previous_orders: int) -> Score:
        matched: list[str] = []
        base = self.basis.base(cart.total, cart.currency, cart.base_total)
        if self._no_basis and cart.base_total is None and len(self.as_they_are) < 2:
            self.as_they_are.add(cart.currency.upper())
        if base is None:  # unknown rate: not high value, and said so once a run (notes)
            self.unpriced[cart.currency] = self.unpriced.get(cart.currency, 0) + 1
        elif base >= self._high_value:
            matched.append("high_value")
        if previous_orders >= self._min_orders:
            matched.append("returning_customer")
        threshold = self._overstock
        overstock = any(
            (item.stock_on_hand is not None and item.stock_on_hand >= threshold) or item.sku in self._overstock_skus
            for item in cart.items
        )
        margin = margin_share(cart)
        if margin is not None and margin >= self._high_margin:
            matched.append("high_margin")
        if overstock:
            matched.append("overstock")
        names = tuple(matched)
        return _score(self._values[names], names, margin)

    def notes(self) -> list[str]:
        """What the run should say about the carts it could not value (none: nothing), or valued
        each in its own currency (no ``shop.currency``): 200 SEK and 200 EUR alike reached a
        threshold meant in one of them, and the top tier's calls went by a currency's digits."""
        if len(self.as_they_are) > 1 and self.rules.high_value.weight:
            # No currencies named: the same note from every worker of a run is said once.
            return [f"carts come in more than one currency and shop.currency is not set: priority.rules.high_value "
                    f"compares each cart's total, in its own currency, with its threshold {self._high_value} "
                    "(set shop.currency, and shop.exchange_rates for the others)"]
        if not self.unpriced:
            return []
        # Currencies only, no counts: the same note from every worker of a run is said once.
        listed = ", ".join(sorted(self.unpriced))
        return [f"carts in {listed} have no rate to {self.basis.currency} (add shop.exchange_rates): "
                "priority.rules.high_value cannot count them as high value"]

    def tier(self, score: float) -> Tier:
        return self.tiers[self.tier_index(score)]

    def scores(self) -> list[float]:
        """Every score a cart can have, lowest first: the sums of the rules' weights."""
        return sorted(set(self._values.values()))

    def unreachable(self) -> list[Tier]:
        """The tiers no cart can get: no sum of the rules' weights reaches a tier's ``min_score``
        without reaching the next higher one's (the lowest also takes the scores below its own)."""
        reached = {self.tier_index(score) for score in self._values.values()}
        return [tier for at, tier in enumerate(self.tiers) if at not in reached]

    def tier_index(self, score: float) -> int:
        """Where ``score``'s tier is in ``priority.tiers``: the first whose ``min_score`` it
        reaches, else the last."""
        for at, floor in enumerate(self._floors):
            if score >= floor:
                return at
        return len(self._floors) - 1
