"""`preview`: one cart's message as a run would render it, and nothing recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cartrescue.contacts import phone_hash
from cartrescue.ledger import Ledger
from cartrescue.sms_text import measure
from conftest import NOW, Shop, cart


def test_preview_renders_the_requested_step_in_the_customers_locale(shop: Shop) -> None:
    shop.add(cart("c1", locale="sv", first_name="Åsa", items=[("A", "Kaffekopp", 2, "19.50")]))
    result = shop.cli("preview", "c1", "--step", "2", "--json")
    assert result.exit_code == 0, result.output
    shown = result.json
    assert (shown["step"], shown["decision"], shown["to"]) == (2, "send", "c1@example.com")
    assert "Åsa" in shown["text"] and "Kaffekopp" in shown["text"] and "39,00" in shown["text"]
    assert Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").messages() == []


def test_preview_of_a_cart_waiting_for_its_next_step_renders_that_step(shop: Shop) -> None:
    """Without ``--step``: the step the cart waits for (``step_not_due``), not step 1 again, which
    it was sent already (the decision named no step)."""
    shop.add(cart("c1", idle=timedelta(hours=2)))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    result = shop.cli("preview", "c1", "--json", now=NOW + timedelta(hours=3))
    assert result.exit_code == 0, result.output
    assert (result.json["decision"], result.json["step"]) == ("defer", 2)


def test_preview_in_a_locale_without_templates_says_which_it_fell_back_to(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--locale", "fi")
    assert result.exit_code == 0, result.output
    assert "note: --locale fi: step 1's template has no fi files: shown in en" in " ".join(result.stderr.split())
    assert shop.cli("preview", "c1", "--locale", "fi", "--json").json["locale"] == "en"


def test_preview_in_a_regional_locale_of_a_language_with_templates_adds_no_note(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--locale", "sv_FI")
    assert result.exit_code == 0 and "note" not in result.stderr
    assert shop.cli("preview", "c1", "--locale", "sv_FI", "--json").json["locale"] == "sv"


def test_preview_json_says_which_locale_it_fell_back_to(shop: Shop) -> None:
    """A script (CI checking each market's message) reads the document, not stderr: the note
    that ``fi`` was shown in ``en`` is in it, as the terminal's ``note:`` line says it."""
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--locale", "fi", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["locale_fallback"] == ("--locale fi: step 1's template has no fi files: shown in en "
                                              "(the fallback a customer of fi gets)")
    assert result.stderr == ""


def test_preview_json_of_a_locale_with_templates_has_no_fallback(shop: Shop) -> None:
    shop.add(cart("c1"))
    for asked in ("sv_FI", None):
        args = ("--locale", asked) if asked else ()
        assert shop.cli("preview", "c1", *args, "--json").json["locale_fallback"] is None


@pytest.mark.parametrize("asked", ["sr-latn", "SR-LATN", "sr_Latn_RS", "sr-Latn-RS"])
def test_preview_locale_is_read_as_a_customers_locale_is(shop: Shop, asked: str) -> None:
    """A folder sr_Latn takes a customer's sr-latn, sr_Latn_RS and SR-LATN; --locale sr-latn
    fell back to the shop's default, and sr-Latn-RS rendered right but said it fell back."""
    folder = shop.folder / "templates"
    for locale in ("en", "sr_Latn"):
        (folder / locale).mkdir(parents=True)
        for part in ("subject.txt", "txt", "html"):
            (folder / locale / f"reminder-1.{part}").write_text(f"{locale} {{{{ unsubscribe_url }}}}", encoding="utf-8")
    shop.configure(templates="templates").add(cart("c1"))
    result = shop.cli("preview", "c1", "--locale", asked)
    assert result.exit_code == 0, result.output
    assert "note" not in result.stderr
    assert shop.cli("preview", "c1", "--locale", asked, "--json").json["locale"] == "sr_Latn"


def test_preview_of_an_empty_locale_is_a_usage_error(shop: Shop) -> None:
    """``--locale "$LOCALE"`` with the variable unset showed the customer's own locale, as if
    no --locale had been given, and said nothing."""
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--locale", "")
    assert result.exit_code == 2 and "--locale : not a locale" in result.stderr, result.output


def test_preview_of_an_unknown_cart_is_a_usage_error(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "nope")
    assert result.exit_code == 2 and "cart 'nope': not found" in result.stderr


def test_preview_beyond_the_last_step_is_a_usage_error(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--step", "9")
    assert result.exit_code == 2 and "the sequence has 3 steps" in result.stderr


def test_preview_beyond_the_step_of_a_one_step_sequence_says_1_step(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--step", "2")
    assert result.exit_code == 2 and "the sequence has 1 step\n" in result.stderr, result.stderr


def _sms_step_two(shop: Shop) -> None:
    """Step 1 by e-mail, step 2 as a text message (the step names its channel)."""
    shop.configure(shop={"country": "SE"}, sms={"sender": "+46700000001", "quiet_hours": None},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                                    {"delay": "24h", "template": "reminder-2", "channel": "sms"}]}})


def test_preview_of_an_sms_step_shows_the_text_a_run_would_send_and_its_segments(shop: Shop) -> None:
    _sms_step_two(shop)
    shop.add(cart("c1", phone="070-123 45 67", sms_consent="yes", locale="ru"))
    result = shop.cli("preview", "c1", "--step", "2", "--json")
    assert result.exit_code == 0, result.output
    shown = result.json
    assert (shown["channel"], shown["to"], shown["step"]) == ("sms", "+46701234567", 2)
    assert "Test Shop" in shown["text"] and "СТОП" in shown["text"]  # the Russian template, its opt-out word
    assert (shown["encoding"], shown["segments"]) == ("UCS-2", len(measure(shown["text"]).parts))
    assert shown["units"] == measure(shown["text"]).units  # what segments count, not characters
    table = shop.cli("preview", "c1", "--step", "2").stdout
    assert f"({shown['encoding']}, {shown['units']} units), {len(shown['text'])} characters" in table
    email = shop.cli("preview", "c1", "--step", "1", "--json").json
    assert email["channel"] == "email" and email["subject"] and email["html"]


def test_preview_of_an_sms_step_refuses_html_and_screenshot(shop: Shop) -> None:
    _sms_step_two(shop)
    shop.add(cart("c1", phone="070-123 45 67", sms_consent="yes"))
    result = shop.cli("preview", "c1", "--step", "2", "--html", str(shop.folder / "x.html"))
    assert result.exit_code == 2 and "text message" in result.stderr
    assert not (shop.folder / "x.html").exists()


def test_preview_of_an_sms_step_for_a_cart_without_a_number_uses_a_placeholder(shop: Shop) -> None:
    """Without ``channel_fallback`` the step stays a text message (a run skips the cart): the
    preview still shows what it would say."""
    _sms_step_two(shop)
    shop.configure(eligibility={"channel_fallback": False})
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--step", "2")
    assert result.exit_code == 0, result.output
    assert "+12025550100" in result.stdout and "segment" in result.stdout


def _sms_step_one(shop: Shop) -> None:
    """Step 1 as a text message, step 2 by e-mail."""
    shop.configure(shop={"country": "SE"}, sms={"sender": "+46700000001", "quiet_hours": None},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "channel": "sms"},
                                                    {"delay": "24h", "template": "reminder-2"}]}})


def test_preview_of_an_sms_step_a_run_sends_by_email_shows_that_email(shop: Shop) -> None:
    """A cart without a number gets its SMS step by e-mail (``channel_fallback``): the preview
    showed a text to a placeholder number, and refused ``--html`` as "a text message"."""
    _sms_step_one(shop)
    shop.add(cart("c1", email="ann@example.com"))
    (decision,) = shop.cli("carts", "--json").json["decisions"]
    assert (decision["step"], decision["channel"]) == (1, "email")
    shown = shop.cli("preview", "c1", "--json", "--html", str(shop.folder / "m.html"))
    assert shown.exit_code == 0, shown.output
    assert (shown.json["step"], shown.json["channel"], shown.json["to"]) == (1, "email", "ann@example.com")
    assert shown.json["subject"] and (shop.folder / "m.html").read_text(encoding="utf-8") == shown.json["html"]
    run = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert [(d["channel"], d["delivery"]) for d in run.json["decisions"]] == [("email", "sent")]
    assert [path.suffix for path in (shop.folder / "out").iterdir()] == [".eml"]


def test_preview_of_a_later_sms_step_applies_the_planners_fallback(shop: Shop) -> None:
    """``--step 2`` of a cart a run has not reached yet: no number, or no SMS consent, sends it
    by e-mail as the planner would; a cart that can get the text shows the text."""
    _sms_step_two(shop)
    shop.add(cart("none", email="ann@example.com"), cart("refused", email="bo@example.com", phone="070-123 45 67",
                                                          sms_consent="no"),
             cart("texted", email="cy@example.com", phone="070-123 45 68", sms_consent="yes"))
    found = {key: shop.cli("preview", key, "--step", "2", "--json").json for key in ("none", "refused", "texted")}
    assert {key: (shown["channel"], shown["to"]) for key, shown in found.items()} == {
        "none": ("email", "ann@example.com"), "refused": ("email", "bo@example.com"), "texted": ("sms", "+46701234568")}


def test_preview_of_a_later_sms_step_to_a_suppressed_number_keeps_the_runs_channel(shop: Shop) -> None:
    """A number that replied STOP is suppressed (the shop's export then says ``sms_consent=no``): a
    run skips its cart on every step and channel (``suppressed``), the suppression being its first
    gate, and never falls back to e-mail for it. ``--step 2`` decided the step's channel without
    the ledger's suppressions, saw only the missing consent and showed the e-mail fallback."""
    _sms_step_two(shop)
    shop.add(cart("c1", email="ann@example.com", phone="070-123 45 67", sms_consent="no"))
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        assert ledger.suppress(phone_hash("+46701234567"), "sms stop", "sms reply SM1")
    finally:
        ledger.close()
    assert shop.decisions()["c1"]["reason"] == "suppressed"
    shown = shop.cli("preview", "c1", "--step", "2", "--json")
    assert shown.exit_code == 0, shown.output
    assert (shown.json["channel"], shown.json["to"], shown.json["reason"]) == ("sms", "+46701234567", "suppressed")


def test_a_cart_of_many_lines_lists_the_first_fifty_and_counts_the_rest(shop: Shop) -> None:
    """A B2B cart of hundreds of lines stays a message that renders, and stays under the size at
    which Gmail clips a message and hides the unsubscribe link at its foot."""
    shop.add(cart("big", items=[(f"S{n}", f"Screw size {n}", 1, "1.00") for n in range(120)]))
    result = shop.cli("preview", "big", "--json")
    assert result.exit_code == 0, result.output
    text, html = result.json["text"], result.json["html"]
    assert sum(1 for line in text.splitlines() if line.startswith("- Screw size")) == 50
    assert "- … (+70)" in text and "(+70)" in html
    assert "120.00" in text  # the total is the cart's, every line counted
    assert len(html.encode()) < 60_000


def test_preview_and_send_test_show_the_promoted_winner_as_a_run_sends_it(shop: Shop) -> None:
    """A promoted A/B winner goes to every address; preview and send-test assigned by weight
    alone and showed another variant than the run sends ("rendered as a run would")."""
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1",
                                                     "variants": {"a": 1, "b": 1}}]}})
    shop.add(*(cart(f"c{n}", email=f"p{n}@example.com") for n in range(8)))
    assert shop.cli("carts", "--json").exit_code == 0  # makes the ledger
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        assert ledger.promote("default", 1, "b", 0.99, 500, NOW)
    finally:
        ledger.close()
    for n in range(8):
        assert shop.cli("preview", f"c{n}", "--json").json["variant"] == "b"
        test = shop.cli("send-test", "owner@shop.example.com", f"c{n}", "--outbox", str(shop.folder / "t"), "--json")
        assert test.json["variant"] == "b", test.output


# -- what a run would decide: a cart it never messages shows why, not a message -----------------------------

def _demo(demo, *args: str):
    from conftest import cli

    return cli(*args, "--config", str(demo))


def _suppression_of(demo, address: str) -> dict:
    from cartrescue.config import load_config
    from cartrescue.contacts import email_hash

    ledger = load_config(demo).open_ledger(create=False)
    try:
        found = ledger.suppression(email_hash(address))
    finally:
        ledger.close()
    assert found is not None
    return found


def test_preview_of_a_cart_a_run_skips_says_why_and_shows_no_message(demo) -> None:
    """The demo's cart-000020 was ordered: preview showed step 1 as if it would go out."""
    shown = _demo(demo, "preview", "cart-000020", "--json", "--html", str(demo.parent / "m.html"))
    assert shown.exit_code == 0, shown.output
    document = shown.json
    assert (document["decision"], document["reason"], document["text"]) == ("skip", "ordered", None)
    assert document["shown"] is False
    assert document["detail"].startswith("ordered: order ") and document["subject"] is document["text"] is None
    assert not (demo.parent / "m.html").exists()
    table = _demo(demo, "preview", "cart-000020")
    assert table.exit_code == 0, table.output
    said = " ".join(table.stdout.split())
    assert f"A run would not message this cart: skip ({document['detail']})" in said
    assert "Subject:" not in table.stdout and "--step N" in said


@pytest.mark.parametrize(("command", "reason"), [("unsubscribe", "unsubscribed"), ("forget", "forgotten")])
def test_preview_of_a_suppressed_cart_names_the_suppression_and_its_day(demo, command: str, reason: str) -> None:
    """An unsubscribed or forgotten customer's cart showed step 1 "as a run would" send it."""
    customer = "odon.balogh4@hu.example.net"  # cart-000003, due in the demo
    assert _demo(demo, "preview", "cart-000003", "--json").json["text"]  # due: its message is shown
    assert _demo(demo, command, customer).exit_code == 0
    record = _suppression_of(demo, customer)
    from cartrescue.config import load_config

    day = record["created_at"].astimezone(load_config(demo).shop.tz).date().isoformat()
    shown = _demo(demo, "preview", "cart-000003", "--json")
    assert shown.exit_code == 0, shown.output
    assert (shown.json["decision"], shown.json["text"]) == ("skip", None)
    assert shown.json["shown"] is False
    assert shown.json["detail"] == f"suppressed: {reason} {day} via {record['source']}"


def test_preview_with_step_of_a_skipped_cart_shows_it_under_a_not_sent_banner(demo) -> None:
    table = _demo(demo, "preview", "cart-000020", "--step", "1")
    assert "NOT SENT: a run would skip this cart and send it nothing" in " ".join(table.stdout.split())
    forced = _demo(demo, "preview", "cart-000020", "--step", "1", "--json")
    assert forced.exit_code == 0, forced.output
    assert forced.json["shown"] is True and forced.json["subject"]
    assert forced.json["note"] == f"a run would skip this cart and send it nothing ({forced.json['detail']})"
    due = _demo(demo, "preview", "cart-000003", "--json").json
    assert (due["decision"], due["note"], due["detail"]) == ("send", None, "")
    assert "NOT SENT" not in _demo(demo, "preview", "cart-000003").stdout


def test_preview_of_a_cart_past_its_last_step_shows_no_message(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    shown = shop.cli("preview", "c1", "--json", now=NOW + timedelta(days=1))
    assert shown.exit_code == 0, shown.output
    assert (shown.json["reason"], shown.json["text"]) == ("sequence_done", None)
    assert (shown.json["detail"], shown.json["shown"]) == ("sequence_done: 1 step sent", False)


def test_preview_of_a_cart_touched_again_after_step_1_shows_step_2(shop: Shop) -> None:
    """Step 1 went out, then the customer came back to the cart (idle below the cutoff): the
    decision names no step, and preview showed step 1 again instead of step 2, the next."""
    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    later = NOW + timedelta(hours=5)
    shop.carts = cart("c1", now=later, idle=timedelta(minutes=5))
    shown = shop.cli("preview", "c1", "--json", now=later)
    assert shown.exit_code == 0, shown.output
    assert (shown.json["reason"], shown.json["step"]) == ("idle_below_cutoff", 2)
    assert shown.json["note"] is None
    again = shop.cli("preview", "c1", "--step", "1", "--json", now=later).json
    assert again["note"].startswith("step 1 is done already (sent ") and again["note"].endswith("a run does not send it again")


def test_preview_of_a_variant_written_in_another_case_names_the_variant(shop: Shop) -> None:
    """``--variant B`` for a step whose variants are ``a`` and ``b``: the list alone left the
    owner to spot that case matters."""
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1",
                                                     "variants": {"a": 1, "b": 1}}]}})
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--variant", "B", "--json")
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert message == ("--variant B: step 1 of sequence default has no such variant (did you mean b?) "
                       "(variants: a, b)"), message


def test_preview_on_a_narrow_terminal_names_the_html_file_and_what_a_run_would_do_whole(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both were the titles of rules, cut to the width: at 60 columns ``HTML written to
    /srv/shop/previews/…``, no file a person could open, and ``(a run now would skip: no_co…``."""
    monkeypatch.setenv("COLUMNS", "60")
    shop.add(cart("c-no-consent-with-a-long-id", consent="no"))
    html = shop.folder / "previews-of-the-shop" / "step-1-of-a-cart-without-consent.html"
    result = shop.cli("preview", "c-no-consent-with-a-long-id", "--step", "1", "--html", str(html))
    assert result.exit_code == 0, result.output
    assert html.is_file()
    lines = result.stdout.splitlines()
    assert any(line.endswith(f"HTML written to {html}") for line in lines), result.stdout
    assert "cart c-no-consent-with-a-long-id · step 1 · standard (a run now would skip: no_consent)" in lines


def test_preview_prints_the_text_part_as_the_customer_gets_it_on_any_width(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """rich wrapped the message to the width (80 columns in a pipe): a link longer than that was
    cut in two by a newline, so a preview saved to a file (a CI job diffing the shop's messages)
    showed a text the customer never gets and a link that did not open."""
    monkeypatch.setenv("COLUMNS", "60")
    shop.add(cart("c1"))
    message = shop.cli("preview", "c1", "--step", "1", "--json").json["text"]
    result = shop.cli("preview", "c1", "--step", "1")
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in message.splitlines()) > 60
    assert message.strip() in result.stdout


def test_preview_prints_colon_words_of_the_text_as_written_not_as_emoji(shop: Shop) -> None:
    """rich read ``:fire:`` in a printed string as an emoji code: a product named "Socks :fire:
    edition" was previewed as "Socks 🔥 edition", which no customer's message says."""
    shop.add(cart("c1", items=[("S-1", "Socks :fire: edition", 1, "9.00")]))
    result = shop.cli("preview", "c1", "--step", "1")
    assert result.exit_code == 0, result.output
    assert "Socks :fire: edition" in result.stdout and "🔥" not in result.stdout


def test_preview_json_of_an_sms_step_has_the_keys_of_an_emails_as_null(shop: Shop) -> None:
    """A script reading ``html`` of every preview met a KeyError on a text message's."""
    _sms_step_two(shop)
    shop.add(cart("c1", phone="070-123 45 67", sms_consent="yes"))
    shown = shop.cli("preview", "c1", "--step", "2", "--json").json
    assert shown["channel"] == "sms" and shown["text"]
    assert (shown["subject"], shown["html"], shown["screenshot"], shown["row"]) == (None, None, None, None)
