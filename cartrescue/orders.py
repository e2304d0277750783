"""What a cart's customer has ordered: the facts behind "ordered", "returning" and "pending".

Owns matching orders to a cart (by cart id, email or customer id) and nothing else; the rules
that act on these facts live in :mod:`cartrescue.eligibility` and :mod:`cartrescue.priority`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cartrescue.model import Cart, Order


@dataclass(frozen=True, slots=True)
class OrderFacts:
    ordered: Order | None = None  # an order that converts this cart (or was placed after it)
    previous_orders: int = 0  # orders placed before the cart's last activity
    pending: Order | None = None  # another order not yet delivered


NO_ORDERS = OrderFacts()


class OrderBook:
    """The orders of one chunk of carts, indexed for matching."""

    def __init__(self, orders: Iterable[Order]) -> None:
        self.by_cart: dict[str, list[Order]] = {}
        self.by_person: dict[str, list[Order]] = {}
        for order in orders:
            if order.cart_id:
                self.by_cart.setdefault(order.cart_id, []).append(order)
            keys = set()
            if order.email:
                keys.add("e:" + order.email)
            if order.customer_id:
                keys.add("c:" + order.customer_id)
            for key in keys:
                self.by_person.setdefault(key, []).append(order)

    def facts(self, cart: Cart) -> OrderFacts:
        if not self.by_cart and not self.by_person:
            return NO_ORDERS
        own = self.by_cart.get(cart.id, [])
        ordered = own[0] if own else None
        person: dict[str, Order] = {}
        if cart.customer.email:
            person.update((o.id, o) for o in self.by_person.get("e:" + cart.customer.email, ()))
        if cart.customer.id:
            person.update((o.id, o) for o in self.by_person.get("c:" + cart.customer.id, ()))
        previous = 0
        pending = None
        for order in person.values():
            if order.cart_id == cart.id:
                continue
            if order.created_at >= cart.updated_at:
                ordered = ordered or order
            else:
                previous += 1
                if order.delivered is False and pending is None:
                    pending = order
        return OrderFacts(ordered=ordered, previous_orders=previous, pending=pending)
