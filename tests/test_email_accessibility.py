"""The shipped reminders as a mail client, a screen reader and a reader with low vision get them.

Real ``run --outbox`` runs (steps 1, 2 and 3, the last with its incentive, and the survey) write
.eml files in every shipped locale; the tests read those files with the ``email`` package, as a
mail client would, and the HTML part with ``html.parser``.
"""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import NOW, Shop, cart

LOCALES = ("en", "sv", "hu", "ru", "kk", "af")
AA_TEXT = 4.5  # WCAG 2.x 1.4.3, normal-size text
ITEMS = (("SKU-1", "Blue mug", 2, "25.00"), ("SKU-2", "Wool socks", 1, "19.99"))
_HEX = re.compile(r"#([0-9a-fA-F]{6})\b")


def _read(folder: Path) -> dict[str, EmailMessage]:
    return {path.name: email.message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[misc]
            for path in sorted(folder.glob("*.eml"))}


@pytest.fixture
def steps(shop: Shop) -> dict[str, EmailMessage]:
    """Every step of the default sequence, in every shipped locale, as .eml files of real runs."""
    for locale in LOCALES:
        rows = cart(f"c-{locale}", locale=locale, items=ITEMS)
        for row in rows:
            row["image_url"] = f"https://shop.example.com/img/{row['sku']}.jpg"
            row["product_url"] = f"https://shop.example.com/p/{row['sku']}"
        shop.add(rows)
    shop.configure(survey={"url": "https://shop.example.com/cart-survey?token={token}"},
                   shop={"logo_url": "https://shop.example.com/logo.png"})
    out = shop.folder / "out"
    for later in (timedelta(0), timedelta(hours=24), timedelta(hours=72)):
        result = shop.cli("run", "--outbox", str(out), "--json", now=NOW + later)
        assert result.exit_code == 0, result.output
    messages = _read(out)
    assert len(messages) == 3 * len(LOCALES), sorted(messages)
    return messages


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    """WCAG 2.x contrast ratio of two ``rrggbb`` colours."""
    light, dark = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


class Contrast(HTMLParser):
    """Each run of visible text with the colour it is written in and the background it is on
    (inline ``color``, ``background-color`` and ``bgcolor``, inherited), skipping what
    ``display:none`` hides."""

    VOID = frozenset({"area", "base", "br", "col", "hr", "img", "input", "link", "meta", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str, str, bool]] = [("", "000000", "ffffff", False)]
        self.texts: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        _, colour, background, hidden = self.stack[-1]
        values = dict(attrs)
        style = {name.strip().lower(): value.strip() for name, _, value in
                 (part.partition(":") for part in (values.get("style") or "").split(";") if ":" in part)}
        if (found := _HEX.search(values.get("bgcolor") or "")) is not None:
            background = found.group(1)
        if (found := _HEX.search(style.get("background-color", ""))) is not None:
            background = found.group(1)
        if (found := _HEX.search(style.get("color", ""))) is not None:
            colour = found.group(1)
        self.stack.append((tag, colour, background, hidden or style.get("display") == "none"))

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        _, colour, background, hidden = self.stack[-1]
        if data.strip() and not hidden and self.stack[-1][0] not in ("title", "style", "head"):
            self.texts.append((" ".join(data.split()), colour, background))


def test_every_text_of_the_html_part_meets_wcag_aa_contrast_on_its_background(
        steps: dict[str, EmailMessage]) -> None:
    low = set()
    for name, message in steps.items():
        parser = Contrast()
        parser.feed(message.get_body(("html",)).get_content())  # type: ignore[union-attr]
        assert parser.texts, name
        for text, colour, background in parser.texts:
            ratio = contrast(colour, background)
            if ratio < AA_TEXT:
                low.add((name[:14], text[:40], f"#{colour} on #{background}", round(ratio, 2)))
    assert not low, sorted(low)


def test_each_message_names_its_language_in_content_language_as_its_html_does(
        steps: dict[str, EmailMessage]) -> None:
    for name, message in steps.items():
        locale = name.split("-")[1]
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert f'<html lang="{locale}"' in html, name
        assert message["Content-Language"] == locale, (name, message["Content-Language"])


def test_content_language_is_the_language_the_message_is_written_in_not_the_customers(shop: Shop) -> None:
    # sv-SE reads the sv templates; a German customer of a shop without de templates reads English.
    shop.add(cart("c-sv", locale="sv-SE"), cart("c-de", locale="de_AT"))
    out = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(out), "--json")
    assert result.exit_code == 0, result.output
    languages = {name[6:8]: message["Content-Language"] for name, message in _read(out).items()}
    assert languages == {"sv": "sv", "de": "en"}


def test_a_template_folder_with_a_script_gives_a_bcp47_content_language(shop: Shop) -> None:
    folder = shop.folder / "mine" / "sr_Latn"
    folder.mkdir(parents=True)
    english = Path(__file__).resolve().parent.parent / "templates" / "en"
    for part in ("subject.txt", "txt", "html"):
        (folder / f"reminder-1.{part}").write_text((english / f"reminder-1.{part}").read_text(encoding="utf-8"),
                                                   encoding="utf-8")
    shop.add(cart("c-sr", locale="sr-Latn-RS"))
    shop.configure(templates="mine")
    out = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(out), "--json")
    assert result.exit_code == 0, result.output
    [message] = _read(out).values()
    assert message["Content-Language"] == "sr-Latn"
    assert '<html lang="sr-Latn"' in message.get_body(("html",)).get_content()  # type: ignore[union-attr]


class Rows(HTMLParser):
    """What each table row says read aloud or with images off: its text, an image as its alt."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "img":
            self.images.append(dict(attrs))
            if self.rows:
                self.rows[-1].append(dict(attrs).get("alt") or "")

    def handle_data(self, data: str) -> None:
        if self.rows and data.strip():
            self.rows[-1].append(data.strip())


def test_with_images_off_or_read_aloud_each_items_name_comes_once(steps: dict[str, EmailMessage]) -> None:
    for name, message in steps.items():
        parser = Rows()
        parser.feed(message.get_body(("html",)).get_content())  # type: ignore[union-attr]
        assert all(image.get("alt") is not None for image in parser.images), name  # alt="" at least
        logo = [image for image in parser.images if image["src"] == "https://shop.example.com/logo.png"]
        assert [image["alt"] for image in logo] == ["Test Shop"], name  # the link's only text: says where it goes
        for item in ("Blue mug", "Wool socks"):
            [row] = [row for row in parser.rows if item in row]
            assert row.count(item) == 1, (name, row)


def _footer_note(html: str) -> str:
    """The footer's sentence saying why the message came (the line above the unsubscribe link)."""
    found = re.search(r'<p style="margin:0;">([^<]*) <a href=', html)
    assert found is not None, html[-2000:]
    return " ".join(unescape(found.group(1)).split())


def test_the_text_part_says_why_the_message_came_as_the_html_footer_does(steps: dict[str, EmailMessage]) -> None:
    """A text-only client or a screen reader reading the plain part got the unsubscribe line but
    not the footer's "You are receiving this email because you left items in your cart at ..."."""
    for name, message in steps.items():
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = " ".join(message.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
        note = _footer_note(html)
        assert note and note in text, (name, note)


class Document(HTMLParser):
    """The ``<title>`` and the ``<h1>`` headings of an HTML part, with the h1's inline style."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.headings: list[tuple[str, str]] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("title", "h1"):
            self._in = tag
            if tag == "h1":
                self.headings.append(("", dict(attrs).get("style") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in == "h1":
            text, style = self.headings[-1]
            self.headings[-1] = (text + data, style)


def _document(message: EmailMessage) -> Document:
    parser = Document()
    parser.feed(message.get_body(("html",)).get_content())  # type: ignore[union-attr]
    return parser


def test_the_html_title_is_the_messages_subject(steps: dict[str, EmailMessage]) -> None:
    """A screen reader, "view in browser" and some clients show ``<title>``: it was the shop's
    name, the same for every message."""
    for name, message in steps.items():
        assert " ".join(_document(message).title.split()) == message["Subject"], name


def test_the_main_line_of_each_message_is_its_one_heading(steps: dict[str, EmailMessage]) -> None:
    """A screen-reader user who moves by heading found none. The heading is the message's main
    line, the sentence the text part says after the greeting, and keeps the paragraph's look."""
    for name, message in steps.items():
        [(heading, style)] = _document(message).headings
        heading = " ".join(heading.split())
        text = " ".join(message.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
        assert heading and heading in text, (name, heading)
        assert {"font-size:16px", "line-height:24px", "font-weight:normal", "color:#1f2937"} <= set(style.split(";")), \
            (name, style)
