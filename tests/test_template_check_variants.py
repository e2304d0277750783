"""`templates check` on an A/B test's files: what it renders for each arm, and its notes on the
arms, each said of the parts a channel sends (an e-mail's subject, text and HTML; a text's
``.sms.txt``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from conftest import Shop, texting

AB_STEP = {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}}


def _check(shop: Shop, files: dict[str, str], *args: str) -> Any:
    """``templates check --json`` of reminder-1 with ``files`` in the shop's own templates."""
    for name, text in files.items():
        path = shop.folder / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    shop.configure(templates="templates", sequences={"default": {"steps": [AB_STEP]}})
    return shop.cli("templates", "check", "--json", "--quick", "--template", "reminder-1", *args, now=None)


SMS_B = {"en/reminder-1@b.sms.txt": "{{ shop.name }}: still thinking? {{ recovery_url }} Reply STOP to opt out."}


def test_an_sms_variant_file_is_not_said_to_be_missing_and_the_email_arms_are_noted_as_alike(shop: Shop) -> None:
    """Only ``en/reminder-1@b.sms.txt``: the note said "none of its variants (a, b) has files of
    its own", which the owner who had just written one could not make sense of. The texts of a
    and b differ; the e-mails (a text's fallback) are the same for both arms, and it says so."""
    notes = _check(texting(shop), SMS_B, "--locale", "en").json["notes"]
    alike = [note for note in notes if "every arm" in note]
    assert alike == ["reminder-1: none of its variants (a, b) has e-mail files of its own and its files do not "
                     "read `variant`: every arm gets the same e-mail (add reminder-1@b.<part> files, or branch on "
                     "{% if variant == \"b\" %})"], notes


def test_the_text_arms_alike_are_noted_of_the_text(shop: Shop) -> None:
    """E-mail variant files only, for a step that goes by text: every arm gets the same text."""
    notes = _check(texting(shop), {"en/reminder-1@b.subject.txt": "Still thinking?"}, "--locale", "en").json["notes"]
    assert ("reminder-1 (sms): none of its variants (a, b) has a text-message file of its own and its files do "
            "not read `variant`: every arm gets the same text (add reminder-1@b.sms.txt files, or branch on "
            "{% if variant == \"b\" %})") in notes, notes


def test_each_locale_without_an_sms_variant_file_is_noted(shop: Shop) -> None:
    """``@b.sms.txt`` in en only: the b customers of sv, hu … read the control's text, counted as b."""
    notes = [note for note in _check(texting(shop), SMS_B).json["notes"] if "has no files of its own in" in note]
    assert notes == ["reminder-1 (sms): variant b has no files of its own in af, hu, kk, ru, sv: those customers "
                     "are counted as b but get the base text message"], notes


def test_an_sms_variant_file_of_a_step_sent_by_email_only_is_not_noted_per_locale(shop: Shop) -> None:
    """No tier texts the step: no customer reads ``.sms.txt``, and no locale lacks one."""
    notes = _check(shop, SMS_B).json["notes"]
    assert not [note for note in notes if "(sms)" in note], notes


def test_a_variant_file_renders_only_for_the_steps_that_configure_the_variant(shop: Shop) -> None:
    """reminder-1 is step 1 of an A/B sequence and of the call sequence, which has no variants: a
    broken ``@b`` file failed twice, once as ``variant=b step=call 1/1``, which no run renders."""
    shop.configure(sequences={"call": {"steps": [{"delay": "1h", "template": "reminder-1"}]}},
                   priority={"tiers": [{"name": "vip", "min_score": 50, "sequence": "call"},
                                       {"name": "standard", "min_score": 0}]})
    result = _check(shop, {"en/reminder-1@b.subject.txt": "Still {{ cart.totl }}?"}, "--locale", "en")
    assert result.exit_code == 1, result.output
    cases = {case["name"]: case["ok"] for case in result.json["cases"] if case["channel"] == "email"}
    assert cases == {"reminder-1 [en] variant=- step=default 1/1": True,
                     "reminder-1 [en] variant=b step=default 1/1": False,
                     "reminder-1 [en] variant=- step=call 1/1": True}, cases


def test_the_junit_report_carries_the_notes_on_the_arms(shop: Shop) -> None:
    """A CI job that keeps the JUnit report alone (the docs' upload-artifact step) kept nothing
    of the notes: that sv's b customers read the control was in the job's log only."""
    junit = shop.folder / "templates.xml"
    result = _check(shop, {"en/reminder-1@b.subject.txt": "Still thinking?"}, "--junit", str(junit))
    assert result.exit_code == 0, result.output
    said = ET.parse(junit).getroot().find("testsuite/system-out")
    assert said is not None and said.text is not None
    assert ("note: reminder-1: variant b has no files of its own in af, hu, kk, ru, sv: those customers are "
            "counted as b but get the base template") in said.text.splitlines(), said.text


def test_a_base_file_is_not_rendered_for_an_arm_with_its_own_file_in_that_locale(shop: Shop) -> None:
    """``en/reminder-1@b.subject.txt``: no run renders en's base subject for b, but the base case
    gave it b's fixture carts too, and failed on a branch for b that no b customer reaches."""
    result = _check(shop, {"en/reminder-1@b.subject.txt": "Still thinking?",
                           "en/reminder-1.subject.txt": '{% if variant == "b" %}{{ cart.totl }}{% endif %}Your cart'},
                    "--locale", "en")
    assert result.exit_code == 0, result.output
    assert [case["name"] for case in result.json["cases"] if case["channel"] == "email"] == [
        "reminder-1 [en] variant=- step=default 1/1", "reminder-1 [en] variant=b step=default 1/1"]


def test_each_case_of_an_ab_step_lists_the_arms_it_renders_for(shop: Shop) -> None:
    """The base case of an A/B step was ``"variant": null`` and nothing more: a script read it as
    a step without variants, while a run renders those files for every arm without its own."""
    cases = _check(shop, {"en/reminder-1@b.subject.txt": "B: {{ shop.name }}"}, "--locale", "en").json["cases"]
    email = [(case["variant"], case["arms"]) for case in cases if case["channel"] == "email"]
    assert email == [(None, ["a"]), ("b", ["b"])], cases
    assert [case["arms"] for case in cases if case["channel"] == "sms"] == [["a", "b"]]  # no @b.sms.txt


def test_a_case_of_a_step_without_variants_lists_no_arms(shop: Shop) -> None:
    result = shop.cli("templates", "check", "--json", "--quick", "--template", "reminder-1", "--locale", "en", now=None)
    cases = result.json["cases"]
    assert cases and all((case["variant"], case["arms"]) == (None, []) for case in cases), cases
