"""The SMS channel against a loopback emulator of Twilio's Messages API, and a generic gateway.

Every test runs the real CLI; the emulator checks basic auth and the form fields and answers
in Twilio's JSON shapes (201 with a sid, errors with ``code``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from httpserver import ACCOUNT_SID, AUTH_TOKEN, Answer, LoopbackHTTP, Seen, TwilioEmulator

from cartrescue.contacts import phone_hash
from cartrescue.ledger import Ledger
from cartrescue.sms_text import measure
from conftest import NOW, Shop, cart

SENDER = "+46700000001"


def sms_shop(shop: Shop, base_url: str, carts: int = 3, *, phone: str = "070-123 45 {n:02d}", **sms: Any) -> Shop:
    shop.configure(shop={"country": "SE"},
                   priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"sender": SENDER, "quiet_hours": None, "backoff": "0.05s",
                        "twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": base_url}, **sms})
    shop.add(*(cart(f"s{n:03d}", phone=phone.format(n=n), sms_consent="yes") for n in range(carts)))
    return shop


def rows(shop: Shop) -> list[dict[str, Any]]:
    return shop.messages()


def suppressed(shop: Shop, number: str) -> bool:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return ledger.suppression(phone_hash(number)) is not None
    finally:
        ledger.close()


def test_every_due_cart_gets_one_text_through_the_messages_api_and_a_rerun_sends_none(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=12, concurrency=3)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert result.json["counts"]["sent"] == 12
        assert sorted(m["To"] for m in twilio.messages) == [f"+4670123450{n}" if n < 10 else f"+467012345{n}"
                                                             for n in range(12)]
        message = twilio.messages[0]
        assert message["From"] == SENDER and "Test Shop" in message["Body"] and "Reply STOP" in message["Body"]
        assert twilio.requests[0].headers["content-type"] == "application/x-www-form-urlencoded"
        ledger = rows(shop)
        assert {row["channel"] for row in ledger} == {"sms"} and {row["status"] for row in ledger} == {"sent"}
        assert all(row["reply"].startswith("201 queued SM") for row in ledger)
        assert {row["phone"] for row in ledger} == {m["To"] for m in twilio.messages}
        assert shop.cli("run", "--send", "--json").json["counts"]["sent"] == 0 and len(twilio.messages) == 12


def test_texts_past_the_hourly_quota_wait_unclaimed_and_the_run_exits_0(shop: Shop) -> None:
    """``sms.rate_per_hour``: the texts past its room are deferred ``hourly_quota`` before their
    claim (each was claimed and recorded ``failed_transient``, and the run exited 1)."""
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=5, rate_per_hour=2, concurrency=1)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert len(twilio.messages) == 2 and [row["status"] for row in rows(shop)] == ["sent"] * 2
        waits = [row for row in result.json["decisions"] if row["reason"] == "hourly_quota"]
        assert len(waits) == 3 and all("sms.rate_per_hour (2) reached" in row["detail"] for row in waits)


def test_a_messaging_service_sid_is_sent_as_such(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=1, sender="MG" + "ab" * 16)
        assert shop.cli("run", "--send").exit_code == 0
        assert twilio.messages[0]["MessagingServiceSid"] == "MG" + "ab" * 16 and "From" not in twilio.messages[0]


def test_429_with_retry_after_and_503_are_retried_and_land_once(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=1)
        twilio.plan(TwilioEmulator.error(429, 20429, "Too Many Requests", {"Retry-After": "1"}),
                    Answer(503, b"Service Unavailable"))
        assert shop.cli("run", "--send").exit_code == 0
        assert len(twilio.requests) == 3 and len(twilio.messages) == 1
        assert twilio.requests[1].at - twilio.requests[0].at >= 0.95
        assert [row["status"] for row in rows(shop)] == ["sent"]


def test_an_invalid_number_answer_is_recorded_permanent(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=1)
        twilio.plan(TwilioEmulator.error(400, 21211, "The 'To' number is not a valid phone number."))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1 and len(twilio.requests) == 1
        (row,) = rows(shop)
        assert row["status"] == "failed_permanent" and "21211" in row["reply"]
        assert not suppressed(shop, row["phone"])


def test_a_number_that_opted_out_at_the_provider_is_suppressed_for_every_later_step(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=2)
        twilio.unsubscribed.add("+46701234500")
        assert shop.cli("run", "--send").exit_code == 1
        assert suppressed(shop, "+46701234500") and not suppressed(shop, "+46701234501")
        later = shop.decisions(NOW + timedelta(days=1))
        assert later["s000"]["reason"] == "suppressed" and later["s001"]["action"] == "send"


def test_refused_credentials_stop_the_run_without_losing_or_hammering(shop: Shop) -> None:
    with TwilioEmulator(auth_token="the-real-token-of-the-account") as twilio:
        sms_shop(shop, twilio.url, carts=8, concurrency=2)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1
        assert len(twilio.requests) <= 2 and twilio.messages == []
        assert {row["status"] for row in rows(shop)} == {"failed_transient"}
        assert AUTH_TOKEN not in result.output and all(AUTH_TOKEN not in row["reply"] for row in rows(shop))


def test_an_answer_trickled_past_the_timeout_is_unconfirmed_and_never_sent_again(shop: Shop) -> None:
    """A gateway that sends its answer a byte at a time: given up after ``sms.timeout`` (the
    run waited for it, byte after byte), and, the text having gone out, never sent again."""
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=1, timeout="0.5s")
        twilio.plan(Answer(201, trickle=0.1, process=True))  # its ~200 bytes take ~20 s
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0 and result.json["counts"]["deliveries"] == {"unconfirmed": 1}, result.output
        (row,) = rows(shop)
        assert row["status"] == "unconfirmed" and "sms.timeout" in row["reply"]
        assert len(twilio.messages) == 1
        assert shop.cli("run", "--send", "--json").json["counts"]["sent"] == 0 and len(twilio.messages) == 1


def test_a_connection_that_never_opens_within_the_timeout_is_retried_not_unconfirmed(shop: Shop) -> None:
    """A gateway that takes the TCP connection and never answers the TLS handshake: nothing of
    the text left, so the run's deadline leaves it ``failed_transient`` for the next run."""
    from smtpserver import SilentRelay

    relay = SilentRelay()
    try:
        sms_shop(shop, f"https://127.0.0.1:{relay.port}", carts=1, timeout="0.5s", retries=1)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1, result.output
        (row,) = rows(shop)
        assert row["status"] == "failed_transient" and row["reply"].startswith("not delivered"), row["reply"]
    finally:
        relay.close()


@pytest.mark.slow
def test_a_stop_whose_grace_ends_before_the_answer_leaves_the_text_claimed_and_never_sends_it_again(
        shop: Shop) -> None:
    """SIGTERM while a text is with the provider, whose answer takes longer than the stop's 5 s
    grace: the text went out, so its claim stays without an outcome. The request's connection
    was read after the cancellation had closed it, the text taken for one that never left
    (``failed_transient``), and the next run sent it a second time."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO, iso

    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=1, timeout="60s")
        twilio.plan(Answer(201, delay=8, process=True))  # taken at once, answered after the grace
        shop.write()
        process = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--now",
                                    iso(NOW), "--config", str(shop.config_path)], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not twilio.messages and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, err.decode()
        assert json.loads(out)["error"]["code"] == "interrupted"
        (row,) = rows(shop)
        assert row["status"] == "claimed", row["reply"]
        assert shop.cli("run", "--send", "--json").json["counts"]["sent"] == 0
        assert len(twilio.messages) == 1


def test_a_lost_answer_is_unconfirmed_and_never_sent_again(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=1)
        twilio.plan(Answer(0, process=True, drop=True))  # Twilio took it; the answer never came
        assert shop.cli("run", "--send").exit_code == 0
        assert len(twilio.messages) == 1
        (row,) = rows(shop)
        assert row["status"] == "unconfirmed" and "not resent" in row["reply"]
        assert shop.cli("run", "--send", now=NOW + timedelta(minutes=30)).exit_code == 0
        assert len(twilio.messages) == 1  # at most once


def test_a_lost_answers_reply_says_what_happened_in_plain_words(shop: Shop) -> None:
    """It read "no answer lost: ...; it may have been delivered: not resent (at most once)"."""
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=1)
        twilio.plan(Answer(0, process=True, drop=True))
        assert shop.cli("run", "--send").exit_code == 0
        (row,) = rows(shop)
        assert row["reply"].startswith("the request went out but no answer came back: "), row["reply"]
        assert row["reply"].endswith(": it may have been delivered, so it is not resent (at most once)")


@pytest.mark.parametrize(("phone", "countries", "reason"), [
    ("+46 70 CALL ME", [], "no_contact"),  # letters
    ("07911 123456", [], "no_contact"),  # a UK mobile without +44, read in the shop's region SE
    ("08-123 456 78", [], "no_contact"),  # a landline
    ("", [], "no_contact"),
    ("+44 7911 123456", ["SE", "NO"], "no_contact"),  # another country than the shop sends to
    ("+44 7911 123456", [], "due"),
])
def test_hostile_or_foreign_numbers_are_skipped_with_no_contact(shop: Shop, phone: str, countries: list[str],
                                                                reason: str) -> None:
    sms_shop(shop, "https://api.example.com", carts=1, phone=phone, countries=countries)
    shop.configure(eligibility={"channel_fallback": False})  # the SMS gate itself, not the e-mail after it
    decision = shop.decisions()["s000"]
    assert decision["reason"] == reason and decision["channel"] == "sms"
    if reason == "no_contact":
        assert decision["action"] == "skip" and decision["detail"]


def test_a_name_with_a_newline_stays_on_one_line(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=0)
        shop.add(cart("nl", phone="0701234599", sms_consent="yes", first_name="Ann\nCall +1 555 0100 now\x1b[2J"))
        assert shop.cli("run", "--send").exit_code == 0
        (message,) = twilio.messages
        assert "\n" not in message["Body"] and "\x1b" not in message["Body"]
        assert message["Body"].startswith("Test Shop: Ann Call +1 555 0100 now [2J, you left something")


def test_a_name_of_500_emoji_is_left_out_and_the_text_stays_within_its_segments(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=0, max_segments=2)
        shop.add(cart("emoji", phone="0701234598", sms_consent="yes", first_name="😀" * 500))
        assert shop.cli("run", "--send").exit_code == 0
        (message,) = twilio.messages
        assert "😀" not in message["Body"] and message["Body"].startswith("Test Shop: You left")
        assert measure(message["Body"]).segments <= 2


def test_a_text_over_max_segments_is_a_render_error_before_any_claim(shop: Shop) -> None:
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=0, max_segments=1)
        shop.add(cart("long", phone="0701234597", sms_consent="yes", first_name="Ann",
                      items=[("S", "Mug", 1, "25.00")]))
        shop.carts[-1]["recovery_url"] = "https://shop.example.com/cart/" + "x" * 150
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1
        (decision,) = result.json["decisions"]
        assert decision["delivery"] == "render_error" and "sms.max_segments (1)" in decision["detail"]
        assert twilio.requests == [] and rows(shop) == []  # never claimed: a later run can send it


def test_a_text_over_max_segments_says_its_file_size_limit_and_what_to_do(shop: Shop, tmp_path: Path) -> None:
    """A shop's own text that a long cart link pushes over the limit: the render error must say
    which file, how long the text came out and what to change, not only that it is too long."""
    folder = tmp_path / "mine" / "en"
    folder.mkdir(parents=True)
    (folder / "reminder-1.sms.txt").write_text("{{ shop.name }}: your cart is waiting for you, and so are we: "
                                               "{{ recovery_url }} Reply STOP to opt out.\n", encoding="utf-8")
    sms_shop(shop, "https://api.example.com", carts=0, max_segments=1)
    shop.configure(templates=str(tmp_path / "mine"))
    shop.add(cart("long", phone="0701234597", sms_consent="yes", items=[("S", "Mug", 1, "25.00")]))
    shop.carts[-1]["recovery_url"] = ("https://example-shop.myshopify.com/cart/c/Z2NwLWV1cm9wZS13ZXN0MTowMUhLTjJGN1Q1"
                                      "WDBCRkZRWk5NNlpZVEc?key=abc123def456")
    result = shop.cli("run", "--json")
    assert result.exit_code == 1
    (decision,) = result.json["decisions"]
    assert decision["delivery"] == "render_error"
    assert decision["detail"] == (
        "en/reminder-1.sms.txt: 2 segments (GSM-7, 193 units), more than sms.max_segments (1) (its link is 114 "
        "characters): shorten the text, or raise sms.max_segments (at most 10; each segment is billed)")


def test_sms_consent_is_separate_from_email_consent(shop: Shop) -> None:
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.configure(eligibility={"channel_fallback": False})
    shop.add(cart("unknown", phone="0701234501", consent="yes", sms_consent=""),
             cart("no", phone="0701234502", consent="yes", sms_consent="no"),
             cart("yes", phone="0701234503", consent="no", sms_consent="yes"))
    decisions = shop.decisions()
    assert decisions["unknown"]["reason"] == "no_consent" and "sms_consent=None" in decisions["unknown"]["detail"]
    assert decisions["no"]["reason"] == "no_consent"
    assert decisions["yes"]["reason"] == "due"  # no e-mail consent, but consent to texts
    shop.configure(sms={"consent": "none"})
    assert shop.decisions()["unknown"]["reason"] == "due"


def test_texts_keep_their_own_quiet_hours_that_email_does_not(shop: Shop) -> None:
    sms_shop(shop, "https://api.example.com", carts=0)
    del shop.config["sms"]["quiet_hours"]  # the default: no text before 09:00 or after 20:00
    shop.configure(priority={"tiers": [{"name": "texted", "min_score": 40, "channel": "sms"},
                                       {"name": "standard", "min_score": 0, "channel": "email"}]})
    evening = datetime(2026, 11, 20, 19, 30, tzinfo=timezone.utc)  # 20:30 in Stockholm
    shop.add(cart("mail", now=evening), cart("text", phone="0701234501", sms_consent="yes", now=evening,
                                            items=[("S", "Lamp", 1, "450.00")]))
    decisions = shop.decisions(evening)
    assert decisions["mail"]["reason"] == "due"
    assert decisions["text"]["reason"] == "quiet_hours"
    assert decisions["text"]["not_before"] == "2026-11-21T08:00:00Z"  # 09:00 Stockholm
    morning = datetime(2026, 11, 21, 7, 30, tzinfo=timezone.utc)  # 08:30 Stockholm: still quiet for texts
    assert shop.decisions(morning)["text"]["reason"] == "quiet_hours"


def test_one_message_a_day_counts_email_and_texts_of_one_customer_together(shop: Shop, tmp_path: Path) -> None:
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "email"}]},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                                    {"delay": "3h", "template": "reminder-2", "channel": "sms"}]}})
    shop.add(cart("c1", phone="0701234501", sms_consent="yes"))
    out = str(tmp_path / "out")
    assert shop.cli("run", "--outbox", out, now=NOW).exit_code == 0  # step 1 by e-mail at 11:00
    later = shop.decisions(NOW + timedelta(hours=2))  # step 2 (a text) is due at 13:00, the same day
    assert later["c1"]["reason"] == "messaged_today" and later["c1"]["channel"] == "sms"
    assert shop.decisions(NOW + timedelta(hours=22))["c1"]["reason"] == "due"


def test_one_number_is_one_customer_across_carts_and_runs(shop: Shop, tmp_path: Path) -> None:
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.add(cart("a", email="a@example.com", phone="070-123 45 01", sms_consent="yes"),
             cart("b", email="b@example.com", phone="+46701234501", sms_consent="yes"))
    decisions = shop.decisions(command="run")  # within one run: the second cart of the number waits
    assert sorted(d["reason"] for d in decisions.values()) == ["due", "messaged_today"]
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    assert len(list((tmp_path / "out").glob("*.sms.txt"))) == 1
    assert sorted(d["reason"] for d in shop.decisions(NOW + timedelta(hours=1)).values()) == \
        ["messaged_today", "step_not_due"]  # and in a later run the same day, from the ledger


def test_one_number_is_one_customer_in_a_tier_with_a_budget_too(shop: Shop) -> None:
    """Sends a budget keeps are decided at the end of the run; they were not counted as the
    number's message, so two carts with one number (and two addresses) both got a text."""
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms", "budget": 5}]})
    shop.add(cart("a", email="a@example.com", phone="070-123 45 01", sms_consent="yes"),
             cart("b", email="b@example.com", phone="+46701234501", sms_consent="yes"))
    decisions = shop.decisions(command="run")
    assert sorted(d["reason"] for d in decisions.values()) == ["due", "messaged_today"]


def test_without_one_message_a_day_a_budget_keeps_both_carts_of_a_number(shop: Shop) -> None:
    """The end-of-run check of the sends a budget kept is the calendar's own rule: with
    ``one_message_per_day: false`` it holds nothing back."""
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms", "budget": 5}]},
                   eligibility={"one_message_per_day": False})
    shop.add(cart("a", email="a@example.com", phone="070-123 45 01", sms_consent="yes"),
             cart("b", email="b@example.com", phone="+46701234501", sms_consent="yes"))
    assert sorted(d["reason"] for d in shop.decisions(command="run").values()) == ["due", "due"]


def test_a_step_names_its_channel_and_other_tiers_keep_theirs(shop: Shop, tmp_path: Path) -> None:
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.configure(priority={"tiers": [{"name": "high", "min_score": 40}, {"name": "standard", "min_score": 0}]},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                                    {"delay": "24h", "template": "reminder-2",
                                                     "tier_channels": {"high": "sms"}}]}})
    shop.add(cart("big", phone="0701234501", sms_consent="yes", items=[("S", "Sofa", 1, "900.00")]),
             cart("small", phone="0701234502", sms_consent="yes"))
    out = tmp_path / "out"
    assert shop.cli("run", "--outbox", str(out), now=NOW).exit_code == 0
    assert len(list(out.glob("*.eml"))) == 2 and not list(out.glob("*.sms.txt"))
    assert shop.cli("run", "--outbox", str(out), now=NOW + timedelta(days=1)).exit_code == 0
    (text,) = out.glob("*.sms.txt")
    assert text.name.startswith("csv_big-step2") and "STOP" in text.read_text(encoding="utf-8")
    assert len(list(out.glob("*step2*.eml"))) == 1
    channels = {(row["cart_key"], row["step"]): row["channel"] for row in rows(shop)}
    assert channels == {("csv:big", 1): "email", ("csv:small", 1): "email", ("csv:big", 2): "sms",
                        ("csv:small", 2): "email"}


@pytest.mark.parametrize("locale", ["en", "sv", "hu", "ru", "af", "kk"])
def test_every_shipped_language_has_a_text_that_goes_out(shop: Shop, tmp_path: Path, locale: str) -> None:
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.add(cart("c", phone="0701234501", sms_consent="yes", locale=locale))
    result = shop.cli("run", "--outbox", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0 and result.json["counts"]["sent"] == 1
    (text,) = (tmp_path / "out").glob("*.sms.txt")
    body = text.read_text(encoding="utf-8")
    assert "Test Shop" in body and measure(body).segments <= 3
    expected = {"en": "GSM-7", "sv": "GSM-7", "af": "GSM-7", "hu": "UCS-2", "ru": "UCS-2", "kk": "UCS-2"}[locale]
    assert measure(body).encoding == expected


@pytest.mark.parametrize("name", ["Åsa\u2019s Butik", "Kaffe \u2013 Te", "\u201eKis Bolt\u201d Kft."])
def test_a_shop_named_with_typographic_quotes_or_dashes_sends_its_texts(shop: Shop, tmp_path: Path,
                                                                       name: str) -> None:
    """A text writes the shop's curly apostrophe, dash or Hungarian quotes as their GSM-7 look-alikes:
    the name is still in it (every text of such a shop failed with render_error)."""
    sms_shop(shop, "https://api.example.com", carts=1).configure(shop={"name": name})
    result = shop.cli("run", "--outbox", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0 and result.json["counts"]["sent"] == 1, result.output
    (text,) = (tmp_path / "out").glob("*.sms.txt")
    assert text.read_text(encoding="utf-8").startswith(name.translate({0x2019: "'", 0x2013: "-", 0x201E: '"',
                                                                       0x201D: '"'}) + ":")


class Gateway(LoopbackHTTP):
    """A generic SMS gateway: JSON in, {"status": ..., "messages": [{"id": ...}]} out."""

    def __init__(self) -> None:
        super().__init__()
        self.said = "ok"

    def answer(self, seen: Seen) -> Answer:
        return Answer(200, json.dumps({"status": self.said, "messages": [{"id": f"gw-{len(self.requests)}"}]}).encode(),
                      {"Content-Type": "application/json"})


def gateway_shop(shop: Shop, gateway: Gateway) -> None:
    sms_shop(shop, "https://api.example.com", carts=2, provider="http",
             http={"url": gateway.url + "/send", "format": "json", "token": "gw-token-123456",
                   "fields": {"recipient": "{to}", "originator": "{sender}", "body": "{text}", "reference": "{id}",
                              "api_key": "gw-api-key-654321"},
                   "success_field": "status", "success_values": ["ok", "queued"], "id_field": "messages.0.id"})


def test_a_generic_gateway_gets_the_configured_fields_and_its_answer_decides(shop: Shop) -> None:
    with Gateway() as gateway:
        gateway_shop(shop, gateway)
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        first = gateway.requests[0]
        assert first.headers["authorization"] == "Bearer gw-token-123456"
        document = first.json
        assert document["recipient"].startswith("+4670123450") and document["originator"] == SENDER
        assert "Reply STOP" in document["body"] and document["reference"].isdigit()
        assert {row["status"] for row in rows(shop)} == {"sent"}
        assert all(row["reply"].startswith("200 gw-") for row in rows(shop))
        assert "gw-token-123456" not in result.output and "gw-api-key-654321" not in result.output


def test_two_shops_on_one_gateway_account_never_send_the_same_key(tmp_path: Path) -> None:
    """An agency's shops, each with its own ledger, text through one gateway account that
    de-duplicates on the client reference: ``{id}`` is the ledger id, counted from 1 in each
    ledger, so both shops sent the same references; ``{key}`` is the message's own id."""
    ids: set[str] = set()
    with Gateway() as gateway:
        for name in ("North Shop", "South Shop"):
            (tmp_path / name).mkdir()
            one = Shop(tmp_path / name)
            gateway_shop(one, gateway)
            one.configure(shop={"name": name}, sms={"http": {"fields": {"to": "{to}", "text": "{text}",
                                                                        "reference": "{key}", "ledger_id": "{id}"}}})
            result = one.cli("run", "--send", "--json")
            assert result.exit_code == 0 and result.json["counts"]["sent"] == 2, result.output
            ids.update(row["message_id"].strip("<>") for row in one.messages())
        sent = [request.json for request in gateway.requests]
        assert len(sent) == 4 and len({document["ledger_id"] for document in sent}) == 2  # {id} repeats
        assert len({document["reference"] for document in sent}) == 4
        assert {document["reference"] for document in sent} == ids  # the ledger's message_id, as the webhook's key


def test_a_gateway_that_answers_see_other_after_sending_never_gets_a_text_again(shop: Shop) -> None:
    """A gateway script that sends the text and answers ``303 See Other`` (the POST was taken,
    its result is elsewhere): the text was recorded ``failed_transient``, and every later run
    sent it again, one more text to the same customer each cron round. The rest of the run's
    texts wait for a run after the URL is fixed, as for any redirect not followed."""
    with Gateway() as gateway:
        gateway_shop(shop, gateway)
        shop.configure(sms={"concurrency": 1})
        gateway.plan(*[Answer(303, headers={"Location": "/sent?id=1"})] * 4)  # each request sent a text
        first = shop.cli("run", "--send", "--json")
        assert first.exit_code == 1, first.output
        assert first.json["counts"]["deliveries"] == {"unconfirmed": 1, "failed_transient": 1}
        assert len(gateway.requests) == 1
        for later in (30, 60):
            shop.cli("run", "--send", now=NOW + timedelta(minutes=later))
        assert [row["status"] for row in rows(shop)] == ["unconfirmed", "unconfirmed"]
        assert all("303" in row["reply"] and "not resent" in row["reply"] for row in rows(shop))
        recipients = [request.json["recipient"] for request in gateway.requests]
        assert len(recipients) == 2 and len(set(recipients)) == 2  # each text once


def test_a_gateway_that_answers_found_on_its_own_host_after_sending_never_gets_a_text_again(shop: Shop) -> None:
    """``302 Found`` to a page of the same host is how a web form answers a POST it took
    (post/redirect/get), as 303 is: the text was recorded ``failed_transient`` and sent again by
    every later run."""
    with Gateway() as gateway:
        gateway_shop(shop, gateway)
        shop.configure(sms={"concurrency": 1})
        gateway.plan(*[Answer(302, headers={"Location": "/sent?id=1"})] * 4)  # each request sent a text
        first = shop.cli("run", "--send", "--json")
        assert first.exit_code == 1, first.output
        assert first.json["counts"]["deliveries"] == {"unconfirmed": 1, "failed_transient": 1}
        for later in (30, 60):
            shop.cli("run", "--send", now=NOW + timedelta(minutes=later))
        assert [row["status"] for row in rows(shop)] == ["unconfirmed", "unconfirmed"]
        assert all("302" in row["reply"] and "not resent" in row["reply"] for row in rows(shop))
        recipients = [request.json["recipient"] for request in gateway.requests]
        assert len(recipients) == 2 and len(set(recipients)) == 2  # each text once


def test_a_gateway_that_moved_elsewhere_keeps_its_texts_for_a_run_after_the_url_is_fixed(shop: Shop) -> None:
    """A redirect to another host or scheme (``http`` to ``https``, a new domain) says the
    gateway is not here: nothing was taken, the texts wait (``failed_transient``)."""
    with Gateway() as gateway:
        gateway_shop(shop, gateway)
        shop.configure(sms={"concurrency": 1})
        gateway.plan(*[Answer(302, headers={"Location": "https://sms.example.net/api"})] * 4)
        first = shop.cli("run", "--send", "--json")
        assert first.exit_code == 1, first.output
        assert first.json["counts"]["deliveries"] == {"failed_transient": 2}
        assert all("302 redirect to https://sms.example.net not followed" in row["reply"] for row in rows(shop))


def test_a_gateway_that_says_error_in_a_200_is_a_permanent_failure(shop: Shop) -> None:
    with Gateway() as gateway:
        gateway.said = "error"
        gateway_shop(shop, gateway)
        assert shop.cli("run", "--send").exit_code == 1
        assert {row["status"] for row in rows(shop)} == {"failed_permanent"}
        assert all("status='error'" in row["reply"] and "gw-api-key-654321" not in row["reply"] for row in rows(shop))


@pytest.mark.parametrize(("said", "values", "status"), [
    (True, [True], "sent"),  # YAML's true, as JSON's
    (True, ["true"], "sent"),  # not Python's "True"
    (True, ["TRUE"], "sent"),  # any case
    (0, [0], "sent"),  # a number, either side
    ("OK", ["ok", "queued"], "sent"),
    (False, [True], "failed_permanent"),
    (None, [None], "sent"),  # a null the gateway wrote, as YAML's null
])
def test_a_gateway_success_value_is_compared_as_json_text_in_any_case(shop: Shop, said: Any, values: list[Any],
                                                                      status: str) -> None:
    with Gateway() as gateway:
        gateway.said = said  # {"status": true, "messages": [...]}
        gateway_shop(shop, gateway)
        shop.configure(sms={"http": {"success_values": values}})
        shop.cli("run", "--send")
        assert {row["status"] for row in rows(shop)} == {status}
        assert len(gateway.requests) == 2  # one request each, never resent


def test_a_gateway_answer_without_the_success_field_does_not_match_a_null_success_value(shop: Shop) -> None:
    """``success_values: [null]`` matches the field when the answer says null; an answer that has
    no such field says nothing, but was read as null and counted as sent."""
    with Gateway() as gateway:
        silent = json.dumps({"messages": [{"id": "gw-1"}]}).encode()
        gateway.plan(*[Answer(200, silent, {"Content-Type": "application/json"})] * 2)
        gateway_shop(shop, gateway)
        shop.configure(sms={"http": {"success_values": [None]}})
        assert shop.cli("run", "--send").exit_code == 1
        assert [row["status"] for row in rows(shop)] == ["failed_permanent", "failed_permanent"]
        assert all(row["reply"].startswith("no status in the answer: 200") for row in rows(shop))
        assert len(gateway.requests) == 2  # one request each, never resent


def test_a_plain_text_2xx_with_only_an_id_field_is_sent_with_the_raw_reply(shop: Shop) -> None:
    """docs/channels.md: without ``success_field`` any 2xx is success; ``id_field`` only says
    where an id would be, so an answer that has none is no doubt about the message."""
    with Gateway() as gateway:
        gateway.plan(*[Answer(200, b"OK 12345", {"Content-Type": "text/plain"})] * 2)
        gateway_shop(shop, gateway)
        shop.configure(sms={"http": {"success_field": None, "success_values": []}})
        assert shop.cli("run", "--send").exit_code == 0
        assert [row["status"] for row in rows(shop)] == ["sent", "sent"]
        assert all(row["reply"] == "200 OK: OK 12345" for row in rows(shop))
        assert len(gateway.requests) == 2


def test_sending_without_provider_credentials_names_the_key_and_no_secret(shop: Shop) -> None:
    sms_shop(shop, "https://api.example.com", carts=1)
    shop.configure(sms={"twilio": {"auth_token": ""}})
    result = shop.cli("run", "--send", "--json")
    assert result.exit_code == 2 and "sms.twilio.auth_token" in result.json["error"]["message"]


def test_a_sender_name_longer_than_a_phone_shows_is_a_config_error_before_any_text(shop: Shop) -> None:
    """A sender name has at most 11 characters (the SMS header's limit): ``Example Shop AB`` was
    taken, and the provider refused every text (Twilio 21212), transient run after run."""
    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=1, sender="Example Shop AB")
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 2, result.output
        assert "sms.sender: 'Example Shop AB' is 15 characters" in result.json["error"]["message"]
        assert not twilio.requests and not rows(shop)
        shop.configure(sms={"sender": "ExampleShop"})
        assert shop.cli("run", "--send").exit_code == 0 and twilio.messages[0]["From"] == "ExampleShop"


def test_links_in_texts_carry_utm_tags_only_when_asked(shop: Shop, tmp_path: Path) -> None:
    sms_shop(shop, "https://api.example.com", carts=1)
    assert shop.cli("run", "--outbox", str(tmp_path / "plain")).exit_code == 0
    (plain,) = (tmp_path / "plain").glob("*.sms.txt")
    assert "utm_" not in plain.read_text(encoding="utf-8")
    shop.configure(sms={"link_tags": True})
    (shop.folder / "ledger.db").unlink()  # the same step again, from a fresh ledger
    assert shop.cli("run", "--outbox", str(tmp_path / "tagged")).exit_code == 0
    (text,) = (tmp_path / "tagged").glob("*.sms.txt")
    assert "utm_medium=sms&utm_campaign=default-step1" in text.read_text(encoding="utf-8")


def test_a_cart_no_text_can_reach_gets_its_step_by_email_instead(shop: Shop) -> None:
    """No mobile, a landline, no SMS consent: the step goes by e-mail (noted), not nowhere; the
    later steps, and their incentive, follow as for any cart."""
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.add(cart("none", phone="", sms_consent="yes"), cart("landline", phone="08-123 456 78", sms_consent="yes"),
             cart("unasked", phone="0701234501", consent="yes", sms_consent=""),
             cart("texted", phone="0701234502", sms_consent="yes"))
    decisions = shop.decisions()
    assert {key: (d["action"], d["channel"]) for key, d in decisions.items()} == {
        "none": ("send", "email"), "landline": ("send", "email"), "unasked": ("send", "email"),
        "texted": ("send", "sms")}
    assert decisions["none"]["detail"] == "by email, not sms (no phone number)"
    assert decisions["unasked"]["detail"] == "by email, not sms (sms_consent=None, policy required)"
    assert decisions["texted"]["detail"] == ""


def test_a_cart_neither_text_nor_email_can_reach_keeps_the_sms_reason(shop: Shop) -> None:
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.add(cart("nobody", phone="", sms_consent="yes", consent="no"))
    decision = shop.decisions()["nobody"]
    assert (decision["action"], decision["reason"], decision["channel"]) == ("skip", "no_contact", "sms")


@pytest.mark.parametrize(("phone", "said"), [
    ("+44 7700 900500", "phone '+44 7700 900500' is not a valid mobile number"),  # E.164, but not a number in use
    ("070 12", "phone '070 12' is not a mobile number in E.164 (+country) or of region SE"),
])
def test_why_a_number_cannot_get_a_text_is_said_as_it_was_written(shop: Shop, phone: str, said: str) -> None:
    sms_shop(shop, "https://api.example.com", carts=1, phone=phone)
    shop.configure(eligibility={"channel_fallback": False})
    assert shop.decisions()["s000"]["detail"] == said


@pytest.mark.parametrize(("code", "meant"), [("UK", "GB (the United Kingdom)"), ("el", "GR (Greece)")])
def test_a_country_code_that_is_not_iso_3166_is_refused_with_the_one_meant(shop: Shop, code: str, meant: str) -> None:
    sms_shop(shop, "https://api.example.com", carts=1, countries=["SE", code])
    result = shop.cli("carts", "--json")
    assert result.exit_code == 2
    assert f"sms.countries: {code.upper()} is not an ISO 3166 country code: write {meant}" in result.stderr


def test_a_text_the_budget_has_no_room_for_is_not_mailed_to_a_number_texted_in_this_run(shop: Shop) -> None:
    """``over_budget: email``: the e-mail instead of a text would be the customer's one message
    of the day, which the other cart of the number, kept for a text, is to have: this cart waits."""
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms", "budget": 1,
                                        "over_budget": "email"}]})
    shop.add(cart("a", email="a@example.com", phone="070-123 45 01", sms_consent="yes",
                  items=[("S", "Sofa", 1, "900.00")]),
             cart("b", email="b@example.com", phone="+46701234501", sms_consent="yes"),
             cart("c", email="c@example.com", phone="+46701234502", sms_consent="yes"))
    decisions = shop.decisions(command="run")
    assert {key: (d["reason"], d["channel"]) for key, d in decisions.items()} == {
        "a": ("due", "sms"), "b": ("tier_budget", "sms"), "c": ("due", "email")}
