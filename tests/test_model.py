"""The domain types: ``quick_init`` builds the same frozen instances as the dataclass's own ``__init__``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from cartrescue.model import LEND_FROM, Cart, CartFacts, Customer, Decision, LineItem, Order, quick_init


@dataclass(frozen=True, slots=True)
class _Stock:
    name: str
    count: int = 3
    tags: tuple[str, ...] = ()
    seen: list[str] = field(default_factory=list)


@quick_init
@dataclass(frozen=True, slots=True)
class _Quick:  # _Stock's twin, with quick_init's __init__
    name: str
    count: int = 3
    tags: tuple[str, ...] = ()
    seen: list[str] = field(default_factory=list)


@pytest.mark.parametrize("args, kwargs", [
    (("a",), {}),
    (("a", 5), {}),
    (("a",), {"tags": ("x",)}),
    ((), {"name": "b", "seen": ["y"], "count": 0}),
])
def test_quick_init_takes_the_arguments_and_defaults_of_the_dataclass_init(args: tuple, kwargs: dict) -> None:
    quick, stock = _Quick(*args, **kwargs), _Stock(*args, **kwargs)
    assert dataclasses.astuple(quick) == dataclasses.astuple(stock)


def test_quick_init_calls_a_default_factory_for_every_instance() -> None:
    one, two = _Quick("a"), _Quick("b")
    assert one.seen == [] and one.seen is not two.seen


def test_quick_init_refuses_what_the_dataclass_init_refuses() -> None:
    with pytest.raises(TypeError):
        _Quick()  # the required field missing
    with pytest.raises(TypeError):
        _Quick("a", nope=1)


def test_instances_built_by_quick_init_stay_frozen_equal_and_hashable() -> None:
    item = LineItem("SKU-1", "Mug", 2, Decimal("12.50"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.quantity = 3  # type: ignore[misc]
    assert item == LineItem(sku="SKU-1", name="Mug", quantity=2, unit_price=Decimal("12.50"))
    assert hash(item) == hash(LineItem("SKU-1", "Mug", 2, Decimal("12.50"))) and item.line_total == Decimal("25.00")
    assert dataclasses.replace(item, quantity=1).line_total == Decimal("12.50")


def test_the_hot_domain_types_are_built_by_quick_init_with_every_field_in_place() -> None:
    at = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    customer = Customer("a@example.com", first_name="Ann", sms_consent=True)
    cart = Cart("c1", "csv", customer, "EUR", (LineItem("S", "Mug", 1, Decimal("9")),), Decimal("9"), at, at,
                origin="carts.csv:2")
    order = Order("o1", at, email="a@example.com", total=Decimal("9"))
    decision = Decision(cart, "send", "due", facts=CartFacts(previous_orders=2))  # type: ignore[arg-type]
    for instance in (customer, cart, order, decision):
        assert type(instance).__init__.__qualname__ == f"{type(instance).__name__}.__init__"
    assert (customer.email, customer.first_name, customer.sms_consent, customer.is_guest) == \
        ("a@example.com", "Ann", True, False)
    assert (cart.key, cart.origin, cart.base_total, cart.items[0].name) == ("csv:c1", "carts.csv:2", None, "Mug")
    assert (order.total, order.status, order.delivered) == (Decimal("9"), "", None)
    assert decision.facts == CartFacts(2) and decision.detail == "" and decision.phone is None


def test_quick_init_refuses_a_class_that_is_not_a_frozen_slotted_dataclass() -> None:
    @dataclass(slots=True)
    class Mutable:
        name: str

    @dataclass(frozen=True, slots=True)
    class Checked:
        name: str

        def __post_init__(self) -> None:
            pass

    for cls in (Mutable, Checked):
        with pytest.raises(TypeError, match="frozen, slotted dataclass"):
            quick_init(cls)


@quick_init
@dataclass(frozen=True, slots=True)
class _Wide:  # enough fields to be lent to a twin class while built (LEND_FROM)
    name: str
    count: int = 3
    tags: tuple[str, ...] = ()
    seen: list[str] = field(default_factory=list)
    note: str = ""
    rank: float = 0.0


def test_a_class_of_lend_from_fields_is_lent_to_a_twin_while_built() -> None:
    assert len(dataclasses.fields(_Wide)) >= LEND_FROM > len(dataclasses.fields(_Quick))
    assert "_TWIN" in _Wide.__init__.__globals__ and "_TWIN" not in _Quick.__init__.__globals__


def test_an_instance_lent_while_built_has_its_own_class_frozen_and_equal() -> None:
    wide = _Wide("a", 5, note="n")
    assert type(wide) is _Wide and (wide.name, wide.count, wide.tags, wide.seen, wide.note, wide.rank) == \
        ("a", 5, (), [], "n", 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        wide.count = 6  # type: ignore[misc]
    assert wide == _Wide("a", 5, note="n")
    assert dataclasses.replace(wide, rank=1.5) == _Wide("a", 5, (), [], "n", 1.5)


def test_a_subclass_instance_built_by_quick_init_keeps_the_subclass() -> None:
    class Sub(_Wide):
        __slots__ = ("extra",)  # another slot layout: never lent to the twin

    sub = Sub("a", tags=("x",))
    assert type(sub) is Sub and (sub.name, sub.count, sub.tags, sub.seen, sub.note) == ("a", 3, ("x",), [], "")


def test_quick_init_refuses_a_dataclass_with_a_base() -> None:
    @dataclass(frozen=True, slots=True)
    class Base:
        name: str

    @dataclass(frozen=True, slots=True)
    class Derived(Base):
        count: int = 0

    with pytest.raises(TypeError, match="derive from object alone"):
        quick_init(Derived)


@pytest.mark.parametrize("args, kwargs", [
    (("a",), {}),
    (("a", 5), {}),
    (("a",), {"tags": ("x",), "rank": 2.5}),
    ((), {"name": "b", "seen": ["y"], "count": 0, "note": "n"}),
])
def test_quick_new_builds_what_the_class_builds_frozen_with_its_own_class(args: tuple, kwargs: dict) -> None:
    """``quick_new(cls)(...)`` is ``cls(...)``: the same arguments and defaults, a fresh default
    factory's value, an instance of ``cls`` itself, frozen, equal and hashable alike."""
    from cartrescue.model import quick_new

    make = quick_new(_Wide)
    new, built = make(*args, **kwargs), _Wide(*args, **kwargs)
    assert type(new) is _Wide and dataclasses.astuple(new) == dataclasses.astuple(built) and new == built
    if "seen" not in kwargs:
        assert new.seen == [] and new.seen is not make(*args, **kwargs).seen
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.count = 6  # type: ignore[misc]
    assert dataclasses.replace(new, rank=1.5) == dataclasses.replace(built, rank=1.5)


def test_quick_new_refuses_what_the_class_refuses() -> None:
    from cartrescue.model import quick_new

    with pytest.raises(TypeError):
        quick_new(_Wide)()  # the required field missing
    with pytest.raises(TypeError):
        quick_new(_Wide)("a", nope=1)

    @dataclass(slots=True)
    class Mutable:
        name: str

    with pytest.raises(TypeError, match="frozen, slotted dataclass"):
        quick_new(Mutable)


def test_the_csv_sources_line_items_customers_and_carts_are_built_with_every_field_in_place() -> None:
    from cartrescue.sources.csv import _new_cart, _new_customer, _new_item

    at = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    item = _new_item("S", "Mug", 2, Decimal("9"), None, 4, None, "https://shop.example/mug")
    customer = _new_customer("a@example.com", None, None, "Ann", None, "sv", True, False, None)
    cart = _new_cart("c1", "csv", customer, "EUR", (item,), Decimal("18"), at, at, None, None, "mobile", "carts.csv:2")
    assert (item, customer, cart) == (
        LineItem("S", "Mug", 2, Decimal("9"), None, 4, None, "https://shop.example/mug"),
        Customer("a@example.com", None, None, "Ann", None, "sv", True, False, None),
        Cart("c1", "csv", customer, "EUR", (item,), Decimal("18"), at, at, None, None, "mobile", "carts.csv:2"))
    assert cart.base_total is None and hash(cart) == hash(Cart("c1", "csv", customer, "EUR", (item,), Decimal("18"),
                                                               at, at, device="mobile", origin="carts.csv:2"))


def test_the_enum_members_the_hot_modules_keep_as_globals_are_the_members_they_name() -> None:
    import cartrescue.decide.eligibility
    import cartrescue.decide.sequence
    import cartrescue.pipeline.budget
    import cartrescue.pipeline.executor
    import cartrescue.pipeline.planner
    from cartrescue.model import Action, Reason

    modules = (cartrescue.decide.eligibility, cartrescue.pipeline.budget, cartrescue.pipeline.planner,
               cartrescue.pipeline.executor, cartrescue.decide.sequence)
    kept = {(module.__name__, name): value for module in modules
            for name, value in vars(module).items() if name.startswith(("ACTION_", "REASON_"))}
    assert len(kept) > 20
    for (_module, name), value in kept.items():
        enum, member = name.split("_", 1)
        assert value is {"ACTION": Action, "REASON": Reason}[enum][member], name
