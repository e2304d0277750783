"""`report --html` and the digest as a screen reader and a low-vision reader meet them.

The page is parsed strictly (every tag closed, in order); each table has header cells with a
scope and a caption or heading over it; each chart carries its numbers as text (an SVG <title>
and <desc>: a role="img" hides the bars' own titles), and an A/B winner is named, not only green;
every text colour of the page's style is read against its background at 4.5:1 or more (WCAG
1.4.3), computed here from the style itself.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from conftest import NOW, Shop
from reportdata import Row, order_row, write_ledger

LATER = NOW + timedelta(days=6)
PERIOD = ("--since", "2026-11-13", "--until", "2026-11-21")
VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "embed", "source", "track", "wbr"}


class Outline(HTMLParser):
    """The page's tags as a strict reader sees them: every element closed in order (else
    ``errors``), its headings, its tables' header cells and captions, its charts' text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []
        self.headings: list[int] = []
        self.tables: list[dict[str, Any]] = []
        self.charts: list[dict[str, str]] = []
        self.lang: str | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html":
            self.lang = found.get("lang")
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "table":
            self.tables.append({"heading": bool(self.headings), "caption": "", "th": [], "cells": 0})
        if tag == "th":
            self.tables[-1]["th"].append(found.get("scope"))
        if tag == "td":
            self.tables[-1]["cells"] += 1
        if tag == "svg":
            self.charts.append({"title": "", "desc": "", "first": ""})
        elif self.open and self.open[-1] == "svg" and not self.charts[-1]["first"]:
            self.charts[-1]["first"] = tag
        if tag == "caption" or (tag in ("title", "desc") and self.open[-1:] == ["svg"]):
            self._text = []
        if tag not in VOID:
            self.open.append(tag)

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else ''}>")
            return
        self.open.pop()
        if self._text is not None and tag in ("caption", "title", "desc"):
            text = "".join(self._text)
            self._text = None
            if tag == "caption":
                self.tables[-1]["caption"] = text
            elif "svg" in self.open and self.open[-1] == "svg":
                self.charts[-1][tag] = text


def outline(page: str) -> Outline:
    parsed = Outline()
    parsed.feed(page)
    parsed.close()
    assert parsed.errors == [] and parsed.open == [], (parsed.errors, parsed.open)
    return parsed


def seeded(shop: Shop, **shop_config: Any) -> None:
    """A week of a German shop: a holdout, an A/B test the report can decide, two tiers, orders."""
    shop.configure(shop={"default_locale": "de", "currency": "EUR", **shop_config},
                   report={"min_sample": 20},
                   sequences={"default": {"holdout": 0.2, "steps": [
                       {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}}]}},
                   priority={"tiers": [{"name": "vip", "min_score": 50}, {"name": "standard", "min_score": 0}]})
    rows = [Row(f"c{n}", NOW - timedelta(days=n % 4), held=n % 5 == 0, variant=None if n % 5 == 0 else "ab"[n % 2],
                tier="vip" if n % 7 == 0 else "standard", locale="de") for n in range(100)]
    write_ledger(shop.folder / "ledger.db", rows)
    for row in rows:  # b converts every time, a never: b wins
        if row.variant == "b" or (row.held and row.cart_id.endswith("0")):
            shop.add_orders(order_row(f"o-{row.cart_id}", at=row.at + timedelta(hours=3), total="1234.50",
                                      cart_id=row.cart_id))


def page_of(shop: Shop, target: Path, *args: str) -> str:
    result = shop.cli("report", *PERIOD, "--html", str(target), *args, now=LATER)
    assert result.exit_code == 0, result.output
    return target.read_text(encoding="utf-8")


def test_every_table_has_scoped_header_cells_and_a_caption_or_heading(shop: Shop, tmp_path: Path) -> None:
    """The header cells were bare <th> and the amounts per currency sat under the page's <h1>
    with no caption: a screen reader could not tell a figure's column or row, nor that table."""
    seeded(shop)
    shop.configure(shop={"currency": None})  # with an order in SEK: the table of amounts per currency
    shop.add_orders(order_row("sek1", at=NOW - timedelta(hours=1), total="499.00", cart_id="c1", currency="SEK"))
    parsed = outline(page_of(shop, tmp_path / "report.html"))
    assert parsed.headings[0] == 1 and all(b - a <= 1 for a, b in zip(parsed.headings, parsed.headings[1:]))
    assert len(parsed.tables) >= 4
    for table in parsed.tables:
        assert table["th"] and all(scope in ("col", "row") for scope in table["th"]), table
        assert "row" in table["th"] and "col" in table["th"], table
    currencies = parsed.tables[0]
    assert currencies["caption"] == "Amounts per currency"


def test_each_chart_has_a_title_and_a_description_with_its_numbers(shop: Shop, tmp_path: Path) -> None:
    """The charts were role="img" with a label alone ("funnel"): the figures drawn in them, and
    the bars' own titles, are hidden from a screen reader by that role."""
    seeded(shop)
    parsed = outline(page_of(shop, tmp_path / "report.html"))
    titles = [chart["title"] for chart in parsed.charts]
    assert all(chart["first"] == "title" and chart["title"] and chart["desc"] for chart in parsed.charts), parsed.charts
    revenue = parsed.charts[titles.index("Attributed revenue by day")]["desc"]
    assert "2026-11-19: 24.690,00\xa0€ (20 orders)" in revenue, revenue
    funnel = parsed.charts[titles.index("Funnel")]["desc"]
    assert re.fullmatch(r"seen \d+, eligible \d+, messaged 80, ordered \d+", funnel), funnel


def test_the_ab_winner_is_named_in_the_chart_not_shown_by_colour_alone(shop: Shop, tmp_path: Path) -> None:
    """The winning variant's dot was green and the others grey, with the same words beside each."""
    seeded(shop)
    page = page_of(shop, tmp_path / "report.html")
    assert ">  variant b (winner)</text>" in page and ">  variant a</text>" in page


STYLE_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")


def contrast(foreground: str, background: str) -> float:
    """WCAG 2's contrast ratio of two #rrggbb colours."""
    def luminance(colour: str) -> float:
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_pairs(style: str) -> list[tuple[str, str, str]]:
    """(selector, text colour, background) of every rule that colours text: a rule's own
    background, else the body's for ``body`` and white (the sections) for the rest."""
    pairs = []
    body = re.search(r"body\{[^}]*background:(#[0-9a-f]{6})", style)
    assert body is not None
    for selector, declarations in STYLE_RULE.findall(style):
        found = dict(re.findall(r"(?:^|;)\s*(color|fill|background):\s*(#[0-9a-f]{6})", declarations))
        text = found.get("fill") if selector.strip().endswith("text") else found.get("color")
        if text is None:
            continue
        ground = found.get("background") or (body.group(1) if selector.strip() == "body" else "#ffffff")
        pairs.append((selector.strip(), text, ground))
    return pairs


def test_every_text_colour_of_the_page_reads_at_4_5_to_1(shop: Shop, tmp_path: Path) -> None:
    """"not measured" was #9ca3af on white, 2.5:1, the lightest text of the page."""
    seeded(shop, currency="EUR")
    shop.configure(sequences={"default": {"holdout": 0}})  # no holdout: the "not measured" card
    page = page_of(shop, tmp_path / "report.html")
    style = re.search(r"<style>(.*?)</style>", page, re.DOTALL)
    assert style is not None and "unmeasured" in page
    pairs = text_pairs(style.group(1).lower())
    assert len(pairs) >= 8
    low = [(selector, fg, bg, round(contrast(fg, bg), 2)) for selector, fg, bg in pairs if contrast(fg, bg) < 4.5]
    assert low == []


def test_the_contrast_check_itself_catches_light_grey_on_white() -> None:
    assert [round(contrast(fg, bg), 2) for _s, fg, bg in text_pairs(".x{color:#9ca3af}body{background:#f4f4f5}")] \
        == [2.54]


def test_the_digest_names_its_language_and_parses_strictly(shop: Shop) -> None:
    """The digest's HTML part was <html> with no lang: a screen reader guessed the language."""
    seeded(shop)
    from smtpserver import LoopbackSMTP

    with LoopbackSMTP("none") as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("report", "--quiet", *PERIOD, "--email", "owner@example.com", now=LATER)
        assert result.exit_code == 0, result.output
        (received,) = server.wait_for(1)
    message = received.parsed()
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    parsed = outline(html)
    assert parsed.lang == "en"
    lines = [line for line in text.splitlines() if line]
    assert [line for line in lines if f"<p>{escape(line)}</p>" not in html] == []


def test_the_revenue_axis_writes_its_amount_as_the_shop_s_locale_does(shop: Shop, tmp_path: Path) -> None:
    """A German shop's axis said "24,690" beside bars of "24.690,00 €": a German reader reads
    24,69."""
    seeded(shop)
    page = page_of(shop, tmp_path / "report.html")
    chart = re.search(r"<svg[^>]*><title>Attributed revenue by day</title>.*?</svg>", page)
    assert chart is not None
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", chart.group(0))
    assert "24.690,00\xa0€" in labels and "24,690" not in labels, labels
