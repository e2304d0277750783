"""cartrescue.compose.money: the fast formatter gives exactly Babel's ``format_currency`` string.

The main property compares ``money_formatter(locale, currency)(x)`` with
``babel.numbers.format_currency(x, currency, locale=locale)`` over the locales and currencies
cartrescue meets, for amounts of 0 to 4 decimal places (more places than the currency has, so
rounding is exercised). The examples pin the strings themselves (no-break spaces, Indian
grouping, half-even rounding, Babel's sign rules) so that a Babel upgrade that changes them is
noticed here, not in a customer's inbox.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from babel import localedata
from babel.numbers import format_currency
from hypothesis import given, settings
from hypothesis import strategies as st

from cartrescue.compose.money import format_money, money_formatter

LOCALES = [
    "en", "en_US", "en_GB", "sv", "sv_SE", "hu", "ru", "af", "kk", "de", "fr", "hi_IN", "ja", "ar", "nl",
]  # fmt: skip
CURRENCIES = ["EUR", "USD", "GBP", "SEK", "HUF", "RUB", "ZAR", "KZT", "JPY", "INR", "BHD", "CHF"]
NBSP = "\xa0"

amounts = st.integers(min_value=0, max_value=4).flatmap(
    lambda places: st.decimals(
        min_value=-(10**9), max_value=10**9, places=places, allow_nan=False, allow_infinity=False
    )
)


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(LOCALES), st.sampled_from(CURRENCIES), amounts)
@pytest.mark.slow
def test_same_string_as_babel(locale: str, currency: str, amount: Decimal) -> None:
    assert money_formatter(locale, currency)(amount) == format_currency(amount, currency, locale=locale)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(LOCALES), st.sampled_from(["HUF", "KZT", "JPY"]), amounts)
@pytest.mark.slow
def test_with_the_patterns_minor_digits_the_same_string_as_babel(locale: str, currency: str, amount: Decimal) -> None:
    """``minor_digits``: Babel's ``currency_digits=False`` (HUF with its fillér, whatever CLDR says)."""
    assert money_formatter(locale, currency, minor_digits=True)(amount) == \
        format_currency(amount, currency, locale=locale, currency_digits=False)


@pytest.mark.parametrize(
    ("locale", "currency", "expected"),
    [
        ("hu", "EUR", f"1{NBSP}234{NBSP}567,89{NBSP}EUR"),
        ("kk", "KZT", f"1{NBSP}234{NBSP}567,89{NBSP}₸"),
        ("ru", "RUB", f"1{NBSP}234{NBSP}567,89{NBSP}₽"),
        ("sv", "SEK", f"1{NBSP}234{NBSP}567,89{NBSP}kr"),
        ("en", "USD", "$1,234,567.89"),
        ("en", "JPY", "¥1,234,568"),
        ("en", "BHD", "BHD1,234,567.891"),
        ("hi_IN", "INR", "₹12,34,567.89"),
    ],
)
def test_1234567_891(locale: str, currency: str, expected: str) -> None:
    amount = Decimal("1234567.891")
    assert format_money(amount, currency, locale) == expected
    assert format_money(-amount, currency, locale) == "-" + expected  # ASCII '-', as Babel
    assert expected == format_currency(amount, currency, locale=locale)


@pytest.mark.parametrize(
    ("locale", "currency", "expected"),
    [("en", "USD", "$0.00"), ("sv", "SEK", f"0,00{NBSP}kr"), ("en", "JPY", "¥0"), ("en", "BHD", "BHD0.000")],
)
def test_zero(locale: str, currency: str, expected: str) -> None:
    assert format_money(Decimal("0"), currency, locale) == expected
    assert format_money(Decimal("0E-7"), currency, locale) == expected


@pytest.mark.parametrize(
    ("locale", "currency", "amount", "expected"),
    [
        ("en", "USD", "-5", "-$5.00"),
        ("sv", "SEK", "-1234.5", f"-1{NBSP}234,50{NBSP}kr"),  # not the locale's U+2212 minus
        ("nl", "EUR", "-1234.5", f"€{NBSP}-1.234,50"),  # the pattern's own negative form
        ("ar", "USD", "-1234.5", f"\u200f-1,234.50{NBSP}US$"),
        # Babel takes the sign before rounding: a negative zero or a negative amount that
        # rounds to zero keeps the minus.
        ("en", "USD", "-0", "-$0.00"),
        ("en", "USD", "-0.001", "-$0.00"),
    ],
)
def test_negative(locale: str, currency: str, amount: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency, locale) == expected
    assert expected == format_currency(Decimal(amount), currency, locale=locale)


@pytest.mark.parametrize(
    ("currency", "amount", "expected"),
    [
        ("USD", "0.125", "$0.12"),
        ("USD", "0.135", "$0.14"),
        ("USD", "-0.125", "-$0.12"),
        ("USD", "0.1251", "$0.13"),
        ("JPY", "2.5", "¥2"),
        ("JPY", "3.5", "¥4"),
        ("JPY", "999.5", "¥1,000"),
        ("BHD", "1.0005", "BHD1.000"),
        ("BHD", "1.0015", "BHD1.002"),
    ],
)
def test_rounds_half_even_at_currency_digits(currency: str, amount: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency, "en") == expected
    assert expected == format_currency(Decimal(amount), currency, locale="en")


def test_rounds_in_the_callers_context_like_babel() -> None:
    with decimal.localcontext() as ctx:
        ctx.rounding = decimal.ROUND_HALF_UP
        assert format_money(Decimal("0.125"), "USD", "en") == "$0.13"
        ctx.prec, ctx.rounding = 3, decimal.ROUND_CEILING  # rounds the signed value first
        assert format_money(Decimal("-100.5"), "JPY", "en") == format_currency(
            Decimal("-100.5"), "JPY", locale="en"
        )


def test_non_decimal_and_non_finite_like_babel() -> None:
    for value in (3, 1099.98, "12.345", Decimal("Infinity"), Decimal("-Infinity")):
        assert money_formatter("de", "EUR")(value) == format_currency(value, "EUR", locale="de")  # type: ignore[arg-type]


def test_unknown_locale_falls_back_to_en() -> None:
    assert format_money(Decimal("1234.5"), "USD", "xx_NOPE") == "$1,234.50"
    assert format_money(Decimal("1234.5"), "USD", "not a locale!") == "$1,234.50"


def test_memoized() -> None:
    assert money_formatter("sv", "SEK") is money_formatter("sv", "SEK")


@pytest.mark.slow
def test_every_locale_gives_babels_string_fast_or_not() -> None:
    """Every CLDR locale of the installed Babel, fast path or fallback, gives Babel's own string.

    The fast path covers the common patterns; newer CLDR data may bring patterns it does not
    mirror (Babel 2.19's Swiss locales group with an ASCII apostrophe, which Babel's quote
    handling then eats: ``CHF 1234567.50``). Those must reach Babel itself, never a guess.
    """
    amounts = [Decimal("-1234567.891"), Decimal("0.5"), Decimal("1234.5"), Decimal("-0.001")]
    wrong = []
    for loc in localedata.locale_identifiers():
        for currency in ("EUR", "JPY", "CHF"):
            formatter = money_formatter(loc, currency)
            for amount in amounts:
                expected = format_currency(amount, currency, locale=loc)
                if formatter(amount) != expected:
                    wrong.append((loc, currency, str(amount), formatter(amount), expected))
    money_formatter.cache_clear()
    assert wrong == []


def test_the_common_locales_take_the_fast_path() -> None:
    """The shipped locales and the big markets are formatted without calling Babel per amount."""
    slow = [loc for loc in ("en", "en_US", "en_GB", "sv", "hu", "ru", "af", "kk", "de", "fr", "nl", "hi_IN")
            if money_formatter(loc, "EUR").__name__ != "money"]
    assert slow == []


@pytest.mark.parametrize(("amount", "shown"), [("4990.004", "4\xa0990\xa0Ft"), ("4990.00", "4\xa0990\xa0Ft"),
                                               ("4990.50", "4\xa0990,50\xa0Ft"), ("1000.5", "1\xa0000,50\xa0Ft")])
def test_a_huf_amount_whole_once_rounded_is_shown_whole(amount: str, shown: str) -> None:
    """4990.004 (a sub-unit remainder of a tax computation) showed ``4 990,00 Ft`` beside the
    whole amounts of the same message: whether it is whole is judged as shown, after rounding."""
    from cartrescue.compose.render import format_money as shown_money

    assert shown_money(Decimal(amount), "HUF", "hu") == shown
