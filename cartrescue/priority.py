"""Priority: four weighted rules give a score, the score picks a tier.

Owns "which carts deserve more effort" (high value, returning customer, high margin, overstock).
It must not look at eligibility or the ledger; the pipeline applies tiers' budgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from cartrescue.config import PriorityConfig, Tier
from cartrescue.model import Cart


_ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    rules: tuple[str, ...]  # names of the rules that matched
    margin: Decimal | None  # None: no cost data ("unknown", not zero)


def margin_share(cart: Cart) -> Decimal | None:
    """Margin as a share of revenue over the lines that have a unit cost; None if none has."""
    revenue = Decimal("0")
    cost = Decimal("0")
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


class Prioritizer:
    """Scores carts and maps scores to tiers, per the ``priority:`` config."""

    def __init__(self, config: PriorityConfig) -> None:
        self.rules = config.rules
        self.tiers = config.tiers  # sorted by min_score, highest first
        self._overstock_skus = frozenset(self.rules.overstock.skus)

    def score(self, cart: Cart, previous_orders: int) -> Score:
        # One pass over the lines for margin and overstock: called once per cart of a run.
        rules = self.rules
        matched: list[str] = []
        value = 0.0
        if cart.total >= rules.high_value.threshold:
            matched.append("high_value")
            value += rules.high_value.weight
        if previous_orders >= rules.returning_customer.min_orders:
            matched.append("returning_customer")
            value += rules.returning_customer.weight
        revenue = cost = _ZERO
        known = overstock = False
        stock_threshold = rules.overstock.threshold
        overstock_skus = self._overstock_skus
        for item in cart.items:
            if item.unit_cost is not None:
                known = True
                revenue += item.unit_price * item.quantity
                cost += item.unit_cost * item.quantity
            if not overstock and (
                (item.stock_on_hand is not None and item.stock_on_hand >= stock_threshold) or item.sku in overstock_skus
            ):
                overstock = True
        margin = (revenue - cost) / revenue if known and revenue > 0 else None  # as margin_share()
        if margin is not None and margin >= rules.high_margin.threshold:
            matched.append("high_margin")
            value += rules.high_margin.weight
        if overstock:
            matched.append("overstock")
            value += rules.overstock.weight
        return Score(value, tuple(matched), margin)

    def tier(self, score: float) -> Tier:
        for tier in self.tiers:
            if score >= tier.min_score:
                return tier
        return self.tiers[-1]
