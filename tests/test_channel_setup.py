"""Channel configuration, doctor and templates check for the webhook and SMS channels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from httpserver import ACCOUNT_SID, AUTH_TOKEN, LoopbackHTTP, TwilioEmulator, WebhookReceiver

from cartrescue.config import load_config
from conftest import REPO, Shop, cart, cli


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "cartrescue.yaml"
    path.write_text(yaml.safe_dump({"source": {"type": "csv", "carts": "c.csv"}, **data}), encoding="utf-8")
    return path


def test_every_yaml_example_of_the_channels_page_is_a_valid_config(tmp_path: Path) -> None:
    text = (REPO / "docs" / "channels.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    env = {"CARTRESCUE_WEBHOOK_SECRET": "s" * 20, "TWILIO_AUTH_TOKEN": "t" * 20, "SMS_GATEWAY_TOKEN": "g" * 20}
    for block in blocks:
        path = tmp_path / "example.yaml"
        path.write_text("source: {type: csv, carts: c.csv}\n" + block, encoding="utf-8")
        load_config(path, env=env)


def test_a_step_channel_falls_back_to_the_tier_and_per_tier_entries_win(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, {
        "priority": {"tiers": [{"name": "vip", "min_score": 50, "channel": "call-list"},
                               {"name": "high", "min_score": 30}, {"name": "low", "min_score": 0}]},
        "sequences": {"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                            {"delay": "2h", "template": "reminder-2", "channel": "webhook",
                                             "tier_channels": {"high": "sms"}}]}}}))
    tiers = {tier.name: tier for tier in config.priority.tiers}
    first, second = config.sequences["default"].steps
    assert [first.channel_for(tiers[n]) for n in ("vip", "high", "low")] == ["call-list", "email", "email"]
    assert [second.channel_for(tiers[n]) for n in ("vip", "high", "low")] == ["webhook", "sms", "webhook"]
    assert config.channels_used() == {"call-list", "email", "webhook", "sms"}


@pytest.mark.parametrize(("data", "message"), [
    ({"sequences": {"default": {"steps": [{"delay": "1h", "template": "reminder-1", "tier_channels": {"gold": "sms"}}]}}},
     "sequences.default.steps[0].tier_channels: unknown tier 'gold'"),
    ({"priority": {"tiers": [{"name": "t", "channel": "fax"}]}}, "priority.tiers[0].channel"),
    ({"sms": {"countries": ["Sweden"]}}, "sms.countries"),
    ({"shop": {"country": "SWE"}}, "shop.country"),
    ({"shop": {"country": True}}, "shop.country"),
    ({"sms": {"http": {"url": "http://gateway.example.com/send"}}}, "sms.http.url: http:// to 'gateway.example.com'"),
    ({"sms": {"http": {"success_values": ["ok"]}}}, "sms.http: success_values needs success_field"),
    # Nothing matches an empty list: every text the gateway took was recorded failed_permanent.
    ({"sms": {"http": {"success_field": "status"}}}, "sms.http: success_field needs success_values"),
    ({"webhook": {"url": "ftp://x.example.com/"}}, "webhook.url: expected an http(s) URL"),
])
def test_channel_config_errors_name_the_key(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    result = cli("carts", "--config", str(_write(tmp_path, data)), "--json")
    assert result.exit_code == 2 and message in result.json["error"]["message"], result.output


@pytest.mark.parametrize("data", [
    {"webhook": {"secret": "hunter2secret", "url": "http://hooks.example.com/x"}},
    {"sms": {"twilio": {"auth_token": "hunter2secret", "base_url": "http://api.example.com"}}},
    {"sms": {"http": {"token": "hunter2secret", "password": "hunter2secret", "url": "ftp://x"}}},
    {"sms": {"http": {"fields": {"api_key": "hunter2secret"}, "url": "ftp://x"}, "max_segments": 99}},
    {"sms": {"http": {"inbound_secret": "hunter2secret", "url": "http://x.example.com"}}},
])
def test_no_channel_config_error_shows_a_secret(tmp_path: Path, data: dict[str, Any]) -> None:
    result = cli("carts", "--config", str(_write(tmp_path, data)), "--json")
    assert result.exit_code == 2 and "hunter2secret" not in result.output


def _doctor(shop: Shop) -> dict[str, Any]:
    result = shop.cli("doctor", "--json", "--no-smtp", now=None)
    return {check["name"]: check for check in result.json["checks"]}


def test_doctor_checks_the_webhook_and_the_sms_provider_and_sends_nothing(shop: Shop) -> None:
    shop.add(cart("c1"))
    with WebhookReceiver("w" * 20) as receiver, TwilioEmulator() as twilio:
        shop.configure(priority={"tiers": [{"name": "high", "min_score": 50, "channel": "sms"},
                                           {"name": "standard", "min_score": 0, "channel": "webhook"}]},
                       webhook={"url": receiver.url, "secret": "w" * 20},
                       sms={"sender": "+46700000001", "twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                                                                 "base_url": twilio.url}})
        checks = _doctor(shop)
        assert checks["webhook"]["status"] == "ok" and "405" in checks["webhook"]["detail"]
        assert checks["sms"]["status"] == "ok" and "active" in checks["sms"]["detail"]
        assert receiver.accepted == {} and twilio.messages == []
        assert [r.method for r in receiver.requests] == ["HEAD"] and [r.method for r in twilio.requests] == ["GET"]
        shop.configure(sms={"twilio": {"auth_token": "wrong-token-" + "x" * 20}})
        checks = _doctor(shop)
        assert checks["sms"]["status"] == "fail" and "credentials" in checks["sms"]["detail"]
        assert "wrong-token" not in str(checks)


def test_doctor_fails_a_webhook_that_does_not_answer(shop: Shop) -> None:
    with LoopbackHTTP() as probe:
        closed = probe.url
    shop.add(cart("c1"))
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                   webhook={"url": closed + "/hook?token=querysecret123", "secret": "w" * 20, "timeout": "2s"})
    result = shop.cli("doctor", "--json", "--no-smtp", now=None)
    checks = {check["name"]: check for check in result.json["checks"]}
    assert result.exit_code != 0 and checks["webhook"]["status"] == "fail"
    assert "querysecret123" not in result.output  # the URL is shown without its query


def test_doctor_gives_up_on_a_provider_that_trickles_its_answer_past_the_timeout(shop: Shop) -> None:
    """httpx's timeout bounds each read: a provider answering a byte every 0.4 s (8 s in all)
    held ``doctor`` until the end and was then called fine. The channels bound each attempt
    by ``timeout`` in all; so does the doctor's probe, and says why it failed."""
    import time

    from httpserver import Answer

    shop.add(cart("c1"))
    with TwilioEmulator() as twilio:
        twilio.plan(Answer(200, b'{"status": "active"}', trickle=0.4))
        shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                       sms={"sender": "+46700000001", "timeout": "1s",
                            "twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": twilio.url}})
        started = time.monotonic()
        checks = _doctor(shop)
        elapsed = time.monotonic() - started
    assert checks["sms"]["status"] == "fail"
    assert "no complete answer within sms.timeout (1 s)" in checks["sms"]["detail"]
    assert elapsed < 6 and AUTH_TOKEN not in str(checks)


def test_templates_check_finds_a_text_without_stop_too_long_or_without_the_shop(tmp_path: Path) -> None:
    folder = tmp_path / "templates" / "en"
    folder.mkdir(parents=True)
    for part in ("subject.txt", "txt", "html"):
        source = (REPO / "templates" / "en" / f"reminder-1.{part}").read_text(encoding="utf-8")
        (folder / f"reminder-1.{part}").write_text(source, encoding="utf-8")
    (folder / "reminder-1.sms.txt").write_text("Your cart: {{ recovery_url }} " + "Сейчас! " * 30, encoding="utf-8")
    path = _write(tmp_path, {"templates": "templates",
                             "priority": {"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                             "sequences": {"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}}})
    result = cli("templates", "check", "--config", str(path), "--json")
    assert result.exit_code == 1
    (case,) = [c for c in result.json["cases"] if c["channel"] == "sms" and c["locale"] == "en"]
    assert {p["kind"] for p in case["problems"]} == {"sms-length", "sms-opt-out", "sms-shop"}
    assert case["files"] == ["en/reminder-1.sms.txt"] and case["segments"] >= 4


def test_templates_check_passes_the_shipped_texts_in_every_language(tmp_path: Path) -> None:
    path = _write(tmp_path, {"priority": {"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]}})
    result = cli("templates", "check", "--config", str(path), "--json")
    assert result.exit_code == 0, result.output
    sms = [c for c in result.json["cases"] if c["channel"] == "sms"]
    assert {c["locale"] for c in sms} == {"en", "sv", "hu", "ru", "af", "kk"} and len(sms) == 18
    assert all(1 <= c["segments"] <= 3 for c in sms)


def _webhook_on(shop: Shop, url: str, **webhook: Any) -> None:
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                   webhook={"url": url, "secret": "w" * 20, "backoff": "0.05s", "retries": 0, **webhook})


def test_a_receiver_behind_a_private_ca_is_trusted_through_its_ca_file(shop: Shop) -> None:
    """An agency's own receiver or gateway on an internal CA: certifi's CAs refuse its
    certificate, and the channel had no way to trust it but a public certificate. ``ca_file``
    (relative to the config file, as ``smtp.ca_file``) trusts that CA for the channel."""
    import shutil

    shop.add(cart("c1"), cart("c2"))
    with WebhookReceiver("w" * 20, tls=True) as receiver:
        assert receiver.ca_file is not None and receiver.url.startswith("https://")
        _webhook_on(shop, receiver.url + "/hook")
        refused = shop.cli("run", "--send", "--json")
        assert refused.exit_code == 1 and refused.json["counts"]["deliveries"] == {"failed_transient": 2}
        assert all("CERTIFICATE_VERIFY_FAILED" in row["reply"] for row in shop.messages()), shop.messages()
        shutil.copy(receiver.ca_file, shop.folder / "internal-ca.pem")
        _webhook_on(shop, receiver.url + "/hook", ca_file="internal-ca.pem")
        trusted = shop.cli("run", "--send", "--json")
        assert trusted.exit_code == 0, trusted.output
        assert len(receiver.accepted) == 2 and {row["status"] for row in shop.messages()} == {"sent"}


def test_an_sms_provider_behind_a_private_ca_is_trusted_through_its_ca_file(shop: Shop) -> None:
    shop.add(cart("s1", phone="070-123 45 01", sms_consent="yes"))
    with TwilioEmulator(tls=True) as twilio:
        assert twilio.ca_file is not None
        shop.configure(shop={"country": "SE"},
                       priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                       sms={"sender": "+46700000001", "quiet_hours": None, "ca_file": str(twilio.ca_file),
                            "twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": twilio.url}})
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        assert len(twilio.messages) == 1 and [row["status"] for row in shop.messages()] == ["sent"]


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_ca_file_that_does_not_load_stops_the_run_before_any_claim_naming_the_key(
        shop: Shop, content: str | None) -> None:
    """Loaded only when the first connection opened, it failed every message of the run (each
    claim ``failed_transient``, every run again) instead of saying which setting is wrong."""
    if content is not None:
        (shop.folder / "ca.pem").write_text(content, encoding="utf-8")
    shop.add(cart("c1"))
    _webhook_on(shop, "https://127.0.0.1:9/hook", ca_file="ca.pem")
    result = shop.cli("run", "--send", "--json")
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{shop.config_path}: webhook.ca_file: cannot load {shop.folder / 'ca.pem'}: "), message
    assert shop.messages() == []


def test_doctor_trusts_the_channels_ca_file_and_fails_one_that_does_not_load(shop: Shop) -> None:
    import shutil

    shop.add(cart("c1"))
    with WebhookReceiver("w" * 20, tls=True) as receiver:
        assert receiver.ca_file is not None
        shutil.copy(receiver.ca_file, shop.folder / "internal-ca.pem")
        _webhook_on(shop, receiver.url + "/hook", ca_file="internal-ca.pem")
        checks = _doctor(shop)
        assert checks["webhook"]["status"] == "ok" and "405" in checks["webhook"]["detail"], checks["webhook"]
        (shop.folder / "internal-ca.pem").write_text("garbage\n", encoding="utf-8")
        result = shop.cli("doctor", "--json", "--no-smtp", now=None)
        check = {c["name"]: c for c in result.json["checks"]}["webhook"]
        assert result.exit_code == 2 and check["status"] == "fail", result.output
        assert "webhook.ca_file: cannot load" in check["detail"]
