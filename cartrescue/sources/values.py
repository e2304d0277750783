"""Values every source reads the same way, whatever its format: the one place for them.

Owns the "bad row" error, which order statuses do not count as orders, locale and currency
normalization. CSV (text cells) and SQL (typed columns) sources both use these, so a cart reads
the same from an export as from the shop's database.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

#: Orders in these states did not happen, as far as reminders are concerned.
IGNORED_ORDER_STATUSES = frozenset({"cancelled", "canceled", "refunded", "failed", "voided"})

_CURRENCY = re.compile(r"^[A-Z]{3}$")


class RowError(ValueError):
    """A value a source cannot use; the message is the reason shown to the user."""


def normalize_locale(value: Any) -> str | None:
    """``sv-SE``, ``SV_se``, ``sv`` -> ``sv_SE`` / ``sv``; blank or nonsense -> None."""
    if not value:
        return None
    text = str(value).strip().replace("-", "_")
    language, _, region = text.partition("_")
    if not language.isalpha():
        return None
    return f"{language.lower()}_{region.upper()}" if region else language.lower()


@lru_cache(maxsize=1)
def _known_currencies() -> frozenset[str]:
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


def parse_currency(value: Any) -> str:
    """An ISO 4217 code known to CLDR (so ``XXQ`` or a currency id is reported, not guessed)."""
    code = str(value).strip().upper() if value is not None else ""
    if not code:
        raise RowError("currency: missing")
    if not _CURRENCY.match(code):
        raise RowError(f"currency: expected an ISO 4217 code like EUR, got {value!r}")
    if code not in _known_currencies():
        raise RowError(f"currency: unknown currency code {code!r}")
    return code
