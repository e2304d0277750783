"""Asking why the cart was left: signed links in real messages, the answer page of the WSGI app on
a real wsgiref server, answers in the ledger, the sequence that stops, export and summary.

Answers are deduplicated per cart by **replacing**: a second answer for the same cart overwrites
the first (``answers`` counts how often the cart answered), so a mis-click can be corrected and
counts stay one per cart. The headless-browser test of the button is tests/test_survey_browser.py.
"""

from __future__ import annotations

import csv
import email
import email.policy
import html
import io
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from cartrescue.config import load_config
from cartrescue.errors import ConfigError
from cartrescue.ledger import Ledger
from cartrescue.survey import clean_text, make_token, read_token, record
from cartrescue.survey_words import WORD_KEYS, WORDS
from cartrescue.tokens import BadToken
from cartrescue.unsubscribe import make_token as unsubscribe_token
import shopdb
from conftest import NOW, Shop, cart
from test_unsubscribe import SECRET, http, local, webhook

PAGE = "https://shop.example.com/cart-survey?token={token}"
REASONS = ["shipping_cost", "price", "payment", "delivery_time", "just_looking", "other"]
H = timedelta(hours=1)


@pytest.fixture
def survey_shop(shop: Shop) -> Shop:
    shop.configure(survey={"url": PAGE})
    return shop


def send_step(shop: Shop, *carts: list[dict[str, str]], now=NOW) -> dict[str, email.message.EmailMessage]:
    """Deliver the due step of ``carts`` into an outbox; the new messages by recipient."""
    if carts:
        shop.add(*carts)
    folder = shop.folder / "out"
    before = set(folder.glob("*.eml")) if folder.exists() else set()
    result = shop.cli("run", "--outbox", str(folder), now=now)
    assert result.exit_code == 0, result.output
    messages = {}
    for path in sorted(set(folder.glob("*.eml")) - before):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        messages[message["To"].addresses[0].addr_spec] = message
    return messages


def survey_links(message: email.message.EmailMessage) -> dict[str, str]:
    """reason -> link, from the message's text part."""
    return links_in(message.get_body(("plain",)).get_content())


def links_in(text: str) -> dict[str, str]:
    """reason -> link, from a text part (a message's, a preview's)."""
    return {parse_qs(urlsplit(url).query)["reason"][0]: url
            for url in re.findall(r"https://shop\.example\.com/cart-survey\?\S+", text)}


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def answers(shop: Shop) -> list[dict]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return list(ledger.survey_answers())
    finally:
        ledger.close()


def post(base: str, token: str, reason: str, text: str = "") -> tuple[int, str]:
    body = f"token={quote(token)}&reason={quote(reason)}&text={quote(text)}".encode()
    return http(f"{base}/cart-survey", body)


# -- the links in the message ------------------------------------------------------------------

def test_every_message_asks_with_one_signed_link_per_reason(survey_shop: Shop) -> None:
    messages = send_step(survey_shop, cart("c1", email="ann@example.com", locale="kk"))
    message = messages["ann@example.com"]
    links = survey_links(message)
    assert list(links) == REASONS
    for url in links.values():
        said = read_token(token_of(url), SECRET)
        assert (said.cart_key, said.step, said.locale) == ("csv:c1", 1, "kk")
    html = message.get_body(("html",)).get_content()
    assert WORDS["kk"]["question"] in html and WORDS["kk"]["shipping_cost"] in html
    assert html.count("cart-survey?token=") == len(REASONS)


def test_without_a_survey_url_messages_do_not_ask(shop: Shop) -> None:
    message = send_step(shop, cart("c1", email="ann@example.com"))["ann@example.com"]
    assert "cart-survey" not in message.as_string() and WORDS["en"]["question"] not in message.as_string()


def test_only_the_configured_steps_ask(survey_shop: Shop) -> None:
    survey_shop.configure(survey={"steps": [2]})
    first = send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"]
    assert survey_links(first) == {}
    second = send_step(survey_shop, now=NOW + 24 * H)["ann@example.com"]
    assert list(survey_links(second)) == REASONS


# -- the answer page -----------------------------------------------------------------------------

def test_a_get_shows_the_choice_and_records_nothing(survey_shop: Shop) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        status, page = http(local(links["price"], base))
        head, _ = http(local(links["price"], base), method="HEAD")
    assert status == 200 and head == 200
    assert 'value="price" checked' in page and 'method="post"' in page and WORDS["en"]["button"] in page
    assert answers(survey_shop) == []


def test_a_survey_token_in_a_middle_path_segment_shows_the_form_and_records(shop: Shop) -> None:
    """``survey.url: …/cart-survey/{token}/answer`` was taken by the config and carried by every
    message, and the app read only ``token=`` or the last segment ("answer"): every link refused."""
    shop.configure(survey={"url": "https://shop.example.com/cart-survey/{token}/answer"})
    message = send_step(shop, cart("c1", email="ann@example.com"))["ann@example.com"]
    text = message.get_body(("plain",)).get_content()
    links = {parse_qs(urlsplit(url).query)["reason"][0]: url
             for url in re.findall(r"https://shop\.example\.com/cart-survey/\S+", text)}
    assert "/answer?reason=" in links["price"]
    with webhook(shop) as base:
        status, page = http(local(links["price"], base))
        assert status == 200 and 'value="price" checked' in page
        status, page = http(local(links["price"], base), b"reason=price")  # the form's button
    assert status == 200 and WORDS["en"]["thanks_title"] in page
    [answer] = answers(shop)
    assert (answer["cart_key"], answer["reason"]) == ("csv:c1", "price")


def test_the_button_records_one_answer_for_the_cart_and_step(survey_shop: Shop) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        status, page = post(base, token_of(links["shipping_cost"]), "shipping_cost", "Shipping to Kiruna was 19 €")
    assert status == 200
    assert WORDS["en"]["thanks_title"] in page and WORDS["en"]["shipping_cost"] in page
    assert "Shipping to Kiruna was 19 €" in page and html.escape(WORDS["en"]["thanks_stop"]) in page
    [answer] = answers(survey_shop)
    assert (answer["cart_key"], answer["step"], answer["reason"], answer["text"], answer["locale"]) == \
        ("csv:c1", 1, "shipping_cost", "Shipping to Kiruna was 19 €", "en")
    assert (answer["tier"], answer["email"], answer["answers"]) == ("standard", "ann@example.com", 1)


def test_a_second_answer_for_the_same_cart_replaces_the_first(survey_shop: Shop) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        assert post(base, token_of(links["price"]), "price")[0] == 200
        assert post(base, token_of(links["price"]), "payment", "the card was declined")[0] == 200
    [answer] = answers(survey_shop)
    assert (answer["reason"], answer["text"], answer["answers"]) == ("payment", "the card was declined", 2)
    assert answer["first_answered_at"] <= answer["answered_at"]


def test_the_page_speaks_the_customers_language(survey_shop: Shop) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="asel@example.kz", locale="kk"))["asel@example.kz"])
    with webhook(survey_shop) as base:
        _status, form = http(local(links["price"], base))
        _status, thanks = post(base, token_of(links["price"]), "price")
    assert '<html lang="kk">' in form and WORDS["kk"]["page_title"] in form and WORDS["kk"]["price"] in form
    assert WORDS["kk"]["thanks_title"] in thanks and WORDS["kk"]["thanks_stop"] in thanks


@pytest.mark.parametrize("forge", [
    lambda token: make_token("csv:c1", 1, "en", "another-secret"),  # signed with the wrong key
    lambda token: "s." + make_token("csv:c2", 1, "en", SECRET).split(".")[1] + "." + token.split(".")[2],  # cart swapped
    lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),  # signature altered
    lambda token: token[2:],  # the tag removed: read as an unsubscribe token, which it is not
    lambda token: "s." + unsubscribe_token("ann@example.com", SECRET),  # an unsubscribe token passed off as survey
    lambda token: "s.not-a-token",
])
def test_forged_or_altered_survey_tokens_are_refused(survey_shop: Shop, forge) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    forged = forge(token_of(links["price"]))
    with webhook(survey_shop) as base:
        posted = post(base, forged, "price")
        shown = http(f"{base}/cart-survey?token={quote(forged)}&reason=price")
    assert posted[0] == 400 and shown[0] == 400
    assert answers(survey_shop) == []


def test_a_missing_or_unknown_reason_is_refused_and_the_form_shown_again(survey_shop: Shop) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        missing = post(base, token_of(links["price"]), "", "my comment")
        unknown = post(base, token_of(links["price"]), "free_pony")
    assert missing[0] == unknown[0] == 400
    assert WORDS["en"]["choose"] in missing[1] and 'value="my comment"' in missing[1]
    assert answers(survey_shop) == []


# -- hostile free text ---------------------------------------------------------------------------

HOSTILE = ('<script>alert(1)</script><img src=x onerror="alert(2)"> " \' & \x00\x07\x1b[31mred\x1b[0m\u202etxt.exe'
           "\r\nline two\t" + "Ж" * 10_000)


def test_clean_text_keeps_one_bounded_line_without_control_characters() -> None:
    line = clean_text(HOSTILE)
    assert len(line) == 500 and line.startswith('<script>alert(1)</script><img src=x onerror="alert(2)">')
    assert not re.search(r"[\x00-\x1f\x7f\u202e]", line)
    assert "red" in line and "line two" in line


def test_hostile_free_text_is_stored_as_text_and_never_served_as_html(survey_shop: Shop) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    token = token_of(links["other"])
    with webhook(survey_shop) as base:
        body = f"token={quote(token)}&reason=other&text={quote(HOSTILE)}".encode()  # ~30 KB encoded
        request_status, page = http(f"{base}/cart-survey", body)
        _status, again = post(base, token, "not-a-reason", HOSTILE[:300])
    assert request_status == 200
    [answer] = answers(survey_shop)
    assert answer["text"] == clean_text(HOSTILE) and len(answer["text"]) == 500
    for served in (page, again):
        assert "<script" not in served and "<img" not in served and "\x1b" not in served and "\x00" not in served
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;' in again


def test_answer_pages_forbid_scripts_outright(survey_shop: Shop) -> None:
    import urllib.request

    token = make_token("csv:c1", 1, "en", SECRET)
    with webhook(survey_shop) as base:
        with urllib.request.urlopen(f"{base}/cart-survey?token={token}&reason=price", timeout=10) as response:
            policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'none'" in policy


def test_the_export_writes_hostile_text_as_inert_csv(survey_shop: Shop) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"),
                                   cart("c2", email="bob@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        assert post(base, token_of(links["other"]), "other", HOSTILE)[0] == 200
        assert post(base, make_token("csv:c2", 1, "en", SECRET), "price", '=HYPERLINK("http://evil.example","x")')[0] == 200
    result = survey_shop.cli("survey", "export", now=None)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    by_cart = {row["cart_key"]: row for row in rows}
    assert by_cart["csv:c1"]["text"] == clean_text(HOSTILE)  # data, as typed, minus control characters
    assert by_cart["csv:c2"]["text"].startswith("'=HYPERLINK(")  # no spreadsheet runs it
    assert by_cart["csv:c1"]["label"] == WORDS["en"]["other"]


# -- the sequence stops ------------------------------------------------------------------------------

def test_an_answered_cart_gets_no_more_reminders(survey_shop: Shop) -> None:
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"),
                                   cart("c2", email="bob@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        assert post(base, token_of(links["just_looking"]), "just_looking")[0] == 200
    later = survey_shop.cli("run", "--outbox", str(survey_shop.folder / "out"), "--json", now=NOW + 24 * H)
    decisions = {row["cart_id"]: row for row in later.json["decisions"]}
    assert (decisions["c1"]["action"], decisions["c1"]["reason"]) == ("skip", "answered_survey")
    assert decisions["c2"]["delivery"] == "sent" and decisions["c2"]["step"] == 2


def test_an_answer_to_a_send_test_mail_records_nothing_for_the_customers_cart(survey_shop: Shop) -> None:
    """A send-test mail's survey links were signed for the real cart: the owner's click stored an
    answer for the customer, counted in the summary, and stopped the customer's reminders."""
    send_step(survey_shop, cart("c1", email="ann@example.com"))
    box = survey_shop.folder / "testbox"
    sent = survey_shop.cli("send-test", "owner@example.com", "c1", "--outbox", str(box))
    assert sent.exit_code == 0, sent.output
    (path,) = box.glob("*.eml")
    links = survey_links(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    assert list(links) == REASONS
    with webhook(survey_shop) as base:
        status, page = post(base, token_of(links["price"]), "price")
    assert status == 200 and WORDS["en"]["thanks_title"] in page  # the owner sees the customer's page
    assert answers(survey_shop) == []
    summary = survey_shop.cli("survey", "summary", "--json", now=None)
    assert summary.exit_code == 0 and summary.json["answers"] == 0
    assert list(send_step(survey_shop, now=NOW + 24 * H)) == ["ann@example.com"]


def test_an_answer_to_a_previews_survey_link_records_nothing_for_the_customers_cart(survey_shop: Shop) -> None:
    """A preview's survey links were the customer's own: a developer clicking through a preview
    answered for the customer, and the customer's reminders stopped."""
    send_step(survey_shop, cart("c1", email="ann@example.com"))
    shown = survey_shop.cli("preview", "c1", "--json", now=NOW + 24 * H)
    assert shown.exit_code == 0 and shown.json["step"] == 2, shown.output
    links = links_in(shown.json["text"])
    assert list(links) == REASONS
    with webhook(survey_shop) as base:
        status, page = post(base, token_of(links["price"]), "price")
    assert status == 200 and WORDS["en"]["thanks_title"] in page
    assert answers(survey_shop) == []
    assert list(send_step(survey_shop, now=NOW + 24 * H)) == ["ann@example.com"]  # step 2 still goes out


def test_an_answer_can_leave_the_sequence_running(survey_shop: Shop) -> None:
    survey_shop.configure(survey={"stops_sequence": False})
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        _status, page = post(base, token_of(links["price"]), "price")
    assert html.escape(WORDS["en"]["thanks_stop"]) not in page and WORDS["en"]["thanks_title"] in page
    assert list(send_step(survey_shop, now=NOW + 24 * H)) == ["ann@example.com"]


def test_an_answer_to_a_webhook_documents_link_keeps_its_tier_and_address_and_is_forgotten_with_it(
        survey_shop: Shop) -> None:
    """The webhook channel posts the rendered e-mail parts, survey links included, to the shop's own
    mailer; their answers were stored without the message's tier, variant and address (counted
    under tier "-"), so ``forget`` left the answer and its text behind, and recorded the next."""
    from httpserver import WebhookReceiver
    from test_webhook_channel import SECRET as WEBHOOK_SECRET

    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        survey_shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                              webhook={"url": receiver.url, "secret": WEBHOOK_SECRET})
        survey_shop.add(cart("c1", email="ann@example.com"))
        assert survey_shop.cli("run", "--send").exit_code == 0
        (document,) = receiver.accepted.values()
    links = links_in(document["text"])
    with webhook(survey_shop) as base:
        assert post(base, token_of(links["price"]), "price", "Ann Tester: too dear")[0] == 200
        (row,) = answers(survey_shop)
        assert (row["tier"], row["email"]) == ("standard", "ann@example.com")
        summary = survey_shop.cli("survey", "summary", "--json", now=None).json
        assert summary["by_tier"] == {"standard": {"price": {"count": 1, "share": 1.0}}}
        assert survey_shop.cli("forget", "ann@example.com", now=None).exit_code == 0
        assert answers(survey_shop) == []
        status, page = post(base, token_of(links["other"]), "other", "Ann Tester again")
    assert status == 200 and WORDS["en"]["thanks_title"] in page
    assert answers(survey_shop) == []


# -- export and summary -------------------------------------------------------------------------------

def test_summary_counts_and_shares_per_reason_tier_and_locale(survey_shop: Shop) -> None:
    survey_shop.configure(priority={"tiers": [{"name": "high", "min_score": 35}, {"name": "standard", "min_score": 0}]})
    carts = [cart("c1", email="a@example.com", items=[("X", "Sofa", 1, "900")]),
             cart("c2", email="b@example.com", locale="sv"), cart("c3", email="c@example.com", locale="sv"),
             cart("c4", email="d@example.com")]
    send_step(survey_shop, *carts)
    with webhook(survey_shop) as base:
        for cart_id, locale, reason in (("c1", "en", "shipping_cost"), ("c2", "sv", "shipping_cost"),
                                        ("c3", "sv", "price"), ("c4", "en", "shipping_cost")):
            assert post(base, make_token(f"csv:{cart_id}", 1, locale, SECRET), reason)[0] == 200
    result = survey_shop.cli("survey", "summary", "--json", now=None)
    assert result.exit_code == 0, result.output
    summary = result.json
    assert summary["answers"] == 4
    assert summary["reasons"] == {"shipping_cost": {"count": 3, "share": 0.75}, "price": {"count": 1, "share": 0.25}}
    assert summary["by_tier"]["high"] == {"shipping_cost": {"count": 1, "share": 1.0}}
    assert summary["by_locale"]["sv"] == {"shipping_cost": {"count": 1, "share": 0.5}, "price": {"count": 1, "share": 0.5}}
    table = survey_shop.cli("survey", "summary", now=None)
    assert table.exit_code == 0 and "4 answers" in table.stdout and "75%" in table.stdout


def test_export_to_a_file_with_a_time_window(survey_shop: Shop, tmp_path: Path) -> None:
    send_step(survey_shop, cart("c1", email="ann@example.com"))
    with webhook(survey_shop) as base:
        assert post(base, make_token("csv:c1", 1, "en", SECRET), "price")[0] == 200
    target = tmp_path / "survey.csv"
    written = survey_shop.cli("survey", "export", "-o", str(target), "--json", now=None)
    assert written.exit_code == 0 and written.json == {"file": str(target), "answers": 1, "warnings": []}
    header = target.read_text(encoding="utf-8").splitlines()[0]
    assert header == ("answered_at,cart_key,step,reason,label,text,locale,tier,variant,email,answers,"
                      "first_answered_at")
    future = survey_shop.cli("survey", "export", "--since", "2999-01-01", "--json", now=None)
    assert future.json == {"answers": 0, "rows": [], "warnings": []}
    bad = survey_shop.cli("survey", "export", "--since", "last week", "--json", now=None)
    assert bad.exit_code == 2 and bad.json["error"]["code"] == "config"


def test_export_to_dash_prints_the_csv_on_stdout_and_writes_no_file(
        survey_shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-o -`` is stdout, as the usual CLI convention has it: it wrote a file named ``-``."""
    send_step(survey_shop, cart("c1", email="ann@example.com"))
    with webhook(survey_shop) as base:
        assert post(base, make_token("csv:c1", 1, "en", SECRET), "price")[0] == 200
    monkeypatch.chdir(tmp_path)
    result = survey_shop.cli("survey", "export", "-o", "-", now=None)
    assert result.exit_code == 0, result.output
    assert [row["cart_key"] for row in csv.DictReader(io.StringIO(result.stdout))] == ["csv:c1"]
    assert not (tmp_path / "-").exists()


def test_until_a_day_includes_that_day_as_report_does(survey_shop: Shop) -> None:
    """``survey --until DAY`` stopped at the day's start while ``report --until DAY`` takes it in:
    a week's survey summary beside the week's report dropped Sunday's answers."""
    send_step(survey_shop, cart("c1", email="ann@example.com"), cart("c2", email="bob@example.com"))
    ledger = Ledger(f"sqlite:///{survey_shop.folder / 'ledger.db'}")
    try:  # Sunday 22 November, 23:30 in Stockholm; and a minute past its midnight (Monday)
        config = load_config(survey_shop.write())
        record(ledger, config, make_token("csv:c1", 1, "en", SECRET), "price",
               now=datetime(2026, 11, 22, 22, 30, tzinfo=timezone.utc))
        record(ledger, config, make_token("csv:c2", 1, "en", SECRET), "other",
               now=datetime(2026, 11, 22, 23, 1, tzinfo=timezone.utc))
    finally:
        ledger.close()
    week = ("--since", "2026-11-16", "--until", "2026-11-22")
    summary = survey_shop.cli("survey", "summary", *week, "--json", now=None)
    assert summary.exit_code == 0, summary.output
    assert summary.json["reasons"] == {"price": {"count": 1, "share": 1.0}}
    export = survey_shop.cli("survey", "export", *week, "--json", now=None)
    assert [row["cart_key"] for row in export.json["rows"]] == ["csv:c1"]
    moment = survey_shop.cli("survey", "summary", "--until", "2026-11-22T23:30:00+01:00", "--json", now=None)
    assert moment.json["answers"] == 0  # a time ends the period just before it, as in report


WEEK = ("--since", "2026-11-16", "--until", "2026-11-22")
MONDAY = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)


def answered_week(survey_shop: Shop) -> None:
    """Two answers in :data:`WEEK` (the last at Sunday 23:30 in Stockholm), one just after it."""
    send_step(survey_shop, cart("c1", email="ann@example.com"), cart("c2", email="bob@example.com"),
              cart("c3", email="cat@example.com"))
    ledger = Ledger(f"sqlite:///{survey_shop.folder / 'ledger.db'}")
    try:
        config = load_config(survey_shop.write())
        for cart_id, reason, at in (("c1", "price", datetime(2026, 11, 21, 9, 0)),
                                    ("c2", "price", datetime(2026, 11, 22, 22, 30)),
                                    ("c3", "other", datetime(2026, 11, 22, 23, 1))):
            record(ledger, config, make_token(f"csv:{cart_id}", 1, "en", SECRET), reason,
                   now=at.replace(tzinfo=timezone.utc))
    finally:
        ledger.close()


def test_the_report_shows_the_survey_counts_of_its_period_as_survey_summary_does(survey_shop: Shop) -> None:
    """docs/survey.md promised the survey's counts beside the recovery figures of ``report``; the
    report had no word of them, so the weekly digest never said why carts were left."""
    answered_week(survey_shop)
    report = survey_shop.cli("report", *WEEK, "--json", now=MONDAY)
    assert report.exit_code == 0, report.output
    summary = survey_shop.cli("survey", "summary", *WEEK, "--json", now=None)
    counted = {key: value for key, value in summary.json.items() if key != "warnings"}  # the report's own are beside
    assert report.json["survey"] == counted
    assert report.json["survey"]["reasons"] == {"price": {"count": 2, "share": 1.0}}
    table = survey_shop.cli("report", *WEEK, now=MONDAY)
    assert re.search(r"Why carts were left.*\n.*\n.*\n.*\n│ price +│ +2 │ +100 % │", table.stdout), table.stdout


def test_the_reports_csv_tables_include_the_survey_answers_of_its_period(survey_shop: Shop, tmp_path: Path) -> None:
    """``report --csv`` wrote every table of the report but "Why carts were left": a shop that
    reads the week's CSVs into a spreadsheet had the survey in the terminal, HTML and JSON only."""
    answered_week(survey_shop)
    report = survey_shop.cli("report", *WEEK, "--json", "--csv", str(tmp_path / "csv"), now=MONDAY)
    assert report.exit_code == 0, report.output
    assert str(tmp_path / "csv" / "survey.csv") in report.json["outputs"]["csv"]
    with (tmp_path / "csv" / "survey.csv").open(encoding="utf-8", newline="") as handle:
        rows = [(row["group"], row["value"], row["reason"], row["count"], row["share"]) for row in csv.DictReader(handle)]
    assert rows == [("all", "", "price", "2", "1.0"), ("tier", "standard", "price", "2", "1.0"),
                    ("locale", "en", "price", "2", "1.0")]


# -- words, tokens, config -------------------------------------------------------------------------------

def test_every_shipped_locale_has_every_survey_word_in_its_own_language() -> None:
    keys = set(WORD_KEYS) | set(REASONS)
    shipped = {path.name for path in (Path(__file__).resolve().parent.parent / "templates").iterdir() if path.is_dir()}
    assert shipped == set(WORDS)  # every locale with templates has the words, and no other
    for locale, said in WORDS.items():
        assert set(said) == keys, locale
        assert all(text.strip() for text in said.values()), locale
        if locale != "en":
            same = [key for key in keys if said[key] == WORDS["en"][key]]
            assert same == [], f"{locale}: not translated: {same}"


def test_tokens_name_the_cart_step_and_locale_and_refuse_tampering() -> None:
    token = make_token("magento2:42|x", 3, "sv_SE", "k")
    said = read_token(token, "k")
    assert (said.cart_key, said.step, said.locale) == ("magento2:42|x", 3, "sv_SE")
    with pytest.raises(BadToken):
        read_token(token, "other")
    with pytest.raises(BadToken):
        read_token(unsubscribe_token("ann@example.com", "k"), "k")


def test_a_reason_without_words_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("source: {type: csv, carts: c.csv}\nsurvey: {url: 'https://x.example/s?t={token}', "
                    "reasons: [price, sizes]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="reason 'sizes' needs its label"):
        load_config(path)
    path.write_text("source: {type: csv, carts: c.csv}\nsurvey: {url: 'https://x.example/s?t={token}', "
                    "reasons: [price, sizes], words: {en: {sizes: Not sure about the size}}}\n", encoding="utf-8")
    assert load_config(path).survey.reasons == ["price", "sizes"]
    path.write_text("source: {type: csv, carts: c.csv}\nsurvey: {url: 'https://x.example/s'}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="survey.url: must contain"):
        load_config(path)


@pytest.mark.parametrize("url", ["shop.example.com/cart-survey?token={token}",
                                 "https://shop.example.com/cart survey?token={token}"])
def test_a_survey_url_a_mail_client_cannot_open_is_a_config_error(tmp_path: Path, url: str) -> None:
    """A ``survey.url`` without its ``https://`` (or with a space) was taken: every message then
    carried answer links no mail client opens (a relative href, a text link cut at the space),
    and only ``templates check`` failed, saying the messages had no survey links."""
    path = tmp_path / "c.yaml"
    path.write_text(f"source: {{type: csv, carts: c.csv}}\nsurvey: {{url: '{url}'}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="survey.url: expected an http\\(s\\) link"):
        load_config(path)


def test_own_words_and_reasons_reach_the_message(survey_shop: Shop) -> None:
    survey_shop.configure(survey={"reasons": ["price", "sizes"],
                                  "words": {"en": {"sizes": "Not sure about the size", "question": "Why not?"}}})
    message = send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"]
    text = message.get_body(("plain",)).get_content()
    assert "Why not?" in text and "- Not sure about the size: https://shop.example.com/cart-survey?" in text
    assert list(survey_links(message)) == ["price", "sizes"]



def test_a_reason_labelled_in_one_other_locale_only_uses_that_label(survey_shop: Shop) -> None:
    """The config accepts a reason labelled in one locale; an English customer's message (and
    every other part of the shop's run) ended in an internal error, KeyError: 'sizes'."""
    survey_shop.configure(survey={"reasons": ["price", "sizes"], "words": {"sv": {"sizes": "Osäker på storleken"}}})
    message = send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"]
    text = message.get_body(("plain",)).get_content()
    assert "- Osäker på storleken: https://shop.example.com/cart-survey?" in text
    assert list(survey_links(message)) == ["price", "sizes"]


def test_the_answer_page_shows_a_reason_labelled_in_one_other_locale_only(survey_shop: Shop) -> None:
    survey_shop.configure(survey={"reasons": ["price", "sizes"], "words": {"de": {"sizes": "Unsicher bei der Größe"}}})
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        status, page = http(local(links["price"], base))
    assert status == 200 and "Unsicher bei der Größe" in page


def test_a_survey_page_in_a_right_to_left_language_reads_from_the_right(survey_shop: Shop) -> None:
    arabic = {"page_title": "لماذا تركت سلتك؟", "page_intro": "اختر سببًا واحدًا.", "button": "إرسال",
              "price": "السعر", "thanks_title": "شكرًا لك"}
    survey_shop.configure(survey={"reasons": ["price"], "words": {"ar": arabic}})
    token = make_token("csv:c1", 1, "ar", SECRET)
    with webhook(survey_shop) as base:
        _status, form = http(f"{base}/cart-survey?token={quote(token)}")
        _status, thanks = post(base, token, "price")
    assert '<html lang="ar" dir="rtl">' in form and arabic["page_title"] in form
    assert '<html lang="ar" dir="rtl">' in thanks and arabic["thanks_title"] in thanks


def test_a_survey_page_without_words_for_the_messages_locale_is_marked_as_the_language_it_is_in(
        survey_shop: Shop) -> None:
    token = make_token("csv:c1", 1, "ar", SECRET)  # an ar template folder, no survey words for ar
    with webhook(survey_shop) as base:
        _status, form = http(f"{base}/cart-survey?token={quote(token)}")
    assert '<html lang="en">' in form and WORDS["en"]["page_title"] in form


# -- templates check ------------------------------------------------------------------------------------

def test_templates_check_verifies_survey_links_in_every_locale(survey_shop: Shop, tmp_path: Path) -> None:
    shipped = survey_shop.cli("templates", "check", "--quick", "--json", now=None)
    assert shipped.exit_code == 0, shipped.output
    assert {case["locale"] for case in shipped.json["cases"]} == set(WORDS)

    own = tmp_path / "own" / "en"
    own.mkdir(parents=True)
    base = Path(__file__).resolve().parent.parent / "templates" / "en"
    for part in ("subject.txt", "txt", "html"):
        (own / f"reminder-1.{part}").write_text((base / f"reminder-1.{part}").read_text(encoding="utf-8"), "utf-8")
    text = own / "reminder-1.txt"
    include = '{% if survey is not none %}{% include "_survey.txt" %}{% endif +%}'
    text.write_text(text.read_text(encoding="utf-8").replace(include, ""), "utf-8")
    html = own / "reminder-1.html"
    html.write_text(html.read_text(encoding="utf-8").replace(
        "{{ survey_links(survey) }}",
        '{% for r in survey.reasons %}<a href="{{ r.url|replace("token=s.", "token=s.x") }}">{{ r.label }}</a>{% endfor %}'), "utf-8")
    survey_shop.configure(templates=str(tmp_path / "own"))
    broken = survey_shop.cli("templates", "check", "--quick", "--json", "--template", "reminder-1", "--locale", "en",
                             now=None)
    assert broken.exit_code == 1
    problems = {(p["kind"], p["file"]): p["message"] for case in broken.json["cases"] for p in case["problems"]}
    assert problems[("survey", "en/reminder-1.txt")].startswith("no survey links")
    assert "carries no valid token" in problems[("survey", "en/reminder-1.html")]


def test_templates_check_passes_survey_links_whose_token_is_followed_by_a_dot(shop: Shop) -> None:
    """``survey.url: …/cart-survey/{token}.html``: the app reads the token up to ``.html``, but the
    check cut each link at the first "." after the page's prefix (a token has dots of its own), so
    it failed every message of a shop whose survey page ends in ``.html``."""
    shop.configure(survey={"url": "https://shop.example.com/cart-survey/{token}.html"})
    message = send_step(shop, cart("c1", email="ann@example.com"))["ann@example.com"]
    text = message.get_body(("plain",)).get_content()
    [link] = re.findall(r"https://shop\.example\.com/cart-survey/\S+\.html\?reason=price", text)
    with webhook(shop) as base:
        status, page = http(local(link, base))
    assert status == 200 and 'value="price" checked' in page  # the app answers these links
    checked = shop.cli("templates", "check", "--quick", "--json", "--template", "reminder-1", "--locale", "en",
                       now=None)
    problems = [p["message"] for case in checked.json["cases"] for p in case["problems"]]
    assert (checked.exit_code, problems) == (0, []), checked.output


def test_a_survey_url_with_a_fragment_puts_the_reason_in_the_query_the_page_reads(shop: Shop) -> None:
    """``survey.url: …?token={token}#why`` (an anchor on the shop's page) was taken by the config, and
    each link got ``&reason=`` after the ``#``: a browser never sends the fragment, so every click
    opened the page with nothing chosen, and ``templates check`` failed every survey link."""
    shop.configure(survey={"url": "https://shop.example.com/cart-survey?token={token}#why"})
    message = send_step(shop, cart("c1", email="ann@example.com"))["ann@example.com"]
    text = message.get_body(("plain",)).get_content()
    found = re.findall(r"https://shop\.example\.com/cart-survey\?\S+", text)
    assert [parse_qs(urlsplit(url).query).get("reason", [""])[0] for url in found] == REASONS
    assert all(urlsplit(url).fragment == "why" for url in found)
    with webhook(shop) as base:
        status, page = http(local(found[1], base))  # as a browser asks: without the fragment
    assert status == 200 and 'value="price" checked' in page
    checked = shop.cli("templates", "check", "--quick", "--json", "--template", "reminder-1", "--locale", "en",
                       now=None)
    problems = [p["message"] for case in checked.json["cases"] for p in case["problems"]]
    assert (checked.exit_code, problems) == (0, []), checked.output


def test_the_documented_configs_load(tmp_path: Path) -> None:
    """Every YAML example of docs/survey.md is a valid config, its words included."""
    import yaml

    from conftest import REPO

    text = (REPO / "docs" / "survey.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        path = tmp_path / "cartrescue.yaml"
        path.write_text(yaml.safe_dump({"source": {"type": "csv", "carts": "c.csv"}, **yaml.safe_load(block)}),
                        encoding="utf-8")
        assert load_config(path, env={}).survey.url == PAGE


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_answers_on_a_mariadb_or_postgresql_ledger(kind: str) -> None:
    """The same table and queries on a server ledger: replace per cart, look up, count, stream."""
    with shopdb.shop_database(kind, "surveyledger") as db:
        ledger = Ledger(db.url)
        try:
            at = NOW
            assert ledger.has_survey_answers() is False
            assert ledger.save_survey_answer("csv:c1", 1, "price", clean_text(HOSTILE), "kk", tier="high",
                                             variant=None, email="a@example.com", now=at) is True
            assert ledger.save_survey_answer("csv:c1", 2, "payment", "Ж" * 500, "kk", tier="high", variant="b",
                                             email="a@example.com", now=at + H) is False
            ledger.save_survey_answer("csv:c2", 1, "payment", "", "en", tier=None, variant=None, email=None, now=at)
            assert ledger.has_survey_answers() is True
            assert ledger.survey_answered(["csv:c1", "csv:c3", *(f"csv:x{n}" for n in range(600))]) == {"csv:c1"}
            rows = {row["cart_key"]: row for row in ledger.survey_answers()}
            assert (rows["csv:c1"]["reason"], rows["csv:c1"]["step"], rows["csv:c1"]["answers"]) == ("payment", 2, 2)
            assert rows["csv:c1"]["text"] == "Ж" * 500 and rows["csv:c1"]["first_answered_at"] == at
            assert sorted((r["reason"], r["tier"] or "-", r["answers"]) for r in ledger.survey_counts()) == [
                ("payment", "-", 1), ("payment", "high", 1)]
            assert list(ledger.survey_answers(since=at + 2 * H)) == []
        finally:
            ledger.close()


def test_without_free_text_the_page_asks_only_for_the_reason(survey_shop: Shop) -> None:
    survey_shop.configure(survey={"free_text": False})
    links = survey_links(send_step(survey_shop, cart("c1", email="ann@example.com"))["ann@example.com"])
    with webhook(survey_shop) as base:
        _status, form = http(local(links["price"], base))
        assert post(base, token_of(links["price"]), "price", "typed anyway")[0] == 200
    assert 'name="text"' not in form
    [answer] = answers(survey_shop)
    assert (answer["reason"], answer["text"]) == ("price", "")


def test_export_as_json_lists_the_answers(survey_shop: Shop) -> None:
    send_step(survey_shop, cart("c1", email="ann@example.com"))
    with webhook(survey_shop) as base:
        assert post(base, make_token("csv:c1", 1, "en", SECRET), "price", "too dear")[0] == 200
    result = survey_shop.cli("survey", "export", "--json", now=None)
    assert result.exit_code == 0, result.output
    [row] = result.json["rows"]
    assert (row["cart_key"], row["reason"], row["text"], row["email"]) == ("csv:c1", "price", "too dear", "ann@example.com")
    assert row["answered_at"].endswith("Z")


def test_export_as_json_gives_each_answer_the_label_the_csv_gives_it(survey_shop: Shop) -> None:
    """The CSV's ``label`` column (the reason in the shop's words) was missing from --json's rows."""
    send_step(survey_shop, cart("c1", email="ann@example.com"))
    with webhook(survey_shop) as base:
        assert post(base, make_token("csv:c1", 1, "en", SECRET), "price")[0] == 200
    [row] = survey_shop.cli("survey", "export", "--json", now=None).json["rows"]
    csv_text = survey_shop.cli("survey", "export", now=None).stdout
    header, line = csv_text.splitlines()[:2]
    label = dict(zip(header.split(","), line.split(",")))["label"]
    assert row["label"] == label and label and label != "price"


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")])
def test_an_answer_after_the_address_was_forgotten_is_thanked_and_stored_nowhere(survey_shop: Shop, kind: str) -> None:
    """The link still verifies (its token names the cart, not the address), and the answer, with
    a line that may name the person, was stored after they asked to be erased."""
    from test_lifecycle import ledger_on

    with ledger_on(survey_shop, kind) as url:
        messages = send_step(survey_shop, cart("c1", email="ann@example.com"), cart("c2", email="eve@example.com"))
        ann, eve = (survey_links(messages[address]) for address in ("ann@example.com", "eve@example.com"))
        assert survey_shop.cli("forget", "ann@example.com", "--keep-files", now=None).exit_code == 0
        with webhook(survey_shop) as base:
            status, page = post(base, token_of(ann["price"]), "price", "Ann Tester here: too dear")
            assert post(base, token_of(eve["payment"]), "payment")[0] == 200
        ledger = Ledger(url)
        try:
            stored = list(ledger.survey_answers())
        finally:
            ledger.close()
    assert status == 200 and WORDS["en"]["thanks_title"] in page
    assert [(row["cart_key"], row["reason"], row["email"]) for row in stored] == [("csv:c2", "payment", "eve@example.com")]


@pytest.mark.parametrize("given", ["token", "link"])
def test_unsubscribe_given_a_survey_link_says_it_is_one_not_a_malformed_token(survey_shop: Shop, given: str) -> None:
    """It said "malformed unsubscribe token", and the owner looked for a typo in a link that was whole."""
    survey_shop.add(cart("c1"))
    survey_shop.write()
    token = make_token("csv:c1", 1, "en", SECRET)
    value = token if given == "token" else PAGE.replace("{token}", token) + "&reason=price"
    result = survey_shop.cli("unsubscribe", value, "--json", now=None)
    assert result.exit_code == 2, result.output
    assert "a survey link" in result.json["error"]["message"] and "malformed" not in result.json["error"]["message"]


@pytest.mark.parametrize("command", ["summary", "export"])
def test_a_period_that_ends_before_it_starts_is_refused_as_report_refuses_it(survey_shop: Shop, command: str) -> None:
    """``--since`` after ``--until`` gave exit 0 and no answer, where ``report`` (whose reading of
    the dates the survey commands share) says the period is empty."""
    result = survey_shop.cli("survey", command, "--json", "--since", "2026-11-25", "--until", "2026-11-20", now=None)
    assert result.exit_code == 2, result.output
    assert "--since 2026-11-2" in result.json["error"]["message"]
    assert "is not before --until" in result.json["error"]["message"]


def test_a_reversed_period_is_said_with_the_days_given_on_the_shops_clock(survey_shop: Shop) -> None:
    """It said "--since 2026-11-24 23:00 UTC is not before --until 2026-11-20 22:59 UTC": days
    the owner never typed, in a zone the shop does not keep (as ``report`` said it)."""
    result = survey_shop.cli("survey", "summary", "--json", "--since", "2026-11-25", "--until", "2026-11-20", now=None)
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"].startswith("--since 2026-11-25 is not before --until 2026-11-20:")
    assert "UTC" not in result.json["error"]["message"]
