"""``templates check``: render every template x locale x variant x step against fixture carts.

Owns the CI smoke test of templates: which combinations exist (the config's sequences, steps,
tier incentives and variants, plus every template file in the templates folder), the fixture
carts (the bundled examples plus edge cases: one item, 30 items, no image, very long names,
Cyrillic text, zero-decimal currencies, markup in names; their cart links as long as a real
shop's, so a text message that fits only a short one fails here), the checks, and the report as data,
a rich table, JSON and JUnit XML. It renders with the same :class:`~cartrescue.compose.render.Renderer`
as a run, and must not send, claim or allocate anything.

A check fails on: a Jinja syntax error, an undefined variable, HTML that does not parse (an
element closed by the wrong end tag or never closed, a stray end tag, a tag left open at the
end), a missing text part (or subject or HTML part), a missing unsubscribe link (in the text
or the HTML part), a subject over 78 characters, an empty subject, and ``None`` or unrendered
Jinja markup in the output, and survey links that are missing (when the config asks in that
step) or do not carry a valid signed token for the cart, step and locale (a sample survey URL is
used when the config has none, so the shipped links are checked too), and (with ``links.utm``
on) an http(s) link other than the unsubscribe and survey links that lacks the message's UTM
parameters, and an offer a step gives (its ``incentive`` or a tier's) that no part of the
message shows: its code (a per-recipient code's placeholder) printed nowhere, or, for an offer
without a code, no part that renders otherwise without it. A text message
(``<template>.sms.txt``, for the steps a tier sends by SMS and wherever such files exist) fails
on more segments than ``sms.max_segments``, no opt-out keyword (STOP) and no shop name.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from cartrescue.config import Config, Incentive
from cartrescue.config.sequences import CodeSource
from cartrescue.errors import ConfigError, TemplateError
from cartrescue import survey as survey_links
from cartrescue.compose.incentives import placeholder
from cartrescue.compose.links import missing_utm, safe_url, utm_values
from cartrescue.model import Cart, Customer, LineItem
from cartrescue.pool_file import read_pool_file
from cartrescue.compose.render import (
    MAX_TIMEOUTS_PER_FILE,
    PARTS,
    SMS_PART,
    Renderer,
    did_you_mean,
    locale_candidates,
    missing_part,
    part_name,
    step_parts,
    subject_line,
    template_frame,
)
from cartrescue.sms_text import KINDS as SMS_KINDS
from cartrescue.sms_text import measure
from cartrescue.sms_text import problems as sms_problems
from cartrescue.sources.base import ProblemSink, ignore_problem
from cartrescue.sources.values import normalize_locale
from cartrescue.text import counted

MAX_SUBJECT = 78
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
TOKEN = "check-token-0123456789"

#: kind -> what it means; a problem's ``kind`` is one of these.
KINDS = {
    "syntax": "Jinja syntax error",
    "undefined": "undefined variable",
    "html": "HTML does not parse",
    "missing-text": "the plain-text part is missing",
    "missing-part": "the subject or HTML part is missing",
    "unsubscribe": "no unsubscribe link",
    "subject-length": f"subject longer than {MAX_SUBJECT} characters",
    "subject-empty": "empty subject",
    "leak": "None or unrendered Jinja markup in the output",
    "survey": "survey links missing, or without a valid token",
    "incentive": "a step's offer (its code, or any word of it) in no part of the message",
    "utm": "a link without the UTM parameters of links: in the config",
    "render": "any other error while rendering",
    **SMS_KINDS,
}
SAMPLE_SURVEY = "https://shop.example.com/cart-survey?token={token}"
SURVEY_SECRET = "templates-check-secret"

_FILE = re.compile(r"^(?P<locale>[A-Za-z]{2,3}(?:_[A-Za-z0-9]+)*)/(?P<name>[^/@_.][^/@]*?)(?:@(?P<variant>[A-Za-z0-9][A-Za-z0-9_-]*))?\.(?P<part>subject\.txt|sms\.txt|txt|html)$")
#: A file that looks like a message part of a locale (``pt-BR/<name>.<part>``) but that no run
#: reads; a folder that is no locale's (``partials/``) holds includes, and is left alone.
_PART_LIKE = re.compile(r"^(?P<folder>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)/(?P<base>[^/_][^/]*)"
                        r"\.(?:subject\.txt|sms\.txt|txt|html)$")
#: Any other file of a locale's folder: one whose stem is a template's (``en/reminder-1.htm``,
#: ``sv/reminder-1@b.text``) is a part with a mistyped ending, which no run reads; an editor's
#: backup (``~``) and a hidden file are left alone.
_OTHER_FILE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*/(?P<stem>(?P<template>[^/_.@][^/.@]*)(?:@[^/.]+)?)"
                         r"\.[^/]*[^/~]$")
_LEAK = re.compile(r"\bNone\b|\{\{|\}\}|\{%|%\}")
_NONE = re.compile(r"\bNone\b")
#: A style sheet's own braces (``@media (...) {.wrap{width:100%}}``) are CSS, not Jinja markup.
_STYLE = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.S | re.I)
#: The offer of a template no step configures; its code as long as codes get (13 characters:
#: the generated "CR-{random:8}" is 11), so a text message checked ahead fits a real one.
_SAMPLE_INCENTIVE = Incentive(kind="percent", value=Decimal("10"), code="SAMPLE10-CODE")


@dataclass(slots=True)
class Problem:
    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    cart: str | None = None
    count: int = 1  # how many fixture carts showed it

    @property
    def where(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "file": self.file, "line": self.line,
                "cart": self.cart, "count": self.count}


Offer = tuple[str | None, Incentive | None]  # (tier, incentive): what a step gives a tier
_Use = tuple[str | None, int, int, list[Offer], set[str]]  # (sequence, step, step count, offers, variants)


def base_arms(configured: Set[str], own: Set[str]) -> tuple[str, ...]:
    """The arms a locale's base files are rendered with: those of the step without files of
    their own there (``own``), as a run renders them; an arm with its own subject reads the base
    text in its own case, never the base subject. All of them when each has files of its own."""
    return tuple(sorted(configured - own) or sorted(configured))


def offer_label(tier: str | None, incentive: Incentive | None) -> str:
    """``percent 10 (high)``: an offer as the report names it."""
    if incentive is None:
        return "none"
    value = "" if incentive.kind == "free_shipping" else f" {incentive.value.normalize():f}"
    return f"{incentive.kind}{value}" + (f" ({tier})" if tier else "")


@dataclass(slots=True)
class Case:
    """One combination: template x locale x variant x step; each fixture cart is rendered with
    every offer of the step (no incentive, the step's incentive, each tier's own)."""

    template: str
    locale: str
    variant: str | None
    sequence: str | None  # None: the template is in the folder but no sequence uses it
    step: int
    step_count: int
    offers: list[Offer] = field(default_factory=lambda: [(None, None)])
    renders: int = 0
    seconds: float = 0.0
    files: tuple[str, ...] = ()
    problems: list[Problem] = field(default_factory=list)
    channel: str = "email"  # email (subject, text, HTML) or sms (the text message)
    segments: int = 0  # sms: the most segments a fixture cart's text took
    sent_as_sms: bool = True  # sms: a tier sends this step by SMS (else its length is a note, not a failure)
    # The base files of a step with variants: every arm renders them (where it has no file of its
    # own), so the fixture carts take the arms in turn; a run never renders them with variant None.
    arms: tuple[str, ...] = ()
    timed_out: str | None = None  # the file a render ran out of time in: the case's other renders are not tried

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def step_label(self) -> str:
        where = self.sequence or "(unused)"
        return f"{where} {self.step}/{self.step_count}"

    @property
    def incentive_label(self) -> str:
        return ", ".join(offer_label(tier, incentive) for tier, incentive in self.offers)

    @property
    def name(self) -> str:
        sms = " sms" if self.channel == "sms" else ""
        return f"{self.template}{sms} [{self.locale}] variant={self.variant or '-'} step={self.step_label}"

    @property
    def arms_rendered(self) -> list[str]:
        """The A/B arms whose customers this case's message is: a base case of an A/B step is
        rendered with the arms without files of their own (its ``variant`` is None, which a
        script read as "no variant"), a variant's own case with that one, else none."""
        return list(self.arms) or ([self.variant] if self.variant else [])

    def add(self, problem: Problem) -> None:
        for known in self.problems:
            if (known.kind, known.message, known.file, known.line) == (problem.kind, problem.message, problem.file, problem.line):
                known.count += 1
                return
        self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "template": self.template, "locale": self.locale, "variant": self.variant,
            "arms": self.arms_rendered, "sequence": self.sequence, "step": self.step, "step_count": self.step_count,
            "incentives": self.incentive_label, "renders": self.renders, "channel": self.channel,
            **({"segments": self.segments} if self.channel == "sms" else {}),
            "files": list(self.files), "ok": self.ok, "problems": [p.as_dict() for p in self.problems],
        }


@dataclass(slots=True)
class Report:
    cases: list[Case]
    carts: list[str]
    notes: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    # Rows of a ``--carts`` file that could not be read ("carts.csv:3: ..."): they fail the check
    # as they fail a run (exit 1); the carts they belonged to were not checked.
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Case]:
        return [case for case in self.cases if not case.ok]

    @property
    def ok(self) -> bool:
        return bool(self.cases) and not self.failed and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": {"cases": len(self.cases), "failed": len(self.failed), "carts": len(self.carts),
                       "renders": sum(case.renders for case in self.cases), "problems": len(self.problems)},
            "folders": self.folders, "carts": self.carts, "notes": self.notes, "problems": self.problems,
            "cases": [case.as_dict() for case in self.cases],
        }


# -- fixture carts ---------------------------------------------------------------------------

def _item(sku: str, name: str, quantity: int, price: str, image: bool = True, link: bool = True) -> LineItem:
    slug = sku.lower()
    return LineItem(sku=sku, name=name, quantity=quantity, unit_price=Decimal(price),
                    image_url=f"https://shop.example.com/img/{slug}.jpg" if image else None,
                    product_url=f"https://shop.example.com/p/{slug}" if link else None)


#: The edge carts' link back to their cart, as long as a real shop's (a Shopify cart link is
#: ~110 characters): a text message that fits only a short link must fail the check, not every
#: customer's message of a run (the links of the bundled examples are ~60).
SAMPLE_RECOVERY_URL = ("https://example-shop.myshopify.com/cart/c/Z2NwLWV1cm9wZS13ZXN0MTowMUhLTjJGN1Q1WDBCRkZRWk5N"
                       "NlpZVEc?key={key}")


def _cart(cart_id: str, customer: Customer, currency: str, items: Sequence[LineItem],
          recovery: bool = True) -> Cart:
    total = sum((item.line_total for item in items), Decimal("0"))
    key = cart_id.encode().hex()[:12].ljust(12, "0")  # the same length for every cart
    return Cart(id=cart_id, source="check", customer=customer, currency=currency, items=tuple(items), total=total,
                created_at=NOW - timedelta(hours=3), updated_at=NOW - timedelta(hours=2),
                recovery_url=SAMPLE_RECOVERY_URL.format(key=key) if recovery else None)


def edge_carts() -> list[tuple[Cart, int]]:
    """The edge cases every template must survive, each with the customer's previous orders."""
    long_name = ("Handwoven merino wool throw blanket with hand-knotted fringe, extra large 220 × 260 cm, "
                 "undyed natural grey, limited winter edition, certified organic, gift-wrapped on request "
                 "(ships in a reusable linen bag)")
    cyrillic = Customer("aliya@example.kz", first_name="Әлия", last_name="Нұрмағамбетова", locale="kk")
    return [
        (_cart("edge-one-item", Customer("anna@example.com", first_name="Anna", last_name="Berg"), "EUR",
               [_item("MUG-1", "Ceramic mug", 1, "12.50")]), 2),
        (_cart("edge-30-items", Customer("bulk@example.com", first_name="Sam"), "SEK",
               [_item(f"SKU-{n:02}", f"Product number {n}", 1 + n % 4, f"{19 + n * 7}.90", image=n % 3 != 0)
                for n in range(1, 31)]), 0),
        (_cart("edge-no-image", Customer("guest@example.com", is_guest=True), "GBP",
               [_item("GIFT", "Gift card", 1, "25.00", image=False, link=False),
                _item("CARD", "Greeting card", 2, "3.50", image=False, link=False)], recovery=False), 0),
        (_cart("edge-long-names", Customer("long@example.com", first_name="Maximilianna-Alexandrina-Josephine",
                                           last_name="von Habsburg-Lothringen-Wittelsbach"), "USD",
               [_item("THROW-MERINO-LTD-220X260-GREY-ORGANIC", long_name, 3, "1249.99"),
                _item("X", "Ü" * 120, 1, "0.99")]), 5),
        (_cart("edge-cyrillic", cyrillic, "RUB",
               [_item("SAMOVAR", "Самовар электрический «Тульский», 3 л, никелированный", 1, "15990.00"),
                _item("KESE", "Қазақ кесесі, ою-өрнекті (ұлттық үлгі), 6 дана", 2, "4500.00")]), 1),
        (_cart("edge-huf", Customer("peter@example.hu", first_name="Péter", locale="hu"), "HUF",
               [_item("KAVE-1", "Kávéfőző, rozsdamentes acél", 2, "123456"),
                _item("BOGRE", "Bögre „Balaton”", 4, "3990")]), 0),
        (_cart("edge-kzt", Customer("nurlan@example.kz", first_name="Нұрлан", locale="kk"), "KZT",
               [_item("DOMBRA", "Домбыра, қолдан жасалған", 1, "185000")]), 3),
        (_cart("edge-jpy", Customer("yuki@example.jp", first_name="Yuki"), "JPY",
               [_item("TEA-1", "Sencha green tea 100 g", 3, "1200"), _item("POT", "急須 (kyusu teapot)", 1, "8800")]), 0),
        # Each name a template may print into an unquoted attribute (``title={{ … }}``) carries
        # a handler: the first name and the greeting are what templates print most.
        (_cart("edge-markup", Customer("mark@example.com", first_name='Zoë "Z" <O\'Brien> & co onfocus=alert(1)',
                                       last_name="x onmouseover=alert(1)"), "EUR",
               [_item("MARK", 'Mug <Large> & "Co" {{ not a variable }} onclick=alert(1)', 1, "9.99")]), 1),
    ]


def example_carts(path: Path | None = None, limit_per_shape: int = 1,
                  on_problem: ProblemSink = ignore_problem, config: Config | None = None) -> list[tuple[Cart, int]]:
    """One cart of every shape (currency, named or not, 1 / 2-5 / 6+ items) from the bundled
    examples (examples/carts.csv in a checkout), or from ``path``; its rows that cannot be read
    go to ``on_problem``, as a run's do. ``config``: a shop whose CSV source ``path`` is read as
    (its encoding, delimiter, columns: the shop's own export); None, or a database source: the
    generic format in UTF-8."""
    from zoneinfo import ZoneInfo

    from cartrescue.sources.csv import CsvSource

    if path is None:
        from cartrescue.resources import shipped_file

        path = shipped_file("examples/carts.csv")  # a checkout's, or the installed copy
        if path is None:
            return []
    seen: dict[tuple[Any, ...], int] = {}
    picked: list[tuple[Cart, int]] = []
    if config is not None and config.source.is_csv:
        from cartrescue.sources import csv_source

        source = csv_source(config, path, on_problem, carts_key="--carts")
    else:
        source = CsvSource(path, None, shop_tz=ZoneInfo("UTC"), on_problem=on_problem)
    try:
        for cart in source.carts(None):  # type: ignore[arg-type]
            if not cart.items:
                continue
            size = 1 if len(cart.items) == 1 else 5 if len(cart.items) <= 5 else 6
            shape = (cart.currency, bool(cart.customer.first_name), size)
            if seen.get(shape, 0) < limit_per_shape:
                seen[shape] = seen.get(shape, 0) + 1
                picked.append((cart, len(picked) % 2))
    finally:
        source.close()
    return picked


# -- HTML parsing ------------------------------------------------------------------------------

class _HtmlCheck(HTMLParser):
    """Well-formedness as email clients need it, plus the links of the document."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                      "source", "track", "wbr"})
    OPTIONAL_END = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option",
                              "colgroup", "caption", "head", "body", "html"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, int, str]] = []
        self.errors: list[tuple[int, str, str]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attributes(tag, attrs)
        if tag not in self.VOID:
            self.stack.append((tag, self.getpos()[0], self.get_starttag_text() or f"<{tag}"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attributes(tag, attrs)

    def _attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """The links, and event handlers: no e-mail template has one of its own, so an ``on…=``
        is a value printed into an unquoted attribute (``title={{ name }}``), which a customer
        named ``x onmouseover=…`` turns into script."""
        if tag == "a":
            self.links += [value for name, value in attrs if name == "href" and value]
        handler = next((name for name, _value in attrs if name.startswith("on")), None)
        if handler is not None:
            self.errors.append((self.getpos()[0], f"<{tag}> has an event handler {handler}=: a value printed into "
                                "an unquoted attribute? quote it: title=\"{{ … }}\"", self.get_starttag_text() or ""))

    def handle_endtag(self, tag: str) -> None:
        line = self.getpos()[0]
        if tag in self.VOID:
            return  # </br> and friends: browsers ignore them
        open_tags = [name for name, _line, _text in self.stack]
        if tag not in open_tags:
            self.errors.append((line, f"stray end tag </{tag}> (nothing open to close)", f"</{tag}>"))
            return
        while self.stack:
            name, opened, text = self.stack.pop()
            if name == tag:
                return
            if name not in self.OPTIONAL_END:
                self.errors.append((line, f"</{tag}> closes <{name}> opened on rendered line {opened}", text))

    def finish(self) -> list[tuple[int, str, str]]:
        rest = self.rawdata.strip()  # what feed() held back: an unfinished tag, comment or declaration
        if rest.startswith("<"):
            self.errors.append((self.getpos()[0], f"unterminated markup at the end: {rest[:40]!r}", rest[:40]))
        self.close()
        for name, opened, text in self.stack:
            if name not in self.OPTIONAL_END:
                self.errors.append((opened, f"<{name}> opened on rendered line {opened} is never closed", text))
        return self.errors


def html_problems(html: str) -> tuple[list[tuple[int, str, str]], list[str]]:
    """(rendered line, error, the markup it blames) triples and the document's link targets.
    The markup is what :func:`source_line` looks for in the template file."""
    checker = _HtmlCheck()
    try:
        checker.feed(html)
        errors = checker.finish()
    except Exception as exc:  # noqa: BLE001 - HTMLParser is lenient; anything it raises is a parse failure
        return [(checker.getpos()[0], f"cannot parse: {exc}", "")], checker.links
    return errors, checker.links


def source_line(source: str, markup: str, shared: Sequence[str] = ()) -> int | None:
    """The line of a template's source that wrote ``markup`` (a tag as it was rendered), when
    exactly one line has it. An HTML error is found in the rendered message, whose lines are not
    the file's (a layout and macros come before it): without this the check named only the
    rendered line, which a developer looked for in vain in the file it named. A tag that printed
    a value (``<a href="{{ … }}">``) or that several lines write gives None: no line is better
    than a wrong one. ``shared`` are the layout's and macros' sources: markup they write too may
    be theirs, so it gets no line of this file either."""
    if not markup.strip() or any(markup in text for text in shared):
        return None
    lines = [number for number, text in enumerate(source.splitlines(), 1) if markup in text]
    return lines[0] if len(lines) == 1 else None


def markup_origin(file: str, source: str, markup: str, shared: Mapping[str, str]) -> tuple[str, int | None]:
    """The file and line that wrote ``markup``: :func:`source_line` of the part ``file``, or,
    when the part has it nowhere, the one line of one ``shared`` file (``{name: source}``) that
    has it. A tag a shop's own macro file (imported by its layout) left stray was blamed on
    every part, none of which has it, with no line; markup on more than one line stays the
    part's, with no line, as :func:`source_line` gives it."""
    if markup.strip() and markup not in source:
        hits = [(name, number) for name, text in shared.items()
                for number, line in enumerate(text.splitlines(), 1) if markup in line]
        if len(hits) == 1:
            return hits[0]
    return file, source_line(source, markup, list(shared.values()))


# -- the check -----------------------------------------------------------------------------------

def _covers(asked: str, folder: str) -> bool:
    """Does ``--locale asked`` select the templates of ``folder``? Its own (``sv``), the one its
    customers get (``sv_SE`` -> ``sv``) and the regional ones under it (``sv`` -> ``sv_FI``)."""
    return folder == asked or asked.startswith(folder + "_") or folder.startswith(asked + "_")


#: A template that reads ``variant`` ({% if variant == "b" %}): its arms may differ without files of their own.
_READS_VARIANT = re.compile(r"\bvariant\b")


class TemplateChecker:
    """Builds the cases of one config (optionally one folder) and runs them."""

    def __init__(self, config: Config, *, carts: Sequence[tuple[Cart, int]] | None = None,
                 examples: Path | None = None) -> None:
        self.config = config
        self.renderer = Renderer(config, none_shown=True)
        self.env = self.renderer.env
        self.available = set(self.env.list_templates())
        self.fixtures = list(carts) if carts is not None else edge_carts() + example_carts(examples)
        self.unsubscribe_url = config.shop.unsubscribe_url.replace("{token}", TOKEN)
        self.notes: list[str] = []
        self._pool_codes: dict[str, str] = {}  # pool -> sample_code
        # file -> (messages it ran out of time for, the line, how long): as a run, a file that did
        # for MAX_TIMEOUTS_PER_FILE messages fails its later cases at once (a loop in _layout.html
        # cost every e-mail case its 10 s)
        self._timeouts: dict[str, tuple[int, int | None, str]] = {}
        self._references: dict[str, set[str]] = {}  # file -> the files it extends, includes, imports
        self._parsed: tuple[str, tuple[list[tuple[int, str, str]], list[str]]] | None = None  # _html_problems
        # The survey's links render with the config's page, else a sample one (so the shipped
        # templates' links are checked whether or not a shop has switched the survey on).
        self.survey_config = config if config.survey.url else config.model_copy(
            update={"survey": config.survey.model_copy(update={"url": SAMPLE_SURVEY})})

    # what exists ------------------------------------------------------------------------------

    def files(self, sms: bool = False) -> dict[str, dict[str, set[str | None]]]:
        """``{template: {locale: {variant or None, ...}}}`` for every part file found (of the
        text messages with ``sms``, else of the e-mails)."""
        found: dict[str, dict[str, set[str | None]]] = {}
        templates = {step.template for sequence in self.config.sequences.values() for step in sequence.steps}
        templates |= {match["name"] for name in self.available if (match := _FILE.match(name))}
        for name in sorted(self.available):
            match = _FILE.match(name)
            if match and (match["part"] == SMS_PART) == sms:
                found.setdefault(match["name"], {}).setdefault(match["locale"], set()).add(match["variant"])
                canonical = normalize_locale(match["locale"])
                if canonical != match["locale"]:  # fr_ca: a customer's fr-CA is read as fr_CA, the folder never
                    self.notes.append(f"{name}: not read by any run: a locale folder is named as CLDR writes "
                                      f"it ({canonical})")
            elif match is None and not sms and (like := _PART_LIKE.match(name)):
                folder = like["folder"]
                why = (f"a locale folder is named with _, not - ({folder.replace('-', '_')})" if "-" in folder
                       else "its name is not <locale>/<template>[@<variant>].<part>")
                self.notes.append(f"{name}: not read by any run: {why}")
            elif match is None and not sms and (other := _OTHER_FILE.match(name)) and other["template"] in templates:
                stem = other["stem"]  # reminder-1.htm beside a shipped reminder-1.html: the shop's edits never went out
                self.notes.append(f"{name}: not read by any run: a message's parts are {stem}.subject.txt, "
                                  f"{stem}.txt, {stem}.html and {stem}.sms.txt")
        return found

    def _check_locales(self, locales: Iterable[str]) -> None:
        """A ``--locale`` that no template folder serves is a usage error naming the folders:
        it checked nothing and said "0 of 0 failed", exit 1."""
        known = {locale for per in (*self.files().values(), *self.files(sms=True).values()) for locale in per}
        for asked in locales:
            normalized = normalize_locale(asked) or asked
            if not any(_covers(normalized, locale) for locale in known):
                raise ConfigError(f"--locale {asked}: no template folder serves it (the folders: "
                                  f"{', '.join(sorted(known)) or 'none'})")

    def _check_templates(self, templates: Iterable[str]) -> None:
        """A ``--template`` that no folder has and no step uses is a usage error naming the
        templates (a typo in a CI job), as an unknown ``--locale`` is: it failed as a template
        missing its parts, exit 1, as a broken one does. One a step uses stays a failing case."""
        used = {step.template for sequence in self.config.sequences.values() for step in sequence.steps}
        known = used | {match["name"] for name in self.available if (match := _FILE.match(name))}
        for asked in templates:
            if asked not in known:
                raise ConfigError(f"--template {asked}: no such template (the templates: "
                                  f"{', '.join(sorted(known)) or 'none'})")

    def _note_unserved_locales(self) -> None:
        """A note for each locale the config names (``shop.default_locale``, a Magento store's in
        ``store_locales``) that no template folder serves: its customers silently get the
        fallback's messages (English, for a German shop whose ``de`` folder is missing)."""
        folders = {locale for per in self.files().values() for locale in per}
        default = self.config.shop.default_locale
        named = [("shop.default_locale", default)]
        stores = self.config.source.options.get("store_locales") or {}
        named += [(f"source.options.store_locales.{store}", locale) for store, locale in stores.items()]
        for key, locale in named:
            parts = (locale or "").replace("-", "_").split("_")
            own = {"_".join(parts[:end]) for end in range(1, len(parts) + 1)}  # en_GB: en_GB, en (no fallback)
            if locale and not folders & own:
                gets = next((c for c in locale_candidates(locale, default) if c in folders), "en")
                self.notes.append(f"{key} {locale}: no template folder serves it (the folders: "
                                  f"{', '.join(sorted(folders)) or 'none'}), so its customers get the {gets} templates")

    def own_templates(self) -> set[str]:
        """Templates in the config's own folder (none without one: then only what sequences use)."""
        if self.config.templates is None:
            return set()
        first = self.renderer.folders[0]
        names = set()
        for path in first.rglob("*"):
            match = _FILE.match(path.relative_to(first).as_posix()) if path.is_file() else None
            if match:
                names.add(match["name"])
        return names

    def cases(self, templates: Iterable[str] | None = None, locales: Iterable[str] | None = None) -> list[Case]:
        """Every e-mail case, then every text-message case: the steps a tier sends by e-mail (or
        webhook) render the e-mail parts; those a tier sends by SMS, and every template with
        ``.sms.txt`` files, render the text."""
        used: dict[str, list[_Use]] = {}  # the steps a run renders as an e-mail, a text's fallback too
        mailed: dict[str, list[_Use]] = {}  # ... those a tier sends by e-mail itself
        used_sms: dict[str, list[_Use]] = {}
        for seq_name, sequence in self.config.sequences.items():
            users = [t for t in self.config.priority.tiers if t.sequence == seq_name]
            tiers = [t.name for t in users]
            for number, step in enumerate(sequence.steps, 1):
                channels = {step.channel_for(t) for t in users} if users else {step.channel or "email"}
                offers: list[Offer] = [(None, None)]
                generic = [t for t in tiers if t not in step.tier_incentives]
                if step.incentive is not None and (generic or not tiers):
                    offers.append((None, step.incentive))
                for tier, incentive in step.tier_incentives.items():
                    if incentive is not None and all(incentive != known for _t, known in offers):
                        offers.append((tier, incentive))
                use = (seq_name, number, len(sequence.steps), offers, set(step.variants))
                if channels & {"email", "webhook"}:
                    mailed.setdefault(step.template, []).append(use)
                if self._mailed(seq_name, number, channels, bool(users)):
                    used.setdefault(step.template, []).append(use)
                if "sms" in channels:
                    used_sms.setdefault(step.template, []).append(use)
        wanted = set(templates) if templates else set(used) | self.own_templates()
        sms_files = self.files(sms=True)
        wanted_sms = set(templates) & set(sms_files) if templates else \
            set(used_sms) | (set(sms_files) & (set(mailed) | self.own_templates()))
        cases = self._cases(wanted, self.files(), used, "email", locales, used)
        sms_cases = self._cases(wanted_sms, sms_files, {**mailed, **used_sms}, "sms", locales, used_sms)
        for case in sms_cases:
            case.sent_as_sms = case.template in used_sms
        return cases + sms_cases

    def _mailed(self, sequence: str, number: int, channels: Set[str], used_by_tiers: bool) -> bool:
        """Does a run render step ``number`` (1-based) of ``sequence`` as an e-mail? Where a tier
        sends it by e-mail or webhook, and also where a text or call step goes by e-mail to a cart
        it cannot reach (``eligibility.channel_fallback``, a tier's ``over_budget: email``), as
        :func:`~cartrescue.compose.render.step_parts` has it: such a step's e-mail, rendered with
        its own tier and sequence, went unchecked, and failed every such cart of a run."""
        if not used_by_tiers:
            return bool(channels & {"email", "webhook"})
        return any(parts == PARTS for parts, _why in step_parts(self.config, sequence, number - 1))

    def _cases(self, wanted: set[str], files: dict[str, dict[str, set[str | None]]], used: dict[str, list[_Use]],
               channel: str, locales: Iterable[str] | None, sent: Mapping[str, list[_Use]]) -> list[Case]:
        """The cases of one channel's parts (``files``); ``sent``: the steps that send a template
        on that channel, whose arms the notes on variant files speak of (a text's arms are told
        by its ``.sms.txt`` files, an e-mail's by its subject, text and HTML files)."""
        locale_filter = {normalize_locale(loc) or loc for loc in locales} if locales else None
        cases: list[Case] = []
        # (template, variant) -> the locales where that variant renders the base files: its
        # customers are counted as the variant but read the control, which blurs the A/B result.
        fallbacks: dict[tuple[str, str], list[str]] = {}
        unused: dict[tuple[str, str], list[str]] = {}  # variant files no step of the template configures
        for template in sorted(wanted):
            by_locale = files.get(template, {})
            if not by_locale:  # a step names it (a misspelt name?) but no folder has its files
                uses = used.get(template)
                sequence, number, count = (uses[0][0], uses[0][1], uses[0][2]) if uses else (None, 1, 1)
                case = Case(template, "-", None, sequence, number, count, channel=channel)
                part = f"{template}.sms.txt" if channel == "sms" else template
                case.add(Problem("missing-part", f"template {part!r} has no files in any locale "
                                 f"(looked in {', '.join(str(f) for f in self.renderer.folders)})"))
                cases.append(case)
                continue
            steps = used.get(template) or [(None, 1, 1, [(None, None), (None, _SAMPLE_INCENTIVE)], set())]
            arms_sent = {v for step in sent.get(template, ()) for v in step[4]}
            self._note_same_message_for_every_arm(template, by_locale, arms_sent, channel)
            for locale in sorted(by_locale):
                if locale_filter is not None and not any(_covers(asked, locale) for asked in locale_filter):
                    continue
                on_disk = {v for v in by_locale[locale] if v}
                if template in used:
                    named = {v for step in steps for v in step[4]}
                    for variant in sorted(on_disk - named):
                        unused.setdefault((template, variant), []).append(locale)
                for seq_name, number, count, offers, configured in steps:
                    # A variant's own files render only where a run reads them: for a step that
                    # configures the variant (another sequence's step of the template, without
                    # variants, never does), or for a template no step uses yet.
                    for arm in [None, *sorted(on_disk & configured if seq_name else on_disk)]:
                        cases.append(Case(template, locale, arm, seq_name, number, count, list(offers),
                                          channel=channel, arms=() if arm else base_arms(configured, on_disk)))
                # a variant with files in no locale is a base arm (the control): fine
                with_files = {v for variants in by_locale.values() for v in variants if v}
                for variant in sorted((arms_sent & with_files) - on_disk):
                    fallbacks.setdefault((template, variant), []).append(locale)
        label = " (sms)" if channel == "sms" else ""
        for (template, variant), where in fallbacks.items():
            self.notes.append(f"{template}{label}: variant {variant} has no files of its own in {', '.join(where)}: "
                              f"those customers are counted as {variant} but get the base "
                              f"{'text message' if channel == 'sms' else 'template'}")
        for (template, variant), where in unused.items():
            configured_names = sorted({v for step in used[template] for v in step[4]})
            alike = next((v for v in configured_names if v.lower() == variant.lower()), None)
            hint = (f" (did you mean {alike}? variant names are case-sensitive)" if alike else
                    f" (its steps' variants: {', '.join(configured_names)})" if configured_names
                    else " (its steps have no variants)")
            self.notes.append(f"{template}@{variant} in {', '.join(where)}: no step configures variant {variant}, so "
                              f"no customer gets these files{hint}")
        return cases

    def _note_same_message_for_every_arm(self, template: str, by_locale: dict[str, set[str | None]],
                                         configured: set[str], channel: str) -> None:
        """A note when the steps that send ``template`` on ``channel`` give it variants, none has
        files of its own for that channel's parts in any locale (``by_locale``) and no file it
        renders reads ``variant``: every arm gets the same message, and the A/B report compares
        two groups that read the same thing. An e-mail's arms are told apart by their e-mail
        files, a text's by their ``.sms.txt``: an ``@b.sms.txt`` makes no two e-mails differ."""
        if not configured or configured & {v for variants in by_locale.values() for v in variants if v}:
            return
        parts = (SMS_PART,) if channel == "sms" else PARTS
        sources = [self._source(part_name(locale, template, part)) for locale in by_locale for part in parts]
        if any(_READS_VARIANT.search(source) for source in (*sources, *self._shared_sources())):
            return
        arms, last = sorted(configured), max(configured)
        if channel == "sms":
            self.notes.append(f"{template} (sms): none of its variants ({', '.join(arms)}) has a text-message file "
                              f"of its own and its files do not read `variant`: every arm gets the same text (add "
                              f"{template}@{last}.{SMS_PART} files, or branch on {{% if variant == \"{last}\" %}})")
            return
        self.notes.append(f"{template}: none of its variants ({', '.join(arms)}) has e-mail files of its own and its "
                          f"files do not read `variant`: every arm gets the same e-mail (add {template}@{last}.<part> "
                          f"files, or branch on {{% if variant == \"{last}\" %}})")

    def tiers(self, case: Case) -> list[str]:
        """The tier names a case renders with, one fixture cart after the other: every tier on its
        sequence (a template may branch on ``tier``), else the lowest tier."""
        tiers = [t.name for t in self.config.priority.tiers if t.sequence == case.sequence]
        return tiers or [self.config.priority.tiers[-1].name]

    # running -----------------------------------------------------------------------------------

    def run(self, templates: Iterable[str] | None = None, locales: Iterable[str] | None = None) -> Report:
        if locales:
            self._check_locales(locales)
        if templates:
            templates = list(templates)
            self._check_templates(templates)
        cases = self.cases(templates, locales)
        self._note_unserved_locales()
        for case in cases:
            if case.locale != "-":
                self.run_case(case)
        folders = [str(folder) for folder in self.renderer.folders]
        return Report(cases, [cart.id for cart, _orders in self.fixtures], list(dict.fromkeys(self.notes)), folders)

    def run_case(self, case: Case) -> None:
        from jinja2 import TemplateNotFound, TemplateSyntaxError

        started = time.perf_counter()
        parts_of_case = (SMS_PART,) if case.channel == "sms" else PARTS
        files = tuple(self.renderer.part_file(case.template, case.locale, part, case.variant) for part in parts_of_case)
        case.files = files
        compiled = []
        for part, name in zip(parts_of_case, files):
            try:
                compiled.append(self.env.get_template(name))
            except TemplateNotFound as exc:
                if exc.name == name:
                    kind = "missing-text" if part == "txt" else "missing-part"
                    label = {"txt": "text", "html": "HTML", "subject.txt": "subject", SMS_PART: "SMS"}[part]
                    case.add(Problem(kind, f"no {label} part: {name} does not exist: "
                                     f"{self._missing_means(case, parts_of_case[0], name)}", name))
                else:
                    case.add(Problem("render", self._not_found(name, exc), name))
                compiled.append(None)
            except TemplateSyntaxError as exc:
                case.add(Problem("syntax", f"syntax error: {self._explain(exc, exc.name or name, exc.lineno, {})}",
                                 exc.name or name, exc.lineno))
                compiled.append(None)
        if any(template is None for template in compiled) or self._skip_runaway(case, files):
            case.seconds = time.perf_counter() - started
            return
        tiers = self.tiers(case)
        # Without a survey page in the config, a run renders every message with ``survey`` None:
        # every other fixture cart renders so (the {% else %} a template may have), the others
        # with the sample page (the links the shipped templates make).
        survey_off = not self.config.survey.url
        for number, ((offer_tier, incentive), (cart, previous)) in enumerate(itertools.product(case.offers,
                                                                                                self.fixtures)):
            code = self.sample_code(incentive.codes) if incentive is not None and incentive.codes is not None else None
            survey = None if survey_off and number % 2 else survey_links.links(
                self.survey_config, SURVEY_SECRET, cart.key, case.step, case.locale)
            tier = offer_tier or tiers[number % len(tiers)]
            variant = case.arms[number // len(tiers) % len(case.arms)] if case.arms else case.variant
            context = self.renderer.context(
                cart, locale=case.locale, step=case.step, step_count=case.step_count, tier=tier,
                previous_orders=previous, unsubscribe_url=self.unsubscribe_url, incentive=incentive, now=NOW,
                variant=variant, code=code, survey=survey, sequence=case.sequence, channel=case.channel,
                tags=case.channel != "sms" or self.config.sms.link_tags)
            parts = self.render_parts(case, cart, files, context)
            case.renders += 1
            if case.timed_out:  # each of the others would take as long (a loop in _layout.html: hours)
                left = len(case.offers) * len(self.fixtures) - case.renders
                if left:
                    self.notes.append(f"{case.timed_out} ({case.locale}, {case.step_label}): {left} more fixture "
                                      "render(s) not tried after one ran out of time")
                break
            if case.channel == "sms" and len(parts) == 1:
                self.inspect_sms(case, cart, files[0], parts[0])
            elif len(parts) == len(PARTS):
                self.inspect(case, cart, files, *parts, tier=tier, variant=variant, context=context)
                if survey is not None:
                    self.inspect_survey(case, cart, files, parts[1], parts[2])
            if incentive is not None and case.sequence is not None and len(parts) == len(files):
                self.inspect_offer(case, cart, files, parts, offer_label(offer_tier, incentive), code or incentive.code,
                                   context)
        case.seconds = time.perf_counter() - started

    def _missing_means(self, case: Case, first: str, name: str) -> str:
        """What a run does without the part file ``name``, and what to do. ``first`` is the part
        a customer's locale is found by (the subject, a text message's file): without it in the
        case's folder, the folder's other files are never read and its customers get another
        folder's messages, which the bare "does not exist" did not say. Without another part a
        run fails each message of the folder's customers, as a run words it
        (:func:`~cartrescue.compose.render.missing_part`)."""
        try:
            instead = self.renderer.resolve_locale(case.locale, case.template, first)
        except TemplateError:
            return f"no folder a customer falls back to has {case.template}.{first} either (add {name})"
        if instead != case.locale:
            return (f"a run finds a customer's locale by {case.template}.{first}, so {case.locale} customers get "
                    f"the {instead} {case.template} and no file of {case.locale}/ for it is read "
                    f"(add {part_name(case.locale, case.template, first)})")
        return missing_part(name).removeprefix("no such file: ")

    def sample_code(self, source: CodeSource) -> str:
        """The code a check prints for a per-recipient pool: a pattern's placeholder (as long as its
        codes), or as many X as a pool file's longest code, since a text message must fit the
        longest one a customer can get (a file that cannot be read: the run's placeholder)."""
        if source.file is None:
            return placeholder(source)
        if source.pool not in self._pool_codes:
            try:
                longest = max(map(len, read_pool_file(self.config.path(source.file))), default=0)
            except ConfigError:
                longest = 0
            self._pool_codes[source.pool] = "X" * longest if longest else placeholder(source)
        return self._pool_codes[source.pool]

    def render_parts(self, case: Case, cart: Cart, files: tuple[str, ...], context: dict[str, Any]) -> list[str]:
        """The case's parts for one cart, rendered as a run renders them (its limits: size,
        ``range()`` and time, each per message); each failure a Problem of the case."""
        from jinja2 import TemplateNotFound, TemplateRuntimeError, TemplateSyntaxError, UndefinedError
        from jinja2.sandbox import SecurityError

        parts: list[str] = []
        self.renderer.budget.reset()
        with self.renderer.deadline as deadline:
            clocked = deadline.armed  # the time is the message's, as in a run: once it is up, so is the message
            for name in files:
                try:
                    if case.channel == "sms":  # as a run renders it: values on one line, long names left out
                        parts.append(self.renderer.render_sms(case.template, case.locale, context, case.variant,
                                                              self.config.sms.max_segments, raw_errors=True))
                        continue
                    parts.append(self.renderer.render_file(name, context))  # its size limit too
                    if name == files[0]:  # the text and HTML parts see the subject, as in a run (Renderer.render)
                        context["subject"] = subject_line(parts[0])
                except TemplateError as exc:  # a limit of a message (render.MAX_PART_CHARS, its time)
                    file, line = template_frame(exc, self.renderer.folders, name)  # where it was met
                    case.add(Problem("render", str(exc), file, line, cart.id))
                    if clocked and not deadline.armed:  # the rest ran without a clock: a loop there never ended
                        case.timed_out = file
                        count = self._timeouts.get(file, (0, None, ""))[0] + 1
                        self._timeouts[file] = (count, line, getattr(exc, "spent", f"more than {deadline.seconds:g} s"))
                        break
                except UndefinedError as exc:
                    file, line = template_frame(exc, self.renderer.folders, name)
                    case.add(Problem("undefined", f"undefined variable: {self._explain(exc, file, line, context)}",
                                     file, line, cart.id))
                except TemplateSyntaxError as exc:  # in an included file, compiled on first use: no cart's fault
                    file = exc.name or name
                    case.add(Problem("syntax", f"syntax error: {self._explain(exc, file, exc.lineno, context)}", file,
                                     exc.lineno))
                except TemplateNotFound as exc:
                    file, line = template_frame(exc, self.renderer.folders, name)
                    case.add(Problem("render", self._not_found(file, exc), file, line, cart.id))
                except SecurityError as exc:
                    file, line = template_frame(exc, self.renderer.folders, name)
                    case.add(Problem("render", f"not allowed in the sandbox: {exc}", file, line, cart.id))
                except TemplateRuntimeError as exc:  # a filter missing, met inside an {% if %} only when rendered
                    file, line = template_frame(exc, self.renderer.folders, name)
                    case.add(Problem("render", self._explain(exc, file, line, context), file, line, cart.id))
                except Exception as exc:  # noqa: BLE001 - a filter or test failing on this cart's data
                    file, line = template_frame(exc, self.renderer.folders, name)
                    case.add(Problem("render", f"{type(exc).__name__}: {exc}", file, line, cart.id))
        return parts

    def _skip_runaway(self, case: Case, files: Sequence[str]) -> bool:
        """Fail ``case`` at once when a file it renders (or extends, includes, imports) ran out of
        time for :data:`MAX_TIMEOUTS_PER_FILE` messages of this check already, as a run does."""
        spent = {file: timeout for file, timeout in self._timeouts.items() if timeout[0] >= MAX_TIMEOUTS_PER_FILE}
        if not spent:
            return False
        for file in self._files_used(files):
            if file in spent:
                _count, line, took = spent[file]
                case.add(Problem("render", f"not rendered: it took {took} for {MAX_TIMEOUTS_PER_FILE} messages of "
                                 "this check already (a runaway loop?)", file, line))
                case.timed_out = file
                return True
        return False

    def _files_used(self, files: Sequence[str]) -> list[str]:
        """``files`` and every file they extend, include or import, by name (a name computed
        from values is not followed)."""
        from jinja2 import meta

        seen: list[str] = []
        todo = list(files)
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            seen.append(name)
            if name not in self._references:
                try:
                    parsed = self.env.parse(self.env.loader.get_source(self.env, name)[0])  # type: ignore[union-attr]
                    self._references[name] = {ref for ref in meta.find_referenced_templates(parsed) if ref}
                except Exception:  # noqa: BLE001 - missing or broken: its own case says so
                    self._references[name] = set()
            todo.extend(sorted(self._references[name]))
        return seen

    def _explain(self, exc: Exception, file: str, line: int | None, context: dict[str, Any]) -> str:
        """Jinja's message, as a run words it (:meth:`Renderer.explain`: the close names that exist)."""
        return self.renderer.explain(exc, file, line, context)

    def _not_found(self, name: str, exc: Exception) -> str:
        """A layout, include or macro file that is missing, and the close file names there are."""
        missing = str(getattr(exc, "name", exc))
        return f"{name} needs template {missing!r}, which does not exist{did_you_mean(missing, self.available)}"

    def inspect_sms(self, case: Case, cart: Cart, file: str, text: str) -> None:
        """A text message: segments within ``sms.max_segments``, the opt-out keyword, the shop's
        name, no ``None`` or Jinja markup."""
        case.segments = max(case.segments, measure(text).segments)
        for kind, message in sms_problems(text, self.config.shop.name, self.config.sms.max_segments):
            if kind == "sms-length" and not case.sent_as_sms:  # checked ahead of the day a tier sends it
                self.notes.append(f"{file}: longer than sms.max_segments ({self.config.sms.max_segments}) for some "
                                  f"carts; no tier sends {case.template} by SMS yet, so it does not fail the check")
                continue
            case.add(Problem(kind, message, file, None, cart.id))
        names = {item.name for item in cart.items} | {cart.customer.first_name or "", cart.customer.last_name or ""}
        for match in _LEAK.finditer(text):
            if not any(match.group(0) in name for name in names):
                case.add(Problem("leak", f"{match.group(0)!r} in the text message", file, None, cart.id))
                break

    def inspect(self, case: Case, cart: Cart, files: tuple[str, ...], subject: str, text: str, html: str, *,
                tier: str, variant: str | None, context: dict[str, Any]) -> None:
        subject_file, text_file, html_file = files
        line = " ".join(subject.split())
        if not line:
            case.add(Problem("subject-empty", "the subject is empty", subject_file, None, cart.id))
        elif len(line) > MAX_SUBJECT:
            case.add(Problem("subject-length", f"subject is {len(line)} characters (max {MAX_SUBJECT}): {line!r}",
                             subject_file, None, cart.id))
        if not text.strip():
            case.add(Problem("missing-text", "the text part renders empty", text_file, None, cart.id))
        elif self.unsubscribe_url not in text:
            case.add(Problem("unsubscribe", "no unsubscribe link in the text part ({{ unsubscribe_url }})",
                             text_file, None, cart.id))
        errors, links = self._html_problems(html)
        source, shared = (self._source(html_file), self._shared_files()) if errors else ("", {})
        for number, error, markup in errors[:3]:
            line_said = "" if f"rendered line {number}" in error else f" (rendered line {number})"  # said once
            case.add(Problem("html", f"HTML does not parse: {error}{line_said}",
                             *markup_origin(html_file, source, markup, shared), cart.id))
        if self.unsubscribe_url not in links:
            case.add(Problem("unsubscribe", 'no unsubscribe link in the HTML part (<a href="{{ unsubscribe_url }}">)',
                             html_file, None, cart.id))
        self.inspect_utm(case, cart, html_file, links, tier, variant)
        names = {item.name for item in cart.items} | {cart.customer.first_name or "", cart.customer.last_name or ""}
        for file, output in ((subject_file, subject), (text_file, text), (html_file, _STYLE.sub("", html))):
            for match in _LEAK.finditer(output):
                if any(match.group(0) in name for name in names):  # a fixture's own text
                    continue
                if match.group(0) == "None" and not self._printed_none(file, output, context):
                    continue
                around = output[max(0, match.start() - 25):match.end() + 25].replace("\n", " ")
                where: tuple[str, int | None] = (file, None)
                advice = ""
                if match.group(0) == "None":
                    with self.renderer.deadline:
                        where = self.renderer.none_line(file, context)
                    advice = (": a value that is None for this cart, printed as is (a run prints nothing there): "
                              "test it first, {% if … %}")
                case.add(Problem("leak", f"{match.group(0)!r} in the output: …{around}…{advice}", *where, cart.id))
                break

    def _html_problems(self, html: str) -> tuple[list[tuple[int, str, str]], list[str]]:
        """:func:`html_problems` of the HTML part the last fixture cart rendered, parsed once for
        the checks that read it (the parse is most of a check's time, and a dry-run's check of
        the templates it used: :func:`lint_used`)."""
        if self._parsed is None or self._parsed[0] is not html:
            self._parsed = (html, html_problems(html))
        return self._parsed[1]

    def inspect_offer(self, case: Case, cart: Cart, files: tuple[str, ...], parts: list[str], label: str,
                      code: str | None, context: dict[str, Any]) -> None:
        """The offer the config gives this step (``label``) is shown somewhere: its code in any part
        (a part the layout renders included), or, for an offer without a code (free shipping), some
        part that renders otherwise without the offer. Without it a customer is promised nothing
        and, with per-recipient codes, the shop hands out a code no one sees."""
        if code is not None:
            if any(code in part for part in parts) or _code_shown(code, parts):
                return
            missing = f"no part prints its code {code}"
        else:
            if self._renders_otherwise(case, files, parts, {**context, "incentive": None}):
                return
            missing = "no part changes with it"
        message = f"the step's offer ({label}) is not shown: {missing} ({', '.join(files)})"
        if case.channel == "sms" and not case.sent_as_sms:  # checked ahead of the day a tier texts it
            self.notes.append(f"{message}; no tier sends {case.template} by SMS yet, so it does not fail the check")
            return
        case.add(Problem("incentive", f"{message}: its customers are promised nothing", None, None, cart.id))

    def _renders_otherwise(self, case: Case, files: tuple[str, ...], parts: list[str], blank: dict[str, Any]) -> bool:
        """Do the case's parts render otherwise with the context ``blank`` (the offer taken out)?
        A render that fails is taken as different: the other checks report it."""
        self.renderer.budget.reset()
        try:
            with self.renderer.deadline:
                if case.channel == "sms":
                    return self.renderer.render_sms(case.template, case.locale, blank, blank["variant"],
                                                    self.config.sms.max_segments, raw_errors=True) != parts[0]
                return any(self.renderer.render_file(name, blank) != part for name, part in zip(files, parts))
        except Exception:  # noqa: BLE001 - a template that needs the offer to render at all shows it
            return True

    def _source(self, name: str) -> str:
        """The text of template file ``name`` as the renderer reads it (the first folder that has it)."""
        for folder in self.renderer.folders:
            path = Path(folder) / name
            if path.is_file():
                return path.read_text(encoding="utf-8-sig", errors="replace")
        return ""

    def _shared_sources(self) -> list[str]:
        """The texts of the shared files (``_layout.html``, ``_macros.html``…) a part may pull in."""
        return list(self._shared_files().values())

    def _shared_files(self) -> dict[str, str]:
        """``{name: text}`` of the shared files, as :meth:`_shared_sources`."""
        names = {path.name for folder in self.renderer.folders if Path(folder).is_dir()
                 for path in Path(folder).glob("_*") if path.is_file()}
        return {name: self._source(name) for name in sorted(names)}

    def _printed_none(self, file: str, output: str, context: dict[str, Any]) -> bool:
        """Did a value print ``None`` in ``output``, or are all its ``None`` words the template's
        own text ("None of the items in your cart are reserved")? The part rendered again where
        a None value prints nothing keeps only the template's own."""
        try:
            with self.renderer.deadline:
                blank = self.renderer.render_file_blank(file, context)
        except Exception:  # noqa: BLE001 - it rendered once: if not again, say what was seen
            return True
        return len(_NONE.findall(output)) > len(_NONE.findall(_STYLE.sub("", blank) if file.endswith(".html")
                                                                 else blank))

    def inspect_survey(self, case: Case, cart: Cart, files: tuple[str, ...], text: str, html: str) -> None:
        """Each reason's link in both parts, carrying a token that verifies for this cart, step
        and locale. Links are required only where the config itself asks (``survey.steps``)."""
        required = self.config.survey.asks_in(case.step)
        page = self.survey_config.survey.url or SAMPLE_SURVEY
        _text_file, text_file, html_file = files
        _errors, html_links = self._html_problems(html)
        for file, found in ((text_file, _URL.findall(text)), (html_file, html_links)):
            links = survey_links_in(found, page)
            if not links:
                if required:
                    case.add(Problem("survey", "no survey links ({{ survey }}: the _survey.txt include or the "
                                     "survey_links macro)", file, None, cart.id))
                continue
            problem = _survey_problem(links, cart.key, case.step, case.locale, self.survey_config.survey.reasons)
            if problem:
                case.add(Problem("survey", problem, file, None, cart.id))

    def inspect_utm(self, case: Case, cart: Cart, html_file: str, links: list[str], tier: str,
                    variant: str | None) -> None:
        """Every http(s) link but the unsubscribe and survey links carries the message's UTM parameters."""
        params = utm_values(self.config.links, case.sequence, case.step, variant, tier)
        survey_page = (self.survey_config.survey.url or SAMPLE_SURVEY).partition("{token}")[0]
        for link in links:
            if link == self.unsubscribe_url or link.startswith(survey_page) or safe_url(link) is None:
                continue
            missing = missing_utm(link, params)
            if missing:
                case.add(Problem("utm", f"link without {', '.join(missing)}: {link[:80]} (links from the context are "
                                 "tagged; a link written into the template must carry its own)", html_file, None,
                                 cart.id))
                return


def _code_shown(code: str, parts: Sequence[str]) -> bool:
    """Is ``code`` in a part as a template may print it besides as is: HTML-escaped, or
    URL-encoded in a link that applies it (``/discount/<code>``, ``?discount=<code>``)? Looked
    for only when the code as is was not found. Not in another case: a short code (``TEN``)
    is a word of any text."""
    from urllib.parse import quote, quote_plus

    forms = {escape(code), quote(code), quote(code, safe=""), quote_plus(code)} - {code}
    return any(form in part for part in parts for form in forms)


_URL = re.compile(r"https?://[^\s<>\"']+")


def survey_links_in(urls: Iterable[str], page: str) -> list[tuple[str, str]]:
    """``(token, reason)`` of every link in ``urls`` that points at the survey page ``page``
    (the configured URL with ``{token}``). The token is read where the survey app reads it
    (:func:`cartrescue.suppressions.url_token`), so a link the check passes is one it answers."""
    from urllib.parse import parse_qs, urlsplit

    from cartrescue.suppressions import token_spots, url_token

    prefix = page.partition("{token}")[0]
    spots = token_spots(page)
    found = []
    for url in urls:
        if not url.startswith(prefix):
            continue
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        found.append((url_token(parts.path, query, spots) or "", (query.get("reason") or [""])[0]))
    return found


def _survey_problem(links: list[tuple[str, str]], cart_key: str, step: int, locale: str,
                    reasons: Sequence[str]) -> str | None:
    """What is wrong with a part's survey links, or None."""
    for token, reason in links:
        try:
            said = survey_links.read_token(token, SURVEY_SECRET)
        except survey_links.BadToken as exc:
            return f"survey link for {reason or '?'} carries no valid token ({exc})"
        if (said.cart_key, said.step, said.locale) != (cart_key, step, locale):
            return f"survey link for {reason} is for another cart, step or locale"
    offered = [reason for _token, reason in links]
    missing = [reason for reason in reasons if reason not in offered]
    unknown = sorted(set(offered) - set(reasons))
    if missing or unknown:
        return f"survey links: missing {', '.join(missing) or '-'}, unknown {', '.join(unknown) or '-'}"
    return None


def lint_used(config: Config, used: Iterable[Sequence[str]]) -> Report:
    """The checks of ``templates check`` on the messages a dry-run rendered (``used``: each
    message's files, :meth:`cartrescue.compose.render.Renderer.used_files`): every case whose files are
    one of them, once, against the edge-case carts (``--quick``'s). Its cost is the templates',
    never the run's carts: a dry-run of 100,000 carts checks what one of 10 carts with the same
    templates does. The notes of a whole check (files no run reads) are not a dry-run's."""
    wanted = {tuple(files) for files in used}
    checker = TemplateChecker(config, carts=edge_carts())
    templates = sorted({match["name"] for files in wanted if files and (match := _FILE.match(files[0]))})
    cases = []
    for case in checker.cases(templates) if templates else []:
        parts = (SMS_PART,) if case.channel == "sms" else PARTS
        files = tuple(checker.renderer.part_file(case.template, case.locale, part, case.variant) for part in parts)
        if case.locale != "-" and files in wanted:
            checker.run_case(case)
            cases.append(case)
    return Report(cases, [cart.id for cart, _orders in checker.fixtures])


def lint_cached(config: Config, used: Iterable[Sequence[str]]) -> tuple[Report | None, list[str]]:
    """:func:`lint_used` and its :func:`lint_warnings`, the findings kept between runs: a dry-run
    again with the same config, template files and cartrescue gets them without checking (the
    report is None then). The check costs what some thousand messages do; a developer's
    dry-runs, and a benchmark's, repeat it unchanged. Kept beside the compiled templates, in a
    folder of this user's only (:mod:`cartrescue.template_cache`); without one, or when the
    file cannot be read or written, the check simply runs."""
    used = sorted({tuple(files) for files in used})
    folder = _lint_folder()
    key = _lint_key(config, used) if folder is not None else None
    if folder is not None and key is not None:
        try:
            kept = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
            if isinstance(kept, list) and all(isinstance(line, str) for line in kept):
                os.utime(folder / f"{key}.json")  # read: in use (see _prune_lint)
                return None, kept
        except (OSError, ValueError):
            pass
    report = lint_used(config, used)
    warnings = lint_warnings(report)
    if folder is not None and key is not None:
        try:
            spare = folder / f"{key}.{os.getpid()}.tmp"
            spare.write_text(json.dumps(warnings), encoding="utf-8")
            os.replace(spare, folder / f"{key}.json")
        except OSError:
            pass
        _prune_lint(folder)
    return report, warnings


#: Days a file of kept findings stays after the last run that read or wrote it.
LINT_KEPT_DAYS = 30


def _prune_lint(folder: Path) -> None:
    """Remove the files of kept findings no run has read or written for :data:`LINT_KEPT_DAYS`
    (and temporary files a killed run left as long): each edit of a template or the config keys a
    new file, and the old ones were never read again. Runs only when a check wrote findings, which
    costs far more than listing the folder; a file it cannot remove stays."""
    oldest = time.time() - LINT_KEPT_DAYS * 86400
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith((".json", ".tmp")) and entry.is_file(follow_symlinks=False) \
                        and entry.stat(follow_symlinks=False).st_mtime < oldest:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
    except OSError:
        pass


def _lint_folder() -> Path | None:
    from cartrescue.template_cache import cache_folder, private_folder

    templates = cache_folder()
    return None if templates is None else private_folder(templates.parent / "lint")


def _lint_key(config: Config, used: list[tuple[str, ...]]) -> str | None:
    """What a check's findings depend on: the config, the messages' files, every file of the
    template folders (a layout, macros and includes too), and the code that renders and checks
    (each module of cartrescue by size and time: a version number stays the same in a
    checkout), Jinja's and Python's versions."""
    import hashlib
    import sys

    import jinja2

    from cartrescue import __version__
    from cartrescue.compose.render import template_folders

    digest = hashlib.blake2b(digest_size=20)
    try:
        digest.update("\0".join([__version__, jinja2.__version__, sys.version, config.model_dump_json(),
                                 json.dumps(used)]).encode("utf-8", "surrogatepass"))
        package = Path(__file__).parent
        for path in sorted(package.rglob("*.py")):
            found = path.stat()
            digest.update(f"\0{path.relative_to(package)}\0{found.st_size}\0{found.st_mtime_ns}".encode())
        for folder in template_folders(config):
            for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
                if path.is_file():
                    digest.update(f"\0{path.relative_to(folder)}\0".encode("utf-8", "surrogateescape"))
                    digest.update(path.read_bytes())
    except Exception:  # noqa: BLE001 - a file that cannot be read, a config value JSON cannot take: the check runs
        return None
    return digest.hexdigest()


def lint_warnings(report: Report) -> list[str]:
    """One line per finding of :func:`lint_used`: the case (template, locale, variant, step), the
    kind, the file and what is wrong; the cart it names is the check's sample, not the shop's."""
    lines = []
    for case in report.cases:
        for problem in case.problems:
            where = f"{problem.where}: " if problem.where else ""
            sample = f" (sample cart {problem.cart})" if problem.cart else ""
            lines.append(f"templates check: {case.name}: {problem.kind}: {where}{problem.message}{sample}")
    return lines


def check_templates(config: Config, *, templates: Iterable[str] | None = None, locales: Iterable[str] | None = None,
                    carts: Sequence[tuple[Cart, int]] | None = None, examples: Path | None = None) -> Report:
    """Run the whole check; see :class:`TemplateChecker`."""
    return TemplateChecker(config, carts=carts, examples=examples).run(templates, locales)


# -- output ----------------------------------------------------------------------------------

def junit_xml(report: Report, seconds: float = 0.0) -> str:
    """JUnit XML: one testsuite, one testcase per case, a <failure> per failed case; the notes
    (an A/B arm that falls back to the base template in some locales, a file no run reads) as
    the suite's <system-out>, one a line: a CI job that keeps only the report kept none of them."""
    import xml.etree.ElementTree as ET

    tests, failures = str(len(report.cases) + bool(report.problems)), str(len(report.failed) + bool(report.problems))
    suites = ET.Element("testsuites", name="cartrescue templates check", tests=tests, failures=failures, errors="0",
                        time=f"{seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name="templates", tests=tests, failures=failures, errors="0",
                          skipped="0", time=f"{seconds:.3f}")
    properties = ET.SubElement(suite, "properties")
    for folder in report.folders:
        ET.SubElement(properties, "property", name="templates", value=folder)
    ET.SubElement(properties, "property", name="fixture_carts", value=", ".join(report.carts))
    for case in report.cases:
        element = ET.SubElement(suite, "testcase", classname=f"templates.{case.template}.{case.locale}",
                                name=case.name, time=f"{case.seconds:.3f}")
        if case.problems:
            first = case.problems[0]
            located = next((problem for problem in case.problems if problem.file), None)
            if located is not None and located.file is not None:  # where CI annotates it
                element.set("file", _path_for_ci(located.file, report.folders))
                if located.line:
                    element.set("line", str(located.line))
            body = "\n".join(_problem_line(problem) for problem in case.problems)
            failure = ET.SubElement(element, "failure", type=first.kind, message=_problem_line(first))
            failure.text = body
    if report.problems:  # the --carts file's unreadable rows: one failing case, as a run exits 1 on them
        element = ET.SubElement(suite, "testcase", classname="carts", name="fixture carts file", time="0.000")
        failure = ET.SubElement(element, "failure", type="carts", message=report.problems[0])
        failure.text = "\n".join(report.problems)
    if report.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(f"note: {note}" for note in report.notes)
    return _xml_document(suites)


def _xml_document(suites: Any) -> str:
    """The JUnit document of ``suites``, indented, with its declaration."""
    import xml.etree.ElementTree as ET

    ET.indent(suites)
    # ElementTree writes a control character as it is, and XML 1.0 has no way to write one: a
    # cart id of a --carts file with \x0b made the whole report unreadable to CI. Shown as \x0b.
    document = _NOT_XML.sub(lambda bad: f"\\x{ord(bad.group()):02x}", ET.tostring(suites, encoding="unicode"))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + document + "\n"


def junit_error_xml(message: str) -> str:
    """JUnit XML of a check that could not run (a config or ``--carts`` error, exit 2 or 3): one
    test case in error, naming why. Without it a report an earlier build left in a reused
    workspace (Jenkins) stood as this build's, all its cases passing."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites", name="cartrescue templates check", tests="1", failures="0", errors="1",
                        time="0.000")
    suite = ET.SubElement(suites, "testsuite", name="templates", tests="1", failures="0", errors="1", skipped="0",
                          time="0.000")
    case = ET.SubElement(suite, "testcase", classname="templates", name="templates check", time="0.000")
    ET.SubElement(case, "error", type="config", message=message).text = message
    return _xml_document(suites)


def _path_for_ci(file: str, folders: Sequence[str]) -> str:
    """The file a problem names (``en/reminder-1.txt``, relative to a templates folder) as CI
    finds it: in the first folder that has it (else the first, for a part that is missing),
    relative to the current folder when under it, as a checkout's files are; else absolute."""
    candidates = [Path(folder) / file for folder in folders]
    path = next((candidate for candidate in candidates if candidate.is_file()), candidates[0] if candidates else Path(file))
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _problem_line(problem: Problem) -> str:
    where = f"{problem.where}: " if problem.where else ""
    cart = f" (cart {problem.cart}" + (f" and {problem.count - 1} more" if problem.count > 1 else "") + ")" if problem.cart else ""
    return f"{where}{problem.message}{cart}"


def print_report(report: Report, console: Any, show_passing: bool = True) -> None:
    from rich.table import Table

    table = Table(header_style="bold", expand=False)
    for column, justify in (("template", "left"), ("locale", "left"), ("variant", "left"), ("step", "left"),
                            ("incentives", "left"), ("renders", "right"), ("result", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for case in report.cases:
        if case.ok and not show_passing:
            continue
        if case.ok:
            result = "[green]ok[/]" + (f" ({counted(case.segments, 'segment')} max)" if case.channel == "sms" else "")
        else:
            first = case.problems[0]
            more = f" (+{len(case.problems) - 1} more)" if len(case.problems) > 1 else ""
            result = f"[red]FAIL[/] {first.kind}: {_escape(_problem_line(first))}{more}"
        table.add_row(case.template + (" (sms)" if case.channel == "sms" else ""), case.locale, case.variant or "-", case.step_label, case.incentive_label,
                      str(case.renders), result)
    if table.row_count:  # --failures-only with nothing failing: no empty frame
        console.print(table)
    for case in report.failed:
        console.print(f"[red]✗[/] {_escape(case.name)}", highlight=False)
        for problem in case.problems:
            console.print(f"    [bold]{problem.kind}[/] {_escape(_problem_line(problem))}", highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {_escape(note)}", highlight=False)
    renders = sum(case.renders for case in report.cases)
    bad_rows = f"{counted(len(report.problems), 'problem')} in the carts file (rows that could not be read): see the warnings"
    if report.ok:
        verdict = "[green]all templates pass[/]"
    elif report.failed or not report.problems:
        verdict = f"[red]{len(report.failed)} of {len(report.cases)} failed" + (
            f", and {bad_rows}" if report.problems else "") + "[/]"
    else:
        verdict = f"[red]the templates pass, but {bad_rows}[/]"
    console.print(f"{len(report.cases)} combinations × {len(report.carts)} fixture carts, {renders} renders: {verdict}",
                  soft_wrap=True)  # one line, for a CI log's grep


def _escape(text: str) -> str:
    """Data in a markup line: control characters removed, markup escaped."""
    from rich.markup import escape

    from cartrescue.text import printable

    return escape(printable(text))
