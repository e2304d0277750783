"""`send-test ADDRESS [CART_ID]`: one rendered reminder to the owner through the configured
channel (a real SMTP server on loopback, or an outbox), recorded in the real SQLite ledger as a
test and never as the cart's step."""

from __future__ import annotations

import email
import re
from email import policy

import pytest
from smtpserver import Fault, LoopbackSMTP

from cartrescue.ledger import Ledger
from cartrescue.tokens import verify_link
from cartrescue.unsubscribe import PreviewToken, verify_token
from conftest import Shop, cart

OWNER = "owner@shop.example.com"


def ledger_of(shop: Shop) -> Ledger:
    return Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")


@pytest.mark.smtp
def test_a_test_arrives_at_the_owner_marked_and_is_recorded_as_a_test(shop: Shop) -> None:
    shop.add(cart("c1", first_name="Åsa"))
    with LoopbackSMTP("starttls", auth=("shop", "s3cret")) as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("send-test", OWNER, "c1", "--json")
        assert result.exit_code == 0, result.output
        (received,) = server.wait_for(1)
    assert received.rcpt_tos == (OWNER,) and received.mail_from == "shop@example.com"
    message = received.parsed()
    assert message["To"].addresses[0].addr_spec == OWNER  # never the customer
    assert message["Subject"] == "[test] Åsa, you left something in your cart"
    assert message["X-Cartrescue-Test"] == "yes" and message["X-Cartrescue-Cart"] == "csv:c1"
    token = re.search(r"token=([A-Za-z0-9_.-]+)>", message["List-Unsubscribe"]).group(1)
    assert verify_link("unsubscribe", token, "test-secret-of-the-suite") == (OWNER, True)  # a test link, not Åsa's
    with pytest.raises(PreviewToken):  # which unsubscribes nobody
        verify_token(token, "test-secret-of-the-suite")
    assert "Blue mug" in message.get_body(("plain",)).get_content()
    assert result.json["status"] == "sent" and result.json["transport"] == "smtp" and result.json["cart"] == "cart"

    ledger = ledger_of(shop)
    (test,) = ledger.send_tests()
    assert (test["email"], test["cart_key"], test["step"], test["status"]) == (OWNER, "csv:c1", 1, "sent")
    assert test["reply"].startswith("250") and test["message_id"] == message["Message-ID"]
    assert ledger.messages() == []  # nothing claimed: not a step


@pytest.mark.smtp
def test_a_test_the_relay_never_answered_says_to_look_in_the_mailbox_not_to_resend_unconfirmed(shop: Shop) -> None:
    """The relay hung up after the final dot: the test may have arrived (exit 1, ``unconfirmed``).
    Its reply told the tester "--resend-unconfirmed sends it", a run's option that releases a
    run's claims: send-test has no such option and a test has no claim to release."""
    shop.add(cart("c1"))
    with LoopbackSMTP(faults=[Fault(r"^owner@", "drop-after-data")]) as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("send-test", OWNER, "c1", "--json")
    assert result.exit_code == 1, result.output
    assert result.json["status"] == "unconfirmed"
    assert "--resend-unconfirmed" not in result.json["reply"]
    assert result.json["reply"].endswith("after the whole message was sent: it may have arrived (look in that "
                                         "mailbox before sending another test)")
    (test,) = ledger_of(shop).send_tests()
    assert test["reply"] == result.json["reply"]


@pytest.mark.smtp
def test_a_test_is_never_the_carts_step_nor_a_message_of_the_day(shop: Shop) -> None:
    """Sent to the customer's own address: the run that follows still sends them step 1 the same
    day, with its own Message-ID."""
    shop.add(cart("c1"))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        assert shop.cli("send-test", "c1@example.com", "c1").exit_code == 0
        carts = shop.cli("carts", "--json").json["decisions"]
        run = shop.cli("run", "--send", "--json")
        received = server.wait_for(2)
    assert [(d["action"], d["reason"], d["step"]) for d in carts] == [("send", "due", 1)]
    assert run.exit_code == 0 and run.json["counts"]["sent"] == 1
    test, real = (m.parsed() for m in received)
    assert test["Subject"].startswith("[test] ") and not real["Subject"].startswith("[test]")
    assert test["Message-ID"] != real["Message-ID"]
    rows = ledger_of(shop).messages()
    assert [(r["step"], r["status"], r["message_id"]) for r in rows] == [(1, "sent", real["Message-ID"])]


def test_without_a_cart_id_the_first_cart_due_now_is_rendered(shop: Shop) -> None:
    shop.add(cart("c-no-consent", consent="no"), cart("c-due", first_name="Bea"))
    result = shop.cli("send-test", OWNER, "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert (result.json["cart"], result.json["cart_id"]) == ("due", "c-due")
    assert result.json["subject"] == "[test] Bea, you left something in your cart"
    (eml,) = (shop.folder / "out").glob("*.eml")
    parsed = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert parsed["To"].addresses[0].addr_spec == OWNER and parsed["X-Cartrescue-Test"] == "yes"
    assert result.json["reply"] == str(eml)


def test_a_shop_without_carts_gets_the_built_in_sample(shop: Shop) -> None:
    result = shop.cli("send-test", OWNER, "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert (result.json["cart"], result.json["cart_id"]) == ("sample", None)
    assert result.json["subject"] == "[test] Anna, you left something in your cart"
    assert ledger_of(shop).send_tests()[0]["cart_key"] == ""


def test_the_built_in_sample_carries_no_note_that_a_run_would_skip_it(shop: Shop) -> None:
    """The sample is no customer's cart and no run ever plans it: its test said "note: a run
    would skip this cart and send it nothing (no_consent: consent=None ...)", as if a customer
    were left out."""
    out = str(shop.folder / "out")
    result = shop.cli("send-test", OWNER, "--sample", "--outbox", out, "--json")
    assert result.exit_code == 0, result.output
    assert result.json["cart"] == "sample" and result.json["note"] is None
    said = shop.cli("send-test", OWNER, "--sample", "--outbox", out)
    assert said.exit_code == 0 and "the built-in sample cart" in said.stderr
    assert "note:" not in said.stderr


def test_the_built_in_sample_is_named_as_the_sample_in_its_header_and_file(shop: Shop) -> None:
    """Its outbox file was check_edge-one-item-step1-test1.eml and its X-Cartrescue-Cart
    check:edge-one-item: the name of a templates check fixture, while --json said no cart."""
    result = shop.cli("send-test", OWNER, "--sample", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    (eml,) = (shop.folder / "out").glob("*.eml")
    assert eml.name == f"sample_built-in-step1-test{result.json['test_id']}.eml"
    assert email.message_from_bytes(eml.read_bytes(), policy=policy.default)["X-Cartrescue-Cart"] == "sample:built-in"


def test_step_locale_and_variant_as_in_preview_and_no_code_is_handed_out(shop: Shop) -> None:
    shop.add(cart("c1", first_name="Åsa"))
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-1"}, {"delay": "24h", "template": "reminder-2"},
        {"delay": "72h", "template": "reminder-3", "variants": {"a": 1, "b": 1},
         "incentive": {"kind": "percent", "value": 10, "valid_for": "3d",
                       "codes": {"pool": "comeback", "pattern": "CB-{random:8}"}}}]}})
    preview = shop.cli("preview", "c1", "--step", "3", "--locale", "sv", "--variant", "b", "--json").json
    result = shop.cli("send-test", OWNER, "c1", "--step", "3", "--locale", "sv", "--variant", "b",
                      "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert (result.json["step"], result.json["variant"]) == (3, "b")
    assert result.json["subject"] == "[test] " + preview["subject"]  # the preview's message, marked
    (eml,) = (shop.folder / "out").glob("*.eml")
    text = email.message_from_bytes(eml.read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
    assert "XXXXXXXX" in text  # the per-recipient code's placeholder: no code was allocated
    codes = shop.cli("codes", "list", "--json").json["pools"]["comeback"]
    assert codes == {"unused": 0, "active": 0, "expired": 0, "undelivered": 0, "withdrawn": 0}
    assert ledger_of(shop).send_tests()[0]["locale"] == "sv"


def test_a_test_in_a_locale_without_templates_says_which_it_fell_back_to_as_preview_does(shop: Shop) -> None:
    """`--locale` as in `preview`: a market without the step's files gets the fallback, and the
    owner who asked for it is told, in a `note:` line and in the document."""
    shop.add(cart("c1"))
    said = ("--locale fi: step 1's template has no fi files: shown in en (the fallback a customer of fi "
            "gets)")
    result = shop.cli("send-test", OWNER, "c1", "--locale", "fi", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 0, result.output
    assert f"note: {said}" in " ".join(result.stderr.split())
    as_json = shop.cli("send-test", OWNER, "c1", "--locale", "fi", "--outbox", str(shop.folder / "out"), "--json")
    assert (as_json.json["locale"], as_json.json["locale_fallback"]) == ("en", said)
    own = shop.cli("send-test", OWNER, "c1", "--locale", "sv", "--outbox", str(shop.folder / "out"), "--json")
    assert (own.json["locale"], own.json["locale_fallback"]) == ("sv", None)


def test_a_test_is_recorded_in_the_locale_it_was_rendered_in(shop: Shop) -> None:
    """An English customer's cart tested in sv (and in fi, which falls back to en): the ledger's
    row says the message's locale, not the customer's."""
    shop.add(cart("c1", locale="en"))
    for asked in ("sv", "fi"):
        result = shop.cli("send-test", OWNER, "c1", "--locale", asked, "--outbox", str(shop.folder / "out"))
        assert result.exit_code == 0, result.output
    assert [row["locale"] for row in ledger_of(shop).send_tests()] == ["sv", "en"]


@pytest.mark.smtp
def test_a_refused_test_exits_1_is_recorded_failed_and_suppresses_nobody(shop: Shop) -> None:
    shop.add(cart("c1"))
    with LoopbackSMTP(faults=[Fault(r"^owner@", "550 5.1.1 <owner@shop.example.com>: no such user")]) as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("send-test", OWNER, "c1", "--json")
    assert result.exit_code == 1
    assert result.json["status"] == "failed_permanent" and "5.1.1" in result.json["reply"]
    ledger = ledger_of(shop)
    assert ledger.send_tests()[0]["status"] == "failed_permanent"
    assert ledger.suppressions() == [] and ledger.messages() == []


@pytest.mark.smtp
def test_a_tests_to_header_names_the_test_recipient_alone_never_the_customer(shop: Shop) -> None:
    """The To: header carried the customer's name beside the test address ("Åsa Lind
    <owner@…>"): the tester's mailbox listed customers' names. The text still greets the customer."""
    shop.add(cart("c1", first_name="Åsa", last_name="Lind"))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("send-test", OWNER, "c1", "--json")
        assert result.exit_code == 0, result.output
        (received,) = server.wait_for(1)
    raw_to = next(line for line in received.data.decode("utf-8", "replace").splitlines()
                  if line.lower().startswith("to:"))
    assert raw_to == f"To: {OWNER}"
    message = received.parsed()
    assert message["To"].addresses[0].display_name == ""
    assert "Åsa" in message.get_body(("plain",)).get_content()  # rendered as the customer's message


@pytest.mark.parametrize(("args", "message"), [
    (["not-an-address"], "not an e-mail address"),
    ([OWNER, "no-such-cart"], "not found in the source"),
    ([OWNER, "c1", "--step", "9"], "the sequence has 3 steps"),
    ([OWNER, "c1", "--sample"], "not both"),
    ([OWNER, "c1", "--locale", ""], "--locale : not a locale"),
])
def test_usage_errors_are_exit_2_with_one_json_document(shop: Shop, args: list[str], message: str) -> None:
    shop.add(cart("c1"))
    result = shop.cli("send-test", *args, "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 2, result.output
    assert result.json["error"]["code"] == "config" and message in result.json["error"]["message"]
    assert not (shop.folder / "out").exists() or not list((shop.folder / "out").glob("*.eml"))


def test_a_test_needs_the_unsubscribe_secret_like_a_run(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.configure(shop={"unsubscribe_secret": ""})
    result = shop.cli("send-test", OWNER, "c1", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 2 and "shop.unsubscribe_secret" in result.stderr


def test_doctor_and_the_ledger_status_never_count_a_test(shop: Shop) -> None:
    shop.add(cart("c1"))
    assert shop.cli("send-test", OWNER, "c1", "--outbox", str(shop.folder / "out")).exit_code == 0
    doctor = shop.cli("doctor", "--no-smtp", "--json", now=None).json
    checks = {check["name"]: check for check in doctor["checks"]}
    assert checks["ledger"]["detail"] == "no messages yet"
    assert checks["staleness"]["status"] == "fail"  # a test is not a run: reminders are not going out


def test_a_test_into_a_runs_outbox_never_replaces_a_customers_message(shop: Shop) -> None:
    """Tests and claims count from 1 apart, and both were named <cart>-step<N>-<id>.eml: the
    customer's delivered file was overwritten by the test addressed to the owner."""
    shop.add(cart("c1", email="fay@example.com"))
    out = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(out)).exit_code == 0
    assert shop.cli("send-test", OWNER, "c1", "--outbox", str(out)).exit_code == 0
    recipients = sorted(email.message_from_bytes(path.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec
                        for path in out.glob("*.eml"))
    assert recipients == ["fay@example.com", OWNER]


def test_a_test_into_an_outbox_needs_no_smtp_secret(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    shop.configure(smtp={"host": "localhost", "port": 2525, "username": "u", "password": "${SMTP_PASSWORD}"})
    shop.add(cart("c1"))
    result = shop.cli("send-test", OWNER, "c1", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert result.json["transport"] == "outbox"


def test_send_test_of_an_email_step_after_an_sms_step_is_an_eml_tagged_email(shop: Shop) -> None:
    """Step 2 goes by e-mail to a cart whose step 1 is a text message: the test carried step 1's
    channel, so its links said ``utm_medium=sms`` and its outbox file was a ``.sms.txt``."""
    shop.configure(shop={"country": "SE"}, sms={"sender": "+46700000001", "quiet_hours": None},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "channel": "sms"},
                                                    {"delay": "24h", "template": "reminder-2"}]}})
    shop.add(cart("c1", phone="070-123 45 67", sms_consent="yes"))
    assert [d["channel"] for d in shop.cli("carts", "--json").json["decisions"]] == ["sms"]
    result = shop.cli("send-test", OWNER, "c1", "--step", "2", "--outbox", str(shop.folder / "t"), "--json")
    assert result.exit_code == 0, result.output
    (written,) = (shop.folder / "t").iterdir()
    assert written.name.endswith(".eml")
    body = email.message_from_bytes(written.read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
    assert "utm_medium=email" in body and "utm_medium=sms" not in body


def test_send_test_of_a_step_a_run_sends_as_a_text_is_written_as_an_eml(shop: Shop) -> None:
    """The test is an e-mail even of an SMS step: its outbox file held MIME under ``.sms.txt``."""
    shop.configure(shop={"country": "SE"}, sms={"sender": "+46700000001", "quiet_hours": None},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "channel": "sms"}]}})
    shop.add(cart("c1", phone="070-123 45 67", sms_consent="yes"))
    result = shop.cli("send-test", OWNER, "c1", "--outbox", str(shop.folder / "t"), "--json")
    assert result.exit_code == 0, result.output
    (written,) = (shop.folder / "t").iterdir()
    assert written.name == f"csv_c1-step1-test{result.json['test_id']}.eml"
    assert email.message_from_bytes(written.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec == OWNER


def test_send_test_of_an_sms_step_tags_its_links_as_an_email(shop: Shop) -> None:
    """The test of a step a run sends as a text is an e-mail, rendered as the e-mail a run sends
    of that step (its fallback, channel ``email``): it was rendered for the channel ``sms``, its
    links tagged ``utm_medium=sms``, a message no run ever sends."""
    shop.configure(shop={"country": "SE"}, sms={"sender": "+46700000001", "quiet_hours": None},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "channel": "sms"}]}})
    shop.add(cart("c1", phone="070-123 45 67", sms_consent="yes"))
    assert [d["channel"] for d in shop.cli("carts", "--json").json["decisions"]] == ["sms"]
    result = shop.cli("send-test", OWNER, "c1", "--outbox", str(shop.folder / "t"), "--json")
    assert result.exit_code == 0, result.output
    (written,) = (shop.folder / "t").iterdir()
    parsed = email.message_from_bytes(written.read_bytes(), policy=policy.default)
    for part in ("plain", "html"):
        body = parsed.get_body((part,)).get_content()
        assert "utm_medium=email" in body and "utm_medium=sms" not in body, part


def test_a_test_of_a_cart_a_run_skips_says_the_customer_would_not_get_it(demo) -> None:
    """The demo's cart-000020 was ordered: its test arrived like any reminder, and nothing told
    the tester that its customer gets no such message."""
    from conftest import cli

    args = ("--outbox", str(demo.parent / "t"), "--config", str(demo))
    result = cli("send-test", OWNER, "cart-000020", "--json", *args)
    assert result.exit_code == 0, result.output
    assert result.json["note"].startswith("a run would skip this cart and send it nothing (ordered: order ")
    said = cli("send-test", OWNER, "cart-000020", *args)
    assert "note: a run would skip this cart and send it nothing" in " ".join(said.stderr.split())
    assert cli("send-test", OWNER, "cart-000003", "--json", *args).json["note"] is None  # due: no note


@pytest.mark.parametrize("args", [[], ["c1"], ["--sample"]], ids=["first-due", "cart", "sample"])
def test_a_relay_setting_send_test_cannot_use_is_refused_before_the_ledger_is_made(shop: Shop,
                                                                                  args: list[str]) -> None:
    """An ``smtp.ca_file`` that does not load: without a CART_ID, send-test read the ledger to
    choose a cart (making its file, tables and all) and only then built its channel and failed."""
    shop.add(cart("c1"))
    shop.configure(smtp={"host": "127.0.0.1", "security": "tls", "ca_file": "not-a-ca.pem"})
    result = shop.cli("send-test", OWNER, *args, "--json")
    assert result.exit_code == 2, result.output
    error = result.json["error"]  # the whole of stdout: one document
    assert error["code"] == "config"
    assert error["message"].startswith(f"{shop.config_path}: smtp.ca_file: cannot load "), error["message"]
    assert str(shop.folder / "not-a-ca.pem") in error["message"]
    assert not (shop.folder / "ledger.db").exists()
