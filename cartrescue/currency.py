"""The shop's money basis: amounts in the shop's base currency, for thresholds and reports.

Owns one rule: a threshold (``eligibility.min_total``, ``priority.rules.high_value``) or a sum in
a report is compared in the shop's base currency (``shop.currency``), never in whatever currency
a cart happened to be in. Sources that know the base amount give it (Magento's ``base_*``
columns, PrestaShop's ``conversion_rate``): it wins. Otherwise the configured
``shop.exchange_rates`` convert. It must not format money (messages show what the customer saw,
in the cart's own currency: :mod:`cartrescue.compose.render`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal


class Basis:
    """Converts amounts to the shop's base currency; ``None`` means "cannot know"."""

    def __init__(self, currency: str | None, rates: Mapping[str, Decimal] | None = None) -> None:
        self.currency = currency.upper() if currency else None
        self.rates = {code.upper(): rate for code, rate in (rates or {}).items()}

    def base(self, amount: Decimal, currency: str, known: Decimal | None = None) -> Decimal | None:
        """``amount`` of ``currency`` in the base currency.

        ``known`` (the source's own base amount) wins. Without a configured ``shop.currency``
        every amount is taken as it is (a single-currency shop needs no configuration).
        """
        if known is not None:
            return known
        if self.currency is None or currency.upper() == self.currency:
            return amount
        rate = self.rates.get(currency.upper())
        return None if rate is None else amount * rate


def minor_units(currency: str | None) -> int:
    """The decimals an amount of ``currency`` has: its minor unit as CLDR gives it (JPY 0, EUR 2,
    KWD 3), the digits :func:`cartrescue.compose.money.format_money` shows, so a figure rounded here and
    the same figure formatted agree. Without a currency (no ``shop.currency``: amounts summed as
    the shop gives them) two, as ever."""
    if not currency:
        return 2
    from babel.numbers import get_currency_precision

    return get_currency_precision(currency.upper())


def in_minor_units(amount: Decimal, currency: str | None) -> Decimal:
    """``amount`` rounded to ``currency``'s digits (:func:`minor_units`), half up as shops display
    prices: a source that stores more decimals than it shows (Magento's 4) gives a cart's amounts
    as the customer saw them, ``60.00`` € and ``1500`` ¥, the figures other sources give."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)
