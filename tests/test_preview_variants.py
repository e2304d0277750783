"""`preview` and `send-test` of an A/B arm in a market without the arm's files: they show the
base template, as a run sends it to that market's customers of the arm, and say so."""

from __future__ import annotations

from conftest import Shop, cart, texting

OWNER = "owner@shop.example.com"
SAID = ("variant b: step 1's template has no sv files of the variant (reminder-1@b.*; en has them): shown as the "
        "base template, which a customer of sv gets, counted as b")


def _ab_test(shop: Shop, files: dict[str, str]) -> Shop:
    """reminder-1 in an a/b test, with ``files`` in the shop's own templates, and one cart."""
    for name, text in files.items():
        path = shop.folder / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    shop.add(cart("c1", phone="+46701234567", sms_consent="yes"))
    return shop.configure(templates="templates", sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1", "variants": {"a": 1, "b": 1}}]}})


SUBJECT_B = {"en/reminder-1@b.subject.txt": "B: still thinking?"}


def test_preview_of_a_variant_in_a_locale_without_its_files_says_it_shows_the_base_template(shop: Shop) -> None:
    """``--variant b --locale sv`` showed sv's base subject, silently: the developer checking
    each arm per market took it for b's."""
    _ab_test(shop, SUBJECT_B)
    result = shop.cli("preview", "c1", "--variant", "b", "--locale", "sv", "--json")
    assert result.exit_code == 0, result.output
    assert (result.json["locale"], result.json["variant_fallback"]) == ("sv", SAID)
    terminal = shop.cli("preview", "c1", "--variant", "b", "--locale", "sv")
    assert f"note: {SAID}" in " ".join(terminal.stderr.split()), terminal.stderr


def test_preview_of_a_variant_with_its_files_or_of_the_control_has_no_variant_fallback(shop: Shop) -> None:
    _ab_test(shop, SUBJECT_B)
    for arm, locale in (("b", "en"), ("a", "sv")):
        result = shop.cli("preview", "c1", "--variant", arm, "--locale", locale, "--json")
        assert result.json["variant_fallback"] is None, (arm, locale, result.output)


def test_preview_of_a_texts_variant_in_a_locale_without_its_sms_file_says_so(shop: Shop) -> None:
    _ab_test(texting(shop), {"en/reminder-1@b.sms.txt": "{{ shop.name }}: B {{ recovery_url }} Reply STOP to opt out."})
    result = shop.cli("preview", "c1", "--variant", "b", "--locale", "sv", "--json")
    assert (result.json["channel"], result.json["variant_fallback"]) == (
        "sms", "variant b: step 1's template has no sv files of the variant (reminder-1@b.sms.txt; en has it): "
               "shown as the base text, which a customer of sv gets, counted as b"), result.output


def test_send_test_of_a_variant_in_a_locale_without_its_files_says_so_as_preview_does(shop: Shop) -> None:
    _ab_test(shop, SUBJECT_B)
    outbox = str(shop.folder / "out")
    result = shop.cli("send-test", OWNER, "c1", "--variant", "b", "--locale", "sv", "--outbox", outbox, "--json")
    assert result.exit_code == 0, result.output
    assert result.json["variant_fallback"] == SAID
    terminal = shop.cli("send-test", OWNER, "c1", "--variant", "b", "--locale", "sv", "--outbox", outbox)
    assert f"note: {SAID}" in " ".join(terminal.stderr.split()), terminal.stderr
    own = shop.cli("send-test", OWNER, "c1", "--variant", "b", "--locale", "en", "--outbox", outbox, "--json")
    assert own.json["variant_fallback"] is None
