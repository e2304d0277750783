"""Configuration: one YAML file validated into typed models.

Owns the config schema, ``${ENV}`` interpolation, durations (``45m``, ``24h``, ``3d``) and error
messages that name the file, the key path and what was expected. It must not open sources,
ledgers or connections: it only describes them.

Its annotations are evaluated as the module runs (no ``from __future__ import annotations``):
pydantic compiled and evaluated each field's annotation text again, on every start
(``tests/test_cli_start.py``).
"""

import json
import math
import os
import re
from collections.abc import Iterator
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cartrescue.drivers import SOURCE_STATEMENT_WAIT, STATEMENT_WAIT
from cartrescue.errors import ConfigError, LedgerError

if TYPE_CHECKING:
    from datetime import datetime

    from cartrescue.ledger import Ledger, RunsOver

DEFAULT_CONFIG = "cartrescue.yaml"
LOCK_TIMEOUT_FLOOR = timedelta(seconds=5)
#: ``report`` waits this many times ``ledger.statement_wait`` for a statement's answer: its
#: queries group and sort a whole period's rows (10 minutes by default).
PERIOD_READS = 10

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``"45m"``, ``"24h"``, ``"3d"``, ``"90s"``, ``"1w"``, or ``0``.

    A bare number other than 0 is refused: ``cutoff: 45`` is meant as minutes more often than
    not, and read as seconds it would remind a visitor 45 seconds after they left. Timeouts and
    backoffs, which are seconds by long habit, take :func:`parse_seconds` instead.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 0:
            return timedelta(0)
        raise ValueError(f"a duration needs its unit: {value}m, {value}h or {value}s? (a bare number is "
                         f"not taken: {value} could mean any of them)")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return _at_most_a_century(float(match.group(1)) * _UNITS[match.group(2).lower()], value)
    raise ValueError(f"expected a duration like 45m, 24h or 3d, got {value!r}")


#: The longest duration a setting takes. Past it the dates a run computes (now - max_age) and
#: the timers it sets (the lock's heartbeat) overflowed: exit 70, "a bug in cartrescue".
MAX_DURATION_DAYS = 36_500


def _at_most_a_century(seconds: float, value: Any) -> timedelta:
    if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION_DAYS * 86400:
        raise ValueError(f"{value!r} is more than {MAX_DURATION_DAYS} days (a typo?)")
    return timedelta(seconds=seconds)


def duration_text(value: timedelta) -> str:
    """A duration as the config writes one (``12h``, ``90s``, ``1d 12h``): an error quoting a
    value read back ``12:00:00``, Python's way, not the one the user typed."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s" if seconds == 0 else f"-{duration_text(-value)}"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts)


def parse_seconds(value: Any) -> timedelta:
    """A duration where a bare number means seconds (``timeout: 30``), as in most tools' timeouts;
    also as text, which is what a ``${SMTP_TIMEOUT:-30}`` gives (it was refused, while ``30`` was not)."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*", value):
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _at_most_a_century(value, value)
    return parse_duration(value)


def _sexagesimal(value: int) -> str:
    """An integer as YAML 1.1 read it from ``H:MM`` or ``H:MM:SS`` (base 60): the text written."""
    digits = [value % 60]
    while value >= 60:
        value //= 60
        digits.insert(0, value % 60 if value >= 60 else value)
    return str(digits[0]) + "".join(f":{digit:02d}" for digit in digits[1:])


def _parse_clock(value: Any) -> time:
    """A time of day. Unquoted, YAML reads ``21:00`` as the number 1260 (minutes): only 1:00 to
    23:59 come that way. ``25:00`` had been taken as 01:00, ``21:00:00`` as 12:00 and a bare
    ``21`` as 00:21, each a quiet-hours window the shop never wrote."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if 60 <= value < 24 * 60:
            return time(value // 60, value % 60)
        raise ValueError(f"expected a time of day like 21:00, got {_sexagesimal(value) if value >= 0 else value}")
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = (int(part) for part in value.strip().split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    raise ValueError(f"expected a time of day like 21:00, got {value!r}")


def _above_zero(value: timedelta) -> timedelta:
    """A timeout of zero or less ends every wait at once: ``data_timeout: 0`` made every message
    ``unconfirmed`` (never resent), ``timeout: 0`` every connection a failure."""
    if value <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {duration_text(value)}")
    return value


def _not_negative(value: timedelta) -> timedelta:
    """A backoff may be zero (retry at once: a relay on loopback, tests), never below it."""
    if value < timedelta(0):
        raise ValueError(f"cannot be negative (0 retries at once), got {duration_text(value)}")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
# Timeouts and backoffs: a bare number is seconds (parse_seconds).
Timeout = Annotated[timedelta, BeforeValidator(parse_seconds), AfterValidator(_above_zero)]
Backoff = Annotated[timedelta, BeforeValidator(parse_seconds), AfterValidator(_not_negative)]
ClockTime = Annotated[time, BeforeValidator(_parse_clock)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _email_address(value: str | None) -> str | None:
    """A sender-side address (from, reply-to, support): checked by email-validator, not by a
    regex of our own; no DNS lookup (a config check must work offline)."""
    if value is None:
        return None
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address ({exc})") from None


EmailAddress = Annotated[str, AfterValidator(_email_address)]
OptionalEmail = Annotated[str | None, AfterValidator(_email_address)]


def _norway(value: Any, written: str = "NO") -> Any:
    """YAML 1.1 reads an unquoted ``NO`` (Norway) or ``no`` (Norwegian) as false: take back what
    was ``written``."""
    if isinstance(value, list):
        return [_norway(item, written) for item in value]
    return written if value is False else value


#: Two-letter codes people write for a country that ISO 3166 names otherwise: numbers of the
#: United Kingdom would never match "UK", and be skipped in silence as another country's.
_NOT_ISO = {"UK": "GB (the United Kingdom)", "EL": "GR (Greece)"}


def _country(value: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code, upper-cased (``se`` -> ``SE``)."""
    if value is not None and not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(f"expected an ISO 3166 country code like SE, got {value!r}")
    if value and value.upper() in _NOT_ISO:
        raise ValueError(f"{value.upper()} is not an ISO 3166 country code: write {_NOT_ISO[value.upper()]}")
    return value.upper() if value else None


def _iana_zone(value: str) -> str:
    """``value`` if it names an IANA timezone (``Europe/Stockholm``)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"expected an IANA timezone name like Europe/Stockholm, got {value!r}") from None
    return value


def _currency_code(value: str, malformed: str) -> str:
    """``value`` upper-cased when it is an ISO 4217 code CLDR knows. A typo (``SKE`` for SEK)
    had been taken as written: no cart is in that currency, so its rate was never used and the
    carts it was meant for had none; the config names the key at once instead."""
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ValueError(malformed)
    from cartrescue.sources.values import known_currency

    code = value.upper()
    if not known_currency(code):
        raise ValueError(f"unknown currency code {value!r}: expected an ISO 4217 code like EUR or SEK")
    return code


class ShopConfig(_Model):
    """Who the messages come from; also the template context's ``shop``."""

    name: str = "Example Shop"
    url: str = "https://shop.example.com"
    timezone: str = "UTC"
    default_locale: str = "en"
    from_email: EmailAddress = "shop@example.com"
    from_name: str | None = None
    reply_to: OptionalEmail = None
    reply_to_name: str | None = None  # the Reply-To's display name ("Example Shop Support")
    support_email: OptionalEmail = None
    support_phone: str | None = None
    address: str = ""
    returns: str = ""
    logo_url: str | None = None
    # ISO 3166-1 country code (SE, HU, KZ): the region of phone numbers written without +country
    # code (the SMS channel normalizes every number to E.164; sms.default_region overrides it).
    country: str | None = None
    unsubscribe_url: str = "https://shop.example.com/unsubscribe?token={token}"
    unsubscribe_mailto: OptionalEmail = None  # e.g. unsubscribe@shop.example.com (List-Unsubscribe)
    unsubscribe_secret: str = ""  # HMAC key for unsubscribe tokens: use ${CARTRESCUE_SECRET}
    # Gmail's Feedback-ID sender id (Postmaster Tools' spam rate per sequence step and tier); None: no header.
    feedback_id: str | None = None
    # The base currency thresholds and reports are in (None: amounts are compared as they are).
    currency: str | None = None
    # Units of the base currency per unit of another currency, for sources that do not give a
    # base amount themselves (CSV): {SEK: 0.087, USD: 0.92}.
    exchange_rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str | None) -> str | None:
        return _currency_code(value, f"expected an ISO 4217 code like EUR, got {value!r}") if value else None

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        """A CLDR locale (``sv-SE`` is written ``sv_SE``): a typo would otherwise give every cart
        without a locale English, silently."""
        from babel.localedata import exists

        from cartrescue.sources.values import normalize_locale

        locale = normalize_locale(value)
        if locale is None or not exists(locale):
            raise ValueError(f"unknown locale {value!r}: expected a CLDR locale like en, sv or pt_BR")
        return locale

    @field_validator("country", mode="before")
    @classmethod
    def _not_false(cls, value: Any) -> Any:
        return _norway(value)

    @field_validator("default_locale", mode="before")
    @classmethod
    def _norwegian(cls, value: Any) -> Any:
        """An unquoted ``no`` (Norwegian), which YAML 1.1 reads as false."""
        return _norway(value, "no")

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str | None) -> str | None:
        return _country(value)

    @field_validator("exchange_rates")
    @classmethod
    def _positive_rates(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        checked: dict[str, Decimal] = {}
        for code, rate in rates.items():
            key = _currency_code(code, f"{code}: expected an ISO 4217 code like SEK as the key")
            if not rate > 0:
                raise ValueError(f"{code}: the rate must be above 0, got {rate}")
            checked[key] = rate
        return checked

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _iana_zone(value)

    @field_validator("unsubscribe_url")
    @classmethod
    def _has_token(cls, value: str) -> str:
        """An http(s) link a mail client can use as written: it goes into the List-Unsubscribe
        header, where a space or a non-ASCII letter made the whole header an encoded word that
        no client reads as a link."""
        if "{token}" not in value:
            raise ValueError("must contain {token}, where the signed unsubscribe token goes")
        _token_reaches_server(value)
        from cartrescue.compose.links import safe_url

        if safe_url(value) != value:
            raise ValueError(f"expected an http(s) link like https://shop.example.com/unsubscribe?token={{token}}, "
                             f"got {value!r}")
        outside = value.replace("{token}", "")
        # RFC 3986 has no place for '<>"{}|\^`' in a link (a '>' also ends the header's <link>);
        # "=?" would make the header read as an RFC 2047 encoded word.
        bad = next((c for c in outside if c.isspace() or not (c.isascii() and c.isprintable())
                    or c in '<>"{}|\\^`'), None)
        if bad is None and "=?" in outside:
            bad = "=?"
        if bad is not None:
            raise ValueError(f"{bad!r} cannot stand in a link as written: percent-encode it "
                             f"(a space is %20; é is %C3%A9; < is %3C), got {value!r}")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def domain(self) -> str:
        """The sender's domain as it goes on the wire: in its IDNA form, since a Message-ID is
        ASCII (``bücher.example`` made every message fail to build)."""
        from cartrescue.contacts import ascii_domain

        domain = self.from_email.rpartition("@")[2]
        return ascii_domain(domain) or domain

    @field_validator("feedback_id")
    @classmethod
    def _feedback_sender(cls, value: str | None) -> str | None:
        """The last field of ``Feedback-ID: a:b:c:SenderId``: a colon or a space would shift or
        break the fields Gmail counts by, so the id is a short plain token."""
        if value is not None and not _FEEDBACK_ID.fullmatch(value):
            raise ValueError(f"expected a short id of letters, digits, '.', '_' or '-' (up to 40), like "
                             f"myshop, got {value!r}")
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _ascii_mailbox(cls, value: str | None) -> str | None:
        """A List-Unsubscribe header is structured (RFC 2369): no encoded words, so its mailto
        must be ASCII; the domain goes in its IDNA form (:func:`mime.encode_address`)."""
        if value is not None and not value.rpartition("@")[0].isascii():
            raise ValueError(f"{value!r}: the part before @ must be ASCII (a List-Unsubscribe header cannot "
                             "carry other letters, and mail clients would show no unsubscribe at all)")
        return value


def _token_reaches_server(url: str) -> None:
    """Refuse a link whose ``{token}`` stands only where :mod:`cartrescue.webhook` never sees it:
    after ``#`` (browsers and one-click POSTs do not send the fragment) or in the host name.
    Every message would carry it and every click be refused."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if "{token}" not in parts.path + parts.query:
        where = "after #" if "{token}" in parts.fragment else "in the host name"
        raise ValueError(f"{{token}} stands {where}, which is never sent to the web server: put it in the path "
                         f"or the query, like https://shop.example.com/unsubscribe?token={{token}}; got {url!r}")


SourceType = Literal["csv", "shopify_csv", "sql", "magento2", "woocommerce", "prestashop"]


def _one_character(value: str | None) -> str | None:
    if value is not None and len(value) != 1:
        raise ValueError("expected one character, such as ',' or ';'")
    return value


def _known_encoding(value: str) -> str:
    import codecs

    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r} (e.g. utf-8-sig, cp1252, latin-1)") from None
    return value


#: The longest name a source's carts have in the ledger (``name:id``, :data:`KeyPrefix`): a
#: cart's key is kept in 191 characters, and its id needs the rest.
KEY_NAME_LENGTH = 30


def _key_prefix(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(rf"[a-z0-9_]{{1,{KEY_NAME_LENGTH}}}", value):
        raise ValueError(f"expected lower-case letters, digits or _ (as in a cart key 'csv:1042'), got {value!r}")
    return value


Delimiter = Annotated[str | None, AfterValidator(_one_character)]
Encoding = Annotated[str, AfterValidator(_known_encoding)]
KeyPrefix = Annotated[str | None, AfterValidator(_key_prefix)]


class NewslettersConfig(_Model):
    """The shop's other marketing sends (its newsletter): a reminder due on a day the address got
    one waits for the next day (reason ``newsletter_today``). See docs/newsletters.md."""

    # Database presets: also read the shop's own newsletter tables (magento2: the core newsletter
    # queue; woocommerce: MailPoet's statistics when installed; sql: queries.newsletters).
    shop_database: bool = True
    file: Path | None = None  # a CSV export of sends: email, sent_at, campaign (relative to the config file)
    columns: dict[str, str] = Field(default_factory=dict)  # email / sent_at / campaign -> this export's header
    delimiter: Delimiter = None  # None: detected from the header line
    encoding: Encoding = "utf-8-sig"

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(columns) - {"email", "sent_at", "campaign"})
        if unknown:
            raise ValueError(f"unknown column {unknown[0]!r} (map email, sent_at and campaign to this export's headers)")
        return columns


#: A URL as SQLAlchemy writes one: a scheme (``postgresql``, ``mysql+pymysql``) and ``://``.
_DATABASE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: WooCommerce's order storage: HPOS ``wc_orders``, legacy ``posts``, or whichever the shop uses.
def _one_or_many(value: Any) -> Any:
    """A single value where a list is expected is a list of one (``statuses: abandoned``: the
    string became a list of its letters, and every cart was dropped without a word)."""
    return [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value


class _Options(BaseModel):
    """``source.options`` of a database source: known keys with their types, so a misspelt key
    (``shop_id`` for ``shop_ids``: another shop's carts were reminded) or ``"false"`` read as true
    (``gdpr_consent``, from a ``${VAR}``) is a config error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timezone: str | None = None
    recovery_url: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        """Checked when the config loads, as ``shop.timezone``: a typo was found only once the
        source opened, and not by ``doctor``'s config check."""
        return _iana_zone(value) if value is not None else None


class _WooCommerceOptions(_Options):
    orders_table: Literal["auto", "hpos", "legacy"] = "auto"
    gdpr_consent: bool = True
    line_prices_include_tax: bool = False
    statuses: Annotated[list[str], BeforeValidator(_one_or_many)] = ["normal", "abandoned", "lost"]
    cost_meta_keys: Annotated[list[str] | None, BeforeValidator(_one_or_many)] = None
    cost_meta_key: str | None = None
    currency: str | None = None
    users_prefix: str | None = None  # a multisite subsite: the network's prefix of wp_users (wp_)

    @field_validator("users_prefix")
    @classmethod
    def _table_prefix(cls, value: str | None) -> str | None:
        """As ``source.prefix``: it goes into the SQL text as part of a table's name."""
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_]*", value):
            raise ValueError(f"only letters, digits and _ are allowed, got {value!r}")
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str | None) -> str | None:
        """A typo (``EUO``) stopped every run as a shop-side error (exit 3) blaming the shop's
        woocommerce_currency setting, and telling the user to set the option they had set."""
        return _currency_code(value, f"expected an ISO 4217 code like EUR, got {value!r}") if value else None


class _MagentoOptions(_Options):
    consent: Literal["newsletter", "none"] = "newsletter"
    stock_id: int = 1
    store_locales: dict[int | str, str] = Field(default_factory=dict)  # {store_id: locale}


class _PrestaShopOptions(_Options):
    shop_ids: Annotated[list[int] | None, BeforeValidator(_one_or_many)] = None
    cookie_key: str | None = None


class _SqlOptions(_Options):
    name: str = "sql"
    db_timezone: str = "UTC"

    @field_validator("name")
    @classmethod
    def _key_name(cls, value: str) -> str:
        """The name of its carts in the ledger (``name:id``), as ``source.key_prefix`` is: a long
        one left the ids no room in the key's column, and every cart of the source was refused."""
        if len(value) > KEY_NAME_LENGTH:
            raise ValueError(f"{len(value)} characters, more than a source's name in the ledger's cart keys "
                             f"(name:id) may have ({KEY_NAME_LENGTH}, as source.key_prefix)")
        return value

    @field_validator("db_timezone")
    @classmethod
    def _known_zone_or_shop(cls, value: str) -> str:
        return value if value == "shop" else _iana_zone(value)


_OPTIONS: dict[str, type[_Options]] = {"woocommerce": _WooCommerceOptions, "magento2": _MagentoOptions,
                                       "prestashop": _PrestaShopOptions, "sql": _SqlOptions}


def _checked_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of a ``kind`` source read by its model (``"false"`` is False, ``shop_ids: 1``
    is ``[1]``), keeping only the keys given; a ValueError naming the first bad key."""
    model = _OPTIONS.get(kind)
    if model is None or not options:
        return options
    known = [name for name in model.model_fields]
    for key in options:
        if key not in known:
            from difflib import get_close_matches

            close = get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ValueError(f"options.{key}: not an option of a {kind} source ({hint}its options: {', '.join(known)})")
    try:
        read = model.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0])
        if error["type"] == "value_error":  # its message quotes the value
            raise ValueError(f"options.{key}: {error['msg'].removeprefix('Value error, ')}") from None
        raise ValueError(f"options.{key}: {error['msg']}, got {options.get(key)!r}") from None
    return read.model_dump(include=set(options))


class SourceConfig(_Model):
    """Where carts and orders come from. CSV paths are relative to the config file."""

    type: SourceType = "csv"
    # CSV sources
    carts: Path | None = None
    orders: Path | None = None
    delimiter: Delimiter = None  # None: detected from the header line
    encoding: Encoding = "utf-8-sig"
    # The orders export's, where it is saved otherwise than the carts' (Excel's cp1252 beside a
    # UTF-8 carts export); None: the carts' encoding (``encoding``)
    orders_encoding: Encoding | None = None
    columns: dict[str, str] = Field(default_factory=dict)  # generic name -> this export's header
    order_columns: dict[str, str] = Field(default_factory=dict)
    # database sources
    url: str | None = None
    prefix: str | None = None
    queries: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    newsletters: NewslettersConfig = NewslettersConfig()
    # A CSV export (carts, orders, newsletter sends) not written for this long: delivering runs hold
    # back (exit 3), doctor fails (exit 5); null: not checked (cartrescue.sources.freshness)
    export_stale_after: Duration | None = timedelta(days=1)
    # What the ledger calls this source's carts (``prefix:id``); default the type's own name
    # (csv, shopify, magento2 ...). Set it to keep the keys of a source the shop used before.
    key_prefix: KeyPrefix = None
    # A statement on a PostgreSQL or MySQL/MariaDB shop database that goes this long without an
    # answer (a proxy whose backend is gone) stops the command, exit 3 (cartrescue.drivers.Silence).
    statement_wait: Duration = timedelta(seconds=SOURCE_STATEMENT_WAIT)

    @property
    def is_csv(self) -> bool:
        """Files exported by the shop (the generic CSV or Shopify's), not a database read live."""
        return self.type in ("csv", "shopify_csv")

    @field_validator("columns", "order_columns")
    @classmethod
    def _generic_names(cls, columns: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        """Each key a generic column name: a misspelt one (``emial``) mapped nothing, so the
        orders' addresses were blank and their buyers reminded, without a word."""
        if not columns:
            return columns
        from difflib import get_close_matches

        from cartrescue.sources.csv import CART_FIELDS, LINE_FIELDS, ORDER_FIELDS, REPORT_ORDER_FIELDS

        names = CART_FIELDS + LINE_FIELDS if info.field_name == "columns" else ORDER_FIELDS + REPORT_ORDER_FIELDS
        for key in columns:
            if key not in names:
                close = get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ValueError(f"unknown column {key!r} ({hint}the keys are the generic names of docs/csv-format.md: "
                                 f"{', '.join(names)}; the values are this export's headers)")
        return columns

    @field_validator("statement_wait")
    @classmethod
    def _some_wait(cls, value: timedelta) -> timedelta:
        return _a_statement_wait(value)

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        """A URL's shape, when the config loads (exit 2, naming the key): ``not-a-url`` was
        found only by the run, as a shop-side error (exit 3)."""
        if value and not _DATABASE_URL.match(value):
            raise ValueError("expected an SQLAlchemy database URL like postgresql://user@host/shop or "
                             "mysql+pymysql://user:password@host/shop")
        return value

    @model_validator(mode="after")
    def _fields_for_type(self) -> "SourceConfig":
        object.__setattr__(self, "options", _checked_options(self.type, self.options))  # frozen: set once, here
        if self.is_csv:
            if self.carts is None:
                raise ValueError(f"a {self.type} source needs 'carts' (path to the carts CSV)")
            # A database source's keys under a file source: left from a switch, or a type forgotten.
            stray = [key for key in ("url", "prefix", "queries", "options") if getattr(self, key)]
            if stray:
                raise ValueError(f"{', '.join(stray)}: for a database source, not a {self.type} one (which reads "
                                 "the carts and orders files): set type, or remove them")
        elif not self.url:
            raise ValueError(f"a {self.type} source needs 'url' (an SQLAlchemy database URL)")
        if self.type == "sql" and "carts" not in self.queries:
            raise ValueError("a sql source needs queries.carts")
        return self


RETENTION_FLOOR = timedelta(days=1)


class Retention(_Model):
    """How long the ledger keeps decisions and run records (``None``: for ever). The delivering
    run that follows deletes older rows (cartrescue.lifecycle); messages are never pruned."""

    decisions: Duration | None = timedelta(days=90)  # cr_decision: each cart's latest decision
    runs: Duration | None = timedelta(days=180)  # cr_run: one row per run

    @field_validator("decisions", "runs")
    @classmethod
    def _floor(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < RETENTION_FLOOR:
            raise ValueError(f"must be at least 1d (or null: keep for ever), got {duration_text(value)}")
        return value


def _time_as_text(value: Any) -> Any:
    """``now: 2026-11-20T10:00:00Z`` unquoted: YAML reads a time, not the text it was."""
    return value.isoformat() if isinstance(value, date) else value


def _retention(value: Any) -> Any:
    """One duration for both tables (``retention: 90d``), ``null`` to keep everything, or a mapping."""
    if value is None:
        return {"decisions": None, "runs": None}
    if isinstance(value, (str, int, float, timedelta)) and not isinstance(value, bool):
        return {"decisions": value, "runs": value}
    return value


class LedgerConfig(_Model):
    """Where cartrescue keeps its own state (never the shop's database)."""

    url: str = "sqlite:///cartrescue.db"  # relative SQLite paths are relative to the config file
    lock_timeout: Duration = timedelta(hours=2)  # a lock without heartbeat this long is stale (crashed run)
    # A statement on a PostgreSQL or MySQL/MariaDB ledger that goes this long without an answer
    # (a proxy whose backend is gone) stops the command, exit 2 (cartrescue.drivers.Silence).
    statement_wait: Duration = timedelta(seconds=STATEMENT_WAIT)
    retention: Annotated[Retention, BeforeValidator(_retention)] = Retention()

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        """A URL's shape, as ``source.url``'s: ``cartrescue.db`` without ``sqlite:///`` was "cannot
        open: Could not parse SQLAlchemy URL", with no word of what it lacked."""
        if not _DATABASE_URL.match(value):
            raise ValueError("expected an SQLAlchemy database URL like sqlite:///cartrescue.db (a file beside this "
                             "config) or postgresql+psycopg://user@host/cartrescue")
        return value

    @field_validator("lock_timeout")
    @classmethod
    def _lock_floor(cls, value: timedelta) -> timedelta:
        if value < LOCK_TIMEOUT_FLOOR:
            raise ValueError(f"must be at least {int(LOCK_TIMEOUT_FLOOR.total_seconds())}s (the run refreshes its "
                             f"heartbeat every lock_timeout/4), got {duration_text(value)}")
        return value

    @field_validator("statement_wait")
    @classmethod
    def _some_wait(cls, value: timedelta) -> timedelta:
        return _a_statement_wait(value)


def _a_statement_wait(value: timedelta) -> timedelta:
    """``ledger.statement_wait`` and ``source.statement_wait``: a deadline, never none (a server
    that stopped answering held the run, and its lock, for good)."""
    if value < timedelta(seconds=1):
        raise ValueError(f"must be at least 1s (a statement's longest wait for an answer), "
                         f"got {duration_text(value)}")
    return value


#: Whose cart may be reminded: ``required`` only a "yes"; ``soft-opt-in`` also an unknown answer
#: from a customer who has ordered before (the soft opt-in); ``none`` anyone who did not say no.
ConsentPolicy = Literal["required", "soft-opt-in", "none"]


class QuietHours(_Model):
    start: ClockTime
    end: ClockTime  # may be earlier than start: the window crosses midnight

    @model_validator(mode="after")
    def _a_window(self) -> "QuietHours":
        """``start: 21:00, end: 21:00`` was read as no quiet hours at all (an empty window), where
        a shop may have meant the whole day: neither is a window, so it is said."""
        if self.start == self.end:
            raise ValueError(f"end: the same time as start ({self.start:%H:%M}): no window (write quiet_hours: "
                             "null for none)")
        return self


class EligibilityConfig(_Model):
    cutoff: Duration = timedelta(minutes=45)
    max_age: Duration = timedelta(days=7)
    # A sequence is only started when its step 1 came due at most this long ago (a first run, or
    # a run after cron was down, does not send week-old carts a "you forgot something").
    backfill: Duration = timedelta(days=2)
    consent: ConsentPolicy = "soft-opt-in"
    # An order not delivered yet holds back its customer's reminders (pending_order) for this long
    # after it was placed; null: until delivered. A shop that never marks its orders delivered
    # (digital goods, pickup, fulfilment outside the shop) would otherwise never remind a customer
    # who has ordered once.
    pending_within: Duration | None = timedelta(days=30)
    one_message_per_day: bool = True
    # A step whose channel cannot reach the customer (SMS without a mobile number or SMS consent,
    # the call list without a phone number) goes out by e-mail (the tier's channel where that is
    # e-mail or a webhook) instead of ending the sequence; false: the cart is skipped for it.
    channel_fallback: bool = True
    quiet_hours: QuietHours | None = None
    min_total: Decimal = Decimal("0.01")
    bot_patterns: list[str] = Field(
        # Google's Merchant Center store checks fill carts as storebotmail.joonix.net addresses.
        default_factory=lambda: [r"^(bot|crawler|spider|test-crawler)[-_.+]", r"^noreply@", r"^no-reply@",
                                 r"@storebotmail\.joonix\.net$"]
    )
    disposable_domains: list[str] = Field(
        default_factory=lambda: ["mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com", "trashmail.com"]
    )

    @model_validator(mode="after")
    def _a_window_to_send_in(self) -> "EligibilityConfig":
        """A cart is due once idle for ``cutoff`` and too old after ``max_age``: with the cut-off
        the longer of the two, no cart is ever due, and nothing said so."""
        if self.cutoff >= self.max_age:
            raise ValueError(f"cutoff ({duration_text(self.cutoff)}) must be shorter than max_age "
                             f"({duration_text(self.max_age)}): no cart would ever be due")
        return self

    @field_validator("backfill")
    @classmethod
    def _some_backfill(cls, value: timedelta) -> timedelta:
        """``backfill: 0`` skipped every cart as ``outside_backfill``: step 1 had always come due
        a moment before the run looked, so no sequence ever started, and the config said nothing."""
        try:
            return _above_zero(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (no sequence would ever start: step 1 has come due before a run sees it)") \
                from None

    @field_validator("bot_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}")
        return patterns


#: The largest a rule's weight may be, either way: scores are sums of weights, and two weights
#: of 1e308, each a float, summed to infinity, printed as ``Infinity`` in ``--json`` (no JSON).
MAX_WEIGHT = 1_000_000


class ValueRule(_Model):
    weight: float = Field(40, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # .nan made every score NaN
    threshold: Decimal = Decimal("200")


class ReturningRule(_Model):
    weight: float = Field(25, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # .nan made every score NaN
    min_orders: int = Field(1, ge=1)


class MarginRule(_Model):
    weight: float = Field(20, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # .nan made every score NaN
    threshold: Decimal = Field(Decimal("0.4"), ge=0, le=1)


class OverstockRule(_Model):
    weight: float = Field(15, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # .nan made every score NaN
    threshold: int = 100
    skus: list[str] = Field(default_factory=list)


class Rules(_Model):
    high_value: ValueRule = ValueRule()
    returning_customer: ReturningRule = ReturningRule()
    high_margin: MarginRule = MarginRule()
    overstock: OverstockRule = OverstockRule()


#: How a message reaches the customer (docs/channels.md): e-mail (SMTP), a row of the staff's call
#: list, an SMS through the provider, or a signed JSON POST to the shop's own automation.
ChannelName = Literal["email", "call-list", "sms", "webhook"]
CHANNELS: tuple[str, ...] = ("email", "call-list", "sms", "webhook")


class Tier(_Model):
    name: str
    min_score: float = 0
    sequence: str = "default"
    channel: ChannelName = "email"
    budget: int | None = Field(None, ge=0)  # at most this many carts per run (or day); None = no cap
    # "day": the budget is the shop's day's (its midnight to midnight), what the run before used
    # today counted, as staff who make five calls a day need from a cron that runs every ten minutes.
    budget_per: Literal["run", "day"] = "run"
    # What a send the budget has no room for becomes: "defer" (it waits for a run with room, up to
    # eligibility.backfill) or "email" (a text or call step goes by e-mail now, as when the
    # customer has no number: a customer the tier ranks high gets at least what a lower tier gets).
    over_budget: Literal["defer", "email"] = "defer"

    @model_validator(mode="after")
    def _over_budget_needs_budget(self) -> "Tier":
        if self.over_budget != "defer" and self.budget is None:
            raise ValueError(f"over_budget: {self.over_budget} needs a budget (tier {self.name!r})")
        return self


class PriorityConfig(_Model):
    rules: Rules = Rules()
    tiers: list[Tier] = Field(
        default_factory=lambda: [
            Tier(name="vip", min_score=85, channel="call-list", budget=5, budget_per="day", over_budget="email"),  # as config.example.yaml: a small top slice
            Tier(name="high", min_score=35),
            Tier(name="standard", min_score=0),
        ]
    )

    #: The tiers' names in the file's order: ``tiers`` is sorted highest first, and an error
    #: about a tier names it as the file lists it (:meth:`key`).
    _written: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("tiers")
    @classmethod
    def _unique(cls, tiers: list[Tier]) -> list[Tier]:
        if not tiers:
            raise ValueError("at least one tier is needed")
        names = [tier.name for tier in tiers]
        for index, name in enumerate(names):
            if names.index(name) != index:
                raise ValueError(f"[{index}].name: {name!r} is the name of tiers[{names.index(name)}] too: "
                                 "tier names must be unique")
        for index, tier in enumerate(tiers):  # the first listed would take every cart of both
            first = next(other for other in tiers if other.min_score == tier.min_score)
            if first is not tier:
                raise ValueError(f"[{index}].min_score: tiers {first.name!r} and {tier.name!r} have the same "
                                 f"min_score {tier.min_score:g}: no cart would ever get tier {tier.name!r}")
        return tiers

    @model_validator(mode="after")
    def _highest_first(self) -> "PriorityConfig":
        self._written = tuple(tier.name for tier in self.tiers)
        object.__setattr__(self, "tiers", sorted(self.tiers, key=lambda tier: tier.min_score, reverse=True))  # frozen
        return self

    def key(self, tier: str) -> str:
        """``priority.tiers[1]``: the key of the tier named ``tier``, indexed as the file lists it."""
        return f"priority.tiers[{self._written.index(tier)}]" if tier in self._written else "priority.tiers"


_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: What a field of a Feedback-ID may hold (its fields are colon-separated): the configured sender
#: id is refused otherwise, and a tier's or sequence's name in it has the rest made dashes.
_FEEDBACK_ID = re.compile(r"[A-Za-z0-9._-]{1,40}")
_NOT_FEEDBACK = re.compile(r"[^A-Za-z0-9._-]")


def feedback_field(name: str) -> str:
    """A config name as one field of a Feedback-ID: its colons (the separator), spaces and other
    characters made dashes."""
    return _NOT_FEEDBACK.sub("-", name)


DEFAULT_REASONS = ("shipping_cost", "price", "payment", "delivery_time", "just_looking", "other")
_CODE_PLACEHOLDER = re.compile(r"\{([a-z]+)(?::(\d+))?\}")


class CodeSource(_Model):
    """Per-recipient codes of an incentive: a pool file (each code once) or a generating pattern.

    Codes live in the ledger (``cr_code``) under ``pool``; see docs/templates.md#incentives.
    """

    pool: str  # the pool's name in the ledger (`cartrescue codes list --pool NAME`)
    file: Path | None = None  # one code per line, imported into the pool; relative to the config file
    pattern: str | None = None  # e.g. "CR-{random:8}": {random:N} = N characters of A-Z/2-9, N >= 6

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"expected a short lower-case name like comeback10, got {value!r}")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return value
        placeholders = _CODE_PLACEHOLDER.findall(value)
        if not placeholders or any(name != "random" or not size or int(size) < 6 for name, size in placeholders):
            raise ValueError(f"expected a pattern with {{random:N}} (N >= 6) and nothing else in braces, got {value!r}")
        if len(_CODE_PLACEHOLDER.sub("", value)) + sum(int(size) for _name, size in placeholders) > 64:
            raise ValueError("codes longer than 64 characters do not fit the ledger")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "CodeSource":
        if (self.file is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'file' (a pool of codes) or 'pattern' (generated codes)")
        return self


class Incentive(_Model):
    kind: Literal["percent", "fixed", "free_shipping"]
    value: Decimal = Decimal("0")
    code: str | None = None  # one fixed code for everyone; for per-recipient codes use `codes`
    codes: CodeSource | None = None  # unique code per recipient and step, allocated at delivery
    valid_for: Duration = timedelta(days=3)  # the expiry shown in the message: delivery + valid_for

    @model_validator(mode="after")
    def _code_or_codes(self) -> "Incentive":
        if self.code is not None and self.codes is not None:
            raise ValueError("give either 'code' (one shared code) or 'codes' (one per recipient), not both")
        # A message that promises "110 % off" (or "0 % off") goes to every customer of the step.
        if self.kind == "percent" and not 0 < self.value <= 100:
            raise ValueError(f"a percent incentive's value is above 0 and at most 100 (got {self.value})")
        if self.kind == "fixed" and not self.value > 0:
            raise ValueError(f"a fixed incentive's value is an amount above 0 (got {self.value})")
        return self


class Step(_Model):
    delay: Duration
    template: str
    incentive: Incentive | None = None
    # per-tier incentives for this step: {tier name: incentive or null}; other tiers get `incentive`
    tier_incentives: dict[str, Incentive | None] = Field(default_factory=dict)
    # A/B variants: {name: weight}; a variant renders <template>@<name>.* where that file exists,
    # else the base file. Weights are relative and split the share that is not held out.
    variants: dict[str, float] = Field(default_factory=dict)
    experiment: str | None = None  # assignment salt; steps sharing it (default: the sequence) share arms
    # The channel of this step (None: the tier's), and per tier instead of it: {high: sms}.
    channel: ChannelName | None = None
    tier_channels: dict[str, ChannelName] = Field(default_factory=dict)

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, variants: dict[str, float]) -> dict[str, float]:
        for name, weight in variants.items():
            if not _NAME.match(name):
                raise ValueError(f"variant names are short lower-case names like a, b or urgent; got {name!r}")
            if not 0 < weight < float("inf"):  # .inf took every customer into the last arm, .nan none
                raise ValueError(f"variant {name!r}: the weight must be a number above 0, got {weight}")
        if len(variants) == 1:
            raise ValueError("one variant is no test: give two or more, or none")
        return variants

    def channel_for(self, tier: "Tier") -> str:
        """The channel this step goes out on for a cart of ``tier``: its ``tier_channels`` entry,
        else the step's ``channel``, else the tier's."""
        return self.tier_channels.get(tier.name) or self.channel or tier.channel

    def incentive_for(self, tier: str | None) -> Incentive | None:
        """The incentive for a cart of ``tier``: its own entry in ``tier_incentives``, else ``incentive``."""
        if tier is not None and tier in self.tier_incentives:
            return self.tier_incentives[tier]
        return self.incentive


class Sequence(_Model):
    steps: list[Step]
    holdout: float = Field(0.0, ge=0, lt=1)  # share of addresses that get no message (measures lift)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[Step]) -> list[Step]:
        if not steps:
            raise ValueError("a sequence needs at least one step")
        delays = [step.delay for step in steps]
        if delays != sorted(delays) or len(set(delays)) != len(delays):
            raise ValueError("step delays must strictly increase")
        return steps


def _default_sequences() -> dict[str, Sequence]:
    return {
        "default": Sequence(
            steps=[
                Step(delay=timedelta(hours=1), template="reminder-1"),
                Step(delay=timedelta(hours=24), template="reminder-2"),
                Step(
                    delay=timedelta(hours=72),
                    template="reminder-3",
                    incentive=Incentive(kind="percent", value=Decimal("10"), code="COMEBACK10"),
                ),
            ]
        )
    }


class CallListConfig(_Model):
    path: Path = Path("call-list.csv")  # relative to the config file


class OutboxConfig(_Model):
    """Accepted for configs written before ``run --outbox`` always took its DIR; only a Python
    caller of :func:`cartrescue.job.run_job` without ``outbox`` still falls back to it."""

    path: Path | None = None


class ExperimentsConfig(_Model):
    """A/B variants and the holdout: assignment is a stable hash of the address and this salt."""

    salt: str = "cartrescue"  # change it to draw every address's arms anew (ends running tests)


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (no DNS lookup: a name is loopback only if it says so)."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class SmtpConfig(_Model):
    """The relay ``run --send`` delivers to (see docs/sending.md). Secrets come from ``${ENV}``."""

    host: str = "localhost"
    port: int | None = Field(None, ge=1, le=65535)  # None: 587 (starttls), 465 (tls), 25 (none)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None  # use ${SMTP_PASSWORD}; never write the password into the file
    ca_file: Path | None = None  # a private relay's CA (PEM), relative to the config file
    verify: bool = True  # verify the relay's certificate and name; false only for a private test relay
    allow_plain_remote: bool = False  # security none to a host that is not loopback needs this
    helo_name: str | None = None  # name given in EHLO (default: SmtpSettings.ehlo_name)
    envelope_from: OptionalEmail = None  # MAIL FROM / bounce address (default: shop.from_email)
    pool_size: int = Field(8, ge=1, le=64)  # concurrent connections, each reused for many messages
    rate_per_second: float | None = Field(None, gt=0)  # None: as fast as the relay takes them
    rate_per_hour: int | None = Field(None, gt=0)  # a rolling hour, counted across runs via the ledger
    retries: int = Field(3, ge=0, le=10)  # in-run retries of a transient failure (4xx, connection, TLS)
    backoff: Backoff = timedelta(seconds=1)  # wait before the first retry; doubles each time; 0: at once
    backoff_max: Backoff = timedelta(seconds=30)
    timeout: Timeout = timedelta(seconds=30)  # connecting (TLS, AUTH) and the replies to MAIL, RCPT, DATA
    # The reply after the whole message (RFC 5321 4.5.3.2: 10 minutes); none in time: "unconfirmed".
    data_timeout: Timeout = timedelta(minutes=10)
    pipelining: bool = True  # MAIL, RCPT and DATA in one write when the relay offers PIPELINING

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]

    @model_validator(mode="after")
    def _safe(self) -> "SmtpConfig":
        if self.security == "none" and not self.allow_plain_remote and not is_loopback_host(self.host):
            raise ValueError(
                f"security none to {self.host!r} would send mail and the password in clear text; use starttls or "
                "tls, or set allow_plain_remote: true for a relay on a trusted network"
            )
        if self.username and not self.password:
            raise ValueError("username given without password (set password: ${SMTP_PASSWORD})")
        if self.password and not self.username:
            raise ValueError("password given without username")
        if self.backoff_max < self.backoff:
            raise ValueError("backoff_max must not be below backoff")
        return self


class SurveyConfig(_Model):
    """Asking why the cart was left: one-click reasons in the messages, answered on the page the
    WSGI app of :mod:`cartrescue.webhook` serves. See docs/survey.md."""

    url: str | None = None  # the answer page with {token}, e.g. https://shop.example.com/cart-survey?token={token}; None: no survey
    reasons: list[str] = Field(default_factory=lambda: list(DEFAULT_REASONS))
    steps: list[int] | None = None  # the steps whose messages ask (1-based); None: every step
    free_text: bool = True  # the answer page also takes an optional line of text
    stops_sequence: bool = True  # an answered cart gets no more reminders (reason answered_survey)
    words: dict[str, dict[str, str]] = Field(default_factory=dict)  # {locale: {word or reason: text}}

    @field_validator("words", mode="before")
    @classmethod
    def _norwegian(cls, words: Any) -> Any:
        """``no:`` (Norwegian) read by YAML 1.1 as false: the locale it was written as."""
        return {_norway(key, "no"): value for key, value in words.items()} if isinstance(words, dict) else words

    @field_validator("url")
    @classmethod
    def _has_token(cls, value: str | None) -> str | None:
        if value is not None and "{token}" not in value:
            raise ValueError("must contain {token}, where the signed survey token goes")
        if value is not None:
            _token_reaches_server(value)
        return value

    @field_validator("reasons")
    @classmethod
    def _reason_codes(cls, reasons: list[str]) -> list[str]:
        if not 1 <= len(reasons) <= 10:
            raise ValueError("give between 1 and 10 reasons")
        if len(set(reasons)) != len(reasons):
            raise ValueError(f"reasons must be unique, got {reasons}")
        for code in reasons:
            if not _NAME.match(code):
                raise ValueError(f"reason codes are short lower-case names like shipping_cost; got {code!r}")
        return reasons

    @field_validator("steps")
    @classmethod
    def _positive_steps(cls, steps: list[int] | None) -> list[int] | None:
        if steps is not None and any(step < 1 for step in steps):
            raise ValueError("steps are numbered from 1")
        return steps

    @model_validator(mode="after")
    def _every_reason_has_words(self) -> "SurveyConfig":
        from cartrescue.survey_words import WORD_KEYS, WORDS

        for locale, words in self.words.items():
            unknown = sorted(set(words) - set(WORD_KEYS) - set(self.reasons))
            if unknown:
                raise ValueError(f"words.{locale}.{unknown[0]}: neither a reason of this survey nor one of "
                                 f"{', '.join(WORD_KEYS)}")
        for code in self.reasons:
            if code not in WORDS["en"] and not any(code in words for words in self.words.values()):
                raise ValueError(f"reason {code!r} needs its label in words (e.g. words: {{en: {{{code}: ...}}}})")
        return self

    def asks_in(self, step: int) -> bool:
        """Do messages of ``step`` carry the survey links?"""
        return self.url is not None and (self.steps is None or step in self.steps)


_UTM_FIELDS = frozenset({"sequence", "step", "variant", "tier", "channel"})


class LinksConfig(_Model):
    """UTM parameters on every link of a message (cartrescue.compose.links); placeholders {sequence},
    {step}, {variant}, {tier}, {channel}. A value that renders empty is left out (no variant, no
    utm_content)."""

    utm: bool = True
    utm_source: str = "cartrescue"
    utm_medium: str = "{channel}"  # email, sms or webhook
    utm_campaign: str = "{sequence}-step{step}"
    utm_content: str = "{variant}"

    @field_validator("utm_source", "utm_medium", "utm_campaign", "utm_content")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        import string

        try:
            names = {name for _text, name, _spec, _conv in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); use {{sequence}}, {{step}}, {{variant}}, {{tier}}, "
                             "{{channel}}")
        unknown = sorted(names - _UTM_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; known: {{sequence}}, {{step}}, {{variant}}, {{tier}}, "
                             "{channel}")
        return value


class ReportConfig(_Model):
    """``cartrescue report`` (docs/reporting.md): attribution, costs and when an A/B test has a winner."""

    attribution_window: Duration = timedelta(days=5)  # an order this long after a message is "recovered"
    period: Duration = timedelta(days=7)  # the default --since: this long before --until
    costs: dict[str, Decimal] = Field(default_factory=dict)  # per message and channel: {email: 0.001, call-list: 2.5}
    margin: Decimal | None = Field(None, ge=0, le=1)  # gross margin share of revenue; None: net revenue only
    free_shipping_cost: Decimal = Field(Decimal("0"), ge=0)  # what a free_shipping incentive costs per order
    min_sample: int = Field(1000, ge=1)  # recipients per variant before a winner can be named
    win_probability: float = Field(0.95, gt=0.5, lt=1)  # P(best) the leading variant needs to win
    auto_promote: bool = False  # `report` promotes a winner: streams that start later get it at that step
    precision: float = Field(0.01, gt=0, lt=1)  # the lift interval half-width worth having (0.01 = ±1 point)

    @field_validator("attribution_window", "period")
    @classmethod
    def _a_while(cls, value: timedelta) -> timedelta:
        """``period: 0`` was taken, and every report then said "--since … is not before now",
        naming an option nobody gave."""
        return _above_zero(value)

    @field_validator("costs")
    @classmethod
    def _non_negative(cls, costs: dict[str, Decimal]) -> dict[str, Decimal]:
        for channel, cost in costs.items():
            if channel not in CHANNELS:
                from difflib import get_close_matches

                close = get_close_matches(channel, CHANNELS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(f"unknown channel {channel!r}{hint}: the keys are {', '.join(CHANNELS)}")
            if cost < 0:
                raise ValueError(f"{channel}: a cost cannot be negative, got {cost}")
        return costs


def _http_url(value: str | None, allow_plain_remote: bool, key: str) -> None:
    """An ``https://`` URL, or ``http://`` to loopback (or anywhere with ``allow_plain_remote``)."""
    if value is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key}: expected an http(s) URL like https://hooks.example.com/cart, got {redacted(value)!r}")
    if parts.scheme == "http" and not allow_plain_remote and not is_loopback_host(parts.hostname):
        raise ValueError(f"{key}: http:// to {parts.hostname!r} would send customer data and the signature in clear "
                         "text; use https, or set allow_plain_remote: true for a trusted network")


def redacted(url: str) -> str:
    """``url`` without its user info and query (where tokens hide): safe in any message."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else "(not a URL)"


class HttpDelivery(_Model):
    """How an HTTP channel (webhook, SMS) delivers: concurrency, pace, retries, as for SMTP."""

    concurrency: int = Field(8, ge=1, le=128)  # requests in flight at once (each claimed when it starts)
    rate_per_second: float | None = Field(None, gt=0)  # None: as fast as the endpoint answers
    rate_per_hour: int | None = Field(None, gt=0)  # a rolling hour, counted across runs via the ledger
    retries: int = Field(3, ge=0, le=10)  # in-run retries of 408, 429, 5xx, timeouts and connection errors
    backoff: Backoff = timedelta(seconds=1)  # wait before the first retry; doubles; a Retry-After wins; 0: at once
    backoff_max: Backoff = timedelta(seconds=30)
    timeout: Timeout = timedelta(seconds=10)  # per request (connect, send, answer)
    allow_plain_remote: bool = False  # http:// to a host that is not loopback needs this
    ca_file: Path | None = None  # a private receiver's CA (PEM), relative to the config file; else certifi's CAs

    @model_validator(mode="after")
    def _backoff_order(self) -> "HttpDelivery":
        if self.backoff_max < self.backoff:
            raise ValueError("backoff_max must not be below backoff")
        return self


class WebhookConfig(HttpDelivery):
    """The ``webhook`` channel: one signed JSON POST per message (docs/channels.md#webhook)."""

    url: str | None = None  # where each message is POSTed (the shop's automation, a messenger bot)
    secret: str = ""  # HMAC-SHA256 key of the signature header: use ${CARTRESCUE_WEBHOOK_SECRET}

    @model_validator(mode="after")
    def _url(self) -> "WebhookConfig":
        _http_url(self.url, self.allow_plain_remote, "url")
        return self


class TwilioConfig(_Model):
    """Twilio's Messages API (or a provider that speaks it: ``base_url``)."""

    account_sid: str = ""  # AC...
    auth_token: str = ""  # use ${TWILIO_AUTH_TOKEN}; also checks the signature of inbound replies
    base_url: str = "https://api.twilio.com"  # another Twilio-compatible API (or a local emulator)


def _json_text(value: Any) -> str:
    """A string as itself, anything else as JSON writes it (``true``, ``null``, ``1.5``): one text
    for what a YAML config and a JSON answer each typed their own way."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


class HttpGatewayConfig(_Model):
    """Any SMS gateway with an HTTP API: the request and the success rule described here."""

    url: str | None = None  # where each SMS is POSTed
    format: Literal["form", "json"] = "form"  # the body: form-encoded or a JSON object
    # Body fields: name -> value with placeholders {to} (E.164), {sender}, {text}, {key} (the message's
    # id, unique across shops: de-duplicate on it), {id} (ledger id, counted from 1 in each ledger)
    fields: dict[str, str] = Field(default_factory=lambda: {"to": "{to}", "from": "{sender}", "text": "{text}"})
    username: str | None = None  # basic auth user (with password)
    password: str | None = None  # use ${SMS_GATEWAY_PASSWORD}
    token: str | None = None  # sent as "Authorization: Bearer ...": use ${SMS_GATEWAY_TOKEN}
    success_field: str | None = None  # dotted path in the JSON answer that says whether it worked, e.g. status
    success_values: list[str] = Field(default_factory=list)  # what that field says on success, e.g. [ok, queued, true]
    id_field: str | None = None  # dotted path of the gateway's message id, kept in the ledger's reply
    inbound_secret: str = ""  # HMAC key the gateway (or your relay) signs inbound replies with
    inbound_from: str = "from"  # inbound reply: the field with the sender's number
    inbound_text: str = "text"  # ... with the message text
    inbound_id: str = "id"  # ... with the gateway's id of the reply (replays are refused by it)

    @field_validator("success_values", mode="before")
    @classmethod
    def _as_json_text(cls, values: Any) -> Any:
        """YAML's ``[true, 1]`` as the text a JSON answer's scalars are compared in."""
        return [_json_text(value) for value in values] if isinstance(values, list) else values

    def says_success(self, said: Any) -> bool:
        """Does ``said`` (the answer's ``success_field``) say success? Compared as JSON text,
        in any case: ``{"success": true}`` is ``true``, not Python's ``True``, and a shop may
        have written either in ``success_values``. ``said`` is a value the answer holds: an
        answer without the field says nothing, not null, and the channel never asks here."""
        return _json_text(said).casefold() in {value.casefold() for value in self.success_values}

    @model_validator(mode="after")
    def _consistent(self) -> "HttpGatewayConfig":
        if self.success_values and not self.success_field:
            raise ValueError("success_values needs success_field (where the answer says it)")
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password go together (basic auth)")
        return self


def _default_sms_quiet() -> QuietHours:
    return QuietHours(start=time(20, 0), end=time(9, 0))


class SmsConfig(HttpDelivery):
    """The ``sms`` channel (docs/channels.md#sms)."""

    concurrency: int = Field(4, ge=1, le=128)
    provider: Literal["twilio", "http"] = "twilio"
    sender: str | None = None  # From: a number (+46701234567), a sender name, or a Twilio MessagingServiceSid (MG...)
    default_region: str | None = None  # region of numbers without +country code; null = shop.country
    countries: list[str] = Field(default_factory=list)  # send only to numbers of these countries ([] = any)
    consent: ConsentPolicy = "required"  # SMS consent (sms_consent), apart from e-mail's
    quiet_hours: QuietHours | None = Field(default_factory=_default_sms_quiet)  # on top of eligibility.quiet_hours
    # recipient: quiet_hours on the clock of the number's timezone, where its plan places it in one
    # (+1 212 -> New York); else, and with shop, on the shop's
    quiet_hours_zone: Literal["recipient", "shop"] = "recipient"
    max_segments: int = Field(3, ge=1, le=10)  # longer texts are a render error (templates check shows them)
    link_tags: bool = False  # the UTM tags of links: on links in texts too (~66 characters each: a segment in UCS-2)
    inbound_url: str | None = None  # the public URL your provider posts replies to (STOP); null = no inbound
    twilio: TwilioConfig = TwilioConfig()
    http: HttpGatewayConfig = HttpGatewayConfig()

    @field_validator("default_region", "countries", mode="before")
    @classmethod
    def _not_false(cls, value: Any) -> Any:
        return _norway(value)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return _country(value)

    @field_validator("countries")
    @classmethod
    def _regions(cls, values: list[str]) -> list[str]:
        return [_country(value) or "" for value in values]

    @model_validator(mode="after")
    def _urls(self) -> "SmsConfig":
        _http_url(self.http.url, self.allow_plain_remote, "http.url")
        _http_url(self.twilio.base_url, self.allow_plain_remote, "twilio.base_url")
        return self


class DoctorConfig(_Model):
    """``cartrescue doctor``: what counts as "reminders have silently stopped"."""

    stale_after: Duration = timedelta(hours=2)  # no successful non-dry-run run for this long: exit 5


class Config(_Model):
    """The whole file. ``base_dir`` is the config file's folder: relative paths resolve there."""

    shop: ShopConfig = ShopConfig()
    source: SourceConfig
    ledger: LedgerConfig = LedgerConfig()
    eligibility: EligibilityConfig = EligibilityConfig()
    priority: PriorityConfig = PriorityConfig()
    sequences: dict[str, Sequence] = Field(default_factory=_default_sequences)
    templates: Path | None = None  # None: the templates shipped with cartrescue
    call_list: CallListConfig = CallListConfig()
    outbox: OutboxConfig = OutboxConfig()
    experiments: ExperimentsConfig = ExperimentsConfig()
    smtp: SmtpConfig = SmtpConfig()
    webhook: WebhookConfig = WebhookConfig()
    sms: SmsConfig = SmsConfig()
    doctor: DoctorConfig = DoctorConfig()
    survey: SurveyConfig = SurveyConfig()
    links: LinksConfig = LinksConfig()
    report: ReportConfig = ReportConfig()
    # pin the clock (demos, reproducible tests); never in production
    now: Annotated[str | None, BeforeValidator(_time_as_text)] = None
    base_dir: Path = Path(".")
    config_file: Path | None = None  # set by load_config: errors found later name the file too
    unset_env: dict[str, str] = Field(default_factory=dict)  # set by load_config: {secret key: its unset variable}
    #: The line of each key of the file (:func:`_key_lines`), set by load_config: a warning about a key names it.
    _key_lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _templates_exist(self) -> "Config":
        if self.templates is not None and not self.path(self.templates).is_dir():
            raise ValueError(f"templates: no such folder: {self.path(self.templates)} (null = the shipped templates)")
        return self

    @model_validator(mode="after")
    def _tiers_use_known_sequences(self) -> "Config":
        for tier in self.priority.tiers:
            if tier.sequence not in self.sequences:
                raise ValueError(
                    f"{self.priority.key(tier.name)}.sequence: unknown sequence {tier.sequence!r}"
                    f" (known: {', '.join(sorted(self.sequences))})"
                )
        return self

    @model_validator(mode="after")
    def _step_channels_name_tiers(self) -> "Config":
        tiers = {tier.name for tier in self.priority.tiers}
        for name, sequence in self.sequences.items():
            for number, step in enumerate(sequence.steps):
                unknown = sorted(set(step.tier_channels) - tiers)
                if unknown:
                    raise ValueError(f"sequences.{name}.steps[{number}].tier_channels: unknown tier {unknown[0]!r} "
                                     f"(known: {', '.join(sorted(tiers))})")
        return self

    @model_validator(mode="after")
    def _steps_come_due_within_max_age(self) -> "Config":
        """A step due no sooner than ``eligibility.max_age`` after the cart's last activity
        never goes out: a run no longer reads a cart that old (:attr:`Planner.window`)."""
        max_age = self.eligibility.max_age
        for name, sequence in self.sequences.items():
            for number, step in enumerate(sequence.steps):
                if step.delay >= max_age:
                    raise ValueError(
                        f"sequences.{name}.steps[{number}].delay: {duration_text(step.delay)} is not shorter than "
                        f"eligibility.max_age ({duration_text(max_age)}): no run reads a cart that long after "
                        "its last activity, so the step would never go out (raise max_age or shorten the delay)")
        return self

    @model_validator(mode="after")
    def _survey_steps_exist(self) -> "Config":
        """A survey step past every sequence's last asks nobody, without a word."""
        if self.survey.url and self.survey.steps and self.sequences:
            longest = max(len(sequence.steps) for sequence in self.sequences.values())
            beyond = [step for step in self.survey.steps if step > longest]
            if beyond:
                raise ValueError(f"survey.steps: step {beyond[0]} is past the last step of every sequence "
                                 f"(the longest has {longest})")
        return self

    @model_validator(mode="after")
    def _names_fit_the_ledger(self) -> "Config":
        """Every name the ledger keeps (:meth:`ledger_names`) fits its columns. A longer one was
        taken: PostgreSQL refused it at the first claim, so every run stopped there (exit 2, after
        reading the carts, on every later run too), MariaDB refused or cut it, SQLite kept it."""
        from cartrescue.ledger import config_value_limits

        limits = config_value_limits()
        for key, value, column in self.ledger_names():
            if len(value) > limits[column]:
                kept = " with shop.from_email (each run's shop: 'name <from_email>')" if column == "shop" else ""
                raise ValueError(f"{key}: {len(value)} characters{kept}, more than the ledger keeps ({limits[column]})")
        return self

    def ledger_names(self) -> Iterator[tuple[str, str, str]]:
        """``(key path, value, column)`` of each name or value of this config that the ledger keeps
        in the columns named ``column`` (:data:`cartrescue.ledger.CONFIG_VALUES`)."""
        yield "shop.name", self.shop_identity, "shop"
        for tier in self.priority.tiers:
            yield f"{self.priority.key(tier.name)}.name", tier.name, "tier"
        for name, sequence in self.sequences.items():
            yield f"sequences.{name}", name, "sequence"
            for number, step in enumerate(sequence.steps):
                where = f"sequences.{name}.steps[{number}]"
                yield f"{where}.template", step.template, "template"
                yield from ((f"{where}.variants.{variant}", variant, "variant") for variant in step.variants)
        for key, offer in self.code_offers():
            assert offer.codes is not None
            yield f"{key}.codes.pool", offer.codes.pool, "pool"
            yield f"{key}.value", str(offer.value), "value"

    @property
    def phone_region(self) -> str | None:
        """The region a phone number without ``+`` and country code is read in: ``sms.default_region``,
        else the shop's country."""
        return self.sms.default_region or self.shop.country

    def channels_used(self) -> set[str]:
        """Every channel a tier or a step of its sequence can send on."""
        used: set[str] = set()
        for tier in self.priority.tiers:
            for step in self.sequences[tier.sequence].steps:
                used.add(step.channel_for(tier))
        return used

    @model_validator(mode="after")
    def _incentives_consistent(self) -> "Config":
        tiers = {tier.name for tier in self.priority.tiers}
        pools: dict[str, tuple[str, Incentive]] = {}
        for name, sequence in self.sequences.items():
            for number, step in enumerate(sequence.steps, 1):
                where = f"sequences.{name}.steps[{number - 1}]"
                unknown = sorted(set(step.tier_incentives) - tiers)
                if unknown:
                    raise ValueError(f"{where}.tier_incentives: unknown tier {unknown[0]!r} (known: {', '.join(sorted(tiers))})")
                for incentive in (step.incentive, *step.tier_incentives.values()):
                    if incentive is None or incentive.codes is None:
                        continue
                    seen = pools.setdefault(incentive.codes.pool, (where, incentive))
                    if (seen[1].kind, seen[1].value, seen[1].codes) != (incentive.kind, incentive.value, incentive.codes):
                        raise ValueError(f"{where}: code pool {incentive.codes.pool!r} is used by {seen[0]} with another "
                                         "kind, value or source; one pool is one offer")
        return self

    @model_validator(mode="after")
    def _pool_files_readable(self) -> "Config":
        """Every code pool file, read as a run will read it (relative to the config file): a
        missing or malformed one passed loading, ``doctor`` and ``templates check``, and the first
        delivering run failed every message of its step instead."""
        from cartrescue.pool_file import read_pool_file

        read: set[Path] = set()
        for key, offer in self.code_offers():
            source = offer.codes
            assert source is not None
            if source.file is None or self.path(source.file) in read:
                continue
            try:
                read_pool_file(self.path(source.file))
            except ConfigError as exc:
                raise ValueError(f"{key}.codes.file: {exc}") from None
            read.add(self.path(source.file))
        return self

    def code_offers(self) -> Iterator[tuple[str, Incentive]]:
        """Each incentive with per-recipient codes (``codes:`` set), a step's and its tiers', with
        its key path (``sequences.default.steps[2].incentive``), in the config's order: the pools
        (:func:`cartrescue.compose.incentives.pools`) and the check of their files read the same list."""
        for name, sequence in self.sequences.items():
            for number, step in enumerate(sequence.steps):
                where = f"sequences.{name}.steps[{number}]"
                offers = [(f"{where}.incentive", step.incentive),
                          *((f"{where}.tier_incentives.{tier}", offer) for tier, offer in step.tier_incentives.items())]
                for key, offer in offers:
                    if offer is not None and offer.codes is not None:
                        yield key, offer

    def ignored_keys(self) -> list[str]:
        """A warning line (``file: key: ignored: why``) for each key the file sets, to a value other
        than its default, that nothing reads with this source type and these channels: a
        ``source.delimiter`` on a ``magento2`` source, an ``sms.sender`` while no tier texts. The
        shop believed it took effect. Defaults written out (the config of ``cartrescue init``)
        and secrets (often exported for every shop) are not named."""
        source, lines = self.source, []
        if not source.is_csv:
            why = f"a {source.type} source reads the shop's database (source.url), no CSV file: remove it"
            lines += [(key, why) for key in _set_apart(source, "source.", _CSV_ONLY)]
            if source.newsletters.file is None:  # the one CSV export a database source may have
                lines += [(key, "no CSV export is read (a database source, no source.newsletters.file): remove it")
                          for key in _set_apart(source, "source.", ("export_stale_after",))]
        else:
            why = f"a {source.type} source reads exported files, not a database: remove it"
            lines += [(key, why) for key in _set_apart(source, "source.", ("statement_wait",))]
        if source.is_csv and source.orders is None:
            why = "source.orders is not set, so no orders export is read: set it, or remove this"
            lines += [(key, why) for key in _set_apart(source, "source.", ("orders_encoding", "order_columns"))]
        used = self.channels_used()
        for channel, section in (("sms", self.sms), ("webhook", self.webhook)):
            if channel not in used:
                why = f"no tier or step sends by {channel} (remove it, or give a tier or a step channel: {channel})"
                lines += [(key, why) for key in _set_apart(section, f"{channel}.", skip=_SMS_BEYOND_TEXTS)]
        if "call-list" not in used:
            # forget --files still reads the file for the rows of calls listed before: "remove it" would hide them
            lines += [(key, "no tier or step calls (channel: call-list), so no run adds to the call list; only "
                            "forget reads it, for the rows of calls listed before: give a tier or a step channel: "
                            "call-list, or remove this once that list is done with")
                      for key in _set_apart(self.call_list, "call_list.")]
        if self.survey.url is None:
            lines += [(key, _SURVEY_OFF + (_SURVEY_ANSWERS if key != "survey.steps" else ": set survey.url, or "
                                           "remove this")) for key in _set_apart(self.survey, "survey.")]
        return [f"{self.where(key)}: ignored: {why}{_line_of(key, self._key_lines)}" for key, why in lines]

    def where(self, key: str) -> str:
        """``cartrescue.yaml: shop.from_email`` for an error about ``key`` found after loading."""
        return f"{self.config_file or DEFAULT_CONFIG}: {key}"

    def require_env(self, *sections: str) -> None:
        """ConfigError for the first secret of ``sections`` (``smtp``, ``sms``, ``webhook``) whose
        ``${NAME}`` is not set: what a delivery over them needs (:data:`DEFERRED_SECRETS`)."""
        for key, name in self.unset_env.items():
            if key.split(".")[0] in sections:
                raise ConfigError(f"{self.where(key)}: environment variable {name} is not set (or is empty)")

    def locate(self, error: ConfigError) -> ConfigError:
        """``error`` with the config file in front when it names a key but not the file
        (checks that run after loading: a CA file, a table prefix, an SMTP address)."""
        message = str(error)
        top = message.split(".", 1)[0].split(":", 1)[0].split(" ", 1)[0]
        if top in type(self).model_fields and not message.startswith(str(self.config_file or DEFAULT_CONFIG)):
            return ConfigError(f"{self.config_file or DEFAULT_CONFIG}: {message}")
        return error

    def outbox_folder(self, outbox: Path | None) -> Path:
        """Where ``--outbox`` writes: its DIR (relative: beside the config), else ``outbox.path``."""
        return self.path(outbox or self.outbox.path or "outbox")

    def path(self, value: Path | str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def shop_identity(self) -> str:
        """The shop a run is for, as its ledger records it (``Ledger.shops_taking_turns``): its
        name and sender, what its customers see. Not the export's path or the database URL: the
        shards of one shop on several hosts (``run --shard``) may read them under other names."""
        return f"{self.shop.name} <{self.shop.from_email}>"

    def open_ledger(self, *, create: bool = True, older: bool = False, upgrade: bool = False,
                    runs_over: "RunsOver | None" = None, reads_a_period: bool = False) -> "Ledger":
        """The ledger of ``ledger.url``; an error that it cannot be opened names the file and key.

        ``create=False`` (a command that only reads: ``carts``, a dry-run, ``preview``, ``report``,
        ``doctor``, the ``list`` commands) writes nothing there, on any database: a SQLite file
        that is not there yet (:meth:`missing_ledger_file`) is not made, empty, at what may be a
        mistyped path, nor one without cartrescue's tables (:meth:`not_a_ledger_file`), nor a
        server database without them, given them; an empty ledger in a temporary folder stands
        in, as for a shop's first run, and says why (:attr:`cartrescue.ledger.Ledger.absent`).
        An older ledger is not upgraded either: it is an error naming what it lacks (exit 2),
        unless ``older`` (``doctor``, which reports :attr:`~cartrescue.ledger.Ledger.behind`) or
        ``upgrade`` (``run`` and ``carts``, a dry-run too: the shop's own job may bring its ledger
        up to date, so a careful owner can dry-run a new version before its first sending run).
        ``runs_over``: the process's runs that are over (:class:`cartrescue.ledger.RunsOver`).
        Each statement waits ``ledger.statement_wait`` for an answer, ``reads_a_period``
        (``report``, whose queries add up weeks of rows) :data:`PERIOD_READS` times as long."""
        from cartrescue.ledger import Ledger, older_ledger

        where = self.where("ledger.url")
        wait = self.ledger.statement_wait.total_seconds() * (PERIOD_READS if reads_a_period else 1)
        if create:
            return Ledger(self.ledger_url, where=where, runs_over=runs_over, statement_wait=wait)
        missing, foreign = self.missing_ledger_file(), self.not_a_ledger_file()
        if missing is not None:
            return Ledger.empty(where, absent=f"{missing} does not exist")
        if foreign is not None:
            return Ledger.empty(where, absent=f"{foreign[0]} has none of cartrescue's cr_* tables")
        ledger = Ledger(self.ledger_url, where=where, create=False, runs_over=runs_over, statement_wait=wait)
        if ledger.has_no_tables():
            ledger.close()
            empty = Ledger.empty(where, absent=f"{ledger.safe_url()} has none of cartrescue's cr_* tables")
            empty.refused = ledger.refused
            return empty
        if ledger.behind and upgrade:  # it only adds tables and columns
            ledger.close()
            return Ledger(self.ledger_url, where=where, runs_over=runs_over, statement_wait=wait)
        if ledger.behind and not older:
            ledger.close()
            raise LedgerError(older_ledger(where, ledger.behind))
        return ledger

    def not_a_ledger_file(self) -> tuple[str, list[str]] | None:
        """``(path, its tables)`` of an existing SQLite file at ``ledger.url`` without a table of
        cartrescue's (``cr_*``): the shop's own database, say, or an empty file. Opened as a
        ledger, it would get cartrescue's tables; a command that records nothing must not write
        into a file ``ledger.url`` may name by mistake. None: another database, no such file, a
        ledger (of any version: opening it brings it up to date), or a file not readable as one."""
        from cartrescue.sqlite_url import sqlite_file, sqlite_tables

        path = sqlite_file(self.ledger_url)
        if path is None or not path.is_file():
            return None
        tables = sqlite_tables(path)
        if tables is None or any(name.startswith("cr_") for name in tables):
            return None
        return str(path), tables

    def missing_ledger_file(self) -> str | None:
        """The path of a SQLite ledger whose file is not there yet, its folder there or not (a
        ``state/`` no run has made: a command that only reads answered it with exit 2 where a
        missing file in an existing folder was "no ledger yet"), else None (another database, or
        the path exists). Whether a run can create it is :func:`cartrescue.ledger.why_no_file`'s."""
        from cartrescue.sqlite_url import sqlite_file

        path = sqlite_file(self.ledger_url)
        if path is None or path.exists():
            return None
        return str(path)

    @property
    def ledger_url(self) -> str:
        return self._beside_config(self.ledger.url)

    @property
    def source_url(self) -> str | None:
        """``source.url`` as the database sources open it: a relative SQLite path beside this
        file, as the ledger's and every other path of it (a ``file:`` URI is SQLite's own)."""
        url = self.source.url
        return url if url is None or url.startswith("sqlite:///file:") else self._beside_config(url)

    def _beside_config(self, url: str) -> str:
        """``url`` with a relative SQLite path made relative to the config file's folder."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
            # The folder is a path, the rest is URL text as written: a '?', '#' or '%' in the
            # folder (/srv/Shop #2) is quoted, else SQLAlchemy read it as the URL's query.
            rest, folder = url[len(prefix):], self.base_dir
            if rest.startswith("~"):
                home = Path(rest).expanduser()
                rest, folder = home.name, home.parent
            return _beside(str(folder), rest)
        return url


#: The keys of ``source`` only a CSV source reads.
_CSV_ONLY = ("carts", "orders", "delimiter", "encoding", "orders_encoding", "columns", "order_columns")
#: ``sms`` keys that serve more than the texts a run sends: the region every phone number is read
#: in, and the inbound replies (STOP) that still come after the last text.
_SMS_BEYOND_TEXTS = frozenset({"sms.default_region", "sms.countries", "sms.inbound_url", "sms.http.inbound_from",
                               "sms.http.inbound_text", "sms.http.inbound_id"})


#: Why a ``survey`` key is named while ``survey.url`` is not set; the keys other than ``steps`` go
#: on serving the links of messages sent while it was (:data:`_SURVEY_ANSWERS`).
_SURVEY_OFF = "survey.url is not set, so no message asks the survey"
#: The answer page (``cartrescue.webhook``), ``survey export``'s labels and ``answered_survey``
#: read them for the answers to links sent before the url was taken out: "remove it" would refuse those.
_SURVEY_ANSWERS = ("; only the answers to links of earlier messages read it (their page, survey export, "
                   "answered_survey): set survey.url, or remove this once those links are old")


def _set_apart(model: BaseModel, prefix: str, only: tuple[str, ...] | None = None,
               skip: frozenset[str] = frozenset()) -> Iterator[str]:
    """The key paths under ``model`` that the file sets to a value other than the default
    (:meth:`Config.ignored_keys`), in the model's order; sections are gone into, secrets left out."""
    for name, field in type(model).model_fields.items():
        key = prefix + name
        if name not in model.model_fields_set or (only is not None and name not in only) or key in skip \
                or secret_key(name):
            continue
        value, default = getattr(model, name), field.get_default(call_default_factory=True)
        if value == default:
            continue
        if isinstance(value, BaseModel):
            yield from _set_apart(value, key + ".", skip=skip)
        else:
            yield key


def _beside(folder: str, rest: str) -> str:
    r"""The SQLite URL of ``rest`` (URL text as written) in ``folder`` (a path).

    A folder name with bytes that are not UTF-8 (unpacked from a Windows zip: ``caf\xe9``, held
    by Python as the surrogate ``\udce9``) cannot be URL text: ``quote`` refused it (exit 70),
    and quoted with its bytes, SQLAlchemy unquoted ``%E9`` to U+FFFD and the ledger opened was a
    new file in another folder. Such a folder goes into a SQLite ``file:`` URI, its bytes quoted
    twice: SQLAlchemy takes one quoting off, SQLite the other, and opens the folder's own bytes.
    The URL itself stays text that every message can print."""
    from urllib.parse import quote

    if not _UNDECODED.search(folder):
        return "sqlite:///" + quote(folder, safe="/") + "/" + rest
    uri = quote(quote(folder, safe="/", errors="surrogateescape"), safe="/")
    return "sqlite:///file:" + uri + "/" + rest + ("&" if "?" in rest else "?") + "uri=true"


_UNDECODED = re.compile("[\udc80-\udcff]")  # a byte of a file name that is not UTF-8 (surrogateescape)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # of a ${NAME}

#: The channels' secrets: a ``${NAME}`` of one that is not set is an error only where a delivery
#: needs it (:meth:`Config.require_env`), so a dry-run, ``templates check`` in CI, ``report`` or
#: ``suppress`` run without the relay's password.
DEFERRED_SECRETS = frozenset({"smtp.password", "sms.twilio.auth_token", "sms.http.password", "sms.http.token",
                              "webhook.secret"})


def _interpolate(node: Any, where: str, env: dict[str, str], file: str, unset: dict[str, str]) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string; a missing NAME is an error,
    but for :data:`DEFERRED_SECRETS`, whose key and variable go into ``unset``. As in the shell,
    ``:-`` also takes the default for a NAME set but empty (``SMTP_HOST=`` in a crontab)."""
    if isinstance(node, dict):
        return {key: _interpolate(value, f"{where}.{key}" if where else str(key), env, file, unset)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, f"{where}[{index}]", env, file, unset) for index, value in enumerate(node)]
    if isinstance(node, str):
        return _expand(node, where, env, file, unset) if "${" in node else node
    return node


def _expand(text: str, where: str, env: dict[str, str], file: str, unset: dict[str, str]) -> str:
    """``text`` with its ``${NAME}`` and ``${NAME:-default}`` replaced (:func:`_interpolate`).

    A default may hold variables itself, expanded only when it is taken, as in the shell:
    ``${SHOP_SECRET:-${CARTRESCUE_SECRET}}``. A regular expression took the default up to its
    first ``}``, so that value was the 20 characters ``${CARTRESCUE_SECRET}``, a secret anyone
    could guess, which signed every unsubscribe link."""
    pieces: list[str] = []
    at = 0
    while (start := text.find("${", at)) >= 0:
        pieces.append(text[at:start])
        name = _ENV_NAME.match(text, start + 2)
        after = name.end() if name else -1
        if name is not None and text.startswith("}", after):
            pieces.append(_variable(name.group(), where, env, file, unset))
            at = after + 1
            continue
        end = _closing(text, after + 2) if name is not None and text.startswith(":-", after) else -1
        if name is None or end < 0:  # "${SMTP_PASSWORD" would be the password itself
            raise ConfigError(f"{file}: {where}: '${{' that is no variable (no name, or no closing '}}'): write "
                              "${NAME} or ${NAME:-default}")
        value = env.get(name.group())  # set but empty takes the default, as ":-" does in the shell
        pieces.append(value or _expand(text[after + 2:end], where, env, file, unset))
        at = end + 1
    pieces.append(text[at:])
    return "".join(pieces)


def _closing(text: str, at: int) -> int:
    """Where the ``}`` that closes a default starting at ``at`` is (nested ``${…}`` skipped); -1: none."""
    depth = 0
    while at < len(text):
        if text.startswith("${", at):
            depth += 1
            at += 2
            continue
        if text[at] == "}":
            if depth == 0:
                return at
            depth -= 1
        at += 1
    return -1


def _variable(name: str, where: str, env: dict[str, str], file: str, unset: dict[str, str]) -> str:
    """The value of ``${name}`` at ``where``: an error where it is not set, but for
    :data:`DEFERRED_SECRETS`, whose key and variable go into ``unset``."""
    if name in env and (env[name] or where not in DEFERRED_SECRETS):
        return env[name]
    if where in DEFERRED_SECRETS:  # unset, or set but empty (SMTP_PASSWORD= in a crontab)
        unset[where] = name
        return f"${{{name}}}"  # never used: require_env stops a delivery first
    raise ConfigError(f"{file}: {where}: environment variable {name} is not set")


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "json-or-python")):
            continue
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(top level)"


UNKNOWN_KEY = "unknown key (check the spelling; see config.example.yaml)"
#: Keys that moved, and where to: the error names the new place instead of "unknown key".
MOVED_KEYS = {"doctor.export_stale_after": "source.export_stale_after (it now also holds back sending runs)"}


def format_validation_error(file: str, error: ValidationError,
                            key_lines: "dict[tuple[str | int, ...], int] | None" = None) -> str:
    """One line per error, ``file: key: what was expected``; with ``key_lines`` (:func:`_key_lines`)
    ending in `` (line N)``, the line of the key (or of the nearest section holding it)."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and _location(item["loc"]) in MOVED_KEYS:
            message = f"moved to {MOVED_KEYS[_location(item['loc'])]}"
        elif item["type"] == "extra_forbidden":
            close = _near_key(item["loc"]) or _key_elsewhere(item["loc"])
            message = f"unknown key (did you mean {close}? see config.example.yaml)" if close else UNKNOWN_KEY
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "invalid_key" or item["loc"][-1:] == ("[key]",):
            message = _key_not_text(item["input"])
        elif item["input"] is None and item["type"].endswith("_type"):  # all the keys under it commented out?
            message = f"{_SECTION if item['type'] in _SECTION_TYPES else message}, got null"
        elif item["type"] in _SECTION_TYPES:  # "... or instance of ShopConfig" named a class, not the cause
            message = _SECTION + (" (got a list)" if isinstance(item["input"], list) else _got(item))
        else:
            message += _got(item)
        where = _location(_key_owner(item))
        inner = re.match(r"^((?:\[\d+\]|[a-z_][a-z0-9_]*)(?:\.[a-z_][a-z0-9_]*|\[\d+\])*): (.*)$", message, re.S)
        if where == "(top level)" and re.match(r"^[a-z_]+(\.|\[|:)", message):
            lines.append(f"{file}: {message}")  # a whole-file check names its key in the message
        elif inner and item["type"] == "value_error":  # a section's check names the key inside it
            dot = "" if inner.group(1).startswith("[") else "."
            lines.append(f"{file}: {where}{dot}{inner.group(1)}: {inner.group(2)}")
        else:
            lines.append(f"{file}: {where}: {message}")
        lines[-1] += _line_of(lines[-1][len(file) + 2:].split(": ", 1)[0], key_lines or {})
    return "\n".join(lines)


def _line_of(key: str, key_lines: "dict[tuple[str | int, ...], int]") -> str:
    """`` (line N)``: where the file writes ``key`` (``priority.tiers[1].budget``), or the nearest
    section holding it (an error about a key the file leaves out); ``""`` where none is known."""
    path: tuple[str | int, ...] = tuple(int(part) if part.isdigit() and index else part for part, index in
                                        ((m.group(1) or m.group(2), m.group(2) is not None)
                                         for m in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", key)))
    while path and path not in key_lines:
        path = path[:-1]
    return f" (line {key_lines[path]})" if path else ""


def _key_lines(root: Any) -> "dict[tuple[str | int, ...], int]":
    """The line (1-based) of every key and list item of the composed YAML ``root``, by its path
    (``("priority", "tiers", 1, "budget")``); what a ``<<`` merge brings counts where it is merged."""
    import yaml

    lines: dict[tuple[str | int, ...], int] = {}

    def walk(node: Any, path: tuple[str | int, ...], merged: bool) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":
                    for source in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                        walk(source, path, True)
                elif isinstance(key, yaml.ScalarNode):
                    here = (*path, key.value)
                    if not merged or here not in lines:
                        lines[here] = key.start_mark.line + 1
                    walk(value, here, merged)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                walk(item, (*path, index), merged)

    walk(root, (), False)
    return lines


def _key_owner(item: Any) -> tuple[int | str, ...]:
    """The ``loc`` an error names: for a key that is not text, the mapping holding it. Pydantic
    puts such a key (``no:``, ``1:``) in ``loc`` as an index, and ``[key]`` after it:
    ``survey.words[0].[key]`` named no key a file has."""
    loc: tuple[int | str, ...] = item["loc"]
    if loc[-1:] == ("[key]",):
        return loc[:-2]
    return loc[:-1] if item["type"] == "invalid_key" else loc


def _key_not_text(key: Any) -> str:
    """Why a key of the file that YAML read as a number or true/false is refused, and the fix."""
    if isinstance(key, bool):
        return f"key {str(key).lower()}: YAML reads an unquoted yes, no, on or off as true or false: quote the key"
    return f"key {key!r} is not text: quote it (\"{key}\")"


#: Pydantic's errors for a section that is not a mapping, and what they say instead.
_SECTION_TYPES = ("model_type", "model_attributes_type", "dict_type")
_SECTION = "expected a mapping of keys (key: value)"


#: Config fields :func:`load_config` sets itself: never keys of the file.
_INTERNAL_KEYS = ("base_dir", "config_file", "unset_env")


def _near_key(loc: tuple[int | str, ...]) -> str | None:
    """The key of the section at ``loc[:-1]`` closest to the unknown ``loc[-1]`` (``cutoff`` for
    ``cut_off``), found by walking the models the way ``loc`` went; None if none is near."""
    import typing
    from difflib import get_close_matches

    def unwrapped(kind: Any) -> Any:
        """``Annotated[X, ...]`` and ``X | None`` as ``X``."""
        while typing.get_origin(kind) not in (None, list, dict):
            kind = next((arg for arg in typing.get_args(kind) if arg is not type(None)), None)
        return kind

    kind: Any = Config
    for part in loc[:-1]:
        kind = unwrapped(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return None
            kind = field.annotation
        elif typing.get_origin(kind) in (list, dict):
            kind = typing.get_args(kind)[-1]  # a list's items, a dict's values: part is an index or a name
        else:
            return None
    kind = unwrapped(kind)
    if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return None
    names = [name for name in kind.model_fields if kind is not Config or name not in _INTERNAL_KEYS]
    close = get_close_matches(str(loc[-1]), names, n=1, cutoff=0.7)
    return close[0] if close else None


def _key_elsewhere(loc: tuple[int | str, ...]) -> str | None:
    """The sections that do have the unknown key ``loc[-1]`` (``eligibility.cutoff`` for a
    ``cutoff:`` written at the top level, not indented under ``eligibility:``), as
    ``a, b or c``; None if no section has it. Only sections, not lists of them (tiers, steps)."""
    name, found = str(loc[-1]), []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for field, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, f"{prefix}{field}.")
            elif field == name and prefix:
                found.append(prefix + field)

    walk(Config, "")
    if not found:
        return None
    return found[0] if len(found) == 1 else f"{', '.join(found[:-1])} or {found[-1]}"


def _got(item: Any) -> str:
    """`` (got 'abc')``: the value an error is about, where :func:`_shows_input` lets it be shown."""
    if not _shows_input(item):
        return ""
    from cartrescue.text import printable

    if isinstance(item["input"], bool):  # consent: no, meant as the word (none)
        return f" (got {str(item['input']).lower()}: YAML reads an unquoted yes, no, on or off as true or false)"
    return f" (got {printable(repr(item['input']))[:60]})"


def _shows_input(item: Any) -> bool:
    """A value of the wrong type or out of range is quoted in its error (``smtp.port: Input
    should be a valid integer ... (got 'abc')``); a secret's never, nor a section's."""
    scalar = isinstance(item.get("input"), (str, int, float, bool)) and item["type"] != "value_error"
    last = str(item["loc"][-1]) if item["loc"] else ""
    return scalar and not _SECRET_KEY.search(last)


#: Keys whose values are secrets: never shown in an error, whatever went wrong.
_SECRET_KEY = re.compile(r"(password|secret|token|api_?key|auth)$", re.IGNORECASE)
MAX_YAML_DEPTH = 32
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000


def secret_key(name: str) -> bool:
    """Is the value under a key of this name a secret (never shown in any output)?"""
    return _SECRET_KEY.search(name) is not None


def _secrets(node: Any, key: str = "") -> Iterator[str]:
    """Every secret value of a config: values of secret keys and passwords inside URLs."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _secrets(value, str(name))
    elif isinstance(node, list):
        for value in node:
            yield from _secrets(value, key)
    elif isinstance(node, str):
        if _SECRET_KEY.search(key) and len(node) >= 3:
            yield node
        for match in re.finditer(r"://[^/:@\s]*:([^@/\s]+)@", node):
            yield match.group(1)


def _scrub(message: str, secrets: list[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def _expanded_size(root: Any, limit: int) -> int:
    """How many values the YAML node graph ``root`` holds with every alias written out, counted
    once per node (aliased nodes are shared) and no further than just past ``limit``; a node
    that contains itself counts as past it."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key] if sizes[key] >= 0 else limit + 1  # -1: being counted: recursive
        sizes[key] = -1
        total = 1
        value = node.value
        if isinstance(value, list):
            for item in value:
                total += sum(size(part) for part in item) if isinstance(item, tuple) else size(item)
                if total > limit:
                    break
        sizes[key] = total = min(total, limit + 1)
        return total

    return size(root)


def _safe_yaml(text: str, file: Path, key_lines: "dict[tuple[str | int, ...], int] | None" = None) -> Any:
    """``yaml.safe_load`` with bounds: an alias bomb or absurd nesting is refused, not expanded.
    ``key_lines``: filled with the line of each key (:func:`_key_lines`), for the errors.

    PyYAML shares aliased nodes, but everything that walks the result afterwards (interpolation,
    validation) would expand a "billion laughs" document exponentially.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0
        aliases = 0
        nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    mark = self.peek_event().start_mark
                    raise ConfigError(f"{file}:{mark.line + 1}: more than {MAX_YAML_ALIASES} YAML aliases "
                                      "(refused: it could expand without end)")
            self.nodes += 1
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH or self.nodes > MAX_YAML_NODES:
                    mark = self.peek_event().start_mark
                    what = f"nested deeper than {MAX_YAML_DEPTH} levels" if self.depth > MAX_YAML_DEPTH \
                        else f"more than {MAX_YAML_NODES} values"
                    raise ConfigError(f"{file}:{mark.line + 1}: {what} (refused: not a cartrescue config)")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def compose_document(self) -> Any:
            """The document, refused when its aliases would expand past :data:`MAX_YAML_NODES`
            values: 30 aliases that each name the one before twice are a billion values (counting
            them alone would not stop it), and a recursive one never ends."""
            node = super().compose_document()
            if self.aliases and _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
                raise ConfigError(f"{file}: its YAML aliases expand to more than {MAX_YAML_NODES} values "
                                  "(refused: it could expand without end)")
            return node

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            """A key written twice in one mapping (two ``shop:`` sections, two ``host:`` lines) is
            refused: YAML would keep the last one silently. Keys a ``<<`` merge brings may be
            overridden, as YAML means them to be."""
            if isinstance(node, yaml.MappingNode):
                seen: dict[str, int] = {}
                for key_node, _value in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                        line = key_node.start_mark.line + 1
                        if key_node.value in seen:
                            raise ConfigError(f"{file}:{line}: {key_node.value!r} is given twice in one mapping "
                                              f"(first on line {seen[key_node.value]}): YAML would silently keep "
                                              "the last; remove one")
                        seen[key_node.value] = line
            return super().construct_mapping(node, deep)

    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if key_lines is not None:
            key_lines.update(_key_lines(node))
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(exc: Any) -> str:
    """PyYAML's account of ``exc``, with what a shop owner needs to find the cause: where the
    quote or list it could not close began (its own line is the file's end), and what a
    "mapping values are not allowed here" (named on the line after a key without ':') means."""
    problem = getattr(exc, "problem", None) or "syntax error"
    if "'\\t'" in problem or "tab character" in problem:  # PyYAML's words told a shop owner nothing
        return "a tab character: YAML indents with spaces, never tabs (replace it with spaces)"
    if problem == "mapping values are not allowed here":
        return problem + " (a key on a line above without ':', or this key indented deeper than the one before it?)"
    context, began = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    mark = getattr(exc, "problem_mark", None)
    if context and began is not None and (mark is None or began.line != mark.line):
        problem += f" ({context}, from line {began.line + 1})"
    return problem


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file; raise ConfigError naming file and key.

    No message ever shows the value of a secret key (passwords, tokens, the unsubscribe secret,
    a password inside a database URL), whatever went wrong.
    """
    import yaml

    file = Path(path or DEFAULT_CONFIG)
    try:
        found = file.exists()
    except OSError:  # in a folder this user may not search: reading it says so (exists() raised: exit 70)
        found = True
    if not found:
        hint = " (create one with `cartrescue init`)" if path is None else ""
        raise ConfigError(f"{file}: config file not found{hint}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        key_lines: dict[tuple[str | int, ...], int] = {}
        raw = _safe_yaml(text, file, key_lines)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = _yaml_problem(exc)
        raise ConfigError(f"{file}{where}: not valid YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of keys at the top level")
    if any(not isinstance(key, str) for key in raw):
        raise ConfigError(f"{file}: {_key_not_text(next(k for k in raw if not isinstance(k, str)))}")
    written = next((key for key in _INTERNAL_KEYS if key in raw), None)
    if written is not None:  # it would be replaced below, unnoticed: base_dir: /srv/shop moved no path
        raise ConfigError(f"{file}: {written}: {UNKNOWN_KEY}")
    unset: dict[str, str] = {}
    try:
        raw = _interpolate(raw, "", dict(os.environ if env is None else env), str(file), unset)
    except ConfigError as exc:  # "file: key: ...": the key's line too
        raise ConfigError(f"{exc}{_line_of(str(exc)[len(str(file)) + 2:].split(': ', 1)[0], key_lines)}") from None
    secrets = list(_secrets(raw))
    raw["base_dir"] = file.resolve().parent
    raw["config_file"] = file
    raw["unset_env"] = unset
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_scrub(format_validation_error(str(file), exc, key_lines), secrets)) from None
    config._key_lines = key_lines
    return config


#: The years a time a command is given (``--now``, ``--since``, ``--until``, the config's
#: ``now``) may fall in: far enough from years 1 and 9999 that the days, weeks and ``max_age``
#: counted around it are still dates (it was an OverflowError deep in a run: exit 70).
YEARS = range(1970, 9000)
_When = TypeVar("_When", bound=date)  # a date or a datetime: what the caller gave


def within_reach(moment: "_When", what: str) -> "_When":
    """``moment`` (a datetime or a date) if its year is in :data:`YEARS`; else a ConfigError naming ``what``."""
    if moment.year not in YEARS:
        raise ConfigError(f"{what}: {moment.isoformat()} is out of reach: expected a time between "
                          f"{YEARS.start} and {YEARS.stop}")
    return moment


def resolve_now(config: Config, now: "datetime | None") -> "datetime":
    """``--now`` wins, then the config's pinned clock, then the wall clock; always aware UTC."""
    from datetime import datetime, timezone as utc_zone

    if now is None and config.now:
        try:
            now = within_reach(datetime.fromisoformat(config.now), config.where("now"))
        except ValueError:
            raise ConfigError(f"{config.where('now')}: expected an ISO 8601 time, got {config.now!r}") from None
    if now is None:
        from cartrescue.clock import wall

        return wall()
    if now.tzinfo is None:
        now = now.replace(tzinfo=config.shop.tz)
    return now.astimezone(utc_zone.utc)
