"""Asking why a cart was left: signed one-click links in the message, answers in the ledger.

Owns the survey's tokens (cart, step and locale, signed with :mod:`cartrescue.tokens`), the
links and words a template shows (``survey`` in the template context), checking and cleaning an
answer (a configured reason, a free-text line without control characters, bounded), recording
it (one row per cart: a later answer replaces the earlier one) and the counts a report shows.
It must not serve HTTP (:mod:`cartrescue.webhook` does) nor render HTML.

A ``preview`` or ``send-test`` message asks too, with links signed for another purpose
(``survey-test``): the page answers them as it would the customer, but :func:`record` stores nothing. Signed for the
customer's cart, the owner's click was the customer's answer (counted, and their reminders stopped).
An answer to a message whose address was forgotten since is thanked and stored nowhere too.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO, Any
from urllib.parse import quote

from cartrescue.config import Config
from cartrescue.ledger import Ledger
from cartrescue.survey_words import WORDS
from cartrescue.text import printable, spreadsheet_text
from cartrescue.tokens import TEST, BadToken, sign, unverified_payload, verify_link

PURPOSE = "survey"
TEST_PURPOSE = PURPOSE + TEST  # the links of a preview or send-test message: answered, never recorded
TAG = "s"  # survey tokens are tagged: the webhook serves survey and unsubscribe links at any URL
MAX_TEXT = 500  # characters of the free-text line that are kept
_SPACES = re.compile(r"\s+")

__all__ = ["Answer", "BadToken", "EXPORT_COLUMNS", "SurveyToken", "clean_text", "counts", "links", "make_token",
           "period_counts", "read_token", "record", "words", "write_csv"]


@dataclass(frozen=True, slots=True)
class SurveyToken:
    """What a survey link stands for: the step of a cart's message, and its language."""

    cart_key: str
    step: int
    locale: str
    test: bool = False  # from a send-test message: nothing is recorded


@dataclass(frozen=True, slots=True)
class Answer:
    token: SurveyToken
    reason: str
    text: str
    first: bool  # False: it replaced an earlier answer for the cart
    recorded: bool = True  # False: a send-test's, or one of a forgotten address's message (stored nowhere)


def make_token(cart_key: str, step: int, locale: str, secret: str, *, test: bool = False) -> str:
    return sign(PURPOSE, f"{step}|{locale}|{cart_key}", secret, tag=TAG, test=test)


def read_token(token: str, secret: str) -> SurveyToken:
    """The cart, step and locale of a survey token (a customer's or a send-test's);
    :class:`BadToken` if forged or altered."""
    payload, test = verify_link(PURPOSE, token, secret, tag=TAG)
    step, locale, cart_key = (payload.split("|", 2) + ["", ""])[:3]
    if not step.isdigit() or not cart_key:
        raise BadToken("survey token does not name a cart and step")
    return SurveyToken(cart_key, int(step), locale, test)


def claimed_locale(token: str) -> str:
    """The locale a (maybe invalid) token claims: only to word a refusal in the reader's language."""
    payload = unverified_payload(token) or ""
    parts = payload.split("|", 2)
    return parts[1] if len(parts) == 3 else ""


def _chain(config: Config, locale: str | None) -> list[str]:
    """The locales whose words a page for ``locale`` takes, the first wanted most."""
    chain: list[str] = []
    for candidate in (locale, (locale or "").split("_")[0], config.shop.default_locale,
                      config.shop.default_locale.split("_")[0], "en"):
        if candidate and candidate not in chain:
            chain.append(candidate)
    return chain


def page_locale(config: Config, locale: str | None) -> str:
    """The language a page for ``locale`` is written in: the first of :func:`words`' chain that has
    words, shipped or the config's. A page for an ``ar`` message without Arabic words is English and
    says so (its ``lang``, and so its direction: it was marked Arabic and laid out from the right)."""
    own = config.survey.words
    return next((candidate for candidate in _chain(config, locale) if WORDS.get(candidate) or own.get(candidate)),
                "en")


def words(config: Config, locale: str | None) -> dict[str, str]:
    """The survey's words for ``locale``: ``sv_SE`` -> ``sv`` -> the shop's default locale ->
    English, each the config's ``survey.words`` over the shipped ones; last, a reason of the
    shop's own labelled in another locale only takes that label (the config asks for one)."""
    merged: dict[str, str] = {}
    own = config.survey.words
    for candidate in reversed(_chain(config, locale)):
        merged.update(WORDS.get(candidate, {}))
        merged.update(own.get(candidate, {}))
    for elsewhere in own.values():  # in the config's order
        for key, label in elsewhere.items():
            merged.setdefault(key, label)
    return merged


def _link(url: str, token: str, reason: str) -> str:
    """The page's link for one reason: ``reason=`` joins the query, before any ``#fragment`` of
    ``survey.url``, which a browser never sends (after it, the page opened with nothing chosen)."""
    page, hash_mark, fragment = url.replace("{token}", token).partition("#")
    return f"{page}{'&' if '?' in page else '?'}reason={quote(reason)}{hash_mark}{fragment}"


def links(config: Config, secret: str, cart_key: str, step: int, locale: str, *,
          test: bool = False) -> dict[str, Any] | None:
    """``survey`` of the template context: ``None`` when this step does not ask, else the
    question, the page's URL and one signed link per reason (``code``, ``label``, ``url``);
    ``test``: links of a send-test message, whose answers are not recorded."""
    survey = config.survey
    if survey.url is None or not survey.asks_in(step):
        return None
    said = words(config, locale)
    token = make_token(cart_key, step, locale, secret, test=test)
    return {
        "question": said["question"],
        "url": survey.url.replace("{token}", token),
        "reasons": [{"code": code, "label": said[code], "url": _link(survey.url, token, code)}
                    for code in survey.reasons],
    }


def clean_text(text: str) -> str:
    """A free-text answer as stored: one line, no control characters, at most MAX_TEXT characters.

    It stays text: markup in it is kept as the customer typed it, and escaped wherever shown.
    """
    line = _SPACES.sub(" ", printable(text.replace("\r", " ").replace("\n", " "))).strip()
    return line[:MAX_TEXT].rstrip()


def record(ledger: Ledger, config: Config, token: str, reason: str, text: str = "",
           now: datetime | None = None) -> Answer:
    """Check and store one answer. :class:`BadToken` for a forged or altered token, ValueError
    for a reason this survey does not offer. The cart's earlier answer, if any, is replaced.
    An answer from a send-test message is checked the same way and stored nowhere, and so is one
    to a message whose address was forgotten since (see :func:`_forgotten`)."""
    survey = read_token(token, config.shop.unsubscribe_secret)
    if reason not in config.survey.reasons:
        raise ValueError(f"not a reason of this survey: {printable(reason)[:40]!r}")
    line = clean_text(text) if config.survey.free_text else ""
    if survey.test:
        return Answer(survey, reason, line, True, recorded=False)
    message = ledger.message_of(survey.cart_key, survey.step) or {}
    if _forgotten(message):
        return Answer(survey, reason, line, True, recorded=False)
    first = ledger.save_survey_answer(
        survey.cart_key, survey.step, reason, line, survey.locale, tier=message.get("tier"),
        variant=message.get("variant"), email=message.get("email"), now=now or datetime.now(timezone.utc))
    return Answer(survey, reason, line, first)


def _forgotten(message: dict[str, Any]) -> bool:
    """Was the address of this message (a :meth:`Ledger.message_of` row, an e-mail's or a
    webhook document's; ``{}``: none) forgotten? Such a step is claimed with its address, and
    only ``forget`` empties it.

    Its link still verifies (the token names the cart, not the address), but the person asked to
    be erased: their answer, and a free-text line that may name them, would be new personal data
    the ledger learns after the erasure. The page thanks them all the same, and their carts get
    no reminder anyway (the address is suppressed), so nothing is lost by not storing it."""
    return bool(message) and message.get("email") is None


def counts(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts and shares per reason, overall and per tier and locale, from
    :meth:`Ledger.survey_counts` rows: ``{"answers", "reasons": {reason: {"count", "share"}},
    "by_tier": {tier: {...}}, "by_locale": {locale: {...}}}`` (tier ``-`` when unknown)."""
    total: Counter[str] = Counter()
    tiers: dict[str, Counter[str]] = {}
    locales: dict[str, Counter[str]] = {}
    for row in rows:
        n = int(row["answers"])
        total[row["reason"]] += n
        tiers.setdefault(row["tier"] or "-", Counter())[row["reason"]] += n
        locales.setdefault(row["locale"] or "-", Counter())[row["reason"]] += n

    def shares(counter: Counter[str]) -> dict[str, dict[str, Any]]:
        whole = sum(counter.values())
        return {reason: {"count": n, "share": round(n / whole, 4) if whole else 0.0}
                for reason, n in counter.most_common()}

    return {
        "answers": sum(total.values()),
        "reasons": shares(total),
        "by_tier": {tier: shares(counter) for tier, counter in sorted(tiers.items())},
        "by_locale": {locale: shares(counter) for locale, counter in sorted(locales.items())},
    }


def period_counts(ledger: Ledger, since: datetime, until: datetime) -> dict[str, Any]:
    """:func:`counts` of the answers given from ``since`` through ``until`` (both included, as
    ``report`` reads its period): the report shows why carts were left beside what it won back,
    and must count what ``survey summary`` counts for the same dates."""
    return counts(ledger.survey_counts(since, until + timedelta(microseconds=1)))


#: Columns of ``survey export`` (one row per answered cart).
EXPORT_COLUMNS = ("answered_at", "cart_key", "step", "reason", "label", "text", "locale", "tier", "variant", "email",
                  "answers", "first_answered_at")


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (:func:`spreadsheet_text`)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    text = str(value)
    return spreadsheet_text(text)


def labelled(answers: Iterable[dict[str, Any]], config: Config) -> Iterator[dict[str, Any]]:
    """:meth:`Ledger.survey_answers` rows with their ``label``: the reason in the shop's default
    locale's words (the CSV's column and ``--json``'s rows alike)."""
    said = words(config, config.shop.default_locale)
    for row in answers:
        yield dict(row, label=said.get(row["reason"], row["reason"]))


def write_csv(answers: Iterable[dict[str, Any]], out: IO[str], config: Config) -> int:
    """Write :meth:`Ledger.survey_answers` rows as CSV (``EXPORT_COLUMNS``, ``label`` in the
    shop's default locale); returns how many."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for full in labelled(answers, config):
        writer.writerow([_cell(full.get(column)) for column in EXPORT_COLUMNS])
        count += 1
    return count
