"""Locale-exact, fast money formatting.

What this module owns: turning a :class:`~decimal.Decimal` amount, an ISO 4217 currency code and
a locale identifier into **exactly** the string
``babel.numbers.format_currency(amount, currency, locale=locale)`` gives (default ``standard``
currency format, ``currency_digits=True``, ``decimal_quantization=True``, group separators on,
``latn`` digits and symbols), in about a tenth of the time. The Babel work (locale parsing,
pattern, currency digits, symbol, decimal and group symbols) is done once per
``(locale, currency)`` by :func:`money_formatter`; each call then only rounds, splits, groups
digits and joins prefix + number + suffix.

What it must not do:

* decide *how* money should look. It has no formatting rules of its own: every rule below is
  Babel's (``NumberPattern.apply`` / ``_quantize_value`` / ``_format_int`` / ``_format_frac``
  of the installed Babel), and where a case cannot be mirrored cheaply the formatter calls Babel
  itself. Shop-specific presentation (whole units for some currencies, rounding policies,
  templates) belongs to the caller, e.g. :mod:`cartrescue.compose.render`;
* convert currencies, round for cash, or parse money;
* touch the :mod:`decimal` context: amounts are rounded in the caller's current context
  exactly as Babel rounds them (``ROUND_HALF_EVEN`` by default, via ``quantize``).

Babel's rules mirrored here (checked against Babel 2.18's source):

* the sign is taken from the amount *before* rounding (``Decimal.is_signed``), so a negative
  zero or a negative amount that rounds to zero is written with the negative prefix
  (``-$0.00``), as Babel does;
* the negative form is the pattern's own negative subpattern, or ``-`` + the positive prefix: a
  plain ASCII hyphen-minus, not the locale's minus sign (Babel does not use
  ``get_minus_sign_symbol`` here; e.g. ``sv`` gives ``-1 234,00 kr``, not ``−1 234,00 kr``);
* the amount is quantized to ``10 ** -get_currency_precision(currency)``; the fraction is
  always that many digits (none, and no decimal symbol, for 0-digit currencies such as JPY);
* digits are grouped from the right by the pattern's primary group size, then by its secondary
  size (``hi_IN``: ``12,34,567.89``); the integer part is zero-padded to the pattern's minimum
  integer digits;
* in the prefix and suffix, ``¤¤`` becomes the upper-cased code and ``¤`` the locale's symbol
  for the currency (the code itself when the locale has none); then ``'quoted'`` literal text
  is unquoted. Babel applies no CLDR ``currencySpacing`` and no ``alphaNextToNumber`` pattern
  variants, so neither does this module: any space between number and symbol is the one the
  locale's pattern itself contains (usually a no-break space, U+00A0).

Cases handed to Babel itself for that ``(locale, currency)`` (slow but exact; new CLDR data
brings some: Babel 2.19's Swiss locales group with an ASCII apostrophe; the tests hold every
locale of the installed Babel to Babel's own string, fast path or not):

* a pattern with ``¤¤¤`` (the currency's plural *name*, which depends on the amount), with
  significant digits (``@``), an exponent (``E``), a percent or per-mille scale, or no number
  part at all;
* a decimal or group symbol containing ``'`` or ``¤``, or a prefix with an odd number of
  ``'`` after substitution (Babel's unquoting would then span the number);
* a locale without ``latn`` number symbols (Babel raises on every call; so does the fallback).

An unknown or malformed locale identifier falls back to ``en`` (Babel itself would raise).
Inputs that are not :class:`~decimal.Decimal` are converted as Babel converts them,
``Decimal(str(value))``. Non-finite amounts (infinities, NaN) go to Babel.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache, partial

__all__ = ["format_money", "money_formatter"]

_QUOTED = re.compile(r"'([^']*)'")


def _unquote(text: str) -> str:
    """Babel's literal-text unquoting: ``'abc'`` -> ``abc``, ``''`` -> ``'``."""
    return _QUOTED.sub(lambda m: m.group(1) or "'", text)


def _substitute(text: str, currency: str, symbol: str) -> str:
    """Babel's ``¤`` substitution, in Babel's order (``¤¤¤`` is excluded beforehand)."""
    return text.replace("¤¤", currency.upper()).replace("¤", symbol)


def _grouper(primary: int, secondary: int, min_int: int, group: str) -> Callable[[str], str]:
    """Babel's ``NumberPattern._format_int`` for fixed sizes, minimum and symbol."""

    def group_digits(value: str) -> str:
        if len(value) < min_int:
            value = "0" * (min_int - len(value)) + value
        if len(value) <= primary:
            return value
        ret = group + value[-primary:]
        value = value[:-primary]
        while len(value) > secondary:
            ret = group + value[-secondary:] + ret
            value = value[:-secondary]
        return value + ret

    return group_digits


@lru_cache(maxsize=512)
def money_formatter(locale: str, currency: str, *, minor_digits: bool = False) -> Callable[[Decimal], str]:
    """A function ``amount -> str`` equal to ``format_currency(amount, currency, locale=locale)``.

    Built once per ``(locale, currency)`` and memoized. An unknown or malformed ``locale``
    falls back to ``en``. See the module docstring for the rules and for the cases where the
    returned function is Babel's ``format_currency`` itself. ``minor_digits``: the decimals of
    the locale's pattern (``currency_digits=False``: two) instead of the currency's CLDR digits,
    which Babel 2.19 gives HUF as none.
    """
    from babel import Locale, UnknownLocaleError
    from babel.numbers import (
        UnsupportedNumberingSystemError,
        format_currency,
        get_currency_precision,
        get_currency_symbol,
        get_decimal_symbol,
        get_group_symbol,
    )

    try:
        parsed = Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError):
        parsed = Locale.parse("en")
    babel_formatter = partial(format_currency, currency=currency, locale=parsed, currency_digits=not minor_digits)

    def fallback(amount: Decimal) -> str:
        return babel_formatter(amount)

    pattern = parsed.currency_formats["standard"]
    try:
        decimal_symbol = get_decimal_symbol(parsed)
        group_symbol = get_group_symbol(parsed)
    except UnsupportedNumberingSystemError:
        return fallback
    raw = pattern.prefix + pattern.suffix
    if (
        "¤¤¤" in "".join(raw)
        or "@" in pattern.pattern
        or pattern.exp_prec
        or pattern.scale
        or pattern.number_pattern == ""
        or any(c in decimal_symbol + group_symbol for c in "'¤")
    ):
        return fallback
    symbol = get_currency_symbol(currency, parsed)
    pos_prefix, neg_prefix = (_substitute(p, currency, symbol) for p in pattern.prefix)
    pos_suffix, neg_suffix = (_substitute(s, currency, symbol) for s in pattern.suffix)
    if pos_prefix.count("'") % 2 or neg_prefix.count("'") % 2:
        return fallback
    pos_prefix, neg_prefix, pos_suffix, neg_suffix = map(
        _unquote, (pos_prefix, neg_prefix, pos_suffix, neg_suffix)
    )

    digits = pattern.frac_prec[1] if minor_digits else get_currency_precision(currency)
    if not 0 <= digits <= 6 or (minor_digits and pattern.frac_prec[0] != digits):  # str() would not be plain
        return fallback
    quantum = Decimal(10) ** (-digits)
    primary, secondary = pattern.grouping
    min_int = pattern.int_prec[0]
    group_digits = _grouper(primary, secondary, min_int, group_symbol)
    # The common pattern (#,##0 with groups of 3) groups through int formatting, in C.
    thousands = primary == secondary == 3 and min_int <= 1
    swap_group = group_symbol != ","

    def money(amount: Decimal) -> str:
        if not isinstance(amount, Decimal):
            amount = Decimal(str(amount))
        if not amount.is_finite():
            return babel_formatter(amount)
        # Babel: value.scaleb(0) (rounds the *signed* value to the context precision: this
        # matters for directional rounding), abs(), normalize(), quantize(quantum). Unary plus
        # rounds the same way; normalize() changes neither the value nor, after quantize(),
        # the exponent. The sign is the amount's own (plus would turn -0 into 0).
        text = str((+amount).copy_abs().quantize(quantum))
        if digits:
            whole, fraction = text[:-digits - 1], decimal_symbol + text[-digits:]
        else:
            whole, fraction = text, ""
        if len(whole) > primary:
            if thousands and len(whole) < 4000:  # int() refuses longer strings
                whole = f"{int(whole):,}"
                if swap_group:
                    whole = whole.replace(",", group_symbol)
            else:
                whole = group_digits(whole)
        elif len(whole) < min_int:
            whole = group_digits(whole)
        if amount.is_signed():
            return neg_prefix + whole + fraction + neg_suffix
        return pos_prefix + whole + fraction + pos_suffix

    return money


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """``format_currency(amount, currency, locale=locale)``, fast; see :func:`money_formatter`."""
    return money_formatter(locale, currency)(amount)
