"""Renderer.context: what a run's earlier messages worked out (money texts, links, images) is
reused, never anything that would show differently.

A Renderer keeps, per run, the texts of the amounts it formatted and the links and image URLs it
cleaned: a catalogue repeats a few hundred prices and URLs over thousands of messages. The
property here: one Renderer's contexts, message after message, are exactly those a fresh
Renderer gives each message alone, zeros and negative zeros included (``0``, ``-0`` and
``0.00`` are one dict key as Decimals, and ``-0`` is shown as ``-€0.00``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cartrescue.compose.render as render
from cartrescue.compose.money import format_money
from cartrescue.compose.render import MEMO_ENTRIES, Renderer
from cartrescue.config import Config, Incentive
from cartrescue.model import Cart, Customer, LineItem

NOW = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
CONFIG = Config(source={"type": "csv", "carts": "c.csv"})
ZEROS = ["0", "-0", "0.00", "-0.00", "0E-7", "-0.001", "0.004"]
URLS = [None, "", "https://shop.example.com/p/1", "https://shop.example.com/p/1#top", "javascript:alert(1)",
        " https://shop.example.com/p/2?utm_source=mine", "http://x.example/a\tb", "/relative"]


def _cart(number: int, prices: list[tuple[str, int]], currency: str = "EUR", *, image: str | None = None,
          product: str | None = None, total: str | None = None) -> Cart:
    items = tuple(LineItem(sku=f"S{n}", name=f"Item {n}", quantity=quantity, unit_price=Decimal(price),
                           image_url=image, product_url=product) for n, (price, quantity) in enumerate(prices))
    return Cart(id=f"c{number}", source="csv", customer=Customer(email=f"ann{number}@example.com", first_name="Ann"),
                currency=currency, items=items,
                total=Decimal(total) if total is not None else sum((i.line_total for i in items), Decimal("0")),
                created_at=NOW, updated_at=NOW, recovery_url=f"https://shop.example.com/r/{number}")


def _context(renderer: Renderer, cart: Cart, locale: str = "en", *, step: int = 1, variant: str | None = None,
             incentive: Incentive | None = None, tags: bool = True) -> dict[str, Any]:
    return renderer.context(cart, locale=locale, step=step, step_count=3, tier="high", previous_orders=0,
                            unsubscribe_url="https://shop.example.com/u?t=x", incentive=incentive, now=NOW,
                            variant=variant, sequence="default", tags=tags)


def test_a_runs_repeated_prices_and_links_are_worked_out_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second message of the same items formats no amount and cleans no URL again."""
    formatted: list[Decimal] = []
    cleaned: list[str | None] = []
    make = render._money_formatter

    def counting(locale: str, currency: str) -> Any:
        money = make(locale, currency)

        def counted(amount: Decimal) -> str:
            formatted.append(amount)
            return money(amount)

        return counted

    def safe_url(value: str | None) -> str | None:
        cleaned.append(value)
        return real_safe_url(value)

    real_safe_url = render.safe_url
    monkeypatch.setattr(render, "_money_formatter", counting)
    monkeypatch.setattr(render, "safe_url", safe_url)
    renderer = Renderer(CONFIG)
    items = [("12.50", 2), ("3.99", 1)]
    first = _context(renderer, _cart(1, items, image="https://shop.example.com/i.jpg",
                                     product="https://shop.example.com/p"))
    assert len(formatted) == 5  # unit price and line total of each item, the cart's total
    done = (len(formatted), len(cleaned))
    second = _context(renderer, _cart(2, items, image="https://shop.example.com/i.jpg",
                                      product="https://shop.example.com/p"))
    assert (len(formatted), len(cleaned)) == done
    assert second["items"] == first["items"] and second["items"] is not first["items"]
    assert second["cart"]["total"] == first["cart"]["total"] == "€28.99"
    assert second["recovery_url"].startswith("https://shop.example.com/r/2?utm_source=cartrescue&")


def test_a_template_that_changes_its_context_changes_no_later_message() -> None:
    """The shop's values are the same in every message of a step: a copy each, never the one the
    Renderer keeps (``{% set _ = shop.update(name="x") %}`` is a template's own business)."""
    renderer = Renderer(CONFIG)
    first = _context(renderer, _cart(1, [("1.50", 1)], product="https://shop.example.com/p"))
    expected = _context(Renderer(CONFIG), _cart(2, [("1.50", 1)], product="https://shop.example.com/p"))
    first["shop"].update(name="changed", url="javascript:x")
    first["items"][0].update(unit_price="free", product_url=None)
    first["cart"]["total"] = "nothing"
    assert _context(renderer, _cart(2, [("1.50", 1)], product="https://shop.example.com/p")) == expected


def test_zero_and_negative_zero_amounts_are_each_shown_as_themselves() -> None:
    """``0``, ``-0`` and ``0.00`` are equal Decimals: a memo keyed by the Decimal showed the
    first one's text (``€0.00``) for a later ``-0`` (``-€0.00``)."""
    renderer = Renderer(CONFIG)
    for locale, currency in [("en", "EUR"), ("sv", "SEK"), ("hu", "HUF"), ("ja", "JPY")]:
        for number, price in enumerate(ZEROS + ZEROS[::-1]):
            context = _context(renderer, _cart(number, [(price, 1), (price, 0), ("-1.5", 0)], currency, total=price),
                               locale)
            amount = Decimal(price)
            assert context["cart"]["total"] == render.format_money(amount, currency, locale)
            assert [(item["unit_price"], item["line_total"]) for item in context["items"]] == [
                (render.format_money(amount, currency, locale), render.format_money(amount * quantity, currency, locale))
                for quantity in (1, 0)] + [(render.format_money(Decimal("-1.5"), currency, locale),
                                            render.format_money(Decimal("-0.0"), currency, locale))]
    assert _context(renderer, _cart(1, [("-0", 1)], total="-0"))["cart"]["total"] == "-€0.00"
    assert _context(renderer, _cart(1, [("0", 1)], total="0"))["cart"]["total"] == "€0.00" == format_money(
        Decimal("0"), "EUR", "en")


def test_the_memos_of_a_long_run_are_bounded() -> None:
    """Amounts and product links that never repeat (a cart total, a link per cart) do not make a
    Renderer grow with the run: its memos start over at MEMO_ENTRIES."""
    renderer = Renderer(CONFIG)
    for number in range(MEMO_ENTRIES + 50):
        price = f"{number + 1}.25"
        context = _context(renderer, _cart(number, [(price, 3)], product=f"https://shop.example.com/p/{number}"))
        assert context["items"][0]["unit_price"] == format_money(Decimal(price), "EUR", "en")
        assert context["items"][0]["product_url"].startswith(f"https://shop.example.com/p/{number}?")
    _formatter, texts, lines = renderer._moneys[("en", "EUR")]
    assert 0 < len(texts) <= MEMO_ENTRIES and 0 < len(lines) <= MEMO_ENTRIES
    assert all(0 < len(links) <= MEMO_ENTRIES for _tag, _shop, links in renderer._taggers.values())


prices = st.sampled_from(ZEROS + ["1", "1.0", "1.00", "-1", "0.125", "0.135", "1234567.891", "4990.004", "-12.5",
                                  "9.995", "1E+3", "1000"])
carts = st.lists(st.tuples(
    st.lists(st.tuples(prices, st.integers(min_value=0, max_value=3)), min_size=0, max_size=4),
    st.sampled_from(["EUR", "SEK", "HUF", "JPY", "KZT", "BHD"]),
    st.sampled_from(["en", "sv", "hu", "de", "kk", "ar", "xx_NOPE"]),
    st.sampled_from(URLS), st.sampled_from(URLS),
    st.one_of(st.none(), prices),
    st.tuples(st.integers(min_value=1, max_value=3), st.sampled_from([None, "b"]), st.booleans()),
    st.sampled_from([None, "fixed", "percent", "free_shipping"]),
), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(carts)
def test_one_renderers_contexts_are_those_a_fresh_renderer_gives_each_message(messages: list[Any]) -> None:
    shared = Renderer(CONFIG)
    for number, (items, currency, locale, image, product, total, (step, variant, tags), kind) in enumerate(messages):
        cart = _cart(number, items, currency, image=image, product=product, total=total)
        incentive = None if kind is None else Incentive(
            kind=kind, value=Decimal("10") if kind != "free_shipping" else Decimal("0"), valid_for=timedelta(days=2))
        alone = _context(Renderer(CONFIG), cart, locale, step=step, variant=variant, incentive=incentive, tags=tags)
        assert _context(shared, cart, locale, step=step, variant=variant, incentive=incentive, tags=tags) == alone
