"""A dry-run runs the checks of ``templates check`` on the templates it rendered: each
(template, locale, variant) it used once, never per cart; the findings go to stderr and to
``--json``'s ``warnings``; the exit code stays 0 unless ``--strict`` asks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cartrescue.config import load_config
from cartrescue.job import RunRequest, run_job
from conftest import NOW, Shop, cart

LONG = "Your cart at {{ shop.name }} is still waiting for you, and we kept every item of it just for you"
FINDING = "subject is"


def _templates(shop: Shop, subject: dict[str, str]) -> Shop:
    """The shop's own template ``mine`` in every locale of ``subject`` (its subject text there),
    otherwise good; its one step sends it."""
    good = Path(__file__).parent / "fixtures" / "templates_broken" / "en"
    for locale, text in subject.items():
        folder = shop.folder / "templates" / locale
        folder.mkdir(parents=True)
        (folder / "mine.subject.txt").write_text(text, encoding="utf-8")
        for part in ("txt", "html"):
            (folder / f"mine.{part}").write_text((good / f"good.{part}").read_text(encoding="utf-8"), encoding="utf-8")
    return shop.configure(templates="templates", sequences={"default": {"steps": [{"delay": "1h", "template": "mine"}]}})


def _carts(shop: Shop, count: int, locale: str = "en", prefix: str = "c") -> Shop:
    for n in range(count):
        shop.add(cart(f"{prefix}{n}", locale=locale))
    return shop


def test_a_dry_run_says_each_finding_of_a_template_it_used_once(shop: Shop) -> None:
    _carts(_templates(shop, {"en": LONG}), 5)
    result = shop.cli("run")
    assert result.exit_code == 0, result.output  # a finding alone changes no exit code
    assert result.stderr.count(FINDING) == 1, result.stderr
    assert "mine [en]" in result.stderr and "subject-length" in result.stderr
    document = shop.cli("run", "--json")
    assert document.exit_code == 0
    warnings = document.json["warnings"]
    assert len(warnings) == 1 and FINDING in warnings[0] and "en/mine.subject.txt" in warnings[0], warnings
    assert document.stderr.count(FINDING) == 1


def test_a_quiet_dry_run_with_a_finding_prints_it_and_the_summary(shop: Shop) -> None:
    _carts(_templates(shop, {"en": LONG}), 2)
    result = shop.cli("run", "--quiet")
    assert result.exit_code == 0 and result.stderr.count(FINDING) == 1, result.output
    assert "1 finding of `templates check`" in result.stdout


def test_a_dry_run_with_strict_exits_1_on_a_finding_and_0_without(shop: Shop) -> None:
    _carts(_templates(shop, {"en": LONG}), 3)
    strict = shop.cli("run", "--strict", "--json")
    assert strict.exit_code == 1, strict.output
    assert "error" not in strict.json and strict.json["warnings"]  # the run did its work: no error object
    assert strict.json["counts"]["failed"] == 0
    (shop.folder / "templates" / "en" / "mine.subject.txt").write_text("Your cart", encoding="utf-8")
    clean = shop.cli("run", "--strict", "--json")
    assert clean.exit_code == 0 and clean.json["warnings"] == [], clean.output


def test_a_template_no_message_of_the_dry_run_used_is_not_checked(shop: Shop) -> None:
    _carts(_templates(shop, {"en": "Your cart", "sv": LONG}), 4)
    quiet = shop.cli("run", "--json")
    assert quiet.json["warnings"] == [] and FINDING not in quiet.stderr
    _carts(shop, 1, locale="sv", prefix="s")
    used = shop.cli("run", "--json")
    assert len(used.json["warnings"]) == 1 and "mine [sv]" in used.json["warnings"][0]


def test_a_delivering_run_does_not_check_templates(shop: Shop, tmp_path: Path) -> None:
    _carts(_templates(shop, {"en": LONG}), 2)
    result = shop.cli("run", "--json", "--outbox", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.json["warnings"] == [] and FINDING not in result.stderr


def test_carts_renders_nothing_and_checks_nothing(shop: Shop) -> None:
    _carts(_templates(shop, {"en": LONG}), 2)
    result = shop.cli("carts", "--json")
    assert result.exit_code == 0 and FINDING not in result.stderr


def _dry_run(shop: Shop) -> Any:
    return run_job(load_config(shop.write()), RunRequest(now=NOW), lambda result: None)


def _lint_of(shop: Shop, carts: int) -> Any:
    _carts(_carts(shop, carts // 2), carts - carts // 2, locale="sv", prefix="s")
    summary = _dry_run(shop)
    assert summary.counts.actions["send"] == carts, summary.counts.as_dict()
    return summary.lint


def test_the_check_runs_once_per_template_used_whatever_the_number_of_carts(
        make_shop: Callable[[str], Shop], monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost of the check is the templates', never the carts': a dry-run of 3,000 carts checks
    the 2 (template, locale) pairs it rendered as one of 2 carts does, with as many renders."""
    monkeypatch.setenv("CARTRESCUE_CACHE_DIR", "")  # no findings kept from an earlier run: each checks
    few = _lint_of(_templates(make_shop("few"), {"en": "Your cart", "sv": "Din kundvagn"}), 2)
    many = _lint_of(_templates(make_shop("many"), {"en": "Your cart", "sv": "Din kundvagn"}), 3000)
    for lint in (few, many):
        assert [(case.template, case.locale) for case in lint.cases] == [("mine", "en"), ("mine", "sv")]
    assert sum(c.renders for c in many.cases) == sum(c.renders for c in few.cases) > 0


def test_a_dry_run_again_keeps_the_findings_until_a_template_or_the_config_changes(shop: Shop, tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's dry-runs repeat the check unchanged: the findings are kept between runs (in
    the cache folder) and checked again once a template file or the config changes."""
    monkeypatch.setenv("CARTRESCUE_CACHE_DIR", str(tmp_path / "cache"))
    _carts(_templates(shop, {"en": LONG}), 2)
    first, again = _dry_run(shop), _dry_run(shop)
    assert first.lint is not None and again.lint is None  # not checked again
    assert again.warnings == first.warnings and len(first.warnings) == 1
    (shop.folder / "templates" / "en" / "mine.subject.txt").write_text("Your cart at {{ shop.name }}", encoding="utf-8")
    fixed = _dry_run(shop)
    assert fixed.lint is not None and fixed.warnings == []  # "Your cart at Test Shop"
    renamed = shop.configure(shop={"name": "A shop whose name is long enough to take the subject past the limit"})
    assert len(_dry_run(renamed).warnings) == 1


@pytest.mark.slow
def test_the_workers_of_a_dry_run_have_it_checked_once(shop: Shop) -> None:
    _carts(_templates(shop, {"en": LONG}), 40)
    result = shop.cli("run", "--json", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert len(result.json["warnings"]) == 1 and FINDING in result.json["warnings"][0]
    assert result.stderr.count(FINDING) == 1, result.stderr
    table = shop.cli("run", "--workers", "2", "--strict")
    assert table.exit_code == 1 and table.stderr.count(FINDING) == 1, table.output


def _lint_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "lint").iterdir())


def test_kept_findings_unused_for_a_month_are_removed_when_a_check_writes_new_ones(
        shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every edit of a template or the config keys a new file of findings: a developer's cache
    folder grew by one file an edit, for good. Files no run read for 30 days go when a check
    writes; a left temporary file of a killed run too."""
    monkeypatch.setenv("CARTRESCUE_CACHE_DIR", str(tmp_path / "cache"))
    _carts(_templates(shop, {"en": LONG}), 2)
    _dry_run(shop)
    [old] = _lint_files(tmp_path)
    left = old.with_name("0123.4242.tmp")
    left.write_text("[]", encoding="utf-8")
    month_ago = time.time() - 31 * 86400
    for path in (old, left):
        os.utime(path, (month_ago, month_ago))
    shop.configure(shop={"name": "Another shop"})
    _dry_run(shop)
    [new] = _lint_files(tmp_path)
    assert new != old and new.suffix == ".json"


def test_kept_findings_a_run_reads_stay_however_old_their_file(
        shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shop whose templates never change reads the same file every run: reading it marks it
    used, so a month-old file still in use is not removed by another config's check."""
    monkeypatch.setenv("CARTRESCUE_CACHE_DIR", str(tmp_path / "cache"))
    _carts(_templates(shop, {"en": LONG}), 2)
    _dry_run(shop)
    [kept] = _lint_files(tmp_path)
    month_ago = time.time() - 31 * 86400
    os.utime(kept, (month_ago, month_ago))
    assert _dry_run(shop).lint is None  # read, not checked again
    renamed = shop.configure(shop={"name": "Another shop"})
    _dry_run(renamed)
    assert kept in _lint_files(tmp_path) and len(_lint_files(tmp_path)) == 2
