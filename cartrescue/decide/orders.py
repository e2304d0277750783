"""What a cart's customer has ordered: the facts behind "ordered", "returning" and "pending".

Owns matching orders to a cart (by cart id, email, customer id, or, for a cart without an
address, its phone number) and nothing else; the rules
that act on these facts live in :mod:`cartrescue.decide.eligibility` and :mod:`cartrescue.decide.priority`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from cartrescue.decide.newest import customer_key
from cartrescue.model import Cart, Order, quick_init, quick_new


@quick_init
@dataclass(frozen=True, slots=True)
class OrderFacts:
    ordered: Order | None = None  # an order that converts this cart (or was placed after it)
    previous_orders: int = 0  # orders placed before the cart's last activity (more than SAME_MOMENT before)
    pending: Order | None = None  # the latest other order not yet delivered (nor refunded in full)
    unreadable: Order | None = None  # an order of the cart or customer whose row could not be read


NO_ORDERS = OrderFacts()
#: Builds :class:`OrderFacts` as ``OrderFacts(...)`` does, for fewer instructions (:func:`~cartrescue.model.quick_new`):
#: one for each cart with orders.
_facts = quick_new(OrderFacts)

#: An order placed at most this long before the cart's last activity is its purchase, not an
#: earlier order: exports often write times to the minute (an order at 10:03:41 reads 10:03:00,
#: before the cart's 10:03:20), and a checkout touches the cart as it saves the order, a second
#: after it. Read as an earlier order, its buyer was reminded of the cart they had bought.
SAME_MOMENT = timedelta(minutes=1)


class OrderBook:
    """The orders of one chunk of carts, indexed for matching: by cart id, by e-mail address, by
    customer id and by phone number, each in the order given. (Maps, not one keyed ``e:``/``c:``
    + the value: those keys were two strings made for each order and each cart: ~3,300
    instructions a cart of B2, 0.5 %, in callgrind.)"""

    def __init__(self, orders: Iterable[Order]) -> None:
        self.by_cart: dict[str, list[Order]] = {}
        self.by_email: dict[str, list[Order]] = {}
        self.by_customer: dict[str, list[Order]] = {}
        self.by_phone: dict[str, list[Order]] = {}
        for order in orders:
            if order.cart_id:
                self.by_cart.setdefault(order.cart_id, []).append(order)
            if order.email:
                self.by_email.setdefault(order.email, []).append(order)
            if order.customer_id:
                self.by_customer.setdefault(order.customer_id, []).append(order)
            if order.phone:
                self.by_phone.setdefault(order.phone, []).append(order)

    def facts(self, cart: Cart, number: str | None = None) -> OrderFacts:
        """What ``cart``'s customer has ordered. ``number``: the cart's phone number as its
        customer's key (:func:`phone_key`), whose orders are that customer's too, unless the
        number is :func:`shared` (a placeholder)."""
        # Most carts have no orders at all: answer those without building anything.
        own = self.by_cart.get(cart.id)
        email, customer_id = cart.customer.email, cart.customer.id
        by_email = self.by_email.get(email) if email else None
        by_customer = self.by_customer.get(customer_id) if customer_id else None
        by_phone = self.by_phone.get(number) if number else None
        if by_phone and shared(by_phone):
            by_phone = None
        if by_phone:
            by_email = [*by_email, *by_phone] if by_email else by_phone  # one bucket: merged by id below
        if not by_email and not by_customer:
            if not own:
                return NO_ORDERS
            ordered, unreadable = _readable_or_not(own)
            return _facts(ordered=ordered, unreadable=unreadable)
        person: Iterable[Order]
        if (by_email and by_customer) or by_phone:
            merged = {o.id: o for o in by_email or ()}
            merged.update((o.id, o) for o in by_customer or ())
            person = merged.values()
        else:
            person = by_email or by_customer  # type: ignore[assignment]
        ordered, unreadable = _readable_or_not(own) if own else (None, None)
        previous = 0
        pending = None
        bought_from = cart.updated_at - SAME_MOMENT
        for order in person:
            if order.unreadable is not None:
                unreadable = unreadable or order
                continue
            if order.cart_id == cart.id:
                continue
            if order.created_at >= (bought_from if _timed(order) else cart.updated_at):
                ordered = ordered or order
            else:
                previous += 1
                if order.awaits_delivery and (pending is None or order.created_at > pending.created_at):
                    pending = order  # the latest: eligibility.pending_within counts from it
        if ordered is None and not previous and pending is None and unreadable is None:
            return NO_ORDERS
        return _facts(ordered, previous, pending, unreadable)


def phone_key(cart: Cart, region: str | None) -> str | None:
    """The number ``cart``'s orders are looked up by: its customer's key where the cart has no
    address (:func:`~cartrescue.decide.newest.customer_key`: the number in E.164, read in the
    shop's ``region``), else None (an address is the key, and a number beside it keys nothing)."""
    return None if cart.customer.email else customer_key(None, cart.customer.phone, region)


def shared(orders: Iterable[Order]) -> bool:
    """Whether one phone number's ``orders`` are more than one customer's: two addresses, or two
    customer ids. A checkout form that requires a number gets the shop's own (or a courier's)
    from customers who give none, and a family shares one: such a number tells no one's
    purchase, and a cart known by it alone is reminded as before rather than skipped as
    ``ordered`` for a stranger's order. An order without an address or id tells no other person."""
    emails: set[str] = set()
    customers: set[str] = set()
    for order in orders:
        if order.email:
            emails.add(order.email)
        if order.customer_id:
            customers.add(order.customer_id)
        if len(emails) > 1 or len(customers) > 1:
            return True
    return False


def _timed(order: Order) -> bool:
    """Whether the order's time has a time of day, to allow :data:`SAME_MOMENT` for. A date
    alone is read as its day's end, 23:59:59.999999 (``values.parse_order_time``,
    ``sql.order_time``; the run's order index keeps no ``day_start``): already the latest moment
    it can mean, so the day before's order stays an earlier one for a cart touched at 00:00:30."""
    return order.created_at.microsecond != 999_999


def _readable_or_not(own: list[Order]) -> tuple[Order | None, Order | None]:
    """The cart's own first readable order ("the" order that converted it) and its first
    unreadable one."""
    return (next((o for o in own if o.unreadable is None), None),
            next((o for o in own if o.unreadable is not None), None))
