"""Text messages: how long a text is in SMS segments, and the opt-out keywords.

Owns the two rules an SMS text must meet that e-mail has no word for:

- **Length in segments.** Typographic look-alikes (the no-break space Babel puts in amounts,
  curly quotes, dashes) are first replaced by their plain forms (:func:`plain`). A text that fits the GSM 03.38 alphabet travels as GSM-7: 160
  characters in one SMS, 153 per part once it is split (the rest of each part is the header
  that joins them again), and the characters of the extension table (``€ [ ] { } ^ ~ | \\``)
  cost two. Anything else (Cyrillic for Russian and Kazakh, ő and ű for Hungarian, an emoji)
  makes the whole text UCS-2: 70 UTF-16 units in one SMS, 67 per part, and a character outside
  the Basic Multilingual Plane (most emoji) is two units. Parts are counted as the phone
  network cuts them: never inside a character, so a two-unit emoji or a two-septet ``€`` that
  does not fit the rest of a part starts the next one. Providers bill per segment.
- **The opt-out keyword.** Every shipped language's words that mean "stop texting me" (STOP,
  STOPP, СТОП, ...): a reminder must name one (``templates check`` and the run both check), and
  an inbound reply that is one of them suppresses the number (:mod:`cartrescue.inbound`).

It must not render, send or decide: callers hand it text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# GSM 03.38 basic character set (without ESC, 0x1B) and the extension table (ESC + char).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7, UCS2 = "GSM-7", "UCS-2"
#: The most ``sms.max_segments`` may be: phones join about ten parts at most, and each is billed.
MAX_SEGMENTS = 10
SINGLE = {GSM7: 160, UCS2: 70}  # units in a text that is one SMS
PART = {GSM7: 153, UCS2: 67}  # units per part of a longer one


@dataclass(frozen=True, slots=True)
class SmsLength:
    """How a text travels: its encoding, its size in units (septets or UTF-16 units), its parts."""

    encoding: str  # GSM-7 | UCS-2
    units: int
    parts: tuple[str, ...]

    @property
    def segments(self) -> int:
        return len(self.parts)

    def describe(self) -> str:
        return f"{self.segments} segment{'s' if self.segments != 1 else ''} ({self.encoding}, {self.units} units)"


def _cost(char: str, encoding: str) -> int:
    if encoding == GSM7:
        return 2 if char in GSM_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def measure(text: str) -> SmsLength:
    """The encoding, size and parts of ``text`` as a phone network would send it."""
    encoding = GSM7 if all(char in GSM_BASIC or char in GSM_EXTENSION for char in text) else UCS2
    costs = [_cost(char, encoding) for char in text]
    units = sum(costs)
    if units <= SINGLE[encoding]:
        return SmsLength(encoding, units, (text,) if text else ())
    capacity = PART[encoding]
    parts: list[str] = []
    start = used = 0
    for index, cost in enumerate(costs):
        if used + cost > capacity:  # this character starts the next part: never split it
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    return SmsLength(encoding, units, tuple(parts))


# Look-alikes that would make a whole text UCS-2 (less than half the characters per segment)
# for nothing: Babel puts a no-break space between an amount and its currency, typography curly
# quotes and dashes. The same replacements providers call "smart encoding".
_PLAIN = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ", "\u2018": "'", "\u2019": "'",
                        "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2013": "-", "\u2014": "-",
                        "\u2212": "-", "\u2026": "..."})


def plain(text: str) -> str:
    """``text`` with typographic look-alikes replaced by their GSM-7 originals (see ``_PLAIN``)."""
    return text.translate(_PLAIN)


def one_line(value: str) -> str:
    """A value from cart data as it may appear in a text: on one line, without control or
    format characters (a name with a newline must not start a line of its own)."""
    cleaned = "".join(" " if unicodedata.category(char)[0] in "CZ" else char for char in value)
    return " ".join(cleaned.split())


#: Opt-out keywords per shipped language (upper case): what the templates tell customers to
#: reply, and what an inbound reply is matched against. English has the carriers' standard set.
OPT_OUT_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"),
    "sv": ("STOPP", "AVSLUTA", "AVREGISTRERA"),
    "hu": ("LEIRATKOZÁS", "LEIRATKOZAS", "LEÁLLÍT", "LEALLIT"),
    "ru": ("СТОП", "ОТПИСАТЬСЯ", "ОТПИСКА"),
    "af": ("STAAK", "KANSELLEER", "UITTEKEN"),
    "kk": ("ТОҚТАТУ", "ТОҚТА", "ТОКТАТУ"),
}
_ALL_WORDS = frozenset(word for words in OPT_OUT_WORDS.values() for word in words)
_INSTRUCTION = re.compile(r"(?<!\w)(" + "|".join(sorted(map(re.escape, _ALL_WORDS), key=len, reverse=True)) + r")(?!\w)")


def is_opt_out(body: str) -> bool:
    """Is this inbound reply an opt-out? The whole message must be one keyword (any shipped
    language, any case, punctuation and spaces around it ignored): "Stop." is, "don't stop" is not."""
    word = re.sub(r"[\W_]+", "", body.strip(), flags=re.UNICODE)
    return bool(word) and word.upper() in _ALL_WORDS and len(body.strip()) <= len(word) + 4


def names_opt_out(text: str) -> str | None:
    """The opt-out keyword ``text`` tells the customer to reply (in capitals), or ``None``."""
    match = _INSTRUCTION.search(text)
    return match.group(1) if match else None


#: kind -> what it means, for the problems :func:`problems` finds (``templates check`` shows them).
KINDS = {
    "sms-empty": "the text message renders empty",
    "sms-length": "the text message is longer than sms.max_segments",
    "sms-opt-out": "no opt-out keyword (STOP) in the text message",
    "sms-shop": "the shop's name is not in the text message",
}


_LINK = re.compile(r"https?://\S+")


def too_long(text: str, length: SmsLength, max_segments: int) -> str:
    """Why a text fails ``sms.max_segments`` and what to do: its size, its longest link (a cart
    link is most of a text: a shop's can be 100+ characters) and the two remedies."""
    links = [found.rstrip(".,:;!?)") for found in _LINK.findall(text)]  # "... {{ recovery_url }}." ends no link
    link = f" (its link is {max(map(len, links))} characters)" if links else ""
    raise_it = f", or raise sms.max_segments (at most {MAX_SEGMENTS}; each segment is billed)" \
        if max_segments < MAX_SEGMENTS else ""
    return f"{length.describe()}, more than sms.max_segments ({max_segments}){link}: shorten the text{raise_it}"


def problems(text: str, shop_name: str, max_segments: int) -> list[tuple[str, str]]:
    """``(kind, message)`` for every rule a rendered text breaks (see :data:`KINDS`)."""
    if not text.strip():
        return [("sms-empty", "the text renders empty")]
    found = []
    length = measure(text)
    if length.segments > max_segments:
        found.append(("sms-length", too_long(text, length, max_segments)))
    if names_opt_out(text) is None:
        found.append(("sms-opt-out", "no opt-out keyword in capitals (STOP, STOPP, СТОП, ...) in the text"))
    if plain(shop_name) not in text:  # as the text writes it: a name's curly ’ or – went out as ' or -
        found.append(("sms-shop", f"the shop's name ({shop_name}) is not in the text"))
    return found
