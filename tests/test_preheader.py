"""The shipped HTML's preheader (the line a mailbox shows after the subject) is hidden without
the invisible-text tricks spam filters score.

Its ``font-size:1px`` and text coloured as its background made every message match
SpamAssassin's ``FONT_INVIS_MSGID`` (__FONT_INVIS, the pattern copied below) and
``HTML_FONT_LOW_CONTRAST``: 1.7 points of the 5 a message is junk at, in every locale and step,
before a word of its content was read. ``display:none`` (with ``mso-hide:all`` for Outlook) hides
it. The real ``run --send`` to a loopback SMTP server; the HTML it receives is read.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from smtpserver import LoopbackSMTP

from conftest import Shop, cart

pytestmark = pytest.mark.smtp

LOCALES = ("en", "sv", "hu", "ru", "kk", "af")
# SpamAssassin 4.0's rawbody __FONT_INVIS (72_active.cf): a tag whose style sets a font of 0 or 1
# px/pt (or 0 of another unit), or colour transparent, followed by text.
FONT_INVIS = re.compile(
    r"<(?!style)[a-z]+\s[^>]{1,80}(?:font(?:-size)?\s*:\s*(?:0*[01](?:\.\d+)?(?:px|pt|Q|vw|vh|vmin)"
    r"|0+(?:\.\d+)?(?:cm|mm|pc|ch|rem|lh|vmax|%)|0+(?:\.0\d*)(?:em|ex|in))(?:\s[a-z]|\s*[;'])"
    r"|['\"\s;]color\s*:\s*transparent\s*[;'])[^>]{0,80}>\w", re.IGNORECASE)


class Styles(HTMLParser):
    """Each element's inline style, and the body's background colour."""

    def __init__(self) -> None:
        super().__init__()
        self.styles: list[dict[str, str]] = []
        self.background = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        style = dict(attrs).get("style") or ""
        declared = {name.strip().lower(): value.strip().lower() for name, _, value in
                    (part.partition(":") for part in style.split(";") if ":" in part)}
        self.styles.append(declared)
        if tag == "body":
            self.background = declared.get("background-color", "")


def test_the_preheader_is_hidden_without_invisible_text_that_spam_filters_score(shop: Shop) -> None:
    shop.add(*(cart(f"c-{locale}", locale=locale) for locale in LOCALES))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        received = server.wait_for(len(LOCALES))
    for message in received:
        html = message.parsed().get_body(("html",)).get_content()
        assert not FONT_INVIS.search(html), (message.rcpt_tos, FONT_INVIS.search(html))
        styles = Styles()
        styles.feed(html)
        assert styles.background, "the body sets its background colour"
        hidden = [style for style in styles.styles if style.get("display") == "none"]
        assert hidden, "the preheader is hidden"
        for style in styles.styles:
            assert style.get("color") != styles.background, (message.rcpt_tos, style)
