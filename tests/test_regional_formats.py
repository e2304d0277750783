"""Money and dates in a message are written as the customer's own region writes them.

A template folder is a language (``en``, ``de``); its customers live in several countries, and a
shop in each writes amounts and dates its own way: a British shop "23 November 2026", an American
one "November 23, 2026"; a Swiss one "CHF 1'234.50", an Indian one "₹12,34,567.50". The
message's words come from the folder, its amounts and dates from the customer's locale, as long
as that locale is of the folder's language: a Portuguese customer who falls back to the English
templates reads English, with English amounts around it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from babel.dates import format_date
from babel.numbers import format_currency

from conftest import Shop, cart

OFFER = {"sequences": {"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": {
    "kind": "fixed", "value": 15, "code": "THANKS15", "valid_for": "3d"}}]}}}
EXPIRES = date(2026, 11, 23)  # conftest's NOW + 3 days, in the shop's timezone


def _text(shop: Shop, cart_id: str, *args: str) -> str:
    result = shop.cli("preview", cart_id, "--json", *args)
    assert result.exit_code == 0, result.output
    return str(result.json["text"])


@pytest.mark.parametrize(("locale", "region"), [("en-GB", "en_GB"), ("en_US", "en_US"), ("en-IE", "en_IE")])
def test_an_incentives_expiry_is_written_as_the_customers_region_writes_dates(
        shop: Shop, locale: str, region: str) -> None:
    shop.add(cart("c1", locale=locale)).configure(**OFFER)
    text = _text(shop, "c1")
    assert f"Valid until {format_date(EXPIRES, 'long', locale=region)}" in text


def test_a_british_customer_reads_day_month_year_not_the_american_order(shop: Shop) -> None:
    shop.add(cart("c1", locale="en_GB")).configure(**OFFER)
    text = _text(shop, "c1")
    assert "23 November 2026" in text and "November 23, 2026" not in text


@pytest.mark.parametrize(("locale", "currency", "price", "region"), [
    ("en-IN", "INR", "1234567.50", "en_IN"),
    ("en-CH", "CHF", "1234.50", "en_CH"),
])
def test_cart_amounts_are_written_as_the_customers_region_writes_money(
        shop: Shop, locale: str, currency: str, price: str, region: str) -> None:
    shop.add(cart("c1", locale=locale, currency=currency, items=[("A", "Lamp", 1, price)]))
    text = _text(shop, "c1")
    assert f"Total: {format_currency(Decimal(price), currency, locale=region)}" in text


def test_the_money_and_date_filters_follow_the_customers_region(shop: Shop) -> None:
    folder = shop.folder / "tpl" / "en"
    folder.mkdir(parents=True)
    (folder / "reminder-1.txt").write_text(
        '{{ 1234.5|money("CHF") }} {{ "2026-11-27"|date }} {{ unsubscribe_url }}\n', encoding="utf-8")
    shop.add(cart("c1", locale="en-CH", currency="CHF")).configure(templates="tpl")
    text = _text(shop, "c1")
    assert text.startswith(f"{format_currency(Decimal('1234.5'), 'CHF', locale='en_CH')} "
                           f"{format_date(date(2026, 11, 27), 'long', locale='en_CH')} ")


@pytest.mark.parametrize(("default", "currency"), [("en_GB", "GBP"), ("en_ZA", "ZAR"), ("sv_FI", "EUR")])
def test_a_customer_without_a_locale_reads_the_shops_default_region(shop: Shop, default: str, currency: str) -> None:
    """A blank locale is the shop's default_locale (docs/csv-format.md): a British or South African
    shop's customers without one read its own dates and amounts, not the folder's American ones."""
    shop.add(cart("c1", locale="", currency=currency, items=[("A", "Lamp", 1, "1234.50")]))
    shop.configure(shop={"default_locale": default}, **OFFER)
    text = _text(shop, "c1")
    assert format_date(EXPIRES, "long", locale=default) in text
    assert format_currency(Decimal("1234.50"), currency, locale=default) in text


@pytest.mark.parametrize(("locale", "written"), [("en", "23 November 2026"), ("pt_PT", "23 November 2026"),
                                                ("en_US", "November 23, 2026")])
def test_a_locale_without_a_region_of_the_folders_language_reads_the_shops_region(
        shop: Shop, locale: str, written: str) -> None:
    """Shopify's customers are "en", not "en_GB": a British shop (default_locale en_GB) wrote them,
    and a Portuguese customer reading its English templates, the American "November 23, 2026".
    A customer's own region still wins (en_US)."""
    shop.add(cart("c1", locale=locale, currency="GBP", items=[("A", "Lamp", 1, "1234.50")]))
    shop.configure(shop={"default_locale": "en_GB"}, **OFFER)
    text = _text(shop, "c1")
    assert f"Valid until {written}" in text and "Total: £1,234.50" in text


def test_a_customer_who_falls_back_to_another_language_gets_its_amounts(shop: Shop) -> None:
    """pt_PT has no folder: the English message keeps English amounts and dates (``€1,234.50``,
    never ``1234,50 €`` in an English sentence)."""
    shop.add(cart("c1", locale="pt_PT", items=[("A", "Lamp", 1, "1234.50")])).configure(**OFFER)
    text = _text(shop, "c1")
    assert "Total: €1,234.50" in text and "November 23, 2026" in text


def test_a_delivered_message_carries_the_regional_amounts_and_dates(shop: Shop, tmp_path: Path) -> None:
    shop.add(cart("c1", locale="en-GB", currency="INR", items=[("A", "Lamp", 1, "1234567.50")]))
    shop.add(cart("c2", locale="en-IN", currency="INR", items=[("A", "Lamp", 1, "1234567.50")]))
    shop.configure(**OFFER)
    outbox = tmp_path / "out"
    assert shop.cli("run", "--outbox", str(outbox)).exit_code == 0
    texts = {path.name.split("-")[0]: message_from_bytes(path.read_bytes(), policy=policy.default)
             .get_body(("plain",)).get_content() for path in outbox.glob("*.eml")}
    assert "Valid until 23 November 2026" in texts["csv_c1"]
    assert format_currency(Decimal("1234567.50"), "INR", locale="en_IN") in texts["csv_c2"]
    assert "12,34,567.50" in texts["csv_c2"] and "1,234,567.50" in texts["csv_c1"]
