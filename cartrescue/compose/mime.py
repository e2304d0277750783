"""Turn an :class:`~cartrescue.model.OutgoingMessage` into the bytes of an e-mail.

Owns the wire format of a message: the RFC 5322 header block (RFC 2047 encoded-words, folding,
quoting of display names, ASCII/IDNA addresses, UTF-8 addresses for SMTPUTF8), the
``multipart/alternative`` structure (text/plain, then text/html) and each part's
Content-Transfer-Encoding. :func:`build_message` returns CRLF-terminated bytes that go unchanged
into .eml files; :func:`wire_body` dot-stuffs them once for the SMTP DATA phase.
:func:`wire_address` gives an address as it goes into the headers and the SMTP envelope, and
:func:`needs_smtputf8` says whether that needs the relay's SMTPUTF8 (RFC 6531).

Must not: decide what a message says (rendering does), talk to a server or write files
(channels do), or use the ``email`` package on the hot path (building with ``EmailMessage``
costs ~1.4 ms a message here, this module a few tens of µs; the tests and ``bench/`` use the
``email`` package to prove the output parses back).

Header values come from cart data and are untrusted. Every control character (C0 including
CR, LF and TAB, DEL, C1, U+2028 and U+2029) in the subject, display names and extra headers is
replaced by a space *before* anything else, so no value can start a header of its own.
Addresses and the Message-ID are validated instead and raise :class:`ValueError`.

Choices and their reasons (timings from this project's 2-core machine):

- Subject: sent as-is when it is printable ASCII that fits, or folds at spaces, in lines of 78;
  otherwise (non-ASCII, a word too long to fold, a space at either end, or ``=?`` inside) the
  whole value becomes UTF-8 ``B`` encoded-words split on character boundaries, one per line, so
  every line is at most 78 characters and the text round-trips exactly. ``B`` rather than
  ``Q``: ``binascii`` does it in C and its length is known in advance, so folding needs no
  loop over characters; readers decode it either way.
- Display names: any run of whitespace (NBSP included) becomes one space and the ends are
  trimmed, as the ``email`` package does when it reads an encoded name. ASCII names go out as
  atoms or as a quoted-string (``"`` and ``\\`` escaped), folded at spaces; other names as ``B``
  encoded-words split after spaces (see :func:`_encoded_phrase` about CPython gh-128110).
- Extra headers (``List-Unsubscribe``...) are usually structured, so an ASCII value is never
  encoded, only trimmed and folded at spaces (``ValueError`` if a line would pass 998). A
  non-ASCII value, or one a reader would take for an encoded-word, is treated as text and
  ``B`` encoded. URLs must be percent-encoded upstream.
- Bodies: line endings become CRLF. ``7bit`` when the body is ASCII without NUL and no line
  passes 998 octets (readable, costs nothing); with ``eight_bit`` (the SMTP channel, for relays
  that offer 8BITMIME), ``8bit`` for any such UTF-8 body, which costs nothing either and is
  shorter on the wire. Otherwise quoted-printable (``binascii.b2a_qp``, lines of at most 76),
  which keeps Latin-script text readable in .eml files, unless base64 is estimated shorter, as
  for Cyrillic, Greek, CJK or emoji text, where QP triples every non-ASCII byte (the ``email``
  package applies the same rule). base64 everywhere would be faster (~1 µs per KB against ~8
  for QP, so ~15 µs a Swedish message) but unreadable; the estimate (UTF-8 length and number
  of ``=``) means each body is encoded once. No newline is added or removed.
- Boundary: ``=_`` and a BLAKE2 hash of the Message-ID, so rebuilding a message gives the same
  bytes. ``=_`` cannot occur in quoted-printable or base64 output; the bodies are searched for
  it anyway (7bit ones can hold anything) and the hash re-salted until it is absent.
- Content-Language: the locale the message is written in (its template folder, ``sr_Latn``
  as the tag ``sr-Latn``), once for both parts, which are in the same language; left out for a
  message without one (the report's digest) or whose folder name is no language tag.
- Date: formatted here, the same text as ``email.utils.format_datetime`` (which costs ~6 µs);
  a naive datetime is a ``ValueError``.
- Lone surrogates (text that was not valid Unicode) become ``?``.
- Addresses: a domain is IDNA-encoded (ASCII on the wire) when the local part is ASCII. A
  non-ASCII local part (``åsa@example.com``) cannot be written in ASCII at all: such an address
  goes out in UTF-8, domain included, in the address headers (RFC 6532) and the envelope, and
  only to a relay that offers SMTPUTF8 (the SMTP channel checks). Every other byte of a message
  stays ASCII, so a message needs SMTPUTF8 exactly when it is not ASCII.
- DATA: :func:`wire_body` doubles a dot at the start of a line with one ``bytes.replace`` (the
  output has CRLF line endings only, so no other scan is needed; aiosmtplib's ``SMTP.data``
  makes two regex passes, ~100 µs for an 8 KB message) and adds the final ``.`` line.
"""

from __future__ import annotations

import hashlib
import re
from binascii import b2a_base64, b2a_qp
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Final

from cartrescue.model import Attachment, OutgoingMessage

__all__ = ["build_message", "build_with_attachments", "encode_address", "needs_smtputf8", "wire_address",
           "wire_body"]

MAX_LINE: Final = 78  # RFC 5322 SHOULD, for header lines
HARD_LINE: Final = 998  # RFC 5322 / RFC 5321 MUST, octets without CRLF

#: Control characters, line separators, and the bidi embeddings, overrides and isolates
#: (U+202A–U+202E, U+2066–U+2069): a name with U+202E shows "moc.elpmaxe@" reversed in a client's
#: subject or From line, a spoofing trick. The marks U+200E/U+200F and joiners stay (real text uses them).
_CONTROLS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ATEXT: Final = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_DOT_ATOM: Final = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_ATOM_PHRASE: Final = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
_QUOTED_LOCAL: Final = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])+"')
_BARE_LOCAL: Final = re.compile(r'[\x21\x23-\x5b\x5d-\x7e]+')  # printable, no space, " or \
_DOMAIN: Final = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*|\[[\x21-\x5a\x5e-\x7e]+\]")
_UTF8: Final = "\u0080-\U0010ffff"  # RFC 6531 UTF8-non-ascii (controls and spaces: see isprintable)
_IDNA_DEVIATIONS: Final = frozenset("\u00df\u03c2\u200c\u200d")  # IDNA 2003 and 2008 differ
_MSGID_PART: Final = r"[\x21-\x3b\x3d\x3f\x41-\x7e]+"  # printable ASCII except < > @
_MESSAGE_ID: Final = re.compile(rf"<{_MSGID_PART}@{_MSGID_PART}>")
_LANGUAGE_TAG: Final = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")  # RFC 5646's shape, as RFC 3282 takes it
_FIELD_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_ENCODED_WORD: Final = re.compile(r"=\?.*\?=")  # anything a lenient reader might decode
_FILENAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")  # attachments: plain ASCII names
_CONTENT_TYPE: Final = re.compile(r"[a-z]+/[a-z0-9.+-]+")
_UNITS: Final = re.compile(r" *[^ ]+")  # a word with the spaces before it: folding points
_RESERVED: Final = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version"}
)  # and every Content-*: the MIME structure is this module's

_EW_OPEN: Final = "=?utf-8?B?"
_EW_OVERHEAD: Final = len(_EW_OPEN) + 2  # "?=" closes
_EW_MAX: Final = 75  # RFC 2047: an encoded-word is at most 75 characters
_EW_LINE: Final = 76  # RFC 2047 2: a header line that holds an encoded-word is at most 76 (not 78)
_EW_NEXT_BYTES: Final = (min(_EW_MAX, _EW_LINE - 1) - _EW_OVERHEAD) // 4 * 3  # 45

_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec")

_7BIT, _QP, _BASE64, _8BIT = 0, 1, 2, 3
_CTE_NAMES: Final = ("7bit", "quoted-printable", "base64", "8bit")
_PART_HEADERS: Final = tuple(
    tuple(
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode("ascii")
        for cte in _CTE_NAMES
    )
    for subtype in ("plain", "html")
)


def build_message(msg: OutgoingMessage, *, eight_bit: bool = False) -> bytes:
    """The complete message: headers and a multipart/alternative body, CRLF line endings.

    An address with a non-ASCII local part is written in UTF-8 (the message then needs
    SMTPUTF8: see :func:`needs_smtputf8`). ``eight_bit``: a non-ASCII body goes out as UTF-8
    text, ``Content-Transfer-Encoding: 8bit``, where its lines allow it (for a relay that
    offers 8BITMIME, RFC 6152; the SMTP channel builds the message again without it for one
    that does not). Raises :class:`ValueError` for a malformed address or Message-ID, a naive
    date, a reserved or malformed extra header name, or an extra header that cannot be folded
    under 998 characters.
    """
    head = _head(msg)
    text_cte, text = _body(msg.text, eight_bit)
    html_cte, html = _body(msg.html, eight_bit)
    boundary = _boundary(msg.message_id, text, html)
    if _8BIT in (text_cte, html_cte):  # RFC 2045 6.4: the multipart says its parts' domain (else 7bit)
        head.append("Content-Transfer-Encoding: 8bit\r\n")
    head.append('Content-Type: multipart/alternative; boundary="' + boundary + '"\r\n\r\n')
    b = boundary.encode("ascii")
    return b"".join((
        "".join(head).encode("utf-8"),  # ASCII unless an address needs SMTPUTF8
        b"--", b, b"\r\n", _PART_HEADERS[0][text_cte], text,
        b"\r\n--", b, b"\r\n", _PART_HEADERS[1][html_cte], html,
        b"\r\n--", b, b"--\r\n",
    ))  # fmt: skip


def build_with_attachments(msg: OutgoingMessage, attachments: Sequence[Attachment]) -> bytes:
    """``multipart/mixed``: the message's text and HTML (``multipart/alternative``), then each
    attachment base64-encoded. For the few messages that carry a file (the ``report --email``
    digest); reminders use :func:`build_message`. File names must be plain ASCII
    (``[A-Za-z0-9._-]``), content types ``type/subtype``; else :class:`ValueError`.
    """
    inner = build_message(msg)
    body = inner[inner.index(b"\r\nContent-Type: multipart/alternative;") + 2:]  # the alternative part's own headers
    mixed = _boundary(msg.message_id + "mixed", inner, *(a.data for a in attachments))
    parts = [
        "".join(_head(msg)).encode("utf-8"),
        b'Content-Type: multipart/mixed; boundary="' + mixed.encode("ascii") + b'"\r\n\r\n',
        b"--" + mixed.encode("ascii") + b"\r\n", body,
    ]
    for attachment in attachments:
        if not _FILENAME.fullmatch(attachment.filename) or not _CONTENT_TYPE.fullmatch(attachment.content_type):
            raise ValueError(f"attachment needs an ASCII file name and a type/subtype: {attachment.filename!r}, "
                             f"{attachment.content_type!r}")
        charset = ' charset="utf-8";' if attachment.content_type.startswith("text/") else ""
        encoded = b2a_base64(attachment.data, newline=False)
        lines = b"\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
        parts.append(
            b"\r\n--" + mixed.encode("ascii") + b"\r\n"
            + (f'Content-Type: {attachment.content_type};{charset} name="{attachment.filename}"\r\n'
               f'Content-Disposition: attachment; filename="{attachment.filename}"\r\n'
               "Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii") + lines)
    parts.append(b"\r\n--" + mixed.encode("ascii") + b"--\r\n")
    return b"".join(parts)


def _head(msg: OutgoingMessage) -> list[str]:
    """The header lines every message has, up to (not including) its Content-Type."""
    head = [
        _cached_mailbox("From", msg.sender.name, msg.sender.email),
        _mailbox("To", msg.to.name, msg.to.email),
    ]
    if msg.reply_to:
        head.append(_cached_reply_to(msg.reply_to))
    head.append(_subject(msg.subject))
    head.append(_date_line(msg.date))
    head.append("Message-ID: " + _message_id(msg.message_id) + "\r\n")
    head.append("MIME-Version: 1.0\r\n")
    if msg.language is not None and (language := _language_tag(msg.language)) is not None:
        head.append("Content-Language: " + language + "\r\n")
    for name, value in msg.headers:
        head.append(_extra(name, value))
    return head


@lru_cache(maxsize=4096)
def encode_address(email: str) -> str:
    """``email`` as an ASCII addr-spec: IDNA-encoded domain, local part quoted if it must be.

    Raises :class:`ValueError` for a non-ASCII local part (that needs SMTPUTF8), whitespace or
    control characters, or a malformed domain. Use the result for the SMTP envelope too.
    """
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an e-mail address: {email!r}")
    if not local.isascii():
        raise ValueError(f"non-ASCII local part needs SMTPUTF8, not supported: {email!r}")
    if not _DOT_ATOM.fullmatch(local) and not _QUOTED_LOCAL.fullmatch(local):
        if not _BARE_LOCAL.fullmatch(local):
            raise ValueError(f"invalid local part in e-mail address: {email!r}")
        local = '"' + local + '"'  # "a..b" and the like: valid once quoted
    if not domain.isascii():
        if not _IDNA_DEVIATIONS.isdisjoint(domain):
            raise ValueError(f"domain needs IDNA 2008 (ß, ς, ZWJ/ZWNJ), not supported: {email!r}")
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"invalid international domain in {email!r}: {exc}") from None
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"invalid domain in e-mail address: {email!r}")
    return local + "@" + domain


def mailto_address(email: str) -> str:
    """``email`` as it stands in a ``mailto:`` link (RFC 6068): :func:`encode_address`, its local
    part percent-encoded where a link needs it (``%``, ``?``, ``#``, ``&``, ``"``...), which a
    mail client decodes back. Written as is, "un#sub" was cut at the "#" and a "?" began the
    link's query."""
    from urllib.parse import quote

    local, _at, domain = encode_address(email).rpartition("@")
    return quote(local, safe="!$'()*+,;:@-._~") + "@" + domain


def needs_smtputf8(email: str) -> bool:
    """Can ``email`` only be sent with SMTPUTF8 (RFC 6531)? True for a non-ASCII local part.

    A non-ASCII domain alone does not need it (IDNA gives its ASCII form). Costs well under a
    microsecond for an ASCII address.
    """
    return not email.isascii() and not email.rpartition("@")[0].isascii()


@lru_cache(maxsize=1)
def _utf8_address_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Dot-atom, quoted and bare local parts and the domain of an SMTPUTF8 address, compiled on
    first use: their ranges up to U+10FFFF take ~20 ms to compile, which every run paid when it
    imported this module, though only a non-ASCII local part needs them."""
    return (re.compile(rf"[{_UTF8}{_ATEXT}]+(?:\.[{_UTF8}{_ATEXT}]+)*"),
            re.compile(rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8}]|\\[\x20-\x7e])+"'),
            re.compile(rf'[\x21\x23-\x5b\x5d-\x7e{_UTF8}]+'),
            re.compile(rf"[A-Za-z0-9_{_UTF8}-]+(?:\.[A-Za-z0-9_{_UTF8}-]+)*"))


@lru_cache(maxsize=4096)
def wire_address(email: str) -> str:
    """``email`` as it goes into the address headers and the SMTP envelope.

    :func:`encode_address`'s ASCII form when the local part is ASCII. Otherwise the address
    needs SMTPUTF8 and is returned in UTF-8 as given, the domain not IDNA-encoded (RFC 6531 3.3
    allows U-labels there) and a local part that is not a dot-atom quoted. Raises
    :class:`ValueError` for a malformed address (whitespace, control characters, no domain).
    """
    if not needs_smtputf8(email):
        return encode_address(email)
    local, _at, domain = email.rpartition("@")
    if not domain or not email.isprintable():  # isprintable: no control, space separator, surrogate
        raise ValueError(f"not a valid e-mail address: {email!r}")
    dot_atom, quoted_local, bare_local, utf8_domain = _utf8_address_patterns()
    if not dot_atom.fullmatch(local) and not quoted_local.fullmatch(local):
        if not bare_local.fullmatch(local):
            raise ValueError(f"invalid local part in e-mail address: {email!r}")
        local = '"' + local + '"'
    if not utf8_domain.fullmatch(domain) and not _DOMAIN.fullmatch(domain):
        raise ValueError(f"invalid domain in e-mail address: {email!r}")
    return local + "@" + domain


def wire_body(data: bytes) -> bytes:
    """A built message as the DATA phase sends it: dot-stuffed, ended by the ``.`` line.

    ``data`` must have CRLF line endings only, as :func:`build_message` writes them (RFC 5321
    4.5.2: a line starting with ``.`` gets one more). Kept apart from :func:`build_message` so
    that .eml files hold the message itself.
    """
    if data[:1] == b".":
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if data[-2:] != b"\r\n":
        return data + b"\r\n.\r\n"
    return data + b".\r\n"


# --- header values ------------------------------------------------------------------------


def _clean(value: str) -> str:
    """``value`` with every control character replaced by a space (no header injection)."""
    return value if value.isprintable() else _CONTROLS.sub(" ", value)


def _utf8(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return value.encode("utf-8", "replace")


def _split_utf8(data: bytes, first: int, rest: int) -> list[bytes]:
    """``data`` in pieces of at most ``first``, then ``rest`` bytes, never inside a character."""
    pieces = []
    pos, size, end_of_data = 0, first, len(data)
    while pos < end_of_data:
        end = pos + size
        if end < end_of_data:
            while data[end] & 0xC0 == 0x80:  # a continuation byte: back up to the lead byte
                end -= 1
        pieces.append(data[pos:end])
        pos, size = end, rest
    return pieces


def _first_ew_bytes(used: int) -> int:
    """How many bytes the first encoded-word can carry on a line already ``used`` long."""
    return max((min(_EW_MAX, _EW_LINE - used) - _EW_OVERHEAD) // 4 * 3, 6)


def _ew_lines(pieces: list[bytes]) -> str:
    return "\r\n ".join(
        [_EW_OPEN + b2a_base64(piece, newline=False).decode("ascii") + "?=" for piece in pieces]
    )


def _encoded_words(value: str, used: int) -> str:
    """Unstructured text as B encoded-words, one per line, the first after ``used`` chars."""
    data = _utf8(value)
    first = _first_ew_bytes(used)
    if len(data) <= first:
        return _EW_OPEN + b2a_base64(data, newline=False).decode("ascii") + "?="
    return _ew_lines(_split_utf8(data, first, _EW_NEXT_BYTES))


def _encoded_phrase(name: str, used: int) -> str:
    """A display name (single spaces, none at the ends) as B encoded-words, one per line.

    Readers ignore the folding space between two encoded-words (RFC 2047 6.2), so each space
    is encoded at the end of a word. Words are split only when one does not fit in an
    encoded-word on its own: CPython's parser (before gh-128110) wrongly keeps the folding
    space in address headers, and this way it shows a doubled space at worst, not a split word.
    """
    limit = _first_ew_bytes(used)
    data = _utf8(name)
    if len(data) <= limit:
        return _EW_OPEN + b2a_base64(data, newline=False).decode("ascii") + "?="
    pieces: list[bytes] = []
    current = b""
    words = data.split(b" ")
    last = len(words) - 1
    for i, word in enumerate(words):
        if i < last:
            word += b" "
        if len(current) + len(word) <= limit:
            current += word
            continue
        if current:
            pieces.append(current)
            limit = _EW_NEXT_BYTES
        if len(word) <= limit:
            current = word
        else:
            *full, current = _split_utf8(word, limit, _EW_NEXT_BYTES)
            pieces.extend(full)
            limit = _EW_NEXT_BYTES
    pieces.append(current)
    return _ew_lines(pieces)


def _fold(prefix: str, value: str) -> tuple[str, int]:
    """``prefix + value`` folded at spaces to lines of at most 78 where the words allow.

    ``value`` must neither start nor end with a space. Returns the lines (CRLF-terminated) and
    the length of the longest.
    """
    lines = []
    line = prefix
    for unit in _UNITS.findall(value):
        if len(line) + len(unit) > MAX_LINE and line != prefix:
            lines.append(line)
            line = unit  # starts with the space(s) that unfold back into place
        else:
            line += unit
    lines.append(line)
    return "\r\n".join(lines) + "\r\n", max(map(len, lines))


def _subject(value: str) -> str:
    value = _clean(value)
    if value.isascii() and "=?" not in value and value[:1] != " " and value[-1:] != " ":
        if len(value) <= MAX_LINE - 9:
            return "Subject: " + value + "\r\n"
        folded, longest = _fold("Subject: ", value)
        if longest <= MAX_LINE:
            return folded
    return "Subject: " + _encoded_words(value, 9) + "\r\n"


@lru_cache(maxsize=64)
def _language_tag(locale: str) -> str | None:
    """The BCP 47 tag of a template folder's locale (``sr_Latn`` is ``sr-Latn``), as the HTML's
    ``<html lang>`` writes it, for Content-Language (RFC 3282): a screen reader or a mail client's
    translate offer reads the text part in that language too. ``None`` for a folder name that is
    no language tag: the header is left out rather than the message failed."""
    tag = locale.replace("_", "-")
    return tag if _LANGUAGE_TAG.fullmatch(tag) else None


@lru_cache(maxsize=64)
def _extra_prefix(name: str) -> str:
    """``Name: `` for an extra header, its name checked (once a run: the names repeat)."""
    if not _FIELD_NAME.fullmatch(name) or len(name) > MAX_LINE - 2:
        raise ValueError(f"invalid header name: {name!r}")
    lowered = name.lower()
    if lowered in _RESERVED or lowered.startswith("content-"):
        raise ValueError(f"header {name!r} is set by cartrescue, not by extra headers")
    return name + ": "


def _extra(name: str, value: str) -> str:
    prefix = _extra_prefix(name)
    value = _clean(value).strip(" ")
    if not value.isascii() or ("=?" in value and _ENCODED_WORD.search(value)):
        return prefix + _encoded_words(value, len(prefix)) + "\r\n"
    if len(prefix) + len(value) <= MAX_LINE:
        return prefix + value + "\r\n"
    folded, longest = _fold(prefix, value)
    if longest > HARD_LINE:
        raise ValueError(f"header {name!r} has a word too long to fold under {HARD_LINE}")
    return folded


def _mailbox(field: str, name: str, email: str) -> str:
    """``Field: name <address>``, the name quoted or encoded as needed."""
    address = wire_address(email)
    name = " ".join(_clean(name).split())  # any run of (Unicode) whitespace: one space
    if not name:
        return field + ": " + address + "\r\n"
    line = ""
    if name.isascii() and "=?" not in name:
        phrase = name
        if not _ATOM_PHRASE.fullmatch(name):
            phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(field) + 2 + len(phrase) <= MAX_LINE:
            line = field + ": " + phrase
        else:  # folding inside a quoted-string or between atoms unfolds back exactly
            folded, longest = _fold(field + ": ", phrase)
            if longest <= MAX_LINE:
                line = folded[:-2]
    limit = MAX_LINE
    if not line:
        line = field + ": " + _encoded_phrase(name, len(field) + 2)
        limit = _EW_LINE
    last = len(line) - line.rfind("\n") - 1
    if last + len(address) + 3 <= limit:
        return line + " <" + address + ">\r\n"
    return line + "\r\n <" + address + ">\r\n"


_cached_mailbox = lru_cache(maxsize=64)(_mailbox)  # the sender: the same for every message


_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.DOTALL)


@lru_cache(maxsize=64)
def _cached_reply_to(value: str) -> str:
    """``Reply-To`` from ``addr`` or ``Name <addr>``."""
    value = value.strip()
    if value.endswith(">") and "<" in value:
        name, _, address = value[:-1].rpartition("<")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = _QUOTED_PAIR.sub(r"\1", name[1:-1])  # RFC 5322 quoted-pair: \" and \\
        return _mailbox("Reply-To", name, address.strip())
    return _mailbox("Reply-To", "", value)


def _message_id(value: str) -> str:
    if not _MESSAGE_ID.fullmatch(value) or len(value) > HARD_LINE - 12:
        raise ValueError(f"Message-ID must look like <local@domain> (printable ASCII): {value!r}")
    return value


def _date_line(when: datetime) -> str:
    """The ``Date:`` header line of a message dated ``when``."""
    offset = when.utcoffset()
    if offset is None:
        raise ValueError(f"message date must be timezone-aware: {when!r}")
    return _cached_date_line(when, offset)


@lru_cache(maxsize=16)
def _cached_date_line(when: datetime, offset: timedelta) -> str:
    """RFC 5322 date-time, as ``email.utils.format_datetime`` writes it. Kept: a run builds its
    messages within a few seconds. Keyed by the offset too: equal instants in other zones are
    equal datetimes, written apart."""
    minutes = int(offset.total_seconds()) // 60
    zone = "+%02d%02d" % divmod(minutes, 60) if minutes >= 0 else "-%02d%02d" % divmod(-minutes, 60)
    return "Date: %s, %02d %s %04d %02d:%02d:%02d %s\r\n" % (
        _DAYS[when.weekday()], when.day, _MONTHS[when.month - 1], when.year,
        when.hour, when.minute, when.second, zone,
    )  # fmt: skip


# --- bodies -------------------------------------------------------------------------------


def _lines_fit(data: bytes) -> bool:
    """No line of CRLF-terminated ``data`` is longer than 998 octets (jumps ~1000 at a time)."""
    start, end = 0, len(data)
    while end - start > HARD_LINE:
        newline = data.rfind(b"\n", start, start + HARD_LINE + 2)
        if newline < 0:
            return False
        start = newline + 1
    return True


def _body(text: str, eight_bit: bool = False) -> tuple[int, bytes]:
    """The encoding (index into ``_CTE_NAMES``) and the encoded body, CRLF line endings."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii():
        data = text.encode("ascii").replace(b"\n", b"\r\n")
        if b"\0" not in data and _lines_fit(data):
            return _7BIT, data
        extra = 0
    else:
        data = _utf8(text)
        extra = len(data) - len(text)  # UTF-8 continuation bytes
        data = data.replace(b"\n", b"\r\n")
        if eight_bit and b"\0" not in data and _lines_fit(data):
            return _8BIT, data  # RFC 6152: 8-bit octets, lines of at most 998, no NUL, CRLF only
    # The shorter encoding, estimated so as to encode once (b2a_qp costs ~8 ns a byte here,
    # base64 ~1): quoted-printable writes a non-ASCII byte or "=" as 3 characters (a 2-byte
    # character has one continuation byte), base64 writes 3 bytes as 4, plus CRLFs.
    quads = (len(data) + 2) // 3 * 4
    if len(data) + 4 * extra + 2 * data.count(b"=") <= quads + (quads - 1) // 76 * 2:
        return _QP, _quoted_printable(data)
    encoded = b2a_base64(data, newline=False)
    lines = (quads + 75) // 76
    if lines <= len(_BASE64_LINES):  # slicing by prepared slices is ~30% faster
        return _BASE64, b"\r\n".join(map(encoded.__getitem__, _BASE64_LINES[:lines]))
    return _BASE64, b"\r\n".join([encoded[i : i + 76] for i in range(0, quads, 76)])


def _quoted_printable(data: bytes) -> bytes:
    """``b2a_qp`` with every line at most 76 characters, as RFC 2045 (6.7, rule 5) requires.

    ``b2a_qp`` writes a space or tab that ends a line as ``=20``/``=09`` after the line's 76th
    character when the line is that long, a 77-character line; such a line gets a soft break
    before the escape. Two ``in`` scans find the rare case, so other bodies pay ~1 µs.
    """
    if b"\n" in data:
        encoded = b2a_qp(data)  # sees CRLF in the data, so it writes CRLF (soft breaks too)
    else:
        encoded = b2a_qp(data + b"\r\n")[:-2]
    if b"=20" not in encoded and b"=09" not in encoded:
        return encoded
    return b"\r\n".join(
        line if len(line) <= 76 else line[:-3] + b"=\r\n" + line[-3:]
        for line in encoded.split(b"\r\n")
    )


_BASE64_LINES: Final = tuple(slice(start, start + 76) for start in range(0, 76 * 1024, 76))


def _boundary(message_id: str, *bodies: bytes) -> str:
    seed = message_id.encode("ascii")
    salt = 0
    while True:
        boundary = "=_" + hashlib.blake2b(seed, digest_size=12, salt=salt.to_bytes(16)).hexdigest()
        marker = boundary.encode("ascii")
        if not any(marker in body for body in bodies):
            return boundary
        salt += 1
