"""Values every source reads the same way, whatever its format: the one place for them.

Owns the "bad row" error, which order statuses do not count as orders, locale and currency
normalization, and the bounds every number must keep. CSV (text cells) and SQL (typed columns)
sources both use these, so a cart reads the same from an export as from the shop's database.
The values of a CSV's text cells are read here too (whole numbers, amounts with a thousands dot,
ISO 8601 times, yes/no words, a full name), apart from the CSV source that calls them per row.

The bounds are checked where a value is read, so that a number no shop could mean (a 27-digit
price, a quantity of ``1e9``) costs its row (reported with ``file:line`` or table and key) and
never reaches money formatting, rendering or the ledger. They are documented in
docs/csv-format.md ("Numbers") and docs/databases.md.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from cartrescue.contacts import family_name_first
from cartrescue.model import (  # noqa: F401 - refunded_whole: re-exported for the sources
    REFUNDED, Customer, refunded_whole)

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

W = TypeVar("W")  # where a value stood: a line, a row

#: Orders in these states are no sale (the report), and no order a run counts, but for a shop
#: preset's refunded one (:data:`RUN_IGNORED_ORDER_STATUSES`).
#: ``voided`` and ``expired``: Shopify's payment authorization cancelled, or never captured in time.
#: ``checkout-draft`` (``draft``, as an export plugin labels it), ``auto-draft`` and ``trash``:
#: WooCommerce's order never placed (the draft its block checkout keeps of every checkout begun: an
#: abandoned checkout itself) or thrown away.
IGNORED_ORDER_STATUSES = frozenset({"cancelled", "canceled", "refunded", "failed", "voided", "expired",
                                    "checkout-draft", "draft", "auto-draft", "trash"})
#: What a preset's run does not count as an order. A refunded order (:data:`REFUNDED`) is no sale
#: to the report, yet its customer bought: the cart it converted was not abandoned (README, ``ordered``).
RUN_IGNORED_ORDER_STATUSES = IGNORED_ORDER_STATUSES - {REFUNDED}



def order_status(text: str) -> str:
    """An order's status as the rules above read it: in lower case, without the ``wc-`` WooCommerce
    stores it under. An export of its orders table (or a ``sql`` query over it) writes
    ``wc-failed`` and ``wc-checkout-draft``: read as written, each was a purchase, and the customer
    who had just left that checkout was skipped as ``ordered``, never reminded."""
    return text.strip().lower().removeprefix("wc-")


#: Units of one product in one cart line: more is a typo or a test, not a shopper.
MAX_QUANTITY = 10_000
#: Every amount (price, cost, total, rate) is below 10 ** this, in any currency (a trillion).
AMOUNT_DIGITS = 12
#: Decimal places kept: every currency's precision (at most 4) plus room for unit prices and
#: rates (PrestaShop stores 6, WooCommerce 8). More is rounded, half to even, to this.
AMOUNT_PLACES = 8
#: Stock on hand (and any other count) is below 10 ** this.
COUNT_DIGITS = 12
STOCK_LIMIT = 10**COUNT_DIGITS

_PLACES = Decimal(1).scaleb(-AMOUNT_PLACES)

_CURRENCY = re.compile(r"^[A-Z]{3}$")

#: Yes and no as exports and shop databases write them (a consent, a guest flag, delivered).
#: Excel writes a boolean cell in the language of its install: WAHR/FALSCH, VRAI/FAUX.
TRUE_WORDS = frozenset({"1", "yes", "y", "true", "t", "on", "ja", "oui", "si", "sí", "wahr", "vrai"})
FALSE_WORDS = frozenset({"0", "no", "n", "false", "f", "off", "nej", "nee", "non", "nein", "falsch", "faux"})
#: Shopify's "Fulfillment Status" read as ``delivered`` (fulfilled = shipped, the closest it has).
_FULFILLMENT = {"fulfilled": True, "unfulfilled": False, "partial": False, "restocked": None}


def parse_delivered(value: Any) -> bool | None:
    """``delivered``: yes/no (a boolean or number from a database), or a fulfillment status
    (``fulfilled``, ``unfulfilled`` ...); any other word (``on hold``, ``pending``) is unknown. It
    is optional knowledge: unknown is what a shop without delivery tracking gives, and must not
    cost the order (an unreadable order holds its customer's carts back) nor a reminder."""
    if type(value) is str:  # a CSV cell, the common case: first
        text = value.strip().lower()
    elif value is None:
        return None
    elif isinstance(value, (bool, int, Decimal)):
        return bool(value)
    elif isinstance(value, bytes) and (bits := bit_value(value)) is not None:
        return bool(bits)
    else:
        text = value.decode("utf-8", "replace").strip().lower() if isinstance(value, bytes) \
            else str(value).strip().lower()
    if text in _FULFILLMENT:
        return _FULFILLMENT[text]
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return None


def bit_value(raw: bytes) -> int | None:
    """The number a MySQL or MariaDB ``BIT(n)`` column holds (PyMySQL gives its bits as bytes:
    ``b'\\x01'``), or None when ``raw`` is text (a ``BINARY`` or ``BLOB`` column's ``yes``): read
    as text, a ``BIT(1)`` flag, a Java ORM's boolean there, was neither yes nor no."""
    if not raw or any(byte >= 0x20 for byte in raw):
        return None
    return int.from_bytes(raw, "big")


class RowError(ValueError):
    """A value a source cannot use; the message is the reason shown to the user."""


def refuse_nul(values: Iterable[tuple[str, str | None]]) -> None:
    """Raise the RowError of the first ``(name, value)`` whose value holds a NUL: a cart's id,
    address, number, customer id and names reach the ledger and its messages, and PostgreSQL
    refuses a NUL in text (the whole run stopped there, not just that cart) while SQLite's JSON
    lookups cut a key short at it. So it costs its cart, read from any source, before the claim."""
    for name, value in values:
        if value and "\x00" in value:
            raise RowError(f"{name}: holds a NUL character (\\x00), which no ledger can keep")


def refuse_unkeepable_owner(source: str, cart_id: str, customer: Customer) -> None:
    """:func:`refuse_nul` and :func:`refuse_too_long` for what a database source reads of a
    cart's owner, and its id (``source``: the source's name, the start of the cart's key)."""
    refuse_nul((("cart_id", cart_id), ("email", customer.email), ("customer_id", customer.id),
                ("phone", customer.phone), ("first_name", customer.first_name), ("last_name", customer.last_name),
                ("locale", customer.locale)))
    refuse_too_long(source, cart_id, customer)


class CartLimits(NamedTuple):
    """The longest a cart of one source may have each value the ledger keeps, in characters
    (:func:`cartrescue.ledger.cart_value_limits`). The id's is its key's, less the source's
    name and the colon before it (``csv:`` + the id)."""

    cart_id: int
    email: int
    customer_id: int
    locale: int


#: The longest each value of a cart that the ledger keeps may be, in characters: the narrowest
#: column that keeps it (:func:`cartrescue.ledger.cart_value_limits`, which a test holds this to).
#: Written out, because reading them from the tables imported SQLAlchemy and the ledger's models
#: (~0.3 s of CPU) in the helper that splits the export for ``run --workers N``, whose split every
#: worker waits for.
CART_WIDTHS = {"cart_key": 191, "cart_id": 191, "email": 254, "customer_id": 191, "locale": 35}


@lru_cache(maxsize=16)
def cart_limits(source: str) -> CartLimits:
    """:class:`CartLimits` of the carts of ``source`` (:data:`CART_WIDTHS`)."""
    limits = CART_WIDTHS
    return CartLimits(min(limits["cart_id"], limits["cart_key"] - len(source) - 1), limits["email"],
                      limits["customer_id"], limits["locale"])


def refuse_too_long(source: str, cart_id: str, customer: Customer) -> None:
    """Raise the RowError of the first value of a cart of ``source`` that is longer than the
    ledger keeps it (:func:`cart_limits`): PostgreSQL refused it at the cart's claim and the
    whole run stopped there, every later run too, while SQLite kept it and MariaDB cut it. So,
    as a NUL does, it costs its cart, read from any source, before the claim, on every ledger."""
    limits = cart_limits(source)
    for name, value, limit in (("cart_id", cart_id, limits.cart_id), ("email", customer.email, limits.email),
                               ("customer_id", customer.id, limits.customer_id),
                               ("locale", customer.locale, limits.locale)):
        if value is not None and len(value) > limit:
            raise RowError(f"{name}: {len(value)} characters, more than the ledger keeps ({limit}"
                           + (f" for a cart of source {source}" if name == "cart_id" else "") + ")")


def refund_amount(number: Decimal | None, what: str = "refunded") -> Decimal:
    """What a source says was refunded of an order (none written: 0). A negative refund is no
    refund anyone made: a sign slipped, and guessing it would change the order's revenue."""
    if number is None:
        return Decimal(0)
    if number < 0:
        raise RowError(f"{what}: a refund cannot be negative, got {number}")
    return number


#: Blanks a number may be grouped with: spaces, no-break and thin spaces, the Swiss apostrophe.
_NUMBER_SPACES = re.compile(r"[\s\u00a0\u202f\u2009']")
_PLAIN_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
#: ``1,500``: a decimal comma before three decimals, or a thousands comma (US exports, JPY prices).
_GROUPED_OR_DECIMAL = re.compile(r"^-?[1-9]\d{0,2},\d{3}$")


#: The whole part of a number grouped in thousands (``1,234,567``) or the Indian way
#: (``12,34,567``, lakhs and crores), ``G`` standing for the grouping mark.
_GROUPING = r"^-?(?:\d{1,3}(?:G\d{3})+|\d{1,2}(?:G\d{2})+G\d{3})$"
_GROUPED = {mark: re.compile(_GROUPING.replace("G", re.escape(mark))) for mark in ",."}


def _ungrouped(value: str, mark: str, text: str, what: str) -> str:
    """``value``'s whole part (up to a decimal point, ``.``, already in place) without its grouping
    ``mark``. A mark that groups no thousands (``12.5.0``, ``1,2,3``, ``1.234.56``) is no number:
    its marks stripped, it read as 1250, 123, 123456, a price a hundred or a thousand times the
    one meant shown in a reminder without a word."""
    whole, point, decimals = value.partition(".") if mark == "," else (value, "", "")
    if not _GROUPED[mark].match(whole):
        raise RowError(f"{what}: not a number: {text!r} (its {mark!r} groups no thousands: write it without "
                       "them, as 1234.50)")
    return whole.replace(mark, "") + point + decimals


_SPACE_GROUPED = re.compile(_GROUPING.replace("G", " "))
#: A number's whole part and its decimals, when it has any (``1 234`` and ``,50``).
_WHOLE = re.compile(r"^(?P<whole>.*?)(?:[.,]\d+)?$", re.DOTALL)


def _space_grouped(text: str, what: str) -> None:
    """Refuse spaces or apostrophes that group no thousands: ``19 99`` read as 1999 and
    ``12 345 6,00`` as 123456, a price a hundred times the one meant, shown without a word, while
    ``12.5.0`` was refused. ``1 234,50``, ``1'234.50`` (Swiss) and ``12 34 567`` (Indian) are
    numbers."""
    inner = text.strip()
    if not _NUMBER_SPACES.search(inner):
        return
    whole = _WHOLE.match(inner).group("whole")  # type: ignore[union-attr]  # matches every text
    if not _SPACE_GROUPED.match(_NUMBER_SPACES.sub(" ", whole)):
        raise RowError(f"{what}: not a number: {text!r} (its spaces or apostrophes group no thousands: write it "
                       "without them, as 1234.50)")


#: What a number is written with: its digits, grouping and decimal marks, a sign.
_NUMBER_CHARS = frozenset(" -+.,'\u00a0\u202f\u2009")


def written_with_words(text: str) -> bool:
    """Whether ``text`` is a number written with a word or sign before or after it: a currency
    (``€59.90``, ``499 kr``, ``59,90 EUR``, ``$ 12``) or a unit (``2 pcs``). Only a text that
    starts or ends with no digit is looked at (an exponent, ``1e9``, ends with one)."""
    inner = text.strip()
    if not inner or ((inner[0].isdigit() or inner[0] in "-+.,") and inner[-1].isdigit()):
        return False
    start, end = 0, len(inner)
    while start < end and not (inner[start].isdigit() or inner[start] in _NUMBER_CHARS):
        start += 1
    while end > start and not (inner[end - 1].isdigit() or inner[end - 1] in _NUMBER_CHARS):
        end -= 1
    number, signs = inner[start:end], inner[:start] + inner[end:]
    return bool(signs and any(char.isdigit() for char in number)
                and all(char.isdigit() or char in _NUMBER_CHARS for char in number)
                and all(char.isalpha() or char == "." or unicodedata.category(char) == "Sc" for char in signs))


def _currency_written(text: str, what: str) -> None:
    """Refuse an amount written with its currency, saying so: ``499 kr`` was "not a number ...
    (its spaces or apostrophes group no thousands ...)", and the owner looked for a thousands
    space the cell does not have."""
    if written_with_words(text):
        raise RowError(f"{what}: not a number: {text!r} (a currency in it? write the number alone, as 1234.50: the "
                       "currency has its own column)")


def parse_decimal(text: str, what: str) -> Decimal:
    """``12.50``, ``12,50``, ``1 234,50``, ``1,234.50``, ``1.234,50`` -> Decimal; ``1,500`` is
    ambiguous (1.5 or 1500) and refused, and so is a grouping mark that groups no thousands
    (``12.5.0``). A number written as text reads so from an export and from a database column alike."""
    if _PLAIN_NUMBER.match(text):
        return Decimal(text)
    _currency_written(text, what)
    _space_grouped(text, what)
    value = _NUMBER_SPACES.sub("", text)
    if "," in value and "." in value:
        if value.rfind(",") > value.rfind("."):
            whole, _, decimals = value.rpartition(",")
            value = _ungrouped(whole, ".", text, what) + "." + decimals
        else:
            value = _ungrouped(value, ",", text, what)
    elif value.count(",") == 1:
        if _GROUPED_OR_DECIMAL.match(value):
            raise RowError(f"{what}: ambiguous: {text!r} is {Decimal(value.replace(',', '.')).normalize()} with a "
                           "decimal comma, "
                           f"{value.replace(',', '')} with a thousands comma: write it without the comma, or "
                           "with its decimals (1,500.00 or 1.500,00)")
        value = value.replace(",", ".")
    elif value.count(",") > 1 or value.count(".") > 1:
        value = _ungrouped(value, "." if value.count(".") > 1 else ",", text, what)
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise RowError(f"{what}: not a number: {text!r}") from None
    if not number.is_finite():
        raise RowError(f"{what}: not a number: {text!r}")
    return number


def normalize_locale(value: Any) -> str | None:
    """``sv-SE``, ``SV_se``, ``sv`` -> ``sv_SE`` / ``sv``; blank or nonsense -> None.

    A script is written as CLDR (and a template folder) writes it: ``sr-latn`` -> ``sr_Latn``,
    ``zh-hant-tw`` -> ``zh_Hant_TW``; upper-cased like a region it matched no folder.

    A browser's Accept-Language list, as some shops store it (``de-DE,de;q=0.9,en;q=0.8``), is
    its first tag, the customer's first choice (``de_DE``): read whole it was ``de_DE,DE;Q=0.9,…``,
    which matched no template folder but ``de`` and was longer than the ledger keeps.
    """
    if not value:
        return None
    first = str(value).partition(",")[0].partition(";")[0]
    language, *rest = first.strip().replace("-", "_").split("_")
    if not language.isalpha():
        return None
    return "_".join([language.lower(), *(part.title() if len(part) == 4 and part.isalpha() else part.upper()
                                         for part in rest if part)])


@lru_cache(maxsize=1)
def _known_currencies() -> frozenset[str]:
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


def known_currency(code: str) -> bool:
    """Whether an upper-case code is an ISO 4217 currency CLDR knows (current or historic)."""
    return code in _known_currencies()


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


#: What every row of one cart must agree on, where given: who it is for and what it costs in.
OWNER_FIELDS = ("email", "customer_id", "currency")


def owner_conflict(name: str, cells: Iterable[tuple[W, Any]]) -> tuple[tuple[str, W], tuple[str, W]] | None:
    """The first two values of ``name`` (one of :data:`OWNER_FIELDS`) that differ among a
    cart's rows, each with where it stood, ``cells`` being ``(where, value)``; blanks are left
    out, an address and a currency compare in any case, a customer id exactly. Rows of one id
    naming two are two carts under one id, which read as one would show one customer another's
    products (the CSV and SQL sources both refuse them)."""
    seen: tuple[str, W] | None = None
    for where, value in cells:
        text = "" if value is None else str(value).strip()
        if not text:
            continue
        if name != "customer_id":
            text = text.lower()
        if seen is None:
            seen = (text, where)
        elif text != seen[0]:
            return seen, (text, where)
    return None


def below(number: Decimal, digits: int) -> bool:
    """``abs(number) < 10 ** digits``, without arithmetic (``1e999999999`` would overflow it)."""
    return number.is_zero() or number.adjusted() < digits


def bounded_amount(number: Decimal, what: str, text: Any = None) -> Decimal:
    """``number`` if it is a finite amount below 10 ** :data:`AMOUNT_DIGITS` in size, with at
    most :data:`AMOUNT_PLACES` decimal places (more are rounded); else :class:`RowError`."""
    if not number.is_finite():
        raise RowError(f"{what}: not a number: {number if text is None else text!r}")
    if not below(number, AMOUNT_DIGITS):
        shown = str(text if text is not None else number)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise RowError(f"{what}: out of range: {shown} (amounts must be below 10^12)")
    if number.as_tuple().exponent < -AMOUNT_PLACES:  # type: ignore[operator]
        number = number.quantize(_PLACES)
    return number


def parse_amount(text: str, what: str) -> Decimal:
    """``bounded_amount(parse_decimal(text, what), what, text)``, the same Decimal or error, for
    less where ``text`` is a plain number (``4300.00``): its decimal places are counted in the
    text instead of asked of ``as_tuple()``, which builds a named tuple (~3,400 instructions),
    and a CSV export writes most costs and totals once each, so each is parsed."""
    if _PLAIN_NUMBER.match(text):
        number = Decimal(text)  # a plain number is finite; its exponent is minus its places
        if not below(number, AMOUNT_DIGITS):
            return bounded_amount(number, what, text)  # raises: out of range
        point = text.find(".")
        if point >= 0 and len(text) - point - 1 > AMOUNT_PLACES:
            number = number.quantize(_PLACES)
        return number
    return bounded_amount(parse_decimal(text, what), what, text)


def bounded_quantity(number: int, what: str = "quantity", text: Any = None) -> int:
    """A line's quantity: a whole number from 1 to :data:`MAX_QUANTITY`; else :class:`RowError`."""
    shown = number if text is None else text
    if number <= 0:
        raise RowError(f"{what}: must be at least 1, got {shown!r}")
    if number > MAX_QUANTITY:
        raise RowError(f"{what}: more than {MAX_QUANTITY:,} units in one line: {shown!r}")
    return number


def in_stock_range(number: Decimal) -> bool:
    """Whether a stock figure is one a shop could hold (its size below :data:`STOCK_LIMIT`)."""
    return number.is_finite() and below(number, COUNT_DIGITS)


def campaign_name(value: Any) -> str | None:
    """A newsletter's name as a source gives it: one line of text, at most 200 characters. A
    line break in it (a title an export quotes over two lines) is a space between its words."""
    from cartrescue.text import printable

    text = " ".join(printable(str(value), keep_newlines=True).split()) if value is not None else ""
    return text[:200] or None

# -- a CSV's text cells: numbers, times, yes/no, names -----------------------------------


_TRUE, _FALSE = TRUE_WORDS, FALSE_WORDS
#: :func:`parse_bool` of each yes/no word as written in lower case.
_WORDS = {**dict.fromkeys(TRUE_WORDS, True), **dict.fromkeys(FALSE_WORDS, False)}
_OFFSET_WITH_SPACE = re.compile(r"^(.*\d)\s+([+-]\d{2}):?(\d{2})$")
#: ``1.500``: a decimal point before three decimals, or a thousands dot (European exports).
_GROUPED_OR_POINT = re.compile(r"^-?[1-9]\d{0,2}\.\d{3}$")


@lru_cache(maxsize=256)
def _minor_digits(currency: str) -> int:
    from babel.numbers import get_currency_precision

    return get_currency_precision(currency)


def thousands_dot(text: str, what: str, currency: str) -> None:
    """Raise :class:`RowError` for an amount like ``1.500`` in a currency of fewer than three
    decimals: a thousands dot (a price of 1,500 in a European export read as 1.50, a customer
    shown a sofa for €1.30) far more often than a price in thousandths. KWD, BHD, JOD, OMR and
    TND have three decimals, so there it is a price."""
    if text[-4:-3] == "." and _GROUPED_OR_POINT.match(text) and _minor_digits(currency) < 3:
        whole = text.replace(".", "")
        raise RowError(f"{what}: ambiguous: {text!r} is {Decimal(text).normalize()} with a decimal point, {whole} "
                       f"with a thousands dot, and {currency} has {_minor_digits(currency)} decimals: write it "
                       f"without the dot, or with its decimals ({whole}.00 or {text},00)")


def parse_int(text: str, what: str) -> int:
    """A whole number below the bound of any count (``1e999999`` is refused before ``int()``)."""
    if written_with_words(text):  # "2 pcs": parse_decimal would take the word for a currency
        raise RowError(f"{what}: not a number: {text!r} (a unit in it? write the number alone, as 3)")
    number = parse_decimal(text, what)
    if not below(number, COUNT_DIGITS):
        raise RowError(f"{what}: out of range: {text[:40]!r}")
    if number != number.to_integral_value():
        raise RowError(f"{what}: not a whole number: {text!r}")
    return int(number)


def _not_a_time(text: str, what: str) -> RowError:
    """A time cartrescue cannot read, with the forms it can: ``06/12/2026 14:05`` may be June or
    December, so the owner's export must write it as ISO 8601 (the hint shows how)."""
    return RowError(f"{what}: not an ISO 8601 time: {text!r} (write e.g. 2026-11-20T10:03:00Z, "
                    "2026-11-20 11:03:00+01:00, or 2026-11-20 11:03 in the shop's timezone)")


def parse_time(text: str, what: str, tz: ZoneInfo) -> datetime:
    """ISO 8601 (with ``Z`` or an offset; also ``2026-11-20 10:03:00 +0100``) -> aware UTC.

    A time without an offset is read in the shop's timezone ``tz``; a date alone (``2026-11-20``)
    is that day's start there (a cart's ``created_at``: docs/csv-format.md). An order's date alone
    is its day's end instead: :func:`parse_order_time`.
    """
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        match = _OFFSET_WITH_SPACE.match(value)
        if not match:
            raise _not_a_time(text, what) from None
        try:
            moment = datetime.fromisoformat(f"{match.group(1)}{match.group(2)}:{match.group(3)}")
        except ValueError:
            raise _not_a_time(text, what) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it: no such UTC time
        raise RowError(f"{what}: out of range: {text!r}") from None


def parse_order_time(text: str, what: str, tz: ZoneInfo) -> tuple[datetime, datetime | None]:
    """:func:`parse_time` of an order's time, and ``None``; but a date alone (``2026-11-20``,
    as some exports write it) is the *end* of that day in the shop's timezone, not its midnight,
    with the day's start (:attr:`Order.day_start`): a cart abandoned that morning and bought
    that afternoon then counts as ordered (at midnight the order read as one placed before the
    cart, and the customer got a reminder for what they had bought). The report takes the whole
    day: such an order counts after that day's messages, and within a window that holds any of it."""
    value = text.strip()
    if len(value) <= 10 and ":" not in value:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            pass  # parse_time says what is wrong with it
        else:
            return (datetime.combine(day, time.max, tz).astimezone(timezone.utc),
                    datetime.combine(day, time(), tz).astimezone(timezone.utc))
    return parse_time(text, what, tz), None


def utc_text(text: str, moment: datetime) -> str:
    """``moment.isoformat()`` for ``moment = parse_time(text, ...)``: ``text`` itself when it is
    already that (``2026-11-20T09:12:41+00:00``, as most exports write their times), which
    saves formatting it again for each of a file's orders."""
    if len(text) == 25 and text[10] == "T" and text.endswith("+00:00") and text.isascii():
        return text
    return moment.isoformat()


def split_name(full_name: str, locale: str) -> tuple[str, str]:
    """``full_name`` as (first name, the rest): the first word is the given name, but in
    Hungarian the family name comes first (``Kovács Ágnes``), so there it is the last."""
    words = full_name.split()
    if len(words) < 2:
        return full_name, ""
    if family_name_first(locale):
        return words[-1], " ".join(words[:-1])
    return words[0], " ".join(words[1:])


def parse_bool(text: str, what: str) -> bool | None:
    """A yes/no cell: a word as most exports write it (lower case, no spaces) is one dict
    lookup (:data:`_WORDS`, three cells a cart); any other case or spelling is parsed."""
    known = _WORDS.get(text)
    if known is not None:
        return known
    value = text.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RowError(f"{what}: expected yes/no, got {text!r}")
