"""The value types of the config: durations (``45m``, ``24h``, ``3d``), seconds, times of day,
e-mail addresses, countries, timezones, currencies, and ``Model``, the base of every section.

Apart from the sections because every section reads them, and they read none: a module a
section imports can never import that section back.
"""

import math
import re
from datetime import time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)


_BARE_NUMBER = re.compile(r"\s*-?\d+(?:\.\d+)?\s*")

#: A duration written with a minus (``-1h``, ``-5``): no setting takes one.
_NEGATIVE = re.compile(r"\s*-\s*\d+(?:\.\d+)?\s*(?:s|m|min|h|d|w)?\s*", re.IGNORECASE)

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``"45m"``, ``"24h"``, ``"3d"``, ``"90s"``, ``"1w"``, or ``0``.

    A bare number other than 0 is refused: ``cutoff: 45`` is meant as minutes more often than
    not, and read as seconds it would remind a visitor 45 seconds after they left. Timeouts and
    backoffs, which are seconds by long habit, take :func:`parse_seconds` instead.
    """
    if isinstance(value, timedelta):
        return value
    if (isinstance(value, str) and _NEGATIVE.fullmatch(value)) or \
            (isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0):
        # "-5" was told to write "-5m, -5h or -5s?" (refused in turn), "-1h" was "expected a duration".
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    if isinstance(value, str) and _BARE_NUMBER.fullmatch(value):
        # The text of a number (``${CUTOFF:-0}``, ``--timeout 5``) is that number: 0 taken, any other
        # refused for its missing unit, not as "no duration" (README: a duration may be 0).
        value = float(value)
        value = int(value) if value.is_integer() else value
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
    if isinstance(value, str) and _BARE_NUMBER.fullmatch(value):
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


def above_zero(value: timedelta) -> timedelta:
    """A timeout of zero or less ends every wait at once: ``data_timeout: 0`` made every message
    ``unconfirmed`` (never resent), ``timeout: 0`` every connection a failure."""
    if value <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {duration_text(value)}")
    return value


def above_zero_for(why: str) -> AfterValidator:
    """:func:`above_zero` for a setting where zero is a trap, its refusal saying ``why`` (what a
    zero would do); None (a check switched off) passes."""
    def check(value: timedelta | None) -> timedelta | None:
        try:
            return None if value is None else above_zero(value)
        except ValueError as exc:
            raise ValueError(f"{exc} ({why})") from None

    return AfterValidator(check)


def _not_negative(value: timedelta) -> timedelta:
    """A backoff may be zero (retry at once: a relay on loopback, tests), never below it."""
    if value < timedelta(0):
        raise ValueError(f"cannot be negative (0 retries at once), got {duration_text(value)}")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


# Timeouts and backoffs: a bare number is seconds (parse_seconds).
Timeout = Annotated[timedelta, BeforeValidator(parse_seconds), AfterValidator(above_zero)]


Backoff = Annotated[timedelta, BeforeValidator(parse_seconds), AfterValidator(_not_negative)]


ClockTime = Annotated[time, BeforeValidator(_parse_clock)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: An address email-validator takes as written (its ``normalized`` form is the address itself):
#: ASCII letters and digits joined by single dots, hyphens, underscores or pluses before the @;
#: after it, lower-case labels of letters and digits joined by single hyphens (no ``xn--``) and a
#: top-level label of letters. See :func:`_plain_address`.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9]+(?:[._+-][A-Za-z0-9]+)*@(?:[a-z0-9]+(?:-[a-z0-9]+)*\.)+[a-z]+")
#: email-validator's special-use names (``SPECIAL_USE_DOMAIN_NAMES``; a test holds the two
#: together): it refuses an address under one, so these go to it.
_SPECIAL_USE = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


def _plain_address(value: str) -> bool:
    """Whether email-validator would accept ``value`` unchanged (a test holds the two together):
    a plain address within its length limits (254 in all, 64 before the @, 253 after it, 63 a
    label), under no special-use name. Such an address (nearly every shop's) is taken without
    importing email-validator, whose import (~240 million instructions: it compiles patterns up
    to U+10FFFF) every run paid before its first fork."""
    if len(value) > 254 or _PLAIN_ADDRESS.fullmatch(value) is None:
        return False
    local, _, domain = value.partition("@")
    if len(local) > 64 or len(domain) > 253:
        return False
    labels = domain.split(".")
    return all(len(label) <= 63 for label in labels) and labels[-1] not in _SPECIAL_USE


def _email_address(value: str | None) -> str | None:
    """A sender-side address (from, reply-to, support): checked by email-validator, not by a
    regex of our own; no DNS lookup (a config check must work offline). A plain address it
    would take as written is taken without it (:func:`_plain_address`)."""
    if value is None or _plain_address(value):
        return value
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address ({exc})") from None


EmailAddress = Annotated[str, AfterValidator(_email_address)]


OptionalEmail = Annotated[str | None, AfterValidator(_email_address)]


def norway(value: Any, written: str = "NO") -> Any:
    """YAML 1.1 reads an unquoted ``NO`` (Norway) or ``no`` (Norwegian) as false: take back what
    was ``written``."""
    if isinstance(value, list):
        return [norway(item, written) for item in value]
    return written if value is False else value


#: Two-letter codes people write for a country that ISO 3166 names otherwise: numbers of the
#: United Kingdom would never match "UK", and be skipped in silence as another country's.
_NOT_ISO = {"UK": "GB (the United Kingdom)", "EL": "GR (Greece)"}


def country_code(value: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code, upper-cased (``se`` -> ``SE``)."""
    if value is not None and not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(f"expected an ISO 3166 country code like SE, got {value!r}")
    if value and value.upper() in _NOT_ISO:
        raise ValueError(f"{value.upper()} is not an ISO 3166 country code: write {_NOT_ISO[value.upper()]}")
    if not value:
        return None
    # Read with libphonenumber's regions: a typo (SW for SE) made every number written without
    # its country code unreadable, or every number another country's, and each text went unsent.
    from phonenumbers.phonenumberutil import SUPPORTED_REGIONS

    if value.upper() not in SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is no country whose phone numbers are known: expected an ISO 3166 country "
                         "code like SE")
    return value.upper()


def iana_zone(value: str) -> str:
    """``value`` if it names an IANA timezone (``Europe/Stockholm``)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"expected an IANA timezone name like Europe/Stockholm, got {value!r}") from None
    return value


def currency_code(value: str, malformed: str) -> str:
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


def http_link(value: str, example: str) -> str:
    """``value`` if it is an http(s) link a mail client opens as written (``example`` shows one):
    without ``https://`` a message's href is relative, opened by no client, and a space cuts the
    text part's link."""
    from cartrescue.compose.links import safe_url

    if safe_url(value) != value or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"expected an http(s) link like {example} (a space percent-encoded as %20), got {value!r}")
    return value


#: A URL as SQLAlchemy writes one: a scheme (``postgresql``, ``mysql+pymysql``) and ``://``.
DATABASE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ENCODE_IT = "(an @, :, / or # in the user name or password must be written %40, %3A, %2F or %23)"


def database_url(value: str, expected: str) -> str:
    """A database URL SQLAlchemy can take apart, checked when the config loads (exit 2, naming the
    key). Its words never repeat the URL: a password mistyped into the host or port part would be
    printed. A port that is not a number was "internal error: ValueError" (exit 70) from every
    command; a password with a bare ``@`` (``u:S3cret@Pw@host``) made the host ``Pw@host``, which
    every connection error then named. A SQLite URL has neither part and is not parsed here (nor
    is SQLAlchemy imported for it)."""
    if not DATABASE_URL.match(value):
        raise ValueError(expected)
    if value.lower().startswith("sqlite"):
        return value
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(expected) from None
    except ValueError:
        raise ValueError(f"its port is not a number {_ENCODE_IT}") from None
    if "@" in (url.host or ""):
        raise ValueError("an @ in the user name or password must be written %40 (the part after it was read as "
                         "the host name)")
    return value


def a_statement_wait(value: timedelta) -> timedelta:
    """``ledger.statement_wait`` and ``source.statement_wait``: a deadline, never none (a server
    that stopped answering held the run, and its lock, for good)."""
    if value < timedelta(seconds=1):
        raise ValueError(f"must be at least 1s (a statement's longest wait for an answer), "
                         f"got {duration_text(value)}")
    return value


NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
