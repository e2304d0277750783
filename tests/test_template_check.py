"""`templates check` catches every kind of broken template; the shipped ones pass. Also the
rendering it relies on: locale fallback, Babel formatting per locale, variant files."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cartrescue.compose import render
from cartrescue.config import Config
from cartrescue.errors import TemplateError
from cartrescue.compose.render import Renderer
from cartrescue.sources.values import normalize_locale
from cartrescue.template_check import check_templates, edge_carts, html_problems, junit_xml
from conftest import REPO, Shop, cart, cli

BROKEN = REPO / "tests" / "fixtures" / "templates_broken"
LOCALES = ("af", "en", "hu", "kk", "ru", "sv")


FIXTURES = ("good", "syntax", "undefined", "badhtml", "notext", "nounsub", "longsubject", "variant")


def _check(*args: str):
    return cli("templates", "check", "--templates", str(BROKEN), "--quick", *args)


@pytest.mark.parametrize(
    "template,kind,file,fragment",
    [
        ("syntax", "syntax", "en/syntax.html", "syntax error: Unexpected end of template"),
        ("undefined", "undefined", "en/undefined.txt", "undefined variable: 'discount_code' is undefined"),
        ("badhtml", "html", "en/badhtml.html", "HTML does not parse: </div> closes <span>"),
        ("notext", "missing-text", "en/notext.txt", "no text part: en/notext.txt does not exist"),
        ("nounsub", "unsubscribe", "en/nounsub.txt", "no unsubscribe link in the text part"),
        ("longsubject", "subject-length", "en/longsubject.subject.txt", "subject is 120 characters (max 78)"),
    ],
)
def test_each_kind_of_broken_template_fails_with_its_message(template, kind, file, fragment) -> None:
    result = _check("--template", template, "--json")
    assert result.exit_code == 1, result.output
    report = result.json
    assert report["ok"] is False and report["counts"]["failed"] == report["counts"]["cases"] == 1
    problems = report["cases"][0]["problems"]
    assert {p["kind"] for p in problems} == {kind}  # nothing else is wrong with the fixture
    first = problems[0]
    assert first["file"] == file and fragment in first["message"], first


def test_problems_point_at_the_line() -> None:
    problems = {name: _check("--template", name, "--json").json["cases"][0]["problems"][0]
                for name in ("syntax", "undefined")}
    assert problems["syntax"]["line"] == 13  # end of file: where Jinja noticed the unclosed {% if %}
    assert problems["undefined"]["line"] == 7
    assert problems["undefined"]["cart"] == "edge-one-item" and problems["undefined"]["count"] > 1


def test_an_html_error_names_the_line_of_the_template_file_not_of_the_rendered_message(tmp_path: Path) -> None:
    """An unclosed tag in a part that extends the layout was reported with no line and as
    "opened on line 20": a line of the rendered message (the layout comes first), which the
    developer looked for in vain in a 7-line file."""
    folder = tmp_path / "templates" / "en"
    folder.mkdir(parents=True)
    (folder / "open.subject.txt").write_text("Your cart at {{ shop.name }}\n", encoding="utf-8")
    (folder / "open.txt").write_text("Hi\n{{ recovery_url }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    (folder / "open.html").write_text(
        '{% extends "_layout.html" %}\n'
        '{% block content %}\n'
        '<p>Hi,</p>\n'
        '<p><a href="{{ recovery_url }}">Back to your cart</a></p>\n'
        '<div class="note"><b>Still there\n'
        '{% endblock %}\n', encoding="utf-8")
    result = cli("templates", "check", "--templates", str(tmp_path / "templates"), "--template", "open", "--quick",
                 "--json")
    assert result.exit_code == 1, result.output
    problems = [p for p in result.json["cases"][0]["problems"] if p["kind"] == "html"]
    assert problems and {(p["file"], p["line"]) for p in problems} == {("en/open.html", 5)}, problems
    assert all("rendered line" in p["message"] for p in problems), problems


def test_an_html_error_that_names_its_rendered_line_says_it_once(tmp_path: Path) -> None:
    """"<div> opened on rendered line 3 is never closed (rendered line 3)": the line twice."""
    folder = tmp_path / "templates" / "en"
    folder.mkdir(parents=True)
    (folder / "open.subject.txt").write_text("Your cart at {{ shop.name }}\n", encoding="utf-8")
    (folder / "open.txt").write_text("Hi\n{{ recovery_url }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    (folder / "open.html").write_text('<p><a href="{{ unsubscribe_url }}">u</a></p>\n<div><b>Still there</b>\n',
                                      encoding="utf-8")
    result = cli("templates", "check", "--templates", str(tmp_path / "templates"), "--template", "open", "--quick",
                 "--json")
    messages = [p["message"] for p in result.json["cases"][0]["problems"] if p["kind"] == "html"]
    assert messages and all(m.count("rendered line") == 1 for m in messages), messages


def _own_layout(tmp_path: Path, before_content: str, template: str, markup: str) -> Path:
    """A templates folder whose ``_layout.html`` is the shipped one with ``before_content`` put
    before its content block, and an ``en`` template that extends it with ``markup``."""
    folder = tmp_path / "templates"
    (folder / "en").mkdir(parents=True)
    layout = (render.shipped_templates() / "_layout.html").read_text(encoding="utf-8")
    (folder / "_layout.html").write_text(layout.replace("{% block content %}", before_content + "{% block content %}", 1),
                                         encoding="utf-8")
    (folder / "en" / f"{template}.subject.txt").write_text("Your cart at {{ shop.name }}\n", encoding="utf-8")
    (folder / "en" / f"{template}.txt").write_text("Hi\n{{ recovery_url }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    (folder / "en" / f"{template}.html").write_text(
        f'{{% extends "_layout.html" %}}\n{{% block content %}}\n{markup}\n'
        '<p><a href="{{ recovery_url }}">Back to your cart</a></p>\n{% endblock %}\n', encoding="utf-8")
    return folder


def test_an_html_error_of_the_layout_gets_no_line_of_the_part_that_writes_the_same_tag(tmp_path: Path) -> None:
    """A shop's own layout left a <center> open; the part's one well-closed <center> was named as
    the culprit's line. A tag the layout writes too gets no line: none is better than a wrong one."""
    folder = _own_layout(tmp_path, "<center>", "wide", "<center>Hi</center>")
    result = cli("templates", "check", "--templates", str(folder), "--template", "wide", "--quick", "--json")
    problems = [p for p in result.json["cases"][0]["problems"] if p["kind"] == "html"]
    assert problems and all(p["line"] is None for p in problems), problems


def test_an_html_error_written_by_a_shared_file_alone_names_that_file_and_line(tmp_path: Path) -> None:
    """A shop's own macro file, imported by its layout, closed a tag it never opened: every part
    was blamed (en/brand.html, no line), a file without that tag. Markup that one line of one
    file writes, a shared file's included, is that file's line."""
    folder = _own_layout(tmp_path, '{% from "_brand.html" import brand_bar %}{{ brand_bar(shop) }}\n', "brand",
                         "<p><strong>Hi</strong></p>")
    (folder / "_brand.html").write_text(
        '{% macro brand_bar(shop) %}\n<p class="brand">{{ shop.name }}</p></em>\n{% endmacro %}\n', encoding="utf-8")
    result = cli("templates", "check", "--templates", str(folder), "--template", "brand", "--quick", "--json")
    assert result.exit_code == 1, result.output
    problems = [p for p in result.json["cases"][0]["problems"] if p["kind"] == "html"]
    assert problems and {(p["file"], p["line"]) for p in problems} == {("_brand.html", 2)}, problems
    assert "stray end tag </em>" in problems[0]["message"]


def test_a_template_without_an_unsubscribe_link_fails_in_both_parts() -> None:
    problems = _check("--template", "nounsub", "--json").json["cases"][0]["problems"]
    assert [(p["file"], p["kind"]) for p in problems] == [("en/nounsub.txt", "unsubscribe"), ("en/nounsub.html", "unsubscribe")]
    assert "HTML part" in problems[1]["message"]


def test_a_good_template_passes_and_exits_0() -> None:
    result = _check("--template", "good", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["ok"] is True and result.json["cases"][0]["renders"] > 0


def test_a_variant_file_is_checked_on_its_own_and_the_base_still_passes() -> None:
    cases = {c["variant"]: c for c in _check("--template", "variant", "--json").json["cases"]}
    assert set(cases) == {None, "b"}
    assert cases[None]["ok"] is True
    assert cases["b"]["files"] == ["en/variant@b.subject.txt", "en/variant.txt", "en/variant.html"]
    assert [p["kind"] for p in cases["b"]["problems"]] == ["subject-length"]


def test_the_table_and_the_junit_report_name_every_failure(tmp_path: Path) -> None:
    junit = tmp_path / "reports" / "templates.xml"
    result = _check("--junit", str(junit), *(arg for name in FIXTURES for arg in ("-t", name)))
    assert result.exit_code == 1
    assert result.stdout.count("FAIL") == 7  # in the table
    for kind, file in (("syntax", "en/syntax.html:13"), ("undefined", "en/undefined.txt:7"), ("html", "en/badhtml.html:5"),
                       ("missing-text", "en/notext.txt"), ("unsubscribe", "en/nounsub.html"),
                       ("subject-length", "en/variant@b.subject.txt")):
        assert f"    {kind} {file}: " in result.stdout, kind  # the list of failures below it
    assert "9 combinations × 9 fixture carts" in result.stdout and "7 of 9 failed" in result.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "9" and suite.get("failures") == "7"
    failures = {case.get("classname"): case.find("failure") for case in suite.iter("testcase")}
    assert failures["templates.good.en"] is None and failures["templates.badhtml.en"].get("type") == "html"
    assert "</div> closes <span>" in failures["templates.badhtml.en"].get("message")


def test_each_failing_junit_testcase_carries_the_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI annotations (GitLab's test report, action-junit-report) read a testcase's ``file`` and
    ``line`` attributes, not a path in its message text: the path is the file on disk, from the
    folder CI runs in, so the annotation lands on the line of the repository's file."""
    shop = tmp_path / "shop"
    shutil.copytree(BROKEN, shop / "templates")
    monkeypatch.chdir(shop)
    junit = shop / "templates.xml"
    result = cli("templates", "check", "--templates", "templates", "--quick", "--junit", str(junit),
                 "-t", "syntax", "-t", "undefined", "-t", "notext", "-t", "good")
    assert result.exit_code == 1, result.output
    cases = {case.get("classname"): case for case in ET.parse(junit).getroot().iter("testcase")}
    where = {name: (cases[f"templates.{name}.en"].get("file"), cases[f"templates.{name}.en"].get("line"))
             for name in ("syntax", "undefined", "notext", "good")}
    assert where == {"syntax": ("templates/en/syntax.html", "13"), "undefined": ("templates/en/undefined.txt", "7"),
                     "notext": ("templates/en/notext.txt", None), "good": (None, None)}


def test_the_junit_report_of_a_cart_id_with_a_control_character_is_still_xml() -> None:
    """ElementTree writes \\x0b as it is, and no XML parser reads it back."""
    from cartrescue.template_check import Case, Problem, Report

    case = Case("mine", "en", None, None, 1, 1)
    case.add(Problem("render", "boom", "en/mine.txt", None, "c-bad\x0b2"))
    suite = ET.fromstring(junit_xml(Report([case], ["c-bad\x0b2"])).split("\n", 1)[1]).find("testsuite")
    assert suite is not None
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["fixture_carts"] == "c-bad\\x0b2"
    failure = suite.find("testcase/failure")
    assert failure is not None and "(cart c-bad\\x0b2)" in (failure.get("message") or "")


def test_a_configured_template_with_no_files_fails(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-9"}]}})
    result = shop.cli("templates", "check", "--json", "--quick", now=None)
    assert result.exit_code == 1
    assert {c["template"] for c in result.json["cases"]} == {"reminder-9"}  # the config uses no other
    assert result.json["cases"][0]["problems"][0]["kind"] == "missing-part"
    assert (result.json["cases"][0]["sequence"], result.json["cases"][0]["step"]) == ("default", 1)  # not "(unused)"
    table = shop.cli("templates", "check", "--quick", now=None)
    assert "default 1/1" in table.stdout and "(unused)" not in table.stdout


def test_failures_only_with_nothing_failing_prints_the_verdict_without_an_empty_table(shop: Shop) -> None:
    result = shop.cli("templates", "check", "--quick", "--failures-only", now=None)
    assert result.exit_code == 0, result.output
    assert "┏" not in result.stdout and "incentives" not in result.stdout and "all templates pass" in result.stdout


def test_none_and_jinja_markup_in_the_output_are_caught(tmp_path: Path) -> None:
    folder = tmp_path / "t" / "en"
    folder.mkdir(parents=True)
    good_text = (BROKEN / "en" / "good.txt").read_text(encoding="utf-8")
    (folder / "leaky.subject.txt").write_text("Hello {{ customer.first_name }}", encoding="utf-8")
    (folder / "leaky.txt").write_text(good_text + "{% raw %}{{ unrendered }}{% endraw %}\n", encoding="utf-8")
    (folder / "leaky.html").write_text((BROKEN / "en" / "good.html").read_text(encoding="utf-8"), encoding="utf-8")
    report = check_templates(Config(source={"type": "csv", "carts": "c.csv"}, templates=tmp_path / "t"),
                             templates=["leaky"], carts=edge_carts())
    problems = {(p.file, p.kind): p for p in report.cases[0].problems}
    assert set(problems) == {("en/leaky.subject.txt", "leak"), ("en/leaky.txt", "leak")}
    assert problems[("en/leaky.subject.txt", "leak")].cart == "edge-no-image"  # the guest without a name
    assert "'{{' in the output" in problems[("en/leaky.txt", "leak")].message


def test_a_printed_none_names_the_line_that_printed_it_and_what_to_do(tmp_path: Path) -> None:
    """The leak named the file alone and the words around it: in a long template, or one whose
    macro printed it, the developer had to guess which value was None, and how to avoid it."""
    folder = _good_with(tmp_path, "\nCall us: {{ shop.support_phone }}\n")
    lines = (folder / "en" / "mine.txt").read_text(encoding="utf-8").splitlines()
    report = check_templates(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder),
                             templates=["mine"], carts=edge_carts()[:1])
    problems = [(p.kind, p.file, p.line) for case in report.cases for p in case.problems]
    assert problems == [("leak", "en/mine.txt", len(lines))], problems
    assert report.cases[0].problems[0].message.endswith(
        "a value that is None for this cart, printed as is (a run prints nothing there): test it first, {% if … %}")


def test_a_macro_imported_without_context_says_so_instead_of_suggesting_the_same_name(tmp_path: Path) -> None:
    """A shop's macro file, imported as Jinja imports (without the message's values), printing
    `{{ shop.name }}`: the check said "'shop' is undefined (did you mean shop?)", which sent the
    developer looking for a typo that is not there."""
    folder = _good_with(tmp_path, "")
    (folder / "_brand.html").write_text("{% macro signature() %}<p>{{ shop.name }}</p>{% endmacro %}\n",
                                        encoding="utf-8")
    html = folder / "en" / "mine.html"
    html.write_text('{% from "_brand.html" import signature %}' + html.read_text(encoding="utf-8").replace(
        "</body>", "{{ signature() }}</body>"), encoding="utf-8")
    report = check_templates(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder),
                             templates=["mine"], carts=edge_carts()[:1])
    problems = [(p.kind, p.file, p.line, p.message) for case in report.cases for p in case.problems]
    assert problems == [("undefined", "_brand.html", 1, (
        "undefined variable: 'shop' is undefined here: a macro of an imported file sees only its arguments, not "
        "the message's values: pass shop to the macro, or import it with context "
        '({% from "_macros.html" import name with context %})'))], problems


def test_the_word_none_of_the_templates_own_text_and_css_braces_are_not_leaks(tmp_path: Path) -> None:
    folder = _good_with(tmp_path, "None of the items in your cart are reserved.\n")
    html = folder / "en" / "mine.html"
    html.write_text(html.read_text(encoding="utf-8").replace(
        "<body", "<style>@media only screen and (max-width:600px){.wrap{width:100%}}</style><body", 1),
        encoding="utf-8")
    assert "<style>" in html.read_text(encoding="utf-8")
    report = check_templates(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder),
                             templates=["mine"], carts=edge_carts())
    assert report.ok, [p.message for case in report.cases for p in case.problems]


def test_a_none_a_value_prints_is_a_leak_beside_the_word_in_the_templates_own_text(tmp_path: Path) -> None:
    folder = _good_with(tmp_path, "None of the items are reserved, {{ customer.first_name }}.\n")
    report = check_templates(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder),
                             templates=["mine"], carts=edge_carts())
    leaks = {(p.file, p.kind, p.cart) for case in report.cases for p in case.problems}
    assert leaks == {("en/mine.txt", "leak", "edge-no-image")}  # the guest without a name


def _good_with(folder: Path, text_end: str) -> Path:
    """The good fixture as ``en/mine.*``, its text part ending in ``text_end``."""
    own = folder / "t" / "en"
    own.mkdir(parents=True)
    (own / "mine.subject.txt").write_text("Your cart", encoding="utf-8")
    (own / "mine.txt").write_text((BROKEN / "en" / "good.txt").read_text(encoding="utf-8") + text_end, encoding="utf-8")
    (own / "mine.html").write_text((BROKEN / "en" / "good.html").read_text(encoding="utf-8"), encoding="utf-8")
    return folder / "t"


TIERS = {"tiers": [{"name": "high", "min_score": 50}, {"name": "standard", "min_score": 0}]}


@pytest.mark.parametrize(("text_end", "kind", "said"), [
    # a shop without a survey page renders every message with survey None
    ("{% if survey is not none %}{% else %}{{ shop.survey_url }}{% endif %}", "undefined", "survey_url"),
    # a branch for one tier only (every tier on the sequence renders)
    ('{% if tier == "high" %}{{ customer.fist_name }}{% endif %}', "undefined", "fist_name"),
    # a part past the size a run refuses (render.MAX_PART_CHARS), on the 30-item cart
    ('{% for item in items %}{{ " " * 40000 }}{% endfor %}', "render", "more than 1000000 characters"),
])
def test_what_a_run_would_fail_on_fails_the_check(tmp_path: Path, text_end: str, kind: str, said: str) -> None:
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=_good_with(tmp_path, text_end),
                    priority=TIERS, sequences={"default": {"steps": [{"delay": "1h", "template": "mine"}]}})
    report = check_templates(config, templates=["mine"], carts=edge_carts())
    problems = [p for case in report.cases for p in case.problems]
    assert problems and {p.kind for p in problems} == {kind}, problems
    assert said in problems[0].message and problems[0].file == "en/mine.txt"


AB_TEST = {"default": {"steps": [{"delay": "1h", "template": "mine", "variants": {"a": 1, "b": 1}}]}}


def test_the_base_files_of_an_ab_step_are_checked_with_each_variant_as_a_run_renders_them(tmp_path: Path) -> None:
    """A step with variants never renders with ``variant`` None: every customer is in an arm, and
    an arm without files of its own renders the base files. The check rendered them with None
    only, so a ``{% if variant == "b" %}`` branch went unchecked (every b customer's message
    failed in the run) and a printed ``{{ variant }}`` was reported as a leaked None."""
    branch = '{% if variant == "b" %}{{ customer.nickname }}{% endif %}'
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=_good_with(tmp_path, branch),
                    sequences=AB_TEST)
    problems = [p for case in check_templates(config, templates=["mine"], carts=edge_carts()).cases
                for p in case.problems]
    assert problems and {(p.kind, p.file) for p in problems} == {("undefined", "en/mine.txt")}, problems
    assert "nickname" in problems[0].message

    printed = Config(source={"type": "csv", "carts": "c.csv"},
                     templates=_good_with(tmp_path / "printed", "Arm: {{ variant }}\n"), sequences=AB_TEST)
    report = check_templates(printed, templates=["mine"], carts=edge_carts())
    assert report.ok, [p.message for case in report.cases for p in case.problems]


def test_a_loop_that_prints_nothing_fails_the_check_instead_of_hanging_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.2)
    loop = '{% for a in "x"|center(5000) %}{% for b in "y"|center(5000) %}{% endfor %}{% endfor %}'
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=_good_with(tmp_path, loop))
    report = check_templates(config, templates=["mine"], carts=edge_carts()[:1])
    problems = [(p.kind, p.file, p.message) for case in report.cases for p in case.problems]
    assert problems == [("render", "en/mine.txt", "the message took more than 0.2 s to render (a runaway loop?)")]


@pytest.mark.parametrize(("loop", "said"), [
    ('{% for a in "x"|center(5000) %}{% for b in "y"|center(5000) %}{% endfor %}{% endfor %}',
     "the message took more than 0.2 s to render (a runaway loop?)"),
    ("{% for a in range(99999) %}{% endfor %}{% for b in range(99999) %}{% endfor %}",
     "range(): more than 100000 items in one message (a runaway loop?)"),
])
def test_a_runaway_loop_is_reported_with_the_line_it_ran_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop: str, said: str) -> None:
    """It named the file alone: in a long template the developer had to hunt for the loop."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.2)
    folder = _good_with(tmp_path, "\n\n" + loop)
    lines = (folder / "en" / "mine.txt").read_text(encoding="utf-8").splitlines()
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=folder)
    report = check_templates(config, templates=["mine"], carts=edge_carts()[:1])
    problems = [(p.kind, p.file, p.line, p.message) for case in report.cases for p in case.problems]
    assert problems == [("render", "en/mine.txt", len(lines), said)]


def test_a_loop_in_two_parts_of_a_message_ends_the_check_of_that_message_when_its_time_is_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subject's loop used the message's time; the text part's then ran without a clock (a
    longer loop there never ended), and every other fixture cart paid the full time again."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.2)
    loop = '{% for a in "x"|center(5000) %}{% for b in "y"|center(5000) %}{% endfor %}{% endfor %}'
    folder = _good_with(tmp_path, loop)
    (folder / "en" / "mine.subject.txt").write_text(loop + "Your cart", encoding="utf-8")
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=folder)
    report = check_templates(config, templates=["mine"], carts=edge_carts())
    problems = [(p.kind, p.file, p.message) for case in report.cases for p in case.problems]
    assert problems == [("render", "en/mine.subject.txt", "the message took more than 0.2 s to render (a runaway loop?)")]
    assert report.cases[0].renders == 1
    assert any("more fixture render(s) not tried after one ran out of time" in note for note in report.notes)


def test_the_note_of_renders_not_tried_names_the_file_that_ran_out_of_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop in the text part: the note said the subject's file, which has none, sending the
    developer to the wrong file."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.2)
    folder = _good_with(tmp_path, '{% for a in "x"|center(5000) %}{% for b in "y"|center(5000) %}{% endfor %}{% endfor %}')
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=folder)
    report = check_templates(config, templates=["mine"], carts=edge_carts())
    assert [(p.kind, p.file) for case in report.cases for p in case.problems] == [("render", "en/mine.txt")]
    notes = [note for note in report.notes if "not tried after one ran out of time" in note]
    assert len(notes) == 1 and notes[0].startswith("en/mine.txt ("), notes


def test_a_template_saved_with_a_byte_order_mark_renders_without_it(tmp_path: Path) -> None:
    """"UTF-8 with BOM", as some editors save: the mark went out as the subject's first character."""
    folder = _good_with(tmp_path, "")
    for part in ("mine.subject.txt", "mine.txt"):
        path = folder / "en" / part
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    renderer = Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder))
    context = renderer.context(edge_carts()[0][0], locale="en", step=1, step_count=1, tier=None, previous_orders=0,
                               unsubscribe_url="https://shop.example.com/u", incentive=None,
                               now=datetime(2026, 11, 20, tzinfo=timezone.utc))
    subject, text = (renderer.render_file(f"en/{part}", context) for part in ("mine.subject.txt", "mine.txt"))
    assert subject == "Your cart" and not text.startswith("\ufeff")


def test_a_syntax_error_in_an_included_file_names_the_file_and_no_cart(tmp_path: Path) -> None:
    """An include is compiled when the first cart renders it; its syntax error is the file's, not a
    cart's, and is reported once, at its line."""
    folder = _good_with(tmp_path, '{% include "partials/footer.txt" %}')
    (folder / "partials").mkdir()
    (folder / "partials" / "footer.txt").write_text("Thanks\n{% if shop.name %}\n", encoding="utf-8")
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=folder)
    report = check_templates(config, templates=["mine"], carts=edge_carts())
    problems = [p for case in report.cases for p in case.problems]
    assert [(p.kind, p.file, p.line, p.cart) for p in problems] == [("syntax", "partials/footer.txt", 2, None)]


def test_a_template_file_that_is_not_utf8_fails_naming_its_file_and_line(tmp_path: Path) -> None:
    """A text part saved as Latin-1 by an editor: the check stopped with "internal error:
    UnicodeDecodeError ... a bug in cartrescue" (exit 70), naming no file and checking nothing
    else; a run's message failed without the line. Now it is the file's syntax error, at its line."""
    folder = _good_with(tmp_path, "")
    text = folder / "en" / "mine.txt"
    text.write_bytes(text.read_bytes() + b"\n" * 9000 + "Caf\xe9\n".encode("latin-1"))  # past Jinja's first chunk
    line = text.read_bytes().count(b"\n")
    result = cli("templates", "check", "--templates", str(folder), "--quick", "--template", "mine", "--json")
    assert result.exit_code == 1, result.output
    problems = result.json["cases"][0]["problems"]
    assert [(p["kind"], p["file"], p["line"]) for p in problems] == [("syntax", "en/mine.txt", line)], problems
    assert "not UTF-8 text (byte 0xe9): save the file as UTF-8" in problems[0]["message"]

    renderer = Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder))
    cart_, _orders = edge_carts()[0]
    context = renderer.context(cart_, locale="en", step=1, step_count=1, tier=None, previous_orders=0,
                               unsubscribe_url="https://shop.example.com/u?t=x", incentive=None,
                               now=datetime(2026, 11, 20, tzinfo=timezone.utc))
    with pytest.raises(TemplateError, match=rf"^en/mine.txt:{line}: not UTF-8 text"):
        renderer.render("mine", "en", context)


def test_an_error_in_a_text_message_has_its_kind_and_line_as_an_emails_does(tmp_path: Path) -> None:
    """An undefined variable in a ``.sms.txt`` was reported as kind ``render`` with no line (the
    line only inside the message text), where the same mistake in an e-mail part is ``undefined``
    at its line: a CI reading ``--json`` or JUnit could not point at it."""
    folder = _good_with(tmp_path, "")
    (folder / "en" / "mine.sms.txt").write_text("{{ shop.name }}: your cart\n{{ customer.nick }} STOP\n",
                                                 encoding="utf-8")
    report = check_templates(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder),
                             templates=["mine"], carts=edge_carts())
    problems = [(p.kind, p.file, p.line) for case in report.cases if case.channel == "sms" for p in case.problems]
    assert problems == [("undefined", "en/mine.sms.txt", 2)]


def test_range_counts_per_message_in_the_check_as_in_a_run(tmp_path: Path) -> None:
    """60,000 items of range() in a message is within a run's 100,000 a message: no cart fails."""
    config = Config(source={"type": "csv", "carts": "c.csv"},
                    templates=_good_with(tmp_path, "{% for n in range(60000) %}{% endfor %}"))
    report = check_templates(config, templates=["mine"], carts=edge_carts())
    assert report.ok, [p.message for case in report.cases for p in case.problems]


@pytest.mark.parametrize(("asked", "checked"), [("sv-SE", {"sv"}), ("SV", {"sv"}), ("sv", {"sv"})])
def test_locale_selects_the_folder_its_customers_get(shop: Shop, asked: str, checked: set[str]) -> None:
    """--locale sv-SE checked nothing and exited 1 ("0 of 0 failed"): sv_SE customers get sv."""
    result = shop.cli("templates", "check", "--quick", "--locale", asked, "--json", now=None)
    assert result.exit_code == 0, result.output
    assert {case["locale"] for case in result.json["cases"]} == checked


def test_a_locale_no_folder_serves_is_a_usage_error_naming_the_folders(shop: Shop) -> None:
    result = shop.cli("templates", "check", "--quick", "--locale", "xx", "--json", now=None)
    assert result.exit_code == 2
    message = result.json["error"]["message"]
    assert message.startswith("--locale xx: no template folder serves it (the folders: ") and "sv" in message


def test_a_bad_templates_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("templates", "check", "--templates", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "not a folder" in result.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_bad_rows_of_the_carts_file_are_reported_with_file_and_line_and_fail_the_check(
        shop: Shop, as_json: bool) -> None:
    """``--carts FILE`` dropped its unreadable rows without a word, and the check passed."""
    bad = cart("c-bad", email="bob@example.com")
    bad[0]["updated_at"] = "garbage"
    shop.add(cart("c-1", email="ann@example.com"), bad, cart("c-3", email="cid@example.com")).write()
    carts, junit = shop.folder / "carts.csv", shop.folder / "templates.xml"
    result = cli("templates", "check", "--quick", "--carts", str(carts), "--config", str(shop.config_path),
                 "--junit", str(junit), *(["--json"] if as_json else []))
    assert result.exit_code == 1, result.output
    assert f"warning: {carts}:3: " in result.stderr and "garbage" in result.stderr
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert [(failure.get("type"), failure.get("message", "")[:len(str(carts)) + 3]) for failure in failures] == \
        [("carts", f"{carts}:3:")]  # CI's report fails as the exit code does
    if as_json:
        assert result.json["ok"] is False and result.json["counts"]["problems"] == 1
        assert result.json["problems"][0].startswith(f"{carts}:3: ")
        assert "c-1" in result.json["carts"] and not result.json["counts"]["failed"]  # the templates pass
    else:
        assert "1 problem" in result.stdout


def test_the_carts_file_is_read_with_the_configs_encoding(shop: Shop) -> None:
    """``--carts carts.csv`` of a shop whose config says ``source.encoding: cp1252`` was read as
    UTF-8: exit 3, "set source.encoding to the export's encoding, e.g. cp1252", the very value
    set. The file is the shop's export: read as a run reads it."""
    shop.add(cart("c-1", email="ann@example.com", first_name="Åsa")).configure(source={"encoding": "cp1252"})
    shop.write()
    carts = shop.folder / "carts.csv"
    carts.write_bytes(carts.read_text(encoding="utf-8").encode("cp1252"))
    result = cli("templates", "check", "--quick", "--carts", str(carts), "--config", str(shop.config_path), "--json")
    assert result.exit_code == 0, result.output
    assert "c-1" in result.json["carts"] and result.json["problems"] == []


def test_the_carts_file_of_a_shopify_shop_is_read_with_the_presets_columns(shop: Shop) -> None:
    """``--carts`` of a ``shopify_csv`` shop's checkouts export stopped on "missing column(s):
    cart_id, currency, created_at, sku, name, quantity, unit_price" of a file its runs read:
    the preset's mapping (and ``source.columns``) was not applied."""
    shutil.copy(REPO / "tests" / "fixtures" / "shopify_checkouts.csv", shop.folder / "checkouts.csv")
    shop.configure(source={"type": "shopify_csv", "carts": "checkouts.csv", "orders": None}).write()
    result = cli("templates", "check", "--quick", "--carts", str(shop.folder / "checkouts.csv"),
                 "--config", str(shop.config_path), "--json")
    assert result.exit_code == 0, result.output
    assert "#35012278100001" in result.json["carts"] and result.json["problems"] == []


def test_every_shipped_template_passes_against_the_edge_cases() -> None:
    config = Config(source={"type": "csv", "carts": "carts.csv"})
    report = check_templates(config, carts=edge_carts())
    assert report.ok, [(c.name, [p.message for p in c.problems]) for c in report.failed]
    combinations = {(c.template, c.locale) for c in report.cases}
    assert combinations == {(t, loc) for t in ("reminder-1", "reminder-2", "reminder-3") for loc in LOCALES}
    last = [c for c in report.cases if c.template == "reminder-3"]
    assert all(c.renders == 2 * len(edge_carts()) for c in last)  # with and without the incentive
    assert set(report.carts) >= {"edge-one-item", "edge-30-items", "edge-no-image", "edge-long-names",
                                 "edge-cyrillic", "edge-huf", "edge-kzt", "edge-jpy"}


def _docs_block(heading: str, language: str) -> str:
    text = (REPO / "docs" / "templates.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_the_github_actions_step_of_the_docs_passes_with_every_shipped_template(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    import yaml

    workflow = yaml.safe_load(_docs_block("### In CI (GitHub Actions)", "yaml"))
    command = next(step["run"] for step in workflow["jobs"]["check"]["steps"] if "templates check" in step.get("run", ""))
    args = shlex.split(command)
    assert args[:3] == ["cartrescue", "templates", "check"]
    args[args.index("--config") + 1] = str(REPO / "examples" / "cartrescue.yaml")  # the examples stand in for a shop
    monkeypatch.chdir(tmp_path)
    result = cli(*args[1:])
    assert result.exit_code == 0, result.stdout[-3000:]
    assert "all templates pass" in result.stdout
    suite = ET.parse(tmp_path / "reports" / "templates.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and int(suite.get("tests") or 0) >= 18
    assert any("cart-000001" in p.get("value", "") for p in suite.iter("property"))  # the bundled examples


def test_the_variants_example_of_the_docs_is_a_valid_config() -> None:
    import yaml

    raw = yaml.safe_load(_docs_block("## A/B variants and the holdout", "yaml"))
    config = Config.model_validate({"source": {"type": "csv", "carts": "c.csv"}, **raw})
    steps = config.sequences["default"].steps
    assert config.sequences["default"].holdout == 0.1 and steps[2].experiment == "offer"


def test_junit_xml_escapes_what_it_quotes() -> None:
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=BROKEN)
    report = check_templates(config, templates=["badhtml", "good"], carts=edge_carts()[:1])
    root = ET.fromstring(junit_xml(report, 0.5))
    assert root.get("failures") == "1" and root.get("time") == "0.500"


# -- the HTML check on its own ------------------------------------------------------------------

@pytest.mark.parametrize(
    "html,error",
    [
        ("<table><tr><td>a</tr></table>", None),  # optional end tags may be left out
        ("<p>one<p>two<br></br><img src=x>", None),
        ("<div><span>x</div>", "</div> closes <span>"),
        ("<div>x</div></div>", "stray end tag </div>"),
        ("<div><b>x</b>", "<div> opened on rendered line 1 is never closed"),
        ('<p>x</p><a href="y"', "unterminated markup"),
        # a customer named "x onmouseover=alert(1)" printed into an unquoted attribute
        ("<p title=x onmouseover=alert(1)>x</p>", "<p> has an event handler onmouseover=: a value printed into"),
        ('<img src="a.png" onerror="x()">', "<img> has an event handler onerror="),
    ],
)
def test_html_problems(html: str, error: str | None) -> None:
    errors, _links = html_problems(html)
    if error is None:
        assert errors == []
    else:
        assert any(error in message for _line, message, _markup in errors), errors


def test_html_links_are_unescaped() -> None:
    _errors, links = html_problems('<a href="https://x.example/u?a=1&amp;b=2">u</a>')
    assert links == ["https://x.example/u?a=1&b=2"]


# -- rendering: locale fallback, Babel per locale, variant files -------------------------------

@pytest.mark.parametrize(
    "asked,default,resolved",
    [("sv_SE", "en", "sv"), ("sv-SE", "en", "sv"), ("kk_KZ", "en", "kk"), ("ru", "en", "ru"), ("de_DE", "en", "en"),
     ("de_DE", "hu", "hu"), (None, "af", "af"), ("pt_BR", "pt_BR", "pt_BR"), ("pt_PT", "pt_BR", "pt_BR"),
     ("xx", "de", "en")],
)
def test_locale_fallback(tmp_path: Path, asked: str | None, default: str, resolved: str) -> None:
    own = tmp_path / "templates" / "pt_BR"
    own.mkdir(parents=True)
    for part in ("subject.txt", "txt", "html"):
        (own / f"reminder-1.{part}").write_text("x", encoding="utf-8")
    config = Config(source={"type": "csv", "carts": "c.csv"}, shop={"default_locale": default},
                    templates=tmp_path / "templates")
    assert Renderer(config).resolve_locale(asked, "reminder-1") == resolved


@pytest.mark.parametrize("asked,resolved", [("sr-latn", "sr_Latn"), ("SR_LATN_RS", "sr_Latn"), ("zh-hant-tw", "zh_Hant"),
                                            ("zh_Hans", "zh"), ("sr", "sr")])
def test_a_locale_with_a_script_reaches_the_scripts_folder(tmp_path: Path, asked: str, resolved: str) -> None:
    """A shop's value as a source reads it (``normalize_locale``), then the folder a run renders."""
    for folder in ("sr_Latn", "sr", "zh_Hant", "zh"):
        own = tmp_path / "templates" / folder
        own.mkdir(parents=True)
        for part in ("subject.txt", "txt", "html"):
            (own / f"reminder-1.{part}").write_text("x", encoding="utf-8")
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=tmp_path / "templates")
    assert Renderer(config).resolve_locale(normalize_locale(asked), "reminder-1") == resolved


@pytest.mark.parametrize("asked", ["pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", "pt-BR;q=0.9", " pt-br , en"])
def test_a_browsers_accept_language_list_is_read_as_its_first_tag(tmp_path: Path, asked: str) -> None:
    """Some shops keep the browser's Accept-Language header as the customer's locale. Read whole
    (``pt_BR,PT;Q=0.9,…``) it matched no folder of its first tag, at best its language's, and was
    longer than the ledger keeps (tests/test_bad_carts.py): its first tag is the customer's choice."""
    own = tmp_path / "templates" / "pt_BR"
    own.mkdir(parents=True)
    for part in ("subject.txt", "txt", "html"):
        (own / f"reminder-1.{part}").write_text("x", encoding="utf-8")
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=tmp_path / "templates")
    assert normalize_locale(asked) == "pt_BR"
    assert Renderer(config).resolve_locale(normalize_locale(asked), "reminder-1") == "pt_BR"


def test_a_customer_locale_picks_the_language_of_the_message(shop: Shop) -> None:
    shop.add(cart("se", locale="sv_SE"), cart("kz", locale="kk-KZ"), cart("de", locale="de_DE"))
    texts = {cid: shop.cli("preview", cid, "--json").json["text"] for cid in ("se", "kz", "de")}
    assert "varukorg" in texts["se"]
    assert "себет" in texts["kz"]
    assert "Hi Ann" in texts["de"]  # no German templates: the shop's default, English


def test_a_right_to_left_language_lays_the_message_out_from_the_right(shop: Shop) -> None:
    """A folder added for Arabic on the shipped layout and cart table: the message reads from the
    right, its amounts at the lines' end (the left); English has no dir (the default)."""
    folder = shop.folder / "templates" / "ar"
    folder.mkdir(parents=True)
    for part in ("subject.txt", "txt", "html"):
        shutil.copy(REPO / "templates" / "en" / f"reminder-1.{part}", folder / f"reminder-1.{part}")
    shop.configure(templates="templates")
    shop.add(cart("ar", locale="ar_EG"), cart("en", locale="en_GB"))
    html = {cid: shop.cli("preview", cid, "--json").json["html"] for cid in ("ar", "en")}
    assert '<html lang="ar" dir="rtl">' in html["ar"]
    assert html["ar"].count('dir="rtl"') == 2  # and the outermost table: Gmail drops <html>'s attributes
    assert html["ar"].count("text-align:end;") == 2  # the line's amount and the total, at the line's end
    assert '<html lang="en">' in html["en"] and 'dir="rtl"' not in html["en"]


# (locale, currency, item price) -> what the total and the expiry date (3 days after NOW) look like.
BABEL = {
    "en": ("EUR", "1234.50", "€1,234.50", "November 23, 2026"),
    "sv": ("EUR", "1234.50", "1\xa0234,50\xa0€", "23 november 2026"),
    "hu": ("EUR", "1234.50", "1\xa0234,50\xa0EUR", "2026. november 23."),
    "ru": ("EUR", "1234.50", "1\xa0234,50\xa0€", "23 ноября 2026\u202fг."),
    "af": ("EUR", "1234.50", "€1\xa0234,50", "23 November 2026"),
    "kk": ("EUR", "1234.50", "1\xa0234,50\xa0€", "2026\u202fж. 23 қараша"),
}
ZERO_DECIMALS = {"hu": ("HUF", "4990", "4\xa0990\xa0Ft"), "kk": ("KZT", "185000", "185\xa0000\xa0₸"),
                 "en": ("JPY", "1200", "¥1,200")}


@pytest.mark.parametrize("locale", LOCALES)
def test_money_and_dates_are_formatted_per_locale_with_babel(shop: Shop, locale: str) -> None:
    currency, price, total, expiry = BABEL[locale]
    shop.add(cart("c1", locale=locale, currency=currency, items=(("LAMP", "Lamp", 1, price),)))
    if locale in ZERO_DECIMALS:
        code, amount, shown = ZERO_DECIMALS[locale]
        shop.add(cart("c2", locale=locale, currency=code, items=(("LAMP", "Lamp", 1, amount),)))
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3", "incentive": {"kind": "percent", "value": 10, "code": "TEN",
                                                                "valid_for": "3d"}}]}})
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    for part in (result.json["text"], result.json["html"]):
        assert total in part and expiry in part, (locale, part[:400])
    if locale in ZERO_DECIMALS:
        other = shop.cli("preview", "c2", "--json").json
        assert shown in other["text"] and shown in other["html"]


@pytest.mark.parametrize(("locale", "currency", "price", "shown"), [
    ("hu", "HUF", "1249.50", "1\xa0249,50\xa0Ft"), ("kk", "KZT", "4990.50", "4\xa0990,50\xa0₸")])
def test_a_real_fraction_of_huf_or_kzt_is_shown_not_rounded(shop: Shop, locale: str, currency: str, price: str,
                                                            shown: str) -> None:
    """Babel 2.19 gives HUF no minor digits: 1 249,50 Ft was shown as 1 250 Ft, and two of them
    as 2 499 Ft, a total that no longer matched its lines."""
    shop.add(cart("c1", locale=locale, currency=currency, items=(("MUG", "Mug", 2, price),)))
    text = shop.cli("preview", "c1", "--json").json["text"]
    assert shown in text
    whole = f"{int(Decimal(price) * 2):,}".replace(",", "\xa0")
    assert f"{whole}\xa0{'Ft' if currency == 'HUF' else '₸'}" in text  # the total, whole: no ",00"


def test_the_money_filter_formats_in_the_message_locale(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    for locale in ("en", "sv"):
        (folder / locale).mkdir(parents=True)
        (folder / locale / "m.subject.txt").write_text("{{ 1234.5|money('SEK') }}", encoding="utf-8")
    renderer = Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder))
    subjects = {loc: renderer.env.get_template(f"{loc}/m.subject.txt").render(locale=loc) for loc in ("en", "sv")}
    assert subjects == {"en": "SEK1,234.50", "sv": "1\xa0234,50\xa0kr"}


def test_the_money_filter_reads_a_currency_code_in_any_case(tmp_path: Path) -> None:
    """``money("sek")`` printed ``sek1,234.50``: Babel knows no currency "sek"."""
    folder = tmp_path / "t"
    (folder / "sv").mkdir(parents=True)
    (folder / "sv" / "m.subject.txt").write_text("{{ 1234.5|money(' sek') }}", encoding="utf-8")
    renderer = Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder))
    assert renderer.env.get_template("sv/m.subject.txt").render(locale="sv") == "1\xa0234,50\xa0kr"


def test_a_name_printed_into_an_unquoted_attribute_fails_the_check(tmp_path: Path) -> None:
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=_good_with(tmp_path, ""))
    html = tmp_path / "t" / "en" / "mine.html"
    html.write_text(html.read_text(encoding="utf-8").replace("<p", "<p title={{ customer.last_name or 'x' }}", 1),
                    encoding="utf-8")
    report = check_templates(config, templates=["mine"], carts=edge_carts())
    problems = [p for case in report.cases for p in case.problems]
    assert [(p.kind, p.cart) for p in problems] == [("html", "edge-markup")], problems
    assert "event handler onmouseover=" in problems[0].message


@pytest.mark.parametrize(("printed", "handler"), [
    ("customer.greeting_name", "onfocus"),
    ("customer.first_name", "onfocus"),
    ("(items|first).name", "onclick"),
])
def test_every_name_printed_into_an_unquoted_attribute_fails_the_check(tmp_path: Path, printed: str,
                                                                      handler: str) -> None:
    """Only the last name carried a handler: the first name and the greeting, which templates
    print most, passed the check and reached preview as <span title=x onmouseover=...>."""
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=_good_with(tmp_path, ""))
    html = tmp_path / "t" / "en" / "mine.html"
    html.write_text(html.read_text(encoding="utf-8").replace("<p", f"<p title={{{{ {printed} or 'x' }}}}", 1),
                    encoding="utf-8")
    report = check_templates(config, templates=["mine"], carts=edge_carts())
    problems = {p.cart: p for case in report.cases for p in case.problems if p.kind == "html"}
    assert f"event handler {handler}=" in problems["edge-markup"].message, problems


def test_the_money_filter_on_an_amount_formatted_already_says_so(tmp_path: Path) -> None:
    config = Config(source={"type": "csv", "carts": "c.csv"},
                    templates=_good_with(tmp_path, '{{ cart.total|money("EUR") }}'))
    report = check_templates(config, templates=["mine"], carts=edge_carts()[:1])
    (problem,) = [p for case in report.cases for p in case.problems]
    assert problem.kind == "render" and problem.file == "en/mine.txt"
    assert "is not an amount (cart.total, item.price and the like are formatted already" in problem.message


def test_a_variant_overrides_only_the_parts_it_has(tmp_path: Path) -> None:
    folder = tmp_path / "t" / "en"
    folder.mkdir(parents=True)
    (folder / "reminder-1@b.subject.txt").write_text("B", encoding="utf-8")
    renderer = Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=tmp_path / "t"))
    assert renderer.part_file("reminder-1", "en", "subject.txt", "b") == "en/reminder-1@b.subject.txt"
    assert renderer.part_file("reminder-1", "en", "txt", "b") == "en/reminder-1.txt"
    assert renderer.part_file("reminder-1", "sv", "subject.txt", "b") == "sv/reminder-1.subject.txt"
    assert renderer.part_file("reminder-1", "en", "subject.txt", None) == "en/reminder-1.subject.txt"


def _notes_of_an_ab_test(shop: Shop, file: str, text: str) -> list[str]:
    """``templates check``'s notes for reminder-1 in a/b test, with ``file`` in the shop's templates."""
    path = shop.folder / "templates" / file
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    shop.configure(templates="templates", sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}}]}})
    return shop.cli("templates", "check", "--json", "--quick", "--template", "reminder-1", now=None).json["notes"]


def test_every_locale_without_a_variants_files_is_noted_and_the_control_is_not(shop: Shop) -> None:
    # Customers of a locale without reminder-1@b.* are counted as b but read the control: the A/B
    # result blurs unless the owner knows. Variant a, with files in no locale, is the control.
    notes = _notes_of_an_ab_test(shop, "en/reminder-1@b.subject.txt", "Still thinking, {{ customer.first_name }}?")
    notes = [note for note in notes if "variant" in note]
    assert len(notes) == 1 and notes[0].startswith("reminder-1: variant b has no files of its own in ")
    assert "af" in notes[0] and "sv" in notes[0] and " en," not in notes[0] and "variant a" not in notes[0]
    assert notes[0].endswith("those customers are counted as b but get the base template")


def test_a_variant_file_no_step_configures_is_noted_with_the_name_it_likely_meant(shop: Shop) -> None:
    """`reminder-1@B.*` beside `variants: {a: 1, b: 1}`: both arms would send the control."""
    notes = _notes_of_an_ab_test(shop, "en/reminder-1@B.subject.txt", "Still thinking?")
    assert [note for note in notes if "@B" in note] == [
        "reminder-1@B in en: no step configures variant B, so no customer gets these files (did you mean b? "
        "variant names are case-sensitive)"]


def test_a_file_no_run_reads_is_noted_with_why(shop: Shop) -> None:
    partial = shop.folder / "templates" / "partials" / "footer.html"  # an include: not a locale's folder
    partial.parent.mkdir(parents=True)
    partial.write_text("<p>footer</p>", encoding="utf-8")
    notes = _notes_of_an_ab_test(shop, "pt-BR/reminder-1.txt", "Olá {{ unsubscribe_url }}")
    assert "pt-BR/reminder-1.txt: not read by any run: a locale folder is named with _, not - (pt_BR)" in notes
    assert not [note for note in notes if "partials" in note]


@pytest.mark.parametrize("file", ["en/reminder-1.htm", "en/reminder-1.text", "sv/reminder-1.subject"])
def test_a_part_file_with_a_mistyped_ending_is_noted_as_not_read(shop: Shop, file: str) -> None:
    """``reminder-1.htm`` beside a shipped ``reminder-1.html``: a run reads the shipped file, and
    the shop's edits never go out; the check said nothing of the file."""
    notes = _notes_of_an_ab_test(shop, file, "<p>Still thinking?</p>")
    assert (f"{file}: not read by any run: a message's parts are reminder-1.subject.txt, reminder-1.txt, "
            "reminder-1.html and reminder-1.sms.txt") in notes, notes


def test_an_editors_backup_beside_a_part_is_not_noted(shop: Shop) -> None:
    notes = _notes_of_an_ab_test(shop, "en/reminder-1.txt~", "Hi")
    assert not [note for note in notes if "reminder-1.txt~" in note], notes


def test_a_locale_folder_not_written_as_cldr_writes_it_is_noted(shop: Shop, tmp_path: Path) -> None:
    """``fr_ca/``: a customer's ``fr-CA`` (or ``FR_ca``) is read as ``fr_CA``, so no run ever reads
    the folder (they get ``fr`` or the default); the check rendered it and said nothing."""
    notes = _notes_of_an_ab_test(shop, "fr_ca/reminder-1.subject.txt", "Votre panier")
    assert "fr_ca/reminder-1.subject.txt: not read by any run: a locale folder is named as CLDR writes it (fr_CA)" \
        in notes
    folder = tmp_path / "t" / "fr_ca"
    folder.mkdir(parents=True)
    (folder / "reminder-1.subject.txt").write_text("Votre panier", encoding="utf-8")
    renderer = Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=tmp_path / "t"))
    assert renderer.resolve_locale(normalize_locale("fr-ca"), "reminder-1") == "en"  # what the note says


def test_a_long_text_message_no_tier_sends_is_a_note_and_fails_once_a_tier_does(shop: Shop) -> None:
    # The shipped templates have .sms.txt files; a shop that sends no SMS must not fail CI on their length.
    shop.configure(sms={"max_segments": 1, "sender": "TestShop"})
    shop.write()
    email_only = shop.cli("templates", "check", "--json", "--quick", "--template", "reminder-1", now=None)
    assert email_only.exit_code == 0, email_only.stdout[-1500:]
    assert any("longer than sms.max_segments (1) for some carts; no tier sends reminder-1 by SMS yet" in note
               for note in email_only.json["notes"])
    shop.configure(shop={"country": "SE"}, priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "t" * 32}})
    texting = shop.cli("templates", "check", "--json", "--quick", "--template", "reminder-1", now=None)
    assert texting.exit_code == 1
    kinds = {problem["kind"] for case in texting.json["cases"] if case["channel"] == "sms" for problem in case["problems"]}
    assert "sms-length" in kinds


def test_a_text_that_fits_only_a_short_link_fails_the_check_with_its_file_and_size(shop: Shop, tmp_path: Path) -> None:
    """The check's sample links were ~60 characters, so a text that a shop's real ~110-character
    cart link pushes over the limit passed CI and then failed for every customer. Its sample
    carts link as a shop does, and the failure names the file, the size and the remedy."""
    folder = tmp_path / "mine" / "en"
    folder.mkdir(parents=True)
    (folder / "reminder-1.sms.txt").write_text("{{ shop.name }}: your cart is waiting for you, and so are we: "
                                               "{{ recovery_url }} Reply STOP to opt out.\n", encoding="utf-8")
    shop.configure(shop={"country": "SE"}, templates=str(tmp_path / "mine"),
                   priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"max_segments": 1, "sender": "TestShop",
                        "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "t" * 32}})
    result = shop.cli("templates", "check", "--json", "--quick", "--template", "reminder-1", "--locale", "en",
                      now=None)
    assert result.exit_code == 1, result.stdout[-1500:]
    problems = [p for case in result.json["cases"] if case["channel"] == "sms" for p in case["problems"]]
    assert {(p["kind"], p["file"]) for p in problems} == {("sms-length", "en/reminder-1.sms.txt")}
    assert re.search(r"^2 segments \(GSM-7, 1\d\d units\), more than sms.max_segments \(1\) \(its link is 11\d "
                     r"characters\): shorten the text, or raise sms.max_segments", problems[0]["message"]), problems


def test_the_check_prints_a_pool_files_codes_as_long_as_its_longest(tmp_path: Path) -> None:
    """A text must fit the longest code a customer can get: a pool file's placeholder was 8 X
    whatever the file held, so a text that 20-character codes push over the limit passed."""
    from cartrescue.config.sequences import CodeSource
    from cartrescue.template_check import TemplateChecker

    pool = tmp_path / "codes.txt"
    pool.write_text("code\nSHORT1\nWINTER-SALE-2026-A7QX\n", encoding="utf-8")
    checker = TemplateChecker(Config(source={"type": "csv", "carts": "c.csv"}), carts=[])
    assert checker.sample_code(CodeSource(pool="winter", file=pool)) == "X" * 21
    assert checker.sample_code(CodeSource(pool="gen", pattern="CR-{random:8}")) == "CR-XXXXXXXX"


def test_a_run_prints_nothing_for_a_none_that_templates_check_reports(shop: Shop, tmp_path: Path) -> None:
    """`{{ customer.last_name }}` of a cart without one: `templates check` reports the leak (a
    template bug), and the message a customer gets says nothing there, not "None". A product
    that is named "None" keeps its name."""
    folder = tmp_path / "t" / "en"
    folder.mkdir(parents=True)
    (folder / "hi.subject.txt").write_text("Hi {{ customer.first_name }} {{ customer.last_name }}!", encoding="utf-8")
    (folder / "hi.txt").write_text("{% for item in items %}{{ item.name }}{% endfor %} {{ shop.logo_url }}.\n",
                                   encoding="utf-8")
    (folder / "hi.html").write_text("<p>{{ customer.last_name }}</p>\n", encoding="utf-8")
    shop.configure(templates=str(tmp_path / "t"), sequences={"default": {"steps": [{"delay": "1h", "template": "hi"}]}})
    shop.add(cart("c1", first_name="Ann", last_name="", items=[("S", "None", 1, "25.00")]))
    result = shop.cli("preview", "c1", "--json", "--html", str(tmp_path / "hi.html"))
    assert result.exit_code == 0, result.output
    assert (result.json["subject"], result.json["text"]) == ("Hi Ann !", "None .\n")
    assert (tmp_path / "hi.html").read_text(encoding="utf-8").startswith("<p></p>")
    checked = shop.cli("templates", "check", "--json", "--quick", now=None)
    assert checked.exit_code == 1 and any(p["kind"] == "leak" for c in checked.json["cases"] for p in c["problems"])


def test_a_part_that_prints_none_beside_a_list_renders_too(shop: Shop, tmp_path: Path) -> None:
    """The environment whose None prints nothing sees every printed value, lists and mappings
    too (a cache over those values raised "unhashable", and the message failed)."""
    folder = tmp_path / "t" / "en"
    folder.mkdir(parents=True)
    (folder / "hi.subject.txt").write_text("Hi", encoding="utf-8")
    (folder / "hi.txt").write_text("{{ customer.last_name }}{{ items|map(attribute='name')|list }}\n", encoding="utf-8")
    (folder / "hi.html").write_text("<p>{{ customer.last_name }}</p>\n", encoding="utf-8")
    shop.configure(templates=str(tmp_path / "t"), sequences={"default": {"steps": [{"delay": "1h", "template": "hi"}]}})
    shop.add(cart("c1", first_name="Ann", last_name="", items=[("S", "Mug", 1, "25.00")]))
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["text"] == "['Mug']\n"


def test_the_date_filter_given_an_undefined_value_fails_as_undefined(tmp_path: Path) -> None:
    """``{{ incentive.expires|date }}`` of a step without an incentive: the check said "render:
    ValueError: date: Undefined is not a date" instead of naming what is undefined."""
    config = Config(source={"type": "csv", "carts": "c.csv"},
                    templates=_good_with(tmp_path, "{{ incentive.expires|date }}\n"))
    report = check_templates(config, templates=["mine"], carts=edge_carts()[:1])
    problems = [(p.kind, p.file, p.message) for case in report.cases for p in case.problems]
    # rendered without an incentive, then with the sample one (whose expires is formatted already)
    assert problems[0] == ("undefined", "en/mine.txt", "undefined variable: 'incentive.expires' is undefined: "
                           "incentive is None here (test it first: {% if incentive %})")
    assert problems[1][0] == "render" and "formatted already" in problems[1][2], problems


def test_a_template_name_no_folder_has_and_no_step_uses_is_a_usage_error_naming_the_templates(shop: Shop) -> None:
    """``--template nope`` (a typo in a CI job) failed as a template missing its parts, exit 1,
    as a broken template does; an unknown ``--locale`` is a usage error, exit 2. So is this now."""
    result = shop.cli("templates", "check", "--quick", "--template", "reminder-9", "--json", now=None)
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert message.startswith("--template reminder-9: no such template (the templates: "), message
    assert "reminder-1" in message


def test_a_template_a_step_uses_but_no_folder_has_still_fails_the_check(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-gone"}]}})
    result = shop.cli("templates", "check", "--quick", "--template", "reminder-gone", "--json", now=None)
    assert result.exit_code == 1, result.output


# -- an offer a step promises that its template never prints ----------------------------------------

def _offer_template(folder: Path, *, subject: str = "Your cart", text_end: str = "", html_end: str = "",
                    layout: str | None = None) -> Path:
    """``en/offer.*``: the good fixture, with ``text_end`` and ``html_end`` added to its text and
    HTML parts; ``layout``: its HTML part extends a ``_layout.html`` of this text instead."""
    own = folder / "t" / "en"
    own.mkdir(parents=True)
    (own / "offer.subject.txt").write_text(subject, encoding="utf-8")
    (own / "offer.txt").write_text((BROKEN / "en" / "good.txt").read_text(encoding="utf-8") + text_end,
                                   encoding="utf-8")
    html = (BROKEN / "en" / "good.html").read_text(encoding="utf-8")
    if layout is not None:
        (folder / "t" / "_layout.html").write_text(layout, encoding="utf-8")
        html = ('{% extends "_layout.html" %}{% block content %}<p><a href="{{ recovery_url }}">Back to your cart</a>'
                '</p>{% endblock %}')
    (own / "offer.html").write_text(html.replace("</body>", html_end + "</body>"), encoding="utf-8")
    return folder / "t"


def _offer_check(folder: Path, incentive: dict[str, Any] | None, **step: Any) -> Any:
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=folder, priority=TIERS,
                    sequences={"default": {"steps": [{"delay": "1h", "template": "offer", "incentive": incentive,
                                                      **step}]}})
    return check_templates(config, templates=["offer"], carts=edge_carts())


def test_a_step_whose_template_never_prints_its_code_fails_naming_the_step_and_the_offer(tmp_path: Path) -> None:
    """A step configured with WELCOME10 whose template never prints it: the customer is promised
    nothing, and the shop burns the code. It fails the check (exit 1), as every kind that a
    customer of that step would see wrong does."""
    report = _offer_check(_offer_template(tmp_path), {"kind": "percent", "value": 10, "code": "WELCOME10"})
    assert not report.ok
    (case,) = report.failed
    assert (case.template, case.locale, case.variant, case.step_label) == ("offer", "en", None, "default 1/1")
    problems = [p for p in case.problems if p.kind == "incentive"]
    assert problems and {p.kind for p in case.problems} == {"incentive"}, case.problems
    assert "WELCOME10" in problems[0].message and "percent 10" in problems[0].message, problems[0].message
    assert "en/offer.subject.txt" in problems[0].message and "en/offer.html" in problems[0].message


def test_a_code_the_check_reports_missing_fails_templates_check_with_exit_1(shop: Shop, tmp_path: Path) -> None:
    shop.configure(templates=str(_offer_template(tmp_path)), sequences={"default": {"steps": [
        {"delay": "1h", "template": "offer", "incentive": {"kind": "fixed", "value": 5, "code": "FIVE"}}]}})
    result = shop.cli("templates", "check", "--json", "--quick", now=None)
    assert result.exit_code == 1, result.output
    kinds = {p["kind"] for c in result.json["cases"] for p in c["problems"]}
    assert kinds == {"incentive"}
    table = shop.cli("templates", "check", "--quick", now=None)
    assert "incentive" in table.stdout and "FIVE" in table.stdout


@pytest.mark.parametrize("where", ["html", "text", "subject", "layout"])
def test_a_code_printed_in_any_one_part_or_by_the_layout_passes(tmp_path: Path, where: str) -> None:
    shown = "{% if incentive %}Code: {{ incentive.code }}{% endif %}"
    layout = None
    if where == "layout":
        layout = ((render.shipped_templates() / "_layout.html").read_text(encoding="utf-8")
                  .replace("{% block content %}{% endblock %}", "{% block content %}{% endblock %}<p>" + shown + "</p>"))
        assert shown in layout
    folder = _offer_template(tmp_path, subject="Your cart " + shown if where == "subject" else "Your cart",
                             text_end=shown if where == "text" else "",
                             html_end=f"<p>{shown}</p>" if where == "html" else "", layout=layout)
    report = _offer_check(folder, {"kind": "percent", "value": 10, "code": "WELCOME10"})
    assert report.ok, [(c.name, c.problems) for c in report.failed]


@pytest.mark.parametrize("printed", ["{{ incentive.code }}",  # HTML-escaped: SAVE 10&amp;NOW
                                     '<a href="https://shop.example.com/discount/{{ incentive.code|urlencode }}">Apply'
                                     '</a>'])
def test_a_code_printed_escaped_or_in_a_link_passes(tmp_path: Path, printed: str) -> None:
    """Printed in the HTML part only, where it is escaped, or in a link that applies the code at
    checkout (``/discount/<code>``, URL-encoded)."""
    folder = _offer_template(tmp_path, html_end="{% if incentive %}<p>" + printed + "</p>{% endif %}")
    report = _offer_check(folder, {"kind": "percent", "value": 10, "code": "SAVE 10&NOW"})
    assert not [p for c in report.cases for p in c.problems if p.kind == "incentive"], report.failed[0].problems


def test_a_per_recipient_code_is_looked_for_as_its_placeholder(tmp_path: Path) -> None:
    codes = {"kind": "percent", "value": 10, "codes": {"pool": "p", "pattern": "CR-{random:8}"}}
    report = _offer_check(_offer_template(tmp_path / "a"), codes)
    assert [p.kind for c in report.cases for p in c.problems][:1] == ["incentive"]
    assert "CR-XXXXXXXX" in report.failed[0].problems[0].message
    shown = _offer_template(tmp_path / "b", text_end="{% if incentive %}Your code: {{ incentive.code }}{% endif %}")
    assert _offer_check(shown, codes).ok


def test_an_offer_without_a_code_fails_when_no_part_changes_with_it(tmp_path: Path) -> None:
    """Free shipping without a code: nothing to look for but the offer's own words, which are the
    template's (any language). A template that renders the same with and without the offer
    never mentions it."""
    free = {"kind": "free_shipping"}
    report = _offer_check(_offer_template(tmp_path / "a"), free)
    assert {p.kind for c in report.cases for p in c.problems} == {"incentive"}
    assert "free_shipping" in report.failed[0].problems[0].message
    mentioned = _offer_template(tmp_path / "b", html_end="{% if incentive %}<p>Frakt ingår</p>{% endif %}")
    assert _offer_check(mentioned, free).ok


def test_a_tier_offer_the_template_never_prints_names_the_tier(tmp_path: Path) -> None:
    report = _offer_check(_offer_template(tmp_path), None,
                          tier_incentives={"high": {"kind": "percent", "value": 15, "code": "VIP15"}})
    problems = [p for c in report.cases for p in c.problems]
    assert problems and {p.kind for p in problems} == {"incentive"}
    assert "VIP15" in problems[0].message and "(high)" in problems[0].message


def test_the_shipped_last_reminder_shows_every_kind_of_offer() -> None:
    for incentive in ({"kind": "percent", "value": 10, "code": "TEN"}, {"kind": "free_shipping"},
                      {"kind": "fixed", "value": 5, "codes": {"pool": "p", "pattern": "CR-{random:8}"}}):
        config = Config(source={"type": "csv", "carts": "c.csv"}, sequences={"default": {"steps": [
            {"delay": "1h", "template": "reminder-3", "incentive": incentive}]}})
        report = check_templates(config, carts=edge_carts())
        assert report.ok, [(c.name, c.problems[:1]) for c in report.failed]


def test_a_shipped_reminder_without_offer_text_fails_for_a_step_that_gives_one() -> None:
    config = Config(source={"type": "csv", "carts": "c.csv"}, sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "incentive": {"kind": "percent", "value": 10, "code": "TEN"}}]}})
    report = check_templates(config, carts=edge_carts(), locales=["en"])
    assert {p.kind for c in report.cases for p in c.problems} == {"incentive"}


def test_a_text_message_without_the_offer_is_a_note_until_a_tier_texts_it(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "incentive": {"kind": "percent", "value": 10, "code": "TEN"}}]}})
    email_only = shop.cli("templates", "check", "--json", "--quick", "--locale", "en", now=None)
    sms = [c for c in email_only.json["cases"] if c["channel"] == "sms"]
    assert sms and all(c["ok"] for c in sms)
    assert any("en/reminder-1.sms.txt); no tier sends reminder-1 by SMS yet" in n for n in email_only.json["notes"])
    shop.configure(shop={"country": "SE"}, priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"sender": "TestShop", "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "t" * 32}})
    texting = shop.cli("templates", "check", "--json", "--quick", "--locale", "en", now=None)
    assert texting.exit_code == 1
    assert {p["kind"] for c in texting.json["cases"] if c["channel"] == "sms" for p in c["problems"]} == {"incentive"}


@pytest.mark.parametrize(("file", "old", "new", "kind", "said"), [
    ("mine.txt", "{{ cart.total }}", "{{ cart.totl }}", "undefined",
     "undefined variable: 'cart.totl' is undefined: cart has no 'totl' (did you mean cart.total?)"),
    ("mine.txt", "{{ item.name }}", "{{ item.nmae }}", "undefined",
     "undefined variable: 'item.nmae' is undefined: item has no 'nmae' (did you mean item.name?)"),
    ("mine.html", "{{ shop.name }}", "{{ shpo.name }}", "undefined",
     "undefined variable: 'shpo' is undefined (did you mean shop?)"),
    ("mine.txt", "{{ cart.total }}", "{{ cart.total|money2 }}", "syntax",
     "syntax error: No filter named 'money2' (did you mean money?)"),
    # inside an {% if %} Jinja finds it missing only when it renders it
    ("mine.txt", "{{ cart.total }}", "{% if cart %}{{ cart.total|money2 }}{% endif %}", "render",
     "No filter named 'money2' (did you mean money?)"),
    ("mine.html", "<p>Total:", '{% include "_macro.html" %}<p>Total:', "render",
     "en/mine.html needs template '_macro.html', which does not exist (did you mean _macros.html?)"),
])
def test_a_typo_names_the_line_and_the_close_names_that_exist(tmp_path: Path, file: str, old: str, new: str,
                                                             kind: str, said: str) -> None:
    """Jinja's "'dict object' has no attribute 'totl'" named neither the path nor what exists."""
    folder = _good_with(tmp_path, "")
    path = folder / "en" / file
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    line = next(number for number, written in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if new.split("}}")[0] in written)
    report = check_templates(Config(source={"type": "csv", "carts": "c.csv"}, templates=folder),
                             templates=["mine"], carts=edge_carts()[:1])
    problems = [(p.kind, p.file, p.line, p.message) for case in report.cases for p in case.problems]
    assert problems[0] == (kind, f"en/{file}", line, said), problems


def test_an_unclosed_block_names_the_line_it_was_opened_on() -> None:
    """Jinja names the end of the file, where it noticed; the ``{% if %}`` left open is on line 5."""
    problem = _check("--template", "syntax", "--json").json["cases"][0]["problems"][0]
    assert problem["line"] == 13 and problem["message"].endswith("(the {% if %} of line 5)"), problem


@pytest.mark.parametrize(("configured", "key", "gets"), [
    ({"shop": {"default_locale": "de"}}, "shop.default_locale de", "en"),
    ({"source": {"type": "magento2", "url": "mysql+pymysql://reader@127.0.0.1/shop",  # never connected to
                 "options": {"store_locales": {"2": "nl_BE"}}}}, "source.options.store_locales.2 nl_BE", "en"),
])
def test_a_locale_the_config_names_without_a_template_folder_is_noted(shop: Shop, configured: dict[str, Any],
                                                                      key: str, gets: str) -> None:
    """``default_locale: de`` without a ``de`` folder: every German customer got the English
    messages, and `templates check`, a run and `doctor` all passed without a word."""
    shop.configure(**configured)
    result = shop.cli("templates", "check", "--quick", "--json", now=None)
    assert result.exit_code == 0, result.output  # a note: English messages still go out
    notes = [note for note in result.json["notes"] if note.startswith(key)]
    assert notes == [f"{key}: no template folder serves it (the folders: af, en, hu, kk, ru, sv), so its "
                     f"customers get the {gets} templates"], result.json["notes"]


def test_a_locale_the_config_names_with_a_folder_is_not_noted(shop: Shop) -> None:
    shop.configure(shop={"default_locale": "sv_SE"})  # served by sv
    result = shop.cli("templates", "check", "--quick", "--json", now=None)
    assert not [note for note in result.json["notes"] if "default_locale" in note], result.json["notes"]


def test_a_regional_default_locale_served_by_its_language_folder_is_not_noted(shop: Shop) -> None:
    shop.configure(shop={"default_locale": "en_GB"})
    result = shop.cli("templates", "check", "--quick", "--json", now=None)
    assert not [note for note in result.json["notes"] if "default_locale" in note], result.json["notes"]


def test_a_step_whose_variants_have_no_files_and_whose_files_do_not_read_variant_is_noted(shop: Shop) -> None:
    """``variants: {a: 1, b: 1}`` and no ``@b`` file anywhere: every arm sent the same message (an
    A/A test whose report still compared a with b), and the check said nothing."""
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}}]}})
    notes = shop.cli("templates", "check", "--json", "--quick", "--template", "reminder-1", now=None).json["notes"]
    assert ("reminder-1: none of its variants (a, b) has e-mail files of its own and its files do not read "
            "`variant`: every arm gets the same e-mail (add reminder-1@b.<part> files, or branch on "
            "{% if variant == \"b\" %})") in notes, notes


def test_a_step_whose_files_branch_on_the_variant_is_not_noted(shop: Shop) -> None:
    notes = _notes_of_an_ab_test(shop, "en/reminder-1.subject.txt",
                                 '{% if variant == "b" %}Still thinking?{% else %}Your cart{% endif %}')
    assert not [note for note in notes if "every arm" in note], notes


def test_a_call_steps_email_to_a_cart_it_cannot_reach_is_checked_with_its_tier(shop: Shop, tmp_path: Path) -> None:
    """A call-list step goes by e-mail to a cart without a number (`eligibility.channel_fallback`)
    or over its tier's budget (`over_budget: email`): a run renders its e-mail with that tier and
    sequence. The check rendered only the steps a tier mails itself, so a branch for the calling
    tier passed CI and failed each such cart of a run with a render error."""
    folder = tmp_path / "mine" / "en"
    folder.mkdir(parents=True)
    shipped = (REPO / "templates" / "en" / "reminder-1.txt").read_text(encoding="utf-8")
    (folder / "reminder-1.txt").write_text('{% if tier == "vip" %}{{ cart.totl }}{% endif %}' + shipped,
                                           encoding="utf-8")
    shop.configure(templates=str(tmp_path / "mine"), priority={"tiers": [
        {"name": "vip", "min_score": 50, "sequence": "call", "channel": "call-list"},
        {"name": "standard", "min_score": 0}]},
        sequences={"call": {"steps": [{"delay": "1h", "template": "reminder-1"}]},
                   "default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    result = shop.cli("templates", "check", "--json", "--quick", "--locale", "en", now=None)
    assert result.exit_code == 1, result.stdout[-1500:]
    failed = [case for case in result.json["cases"] if not case["ok"]]
    assert [(case["sequence"], case["channel"]) for case in failed] == [("call", "email")], failed
    problem = failed[0]["problems"][0]
    assert (problem["kind"], problem["file"], problem["line"]) == ("undefined", "en/reminder-1.txt", 1), problem
    assert "'cart.totl' is undefined" in problem["message"]


def _german_problem(shop: Shop, tmp_path: Path, *parts: str) -> dict[str, Any]:
    """The first problem the check finds in a shop's own ``de`` folder holding the shipped
    English ``reminder-1`` files of ``parts`` (it fails: exit 1)."""
    folder = tmp_path / "mine" / "de"
    folder.mkdir(parents=True)
    for part in parts:
        shutil.copy(REPO / "templates" / "en" / f"reminder-1.{part}", folder / f"reminder-1.{part}")
    shop.configure(templates=str(folder.parent))
    result = shop.cli("templates", "check", "--json", "--quick", "--template", "reminder-1", "--locale", "de", now=None)
    assert result.exit_code == 1, result.stdout[-1500:]
    return result.json["cases"][0]["problems"][0]


def test_a_locale_folder_without_the_subject_says_its_customers_get_another_folder(shop: Shop, tmp_path: Path) -> None:
    """A translation whose subject file was forgotten: a run finds a customer's locale by that
    file, so German customers silently get the English message. The check said only "no subject
    part: de/reminder-1.subject.txt does not exist", as if a run failed, not what it does."""
    problem = _german_problem(shop, tmp_path, "txt", "html")
    assert (problem["kind"], problem["file"]) == ("missing-part", "de/reminder-1.subject.txt"), problem
    assert problem["message"] == (
        "no subject part: de/reminder-1.subject.txt does not exist: a run finds a customer's locale by "
        "reminder-1.subject.txt, so de customers get the en reminder-1 and no file of de/ for it is read "
        "(add de/reminder-1.subject.txt)"), problem


def test_a_locale_folder_without_the_html_part_says_what_to_add(shop: Shop, tmp_path: Path) -> None:
    """The subject and text translated, the HTML part not: a run fails each German customer's
    message. The check said the file does not exist, not that the folder's customers read every
    part from there (so the English HTML is no fallback) nor what to add."""
    problem = _german_problem(shop, tmp_path, "subject.txt", "txt")
    assert (problem["kind"], problem["file"]) == ("missing-part", "de/reminder-1.html"), problem
    assert problem["message"] == (
        "no HTML part: de/reminder-1.html does not exist: the de folder has reminder-1.subject.txt, so its "
        "customers get every part of reminder-1 from there (add de/reminder-1.html)"), problem


def test_a_shared_file_that_ran_out_of_time_three_times_fails_the_later_cases_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop in ``_layout.html`` cost every e-mail case the whole time (10 s each: 4 minutes of
    a CI job for the example config, more for every locale and variant added), where a run stops
    waiting on a file after three messages. Now the check does too, and still fails every case."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.2)
    loop = '{% for a in "x"|center(5000) %}{% for b in "y"|center(5000) %}{% endfor %}{% endfor %}'
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "_layout.html").write_text("\n" + loop + "{% block content %}{% endblock %}\n", encoding="utf-8")
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=tmp_path / "t")
    report = check_templates(config, carts=edge_carts()[:1])
    emails = [case for case in report.cases if case.channel == "email"]
    assert len(emails) > render.MAX_TIMEOUTS_PER_FILE and not any(case.ok for case in emails)
    said = [problem.message for case in emails for problem in case.problems if problem.kind == "render"]
    assert said.count("the message took more than 0.2 s to render (a runaway loop?)") == render.MAX_TIMEOUTS_PER_FILE
    assert said.count("not rendered: it took more than 0.2 s for 3 messages of this check already "
                      "(a runaway loop?)") == len(emails) - render.MAX_TIMEOUTS_PER_FILE, said
    assert {(problem.file, problem.line) for case in emails for problem in case.problems} == {("_layout.html", 2)}


def test_a_problem_quoting_a_colon_word_prints_it_as_written_not_as_emoji(tmp_path: Path) -> None:
    """rich read ``:fire:`` as an emoji code: a subject over 78 characters was quoted as
    "🔥 deal …", which no file says, and the developer searched the templates for an emoji."""
    folder = _good_with(tmp_path, "")
    (folder / "en" / "mine.subject.txt").write_text("Hot :fire: deal " + "x" * 80, encoding="utf-8")
    result = cli("templates", "check", "--templates", str(folder), "--template", "mine", "--quick")
    assert result.exit_code == 1, result.output
    assert "'Hot :fire: deal" in result.stdout and "🔥" not in result.output


def test_the_money_filter_without_a_currency_asks_for_one(tmp_path: Path) -> None:
    """``{{ 12.5|money }}`` failed as ``TypeError: _money_filter() missing 1 required positional
    argument: 'currency'``: a name of cartrescue's code, in no template and no document."""
    config = Config(source={"type": "csv", "carts": "c.csv"}, templates=_good_with(tmp_path, "{{ 12.5|money }}"))
    report = check_templates(config, templates=["mine"], carts=edge_carts()[:1])
    (problem,) = [p for case in report.cases for p in case.problems]
    assert (problem.kind, problem.file) == ("render", "en/mine.txt")
    assert "money: the currency is a three-letter code such as \"EUR\" or cart.currency, not None" in problem.message
    assert "_money_filter" not in problem.message


def test_a_check_that_cannot_run_writes_a_junit_report_in_error(tmp_path: Path) -> None:
    """A config error (exit 2) left the --junit file as an earlier build wrote it: a workspace
    kept between builds showed that build's passing cases as this one's."""
    junit = tmp_path / "reports" / "templates.xml"
    junit.parent.mkdir()
    junit.write_text('<testsuites tests="3" failures="0"/>', encoding="utf-8")  # an earlier build's
    result = cli("templates", "check", "--config", str(tmp_path / "missing.yaml"), "--junit", str(junit))
    assert result.exit_code == 2, result.output
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("errors"), root.get("failures")) == ("1", "1", "0")
    error = root.find("testsuite/testcase/error")
    assert error is not None and "missing.yaml" in (error.get("message") or "")


def test_junit_dash_writes_the_report_to_stdout_and_the_table_to_stderr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--junit -`` wrote a file named ``-`` in the working folder, and CI reading stdout got
    the table instead of the report."""
    monkeypatch.chdir(tmp_path)
    result = _check("-t", "syntax", "--junit", "-")
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "-").exists()
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    assert root.tag == "testsuites" and int(root.get("failures") or 0) > 0
    assert "syntax error" in result.stderr and "JUnit XML written" not in result.stderr


def test_junit_dash_with_json_is_refused_as_both_would_be_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _check("-t", "syntax", "--junit", "-", "--json")
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"].startswith("--junit -: --json writes to stdout too: give --junit a file")
    assert not (tmp_path / "-").exists()


def test_junit_dash_of_a_check_that_cannot_run_is_a_report_in_error_on_stdout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("templates", "check", "--config", str(tmp_path / "missing.yaml"), "--junit", "-")
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "-").exists()
    error = ET.fromstring(result.stdout.split("\n", 1)[1]).find("testsuite/testcase/error")
    assert error is not None and "missing.yaml" in (error.get("message") or "")
    assert "missing.yaml" in result.stderr
