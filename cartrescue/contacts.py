"""Contacts: e-mail addresses and phone numbers, normalized, validated and hashed; a customer's
name as a message may show it.

Owns the one definition of "the same address" (used for suppressions, per-address streams and
unsubscribe tokens) so that ``Bob@Example.com `` and ``bob@example.com`` are never two people,
and of "the same phone number": E.164 (``+46701234567``) as the ``phonenumbers`` library reads
what the customer typed, in the shop's region when it has no country code. Suppressions keep
the hash of either (an e-mail address has an ``@``, an E.164 number starts with ``+``: the two
never collide).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

# Deliberately pragmatic: one @, a dot in the domain, no spaces or control characters, no colon
# (``mailto:ann@…`` is a link, no address; ``o'brien@…`` is an address, and a local part with
# brackets is sent quoted: cartrescue.compose.mime.encode_address). A domain label is letters and digits
# with hyphens inside only, written so that the matcher never backtracks (a cart's address is
# checked once per cart).
_EMAIL = re.compile(r"^[^@\s<>\",;:]+@[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*(?:\.[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*)+$")


# A link or an address in a name field: a scheme, "www.", an address, a host with a path, or a
# lower-case host name (bots write "prize.example.net"; "Dr.Smith" and "J.R." are names).
_LINK_IN_NAME = re.compile(r"://|(?i:www)\.|[^\s@]@[^\s@]+\.[^\s@]"
                           r"|[\w-]\.[^\W\d_]{2,63}/"
                           r"|(?<![\w.])[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,63}(?![\w.])")


#: Characters a name field may hold and still be shown: a double-barrelled name is some 50, a
#: bot's sentence more (the SMS text cuts a name at 60 for the same reason).
MAX_NAME = 64


def shown_name(first_name: str | None, last_name: str | None) -> tuple[str | None, str | None]:
    """The customer's first and last name as a message shows them (greeting, subject, ``To:``),
    or neither when either carries a link or an address, or is longer than :data:`MAX_NAME`.
    Bots fill a cart's name fields with an advert and its address field with a stranger's: the
    reminder carried the advert, under the shop's domain and signature, to that stranger, which
    mailbox providers count against the shop.
    """
    for name in (first_name, last_name):
        if name and (len(name) > MAX_NAME or _LINK_IN_NAME.search(name)):
            return None, None
    return first_name, last_name


#: Languages that write a person's family name first, given name last ("Kovács Ágnes").
FAMILY_NAME_FIRST = frozenset({"hu"})


def family_name_first(locale: str | None) -> bool:
    """Does the language of ``locale`` (``hu``, ``hu-HU``) write the family name first?"""
    return (locale or "").lower().replace("-", "_").split("_")[0] in FAMILY_NAME_FIRST


def whole_name(first_name: str | None, last_name: str | None, locale: str | None) -> str:
    """The name as :func:`shown_name` shows it, written whole in the order of the customer's
    language (``To:``): a Hungarian's "Kovács Ágnes" came out "Ágnes Kovács", the order of no
    Hungarian, though a Hungarian full name is read family name first (``split_name``)."""
    first_name, last_name = shown_name(first_name, last_name)
    parts = (last_name, first_name) if family_name_first(locale) else (first_name, last_name)
    return " ".join(part for part in parts if part)


def normalize_email(email: str | None) -> str | None:
    """Stripped, in Unicode normal form C, then lower-cased; ``None`` for blank.

    NFC first: ``bücher`` typed with a composed ``ü`` and with ``u`` + combining diaeresis is one
    address to a person and to IDNA (both are ``xn--bcher-kva``), and must hash as one. NFC is
    the identity on ASCII and on composed text, so the hashes ledgers already hold stay as they are.
    """
    if email is None:
        return None
    return fold_email(email.strip()) or None


def fold_email(text: str) -> str:
    """A stripped address's one spelling (:func:`normalize_email`, blank kept as ``""``): what the
    sources compare and store per row. Lower-cased alone, a decomposed ``bücher`` stayed another
    address than the composed one to the one-message-a-day check and the history.

    Its domain is the one its message goes to (IDNA, as :func:`ascii_domain` sends it), written
    in its Unicode form: ``ｅｘａｍｐｌｅ.com`` (full-width) and ``exa\u00admple.com`` (a soft
    hyphen) are ``example.com``, ``xn--bcher-kva.example`` is ``bücher.example``. Each was another
    address to the planner, and one mailbox got a message for each spelling the same day. An
    ASCII address without ``xn--`` (nearly all) is only lower-cased, as before."""
    if text.isascii():
        folded = text.lower()
        return folded if "xn--" not in folded else _one_domain(folded)
    return _one_domain(unicodedata.normalize("NFC", text).lower())


def _one_domain(email: str) -> str:
    """``email`` (folded) with its domain as :func:`fold_email` writes it: the Unicode form of the
    domain its message goes to; as it is where the domain has no IDNA form (the address is then
    refused as invalid anyway)."""
    return _with_domain(email, lambda domain: _from_ascii(ascii_domain(domain))) or email


def _with_domain(email: str, form: Callable[[str], str | None]) -> str | None:
    """``email`` with its domain in ``form`` (lower-cased), or ``None`` where it has none."""
    local, at, domain = email.rpartition("@")
    if not at:
        return None
    try:
        other = form(domain)
    except UnicodeError:
        return None
    return None if other is None else f"{local}@{other.lower()}"


def _from_ascii(domain: str | None) -> str | None:
    """An ASCII (IDNA) domain's Unicode form."""
    return None if domain is None else domain.encode("ascii").decode("idna")


def ascii_domain(domain: str) -> str | None:
    """``domain`` as it goes on the wire: itself when ASCII, else its IDNA form (``bücher.example``
    is ``xn--bcher-kva.example``); None when it has none."""
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def is_valid_email(email: str) -> bool:
    """Pragmatic (see ``_EMAIL``); a domain in another script (``bücher.example``) is valid when
    its IDNA form is: the message goes to that form (:func:`cartrescue.compose.mime.encode_address`)."""
    if len(email) > 254:
        return False
    if _EMAIL.match(email) is not None:
        return True
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return False
    wire = ascii_domain(domain)
    return wire is not None and _EMAIL.match(f"{local}@{wire}") is not None


def without_address(text: str, contact: str) -> str:
    """``text`` with ``contact`` (an address, in any case or with its domain in IDNA form, or a
    number) replaced by ``(address)``: what a suppression keeps of the reply that made it. A
    relay's "550 5.1.1 <ann@example.com>: …" kept the address the ledger keeps only as a hash."""
    for form in email_forms(contact):
        text = re.sub(re.escape(form), "(address)", text, flags=re.IGNORECASE)
    return text


def email_forms(email: str) -> tuple[str, ...]:
    """``email`` normalized and, for a domain in another script, with that domain in its other
    IDNA form (``ann@bücher.example``, ``ann@xn--bcher-kva.example``): one mailbox, which a cart,
    a relay's bounce or an erasure request may name either way. A number is its own one form.

    A non-ASCII address also comes decomposed (NFD: ``u`` + combining diaeresis), as a source
    may still store it and older versions hashed it: rows and suppressions kept that way are
    the same person's, and an erasure or a suppression check must find them too."""
    normalized = normalize_email(email)
    if not normalized:
        return ()
    other = None if normalized.isascii() and "xn--" not in normalized else _other_form(normalized)
    forms = (normalized,) if other is None else (normalized, other)
    if normalized.isascii() and other is None:
        return forms
    return tuple(dict.fromkeys([*forms, *(unicodedata.normalize("NFD", form) for form in forms)]))


def email_hash(email: str) -> str:
    """Stable hash of a normalized address (NFC, lower-cased): suppressions store this, not the address."""
    return hashlib.sha256(normalize_email(email).encode("utf-8")).hexdigest()  # type: ignore[union-attr]


def _hash_as_kept(form: str) -> str:
    """The hash of ``form`` exactly as written (lower-cased): older versions hashed a decomposed
    address so, without composing it first."""
    return hashlib.sha256(form.strip().lower().encode("utf-8")).hexdigest()


@lru_cache(maxsize=4096)
def email_hashes(email: str) -> tuple[str, ...]:
    """Every hash a suppression of ``email`` may be kept under: its own and, for a domain in
    another script, that of the domain's other form (``bücher.example``, ``xn--bcher-kva.example``).
    A relay's bounce and another tool's export name the ASCII form, a cart may carry the other;
    a suppression is kept under the form it was given in, so both are asked.

    Cached: with a suppression in the ledger the planner hashes a chunk's addresses for its
    history lookup, then the gates test each cart's address against the suppressions found
    (:func:`~cartrescue.decide.eligibility.suppresses`); a SHA-256 is ~6,600 instructions, about
    1 % of a cart. The cache holds several chunks' addresses (``PLAN_CHUNK``, 500), so the
    gates find every one the lookup hashed."""
    if email.isascii() and "xn--" not in email and "XN--" not in email:  # the common case, per cart
        return (email_hash(email),)
    return tuple(dict.fromkeys(_hash_as_kept(form) for form in email_forms(email)))


def _other_form(email: str) -> str | None:
    """``email`` (normalized) with its domain in its other IDNA form, or ``None`` (an ASCII
    domain without ``xn--`` labels has none)."""
    other = _with_domain(email, lambda domain: _from_ascii(domain) if domain.isascii() else ascii_domain(domain))
    return other if other is not None and other != email else None


#: Number types no text message reaches (phonenumbers' PhoneNumberType values).
_NOT_SMS = frozenset({0, 3, 4, 5, 7, 8, 9, 10})  # fixed line, toll free, premium, shared cost, pager, UAN, voicemail


def normalize_phone(raw: str | None, region: str | None = None, *, mobile: bool = False) -> str | None:
    """``raw`` as an E.164 number, or ``None`` when it is not a valid number.

    A number without ``+`` and country code is read in ``region`` (ISO 3166, the shop's
    country). Letters are refused (``1-800-FLOWERS`` and ``ext.`` are not numbers a text message
    goes to); with ``mobile`` so is a number type that cannot receive one (fixed line, toll-free,
    premium). A ``tel:`` link's number (RFC 3966, as a form may store it) is read as the number:
    the call list dials it (:func:`dialable`), so the texts and the opt-out check must read it
    too, or a number that replied STOP is called. Cached: a shop's carts repeat their customers'
    numbers.
    """
    if not raw:
        return None
    return _normalize_phone(without_tel(raw), region, mobile)


def without_tel(raw: str) -> str:
    """``raw`` stripped, without the scheme of a ``tel:`` link (RFC 3966): the number it dials."""
    text = raw.strip()
    return text[4:].strip() if text[:4].lower() == "tel:" else text


@lru_cache(maxsize=8192)
def _normalize_phone(raw: str, region: str | None, mobile: bool) -> str | None:
    import phonenumbers

    if not raw or len(raw) > 40 or any(char.isalpha() for char in raw):
        return None
    number = _valid_number(raw, region)
    if number is None:
        return None
    if mobile and phonenumbers.number_type(number) in _NOT_SMS:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _valid_number(raw: str, region: str | None) -> Any:
    """``raw`` read in ``region`` (a ``phonenumbers.PhoneNumber``), or None when it is no valid number."""
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def has_number(raw: str | None) -> bool:
    """Whether a phone cell holds a number staff could dial, valid or not: a digit other than 0.
    A required phone field takes ``-``, ``N/A`` or ``0000000000`` from a customer without one:
    such a row in the call list is a call nobody can make, recorded sent, and its customer got
    no e-mail instead."""
    return raw is not None and any(unicodedata.digit(char, 0) for char in raw)


@lru_cache(maxsize=1024)
def dialable(raw: str, region: str | None) -> str:
    """``raw`` written as a person dials it from the shop's country ``region``: a number of that
    country in its national form (``070-123 45 67``), another country's with the prefix dialled
    from there (``00 47 912 34 567``), any number in international form without a region
    (``+46 70 123 45 67``); ``raw`` itself when it is no valid number (staff may still read it).

    A call-list cell: raw ``0701234567`` became the number 701234567 in a spreadsheet, and
    ``+46701234567`` needed the apostrophe a spreadsheet hides and a dialer does not. The plan
    writes Russia's and Kazakhstan's prefix for abroad ``8~10``, its ``~`` a wait for the dial
    tone that no phone or dialer takes: it is written ``8 10``, as it is dialled.
    """
    import phonenumbers

    number = _valid_number(raw, region)
    if number is None:
        return raw
    if region is None:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return phonenumbers.format_out_of_country_calling_number(number, region).replace("~", " ")


def normalize_sender(raw: str | None, region: str | None, countries: Iterable[str] = ()) -> str | None:
    """The E.164 form of the number a provider says a reply came from, or ``None``.

    It must hash as the outbound side hashes the number it texted, or a STOP suppresses nothing.
    Gateways often report it without its ``+`` (``4791234567``), which is no valid number in the
    shop's region: read it there first (a local number, as a cart's), then as international, then
    in each of ``countries`` (``sms.countries``: the shop texts them, so a reply may be in their
    local form).
    """
    text = (raw or "").strip()
    if not text:
        return None
    found = normalize_phone(text, region)
    if found is None and not text.startswith("+"):
        found = normalize_phone("+" + text)
    for country in countries:
        if found is None and country and country != region:
            found = normalize_phone(text, country)
    return found


@lru_cache(maxsize=8192)
def phone_region(e164: str) -> str | None:
    """The ISO country of an E.164 number (``+46...`` -> ``SE``)."""
    import phonenumbers

    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None


@lru_cache(maxsize=8192)
def phone_zones(e164: str) -> tuple[str, ...]:
    """Every IANA timezone an E.164 number's plan places it in (``+7 9xx ...``: from
    ``Europe/Bucharest`` to ``Asia/Anadyr``); empty when the plan does not say. Cached: a text's
    quiet hours ask per cart, and a shop's carts repeat their customers' numbers.

    A country that shares its calling code with a larger one (Kazakhstan's ``+7 7xx``) gets
    the larger one's zones from the plan: only those of its own country are kept (Babel's
    ``territory_zones``), or a Kazakh mobile waited for daytime in Vladivostok."""
    import phonenumbers
    from phonenumbers import timezone

    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = tuple(zone for zone in timezone.time_zones_for_number(number) if zone != timezone.UNKNOWN_TIMEZONE)
    region = phonenumbers.region_code_for_number(number)
    code = number.country_code
    if not region or not code or region == phonenumbers.region_code_for_country_code(code):
        return zones
    from babel.core import get_global

    own = set(get_global("territory_zones").get(region, ()))
    return tuple(zone for zone in zones if zone in own) or zones


def phone_hash(e164: str) -> str:
    """Stable hash of an E.164 number: suppressions store this, not the number."""
    return hashlib.sha256(e164.encode("ascii", "replace")).hexdigest()


def contact_hash(contact: str) -> str:
    """The suppression hash of an e-mail address or an E.164 number."""
    return phone_hash(contact) if contact.startswith("+") else email_hash(contact)
