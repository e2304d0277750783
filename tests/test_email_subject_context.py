"""The rendered subject as the text and HTML parts see it (``subject``): the layout's ``<title>``,
and a template of the shop's that prints it, in a run, a preview and ``templates check`` alike."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, Shop, cart, cli


def _templates(folder: Path, subject: str, html_extra: str = "", text_extra: str = "") -> Path:
    """A template folder whose ``en/reminder-1`` has ``subject`` and prints ``html_extra`` in its
    HTML content and ``text_extra`` in its text part; the rest is the shipped templates'."""
    english = REPO / "templates" / "en"
    (folder / "en").mkdir(parents=True)
    (folder / "en" / "reminder-1.subject.txt").write_text(subject, encoding="utf-8")
    text = (english / "reminder-1.txt").read_text(encoding="utf-8")
    (folder / "en" / "reminder-1.txt").write_text(text_extra + text, encoding="utf-8")
    html = (english / "reminder-1.html").read_text(encoding="utf-8")
    (folder / "en" / "reminder-1.html").write_text(
        html.replace("{% block content %}\n", "{% block content %}\n" + html_extra, 1), encoding="utf-8")
    return folder


def _title(html: str) -> str:
    found = re.search(r"<title>(.*?)</title>", html, re.S)
    assert found is not None, html[:400]
    return found.group(1)


def test_a_subject_that_renders_empty_gives_the_shops_name_as_the_title(shop: Shop) -> None:
    _templates(shop.folder / "mine", "{% if false %}x{% endif %}\n")
    shop.add(cart("c1")).configure(templates="mine")
    shown = shop.cli("preview", "c1", "--json")
    assert shown.exit_code == 0, shown.output
    assert shown.json["subject"] == ""
    assert _title(shown.json["html"]) == "Test Shop"


def test_the_title_is_the_subject_escaped_as_html(shop: Shop) -> None:
    shop.add(cart("c1", first_name="<b>Ann</b> & Bo"))
    shop.configure(templates=None)
    shown = shop.cli("preview", "c1", "--json")
    assert shown.exit_code == 0, shown.output
    assert _title(shown.json["html"]) == "&lt;b&gt;Ann&lt;/b&gt; &amp; Bo, you left something in your cart"


def test_a_template_that_prints_the_subject_passes_templates_check_as_it_renders_in_a_run(tmp_path: Path,
                                                                                           shop: Shop) -> None:
    """``templates check`` renders the parts one by one: without the subject, a template that
    printed it failed the check ("'subject' is undefined") though every run renders it."""
    folder = _templates(tmp_path / "mine", "Your cart at {{ shop.name }}\n", "<p>{{ subject }}</p>\n",
                        "{{ subject }}\n")
    checked = cli("templates", "check", "--templates", str(folder), "--template", "reminder-1", "--locale", "en",
                  "--quick", "--json")
    assert checked.exit_code == 0, checked.output
    shop.add(cart("c1")).configure(templates=str(folder))
    shown = shop.cli("preview", "c1", "--json")
    assert shown.exit_code == 0, shown.output
    assert "<p>Your cart at Test Shop</p>" in shown.json["html"]
    assert shown.json["text"].startswith("Your cart at Test Shop\n")
