"""Opt-outs: unsubscribe a token or an address, import lists, list, check and remove them.

Owns turning what people hand over -- a token from an unsubscribe link or a ``mailto:`` subject,
an address or a phone number, another tool's CSV export, a text file with one address (or number)
a line -- into suppressions in the ledger. A suppression is kept under the hash of the normalized address (the ledger stores
no suppressed address), so it covers every cart and every step of that address: one click stops
every stream. It must not plan, send or print; the CLI and :mod:`cartrescue.webhook` call it.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from cartrescue.contacts import (email_hash, email_hashes, is_valid_email, normalize_email, normalize_phone,
                                 normalize_sender, phone_hash, without_tel)
from cartrescue.errors import ConfigError
from cartrescue.ledger import Ledger
from cartrescue.sources.csvfile import SEP_LINE
from cartrescue.survey import TAG as SURVEY_TAG
from cartrescue.tokens import tag_of
from cartrescue.unsubscribe import BadToken, verify_token

UNSUBSCRIBED = "unsubscribed"
IMPORTED = "imported"
#: The reason of an address whose mailbox refused a message for good: a 5.1.1 reply to the SMTP
#: conversation (:mod:`cartrescue.channels.smtp`) or a 5.1.1 bounce report (:mod:`cartrescue.bounce_mail`).
NO_SUCH_USER = "bounced: no such user"
#: The reason of an address whose mailbox provider reported the recipient's spam complaint about a
#: reminder (an RFC 5965 feedback report: :mod:`cartrescue.bounce_mail`).
COMPLAINED = "complained: marked as spam"
_EMAIL_COLUMNS = ("email", "e-mail", "email address", "e-mail address", "emailaddress", "email_address", "mail",
                  "address", "subscriber", "recipient")
#: The column of an SMS tool's opt-out export, read where a list has no e-mail column.
_PHONE_COLUMNS = ("phone", "phone number", "phone_number", "phonenumber", "mobile", "mobile phone", "mobile number",
                  "mobile_number", "cell", "cell phone", "cellphone", "msisdn", "telephone", "tel", "number")
#: The marketing-consent columns of a customers export that lists everyone (Shopify's: ``yes`` or
#: ``no``), for its e-mail and its phone entries: only those who declined are opt-outs.
_EMAIL_CONSENT_COLUMNS = ("accepts email marketing", "accepts marketing", "accepts_email_marketing",
                          "accepts_marketing")
_SMS_CONSENT_COLUMNS = ("accepts sms marketing", "accepts_sms_marketing")
_CONSENTS = ("yes", "true", "1", "subscribed")
#: An address as a mail client writes a sender (``Ann Tester <ann@example.com>``, ``"Tester, Ann"
#: <ann@…>``) or a bounce report names it (``<ann@…>``): the address is what is inside ``<>``.
_NAME_ADDR = re.compile(r'(?:"[^"]*"|[^"<>@]*)\s*<([^<>\s:]+@[^<>\s]+)>')
#: What a person writes a phone number with (``+46 70-123 45 67``, ``(070) 123.45.67``, the
#: typographic dashes a web page or word processor puts there, ``070–123 45 67``, which the
#: phone-number rules read too): never a token (letters and digits around one ``.``), an
#: address or a URL.
_DASHES = "\u2010-\u2015\u2212\uff0d"  # hyphen, non-breaking hyphen, figure dash, en and em dash, minus
_WRITTEN_AS_NUMBER = re.compile(rf"\+?[\d\s().\-/{_DASHES}]*\d[\d\s().\-/{_DASHES}]*")


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    email: str
    added: bool  # False: it was suppressed already


def bare_address(text: str) -> str:
    """``text`` without the name and angle brackets a mail client writes around an address
    (:data:`_NAME_ADDR`): a sender pasted from a "please stop" mail, a list copied from one, is
    that address. Anything else is returned as it is (stripped)."""
    found = _NAME_ADDR.fullmatch(text.strip())
    return found.group(1) if found else text.strip()


def written_as_number(text: str) -> bool:
    """Whether ``text`` is written as a phone number (digits, spaces, ``+ - ( ) . /``), valid or not:
    such a cell or argument is read as a number, and one that is none is refused as a number."""
    return _WRITTEN_AS_NUMBER.fullmatch(text.strip()) is not None


def as_number(value: str, region: str | None) -> str | None:
    """The E.164 number ``value`` is written as (local digits read in ``region``, the shop's
    country), or ``None`` when it is not written as a number (an address, a token, a link);
    ValueError when it is, but is no valid number: a typo must not be answered "unsubscribed".

    A number copied as staff find it is one too: a ``tel:`` link's, and a call-list cell's behind
    the apostrophe that keeps a spreadsheet from running it (``'+46 70 123 45 67``)."""
    text = _unticked(without_tel(value)).strip()
    if not written_as_number(text):
        return None
    number = normalize_phone(text, region)
    if number is None:
        raise ValueError(f"not a valid phone number (E.164, or of region {region or 'unknown'}): {value.strip()!r}")
    return number


def unsubscribe_number(ledger: Ledger, number: str, *, source: str, now: datetime | None = None) -> bool:
    """Suppress the E.164 ``number`` (:func:`as_number`) as a STOP reply does: no text, no call-list
    row, and no e-mail to a cart with that number, on any channel. ``False``: it was already."""
    return ledger.suppress(phone_hash(number), UNSUBSCRIBED, f"{source} (number)", now)


@dataclass(slots=True)
class ImportResult:
    added: int = 0
    already: int = 0
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (file:line, what was there)

    @property
    def total(self) -> int:
        return self.added + self.already + len(self.invalid)


_TOKEN = r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"  # cartrescue.tokens: <payload>.<signature>, base64url
# "unsubscribe TOKEN" anywhere in a subject: a reply or a forward puts "Re:", "AW: Fwd:" in front,
# a spam filter "[SPAM]"
_IN_SUBJECT = re.compile(rf"\bunsubscribe\b[\s:]*({_TOKEN})(?![\w.-])", re.IGNORECASE)


def _mailto(value: str) -> bool:
    return value.strip().lstrip("<").lower().startswith("mailto:")


@dataclass(frozen=True, slots=True)
class TokenSpot:
    """Where a configured URL (``shop.unsubscribe_url``, ``survey.url``) puts ``{token}``: under
    a query key, or in a path segment counted from the end (a mount point may add segments in
    front), with the text written around it in that value or segment."""

    key: str | None  # the query key; None: a path segment
    from_end: int  # path: how many segments follow the token's
    before: str = ""
    after: str = ""

    def pick(self, path: str, query: Mapping[str, list[str]]) -> str | None:
        """The token this spot holds in a request's (or a link's) path and parsed query."""
        if self.key is not None:
            found = query.get(self.key)
            text = found[0] if found else ""
        else:
            segments = path.rstrip("/").split("/")
            text = segments[-1 - self.from_end] if self.from_end < len(segments) - 1 else ""
        if len(text) <= len(self.before) + len(self.after) or not text.startswith(self.before) \
                or not text.endswith(self.after):
            return None
        token = text[len(self.before):len(text) - len(self.after)]
        # A path segment is a token only if it looks like one ("unsubscribe" of ?token=T is not).
        return token if self.key is not None or "." in token else None


def token_spots(*templates: str | None) -> tuple[TokenSpot, ...]:
    """Where each URL of ``templates`` puts ``{token}``, read once from the config: the config takes
    any such URL (``?u={token}``, ``/u/{token}/confirm``), every message carries it, and a link
    read only as ``?token=`` or a last segment was refused."""
    spots: list[TokenSpot] = []
    for template in templates:
        if not template or "{token}" not in template:
            continue
        parts = urlsplit(template)
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if "{token}" in value:
                before, _, after = value.partition("{token}")
                spots.append(TokenSpot(key, 0, before, after))
        segments = parts.path.rstrip("/").split("/")
        for index, segment in enumerate(segments):
            if "{token}" in segment:
                before, _, after = segment.partition("{token}")
                spots.append(TokenSpot(None, len(segments) - 1 - index, before, after))
    return tuple(dict.fromkeys(spots))


# Today's forms, whatever the config: ?token=T, and a last path segment that looks like a token.
_DEFAULT_SPOTS = (TokenSpot("token", 0), TokenSpot(None, 0))


def url_token(path: str, query: Mapping[str, list[str]], spots: tuple[TokenSpot, ...] = ()) -> str | None:
    """The token of a request or link: ``?token=`` first, then where ``spots`` (:func:`token_spots`)
    say the configured URLs put it, then a last path segment that looks like a token."""
    for spot in (_DEFAULT_SPOTS[0], *spots, _DEFAULT_SPOTS[1]):
        token = spot.pick(path, query)
        if token:
            return token
    return None


def token_from(value: str, spots: tuple[TokenSpot, ...] = ()) -> str:
    """The token in ``value``: a bare token, an unsubscribe URL (read at ``spots`` too, see
    :func:`url_token`), the ``mailto:`` link of ``List-Unsubscribe`` (angle brackets and all), or
    the subject of a mail it made, as sent, replied to or forwarded."""
    value = value.strip().lstrip("<").rstrip(">").strip()
    if _mailto(value):  # RFC 6068: mailto:box@shop?subject=unsubscribe%20TOKEN
        fields = {name.lower(): text for name, text in parse_qsl(urlsplit(value).query, keep_blank_values=True)}
        value = fields.get("subject", "").strip()
    elif "://" in value:
        parts = urlsplit(value)
        return url_token(parts.path, parse_qs(parts.query), spots) or value.rstrip("/").rsplit("/", 1)[-1]
    return subject_token(value) or value


def subject_token(text: str) -> str | None:
    """The token of "unsubscribe TOKEN" in ``text`` (a subject line, a mail's text), if any."""
    found = _IN_SUBJECT.search(text)
    return found.group(1) if found else None


def link_token(text: str, unsubscribe_url: str) -> str | None:
    """The token of the first link in ``text`` that is ``unsubscribe_url`` (``shop.unsubscribe_url``,
    up to its ``{token}``): a forwarded reminder, or a reply quoting it, carries the reminder's own
    link, not "unsubscribe TOKEN". Only that URL: the cart and survey links beside it are not it."""
    prefix = unsubscribe_url.split("{token}", 1)[0]
    if not prefix:
        return None
    found = re.search(re.escape(prefix) + rf"({_TOKEN})(?![\w.-])", text)
    return found.group(1) if found else None


def resolve(value: str, secret: str, spots: tuple[TokenSpot, ...] = ()) -> tuple[str, str]:
    """``(address, how)`` for a token, an unsubscribe URL or an address; ``how`` is token|address.

    Raises :class:`~cartrescue.unsubscribe.BadToken` for a forged or altered token and
    :class:`ValueError` for something that is neither a token nor a valid address.
    """
    text = bare_address(value)
    if "@" in text and "://" not in text and " " not in text and not _mailto(text):
        address = normalize_email(text) or ""
        if not is_valid_email(address):
            raise ValueError(f"not a valid e-mail address: {text!r}")
        return address, "address"
    if not secret:
        raise BadToken("shop.unsubscribe_secret is empty: tokens cannot be checked")
    token = token_from(text, spots)
    if tag_of(token) == SURVEY_TAG:  # was "malformed unsubscribe token", which sent the owner looking for a typo
        raise BadToken("a survey link (a reminder's answer buttons): it names a cart, not an address; give the "
                       "message's unsubscribe link, or the address")
    return normalize_email(verify_token(token, secret)) or "", "token"


def unsubscribe(ledger: Ledger, value: str, secret: str, *, source: str, now: datetime | None = None,
                spots: tuple[TokenSpot, ...] = ()) -> Unsubscribed:
    """Suppress the address a token (or URL, or subject line) carries, or a plain address;
    ``spots``: where the configured URLs put the token (:func:`token_spots`)."""
    address, how = resolve(value, secret, spots)
    added = ledger.suppress(email_hash(address), UNSUBSCRIBED, f"{source} ({how})", now)
    return Unsubscribed(address, added)


def read_addresses(path: Path) -> Iterator[tuple[str, str]]:
    """``(file:line, cell)`` for every address-like entry of a CSV export or a one-a-line file.

    A CSV (``,``, ``;`` or tab) is read by its e-mail column (``email``, ``Email Address``, ...),
    else by its phone column (``Phone Number``: an SMS tool's opt-outs), and a row whose e-mail
    cell is empty by its phone column (an export of both kinds of opt-outs); a row whose consent
    column for that entry says yes (``Accepts Email Marketing``, ``Accepts SMS Marketing``: a
    customers export lists everyone) is no opt-out and is skipped, and so is its customer with
    neither an address nor a number (known by name alone: no one to suppress); without such a header,
    the first cell of each row holding an ``@``, else the first written as a phone number. Its
    first row is a header only when none of its cells is either: a list of numbers without a
    header lost its first number to it. A file without a delimiter is one address (or number) a
    line, under a header when its first line is a column name (``email``: a one-column export).
    Excel's ``sep=;`` line above the header names the delimiter.
    Blank lines and lines starting with ``#`` are skipped.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    text = _text_of(path, data)
    lines = text.splitlines()
    written = (line for line in lines if line.strip() and not line.lstrip().startswith("#"))
    first = next(written, "")
    # Excel's "sep=;" above the header names the delimiter and is no header: read as one, the
    # header was an invalid entry and its consent columns unread (everyone listed suppressed).
    sep = SEP_LINE.fullmatch(first.strip())
    if sep is not None:
        first = next(written, "")
    # The delimiter the header uses between its cells: "Name, Vorname" in quotes is one cell.
    between = re.sub(r'"[^"]*"', "", first)
    counts = {d: between.count(d) for d in (",", ";", "\t")}
    delimiter = sep.group(1) if sep else max(counts, key=lambda d: counts[d]) if any(counts.values()) else None
    if delimiter is None:  # one address a line, perhaps under a one-column CSV's header ("email")
        # A one-column export may quote every cell ("Email Address", "ann@example.com"): read as
        # it was, the quotes stayed on, and neither the header nor one address was recognised.
        header = _unquoted(first.strip()).lower() in _EMAIL_COLUMNS + _PHONE_COLUMNS
        for number, line in enumerate(lines, 1):
            entry = _unquoted(line.strip())
            if entry and not entry.startswith("#"):
                if header:
                    header = False
                    continue
                yield f"{path.name}:{number}", entry
        return
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    column: int | None = None
    phone: int | None = None  # the phone column beside an e-mail column: a row without an address
    consents: tuple[int | None, int | None] = (None, None)  # the e-mail and SMS consent columns
    header_seen = False
    end = 0  # the line the previous row ended on
    for row in rows:
        number, end = end + 1, rows.line_num  # the line this row starts on: a quoted cell may span lines
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if sep is not None:  # the sep= line, above the header
            sep = None
            continue
        if not header_seen:
            header_seen = True
            names = [cell.lower() for cell in cells]
            column = next((names.index(name) for name in _EMAIL_COLUMNS + _PHONE_COLUMNS if name in names), None)
            phone = next((names.index(name) for name in _PHONE_COLUMNS if name in names), None)
            consents = (_column_of(names, _EMAIL_CONSENT_COLUMNS), _column_of(names, _SMS_CONSENT_COLUMNS))
            if column is not None or not any("@" in cell or written_as_number(cell) for cell in cells):
                continue  # the header line
        if column is not None:
            entry = _row_entry(cells, column, phone)
            if not entry and consents != (None, None):
                continue  # a customers export's customer known by name alone: no one to suppress
            if not _consented(cells, consents, entry):
                yield f"{path.name}:{number}", entry
        else:
            yield f"{path.name}:{number}", next((cell for cell in cells if "@" in cell),
                                                next((cell for cell in cells if written_as_number(cell)), cells[0]))


def _column_of(names: list[str], candidates: tuple[str, ...]) -> int | None:
    """The index of the first of ``candidates`` among a header's lower-cased ``names``."""
    return next((names.index(name) for name in candidates if name in names), None)


def _consented(cells: list[str], consents: tuple[int | None, int | None], entry: str) -> bool:
    """Whether the row's consent column for ``entry`` (an address's e-mail consent, a number's SMS
    consent) says yes: a customers export lists those who agreed too, and they are no opt-outs."""
    index = consents[1] if "@" not in entry and written_as_number(_unticked(entry)) else consents[0]
    return index is not None and index < len(cells) and cells[index].strip().lower() in _CONSENTS


def _row_entry(cells: list[str], column: int, phone: int | None) -> str:
    """The row's cell of ``column`` (its e-mail, else its phone column); an e-mail cell left empty
    gives the row's number: an export of e-mail and SMS opt-outs (Klaviyo's) names no address for
    a person who replied STOP, and that opt-out was reported invalid and not imported."""
    entry = cells[column] if column < len(cells) else ""
    if not entry and phone is not None and phone < len(cells):
        return cells[phone]
    return entry


def _text_of(path: Path, data: bytes) -> str:
    """The list's text: UTF-8 (a byte-order mark skipped), or UTF-16 when it starts with that
    mark, as Excel saves "Unicode Text" (refused whole before: "can't decode byte 0xff in
    position 0"). Other text stops the import naming the line, and what to save it as: an
    8-bit list read in some guessed encoding could hash an accented address wrongly, and that
    customer would go on getting reminders."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding == "utf-16":
            raise ConfigError(f"{path}: cannot read: not UTF-16 text, as its byte-order mark says ({exc.reason})") \
                from None
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}:{line}: cannot read: not UTF-8 text (byte {column} of the line); save the list as "
                          "CSV UTF-8 (or Unicode Text) and import that") from None


def _unquoted(cell: str) -> str:
    """A CSV cell as the CSV reader gives it: ``"ann@example.com"`` -> ``ann@example.com``."""
    if len(cell) >= 2 and cell[0] == cell[-1] == '"':
        return cell[1:-1].replace('""', '"').strip()
    return cell


def import_file(ledger: Ledger, path: Path, *, reason: str = IMPORTED, now: datetime | None = None,
                region: str | None = None) -> ImportResult:
    """Suppress every valid address and number of ``path``; report invalid entries instead of failing."""
    return import_entries(ledger, read_addresses(path), reason=reason, now=now, region=region)


def _unticked(cell: str) -> str:
    """``cell`` without the apostrophe a spreadsheet or Shopify's export puts before a number
    (``'+46701234567``) to keep it text: the cart reader takes that number, so must the import."""
    text = cell.strip()
    return text[1:] if text.startswith("'") and written_as_number(text[1:]) else cell


def _entry_hash(cell: str, region: str | None, countries: Iterable[str] = ()) -> str | None:
    """The hash one entry of a list is suppressed under: an address's, or a phone number's read
    as a STOP reply's (:func:`~cartrescue.contacts.normalize_sender`: local digits in ``region``,
    else a gateway's number without its ``+``, else local in one of ``countries``); ``None`` for
    neither. A gateway's opt-out list writes ``4791234567`` as its replies do: read in the shop's
    region alone, each was refused, and those who had said STOP were texted again. A ``tel:``
    link's number is the number, as a cart's is (:func:`~cartrescue.contacts.normalize_phone`)."""
    cell = _unticked(without_tel(cell))
    if "@" not in cell and written_as_number(cell):
        number = normalize_sender(cell, region, countries)
        return phone_hash(number) if number else None
    address = normalize_email(bare_address(cell)) or ""
    return email_hash(address) if is_valid_email(address) else None


def import_entries(ledger: Ledger, entries: Iterable[tuple[str, str]], *, reason: str = IMPORTED,
                   now: datetime | None = None, region: str | None = None,
                   countries: Iterable[str] = ()) -> ImportResult:
    """Suppress every valid address and phone number of ``entries`` (:func:`read_addresses`, read
    before the ledger is opened: a file that cannot be read makes no ledger file); report invalid
    ones. ``region``: the country of numbers written without their country code; ``countries``:
    ``sms.countries``, whose local numbers a STOP reply is read in too."""
    result = ImportResult()
    rows: list[tuple[str, str, str]] = []
    countries = tuple(countries)
    for location, cell in entries:
        hashed = _entry_hash(cell, region, countries)
        if hashed is None:
            result.invalid.append((location, cell))
            continue
        rows.append((hashed, reason, f"import {location}"))
    unique = len({row[0] for row in rows})
    result.added = ledger.suppress_many(rows, now)
    result.already = unique - result.added
    return result


def _contact_hashes(value: str, region: str | None) -> tuple[str, ...]:
    """The suppression hashes of an address (both forms of an international domain,
    :func:`~cartrescue.contacts.email_hashes`), or of a phone number (``+46...``, or local digits
    read in ``region``); ValueError when ``value`` is neither."""
    if "@" not in value:
        number = normalize_phone(value, region)
        hashes: tuple[str, ...] = (phone_hash(number),) if number else ()
    else:
        normalized = normalize_email(value)
        hashes = email_hashes(normalized) if normalized and is_valid_email(normalized) else ()
    if not hashes:
        raise ValueError(f"not a valid e-mail address or phone number: {value!r}")
    return hashes


def check(ledger: Ledger, address: str, region: str | None = None) -> dict[str, Any] | None:
    """The suppression of ``address`` (or of a phone number), or ``None``; ValueError for what is
    neither (a typo answered "not suppressed", exit 1, as if the address could be messaged)."""
    return next((found for hashed in _contact_hashes(address, region)
                 if (found := ledger.suppression(hashed)) is not None), None)


#: The suppression reason ``forget`` leaves (:mod:`cartrescue.lifecycle`).
FORGOTTEN = "forgotten"


class ErasedContact(ValueError):
    """``suppress remove`` of an address or number that ``forget`` erased, without ``force``."""


def remove(ledger: Ledger, address: str, region: str | None = None, *, force: bool = False) -> bool:
    """Lift the suppression of ``address`` (in either form of its domain) or of a phone number
    (a mistaken import, a customer who texted START).

    The suppression ``forget`` left is what keeps an erased person from being messaged, and their
    address from being recorded again, when the shop's export still lists them: lifting it by a
    slip (a list of bounces to clear, say) undoes an erasure request without a word, so it takes
    ``force`` (the person asked to come back); :class:`ErasedContact` otherwise."""
    hashes = _contact_hashes(address, region)
    if not force:
        erased = next((found for hashed in hashes
                       if (found := ledger.suppression(hashed)) is not None and found["reason"] == FORGOTTEN), None)
        if erased is not None:
            raise ErasedContact(
                f"{address} was erased at the person's request (cartrescue forget, {erased['created_at']:%Y-%m-%d}): "
                "lifting it lets the shop's export bring the address back and message it; give --force if "
                "they asked to hear from the shop again (nothing was changed)")
    return any([ledger.unsuppress(hashed) for hashed in hashes])


def listing(ledger: Ledger, limit: int | None = None) -> list[dict[str, Any]]:
    """Suppressions newest first: hash, reason, source, when."""
    return ledger.suppressions(limit)


__all__ = ["FORGOTTEN", "BadToken", "ErasedContact", "ImportResult", "Unsubscribed", "as_number", "bare_address", "check",
           "import_entries", "import_file", "listing", "read_addresses", "remove", "resolve", "subject_token",
           "token_from", "token_spots", "unsubscribe", "unsubscribe_number", "url_token", "written_as_number"]
