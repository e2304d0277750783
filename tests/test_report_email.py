"""`report --email`: the digest through the configured relay (a real aiosmtpd server on loopback),
with the HTML report attached; and the attachment builder, property-tested against the email package."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtpserver import Fault, LoopbackSMTP

from cartrescue.compose.mime import build_with_attachments
from cartrescue.model import Address, Attachment, OutgoingMessage
from conftest import NOW, Shop
from reportdata import Experiment, order_row, write_ledger

LATER = NOW + timedelta(days=6)
PERIOD = ("--since", "2026-11-19", "--until", "2026-11-21")


def _seed(shop: Shop) -> None:
    write_ledger(shop.folder / "ledger.db", Experiment(40, 20, 0, 0).rows(NOW))
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=2), total="120.00", cart_id="t3"))


@pytest.mark.smtp
@pytest.mark.parametrize("security", ["none", "starttls"])
def test_the_digest_goes_to_the_address_with_the_html_report_attached(shop: Shop, tmp_path: Path,
                                                                       security: str) -> None:
    _seed(shop)
    with LoopbackSMTP(security, auth=("reports", "s3cret")) as server:
        shop.configure(smtp=server.smtp_config())
        html = tmp_path / "report.html"
        result = shop.cli("report", "--json", *PERIOD, "--email", "owner@example.com", "--html", str(html), now=LATER)
        assert result.exit_code == 0, result.output
        (received,) = server.wait_for(1)
    assert received.rcpt_tos == ("owner@example.com",) and received.mail_from == "shop@example.com"
    message = received.parsed()
    assert message.defects == [] and message.get_content_type() == "multipart/mixed"
    assert message["Subject"] == "Test Shop: cart reminders 2026-11-19 to 2026-11-21"
    body = message.get_body(("plain",)).get_content()
    assert "Recovered (attributed): 120.00" in body and "held-out carts" in body
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "cartrescue-report-2026-11-21.html"
    assert attachment.get_content() == html.read_text(encoding="utf-8")
    assert result.json["outputs"]["email"]["to"] == "owner@example.com"


@pytest.mark.smtp
def test_a_refused_digest_exits_1_and_still_prints_the_report(shop: Shop) -> None:
    _seed(shop)
    with LoopbackSMTP(faults=[Fault("owner@example.com", "550 5.1.1 no such user")]) as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("report", "--json", *PERIOD, "--email", "owner@example.com", now=LATER)
    assert result.exit_code == 1
    assert result.json["summary"]["revenue"] == "120.00"
    assert result.json["error"]["exit_code"] == 1 and "550" in result.json["error"]["message"]


@pytest.mark.smtp
def test_an_unset_password_variable_is_a_config_error_before_anything_is_sent(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``password: ${SMTP_PASSWORD}`` with the variable unset went to the relay as the text
    "${SMTP_PASSWORD}" (a 535, or a locked account), and the error pointed at the relay."""
    monkeypatch.delenv("CR_TEST_REPORT_PASSWORD", raising=False)
    _seed(shop)
    with LoopbackSMTP(auth=("reports", "s3cret")) as server:
        shop.configure(smtp={**server.smtp_config(), "password": "${CR_TEST_REPORT_PASSWORD}"})
        result = shop.cli("report", "--json", *PERIOD, "--email", "owner@example.com", now=LATER)
        assert server.messages == []
    assert result.exit_code == 2
    message = result.json["error"]["message"]
    assert "smtp.password" in message and "CR_TEST_REPORT_PASSWORD is not set" in message


@pytest.mark.smtp
def test_the_digest_goes_to_an_address_that_needs_smtputf8_through_a_relay_that_offers_it(shop: Shop) -> None:
    """``report --email åsa@example.com`` stopped with "internal error: ValueError" (a bug, it
    said), though the relay offered SMTPUTF8 and ``run --send`` and ``send-test`` reach such an
    address: the digest's envelope was written in ASCII only."""
    _seed(shop)
    with LoopbackSMTP(smtputf8=True) as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("report", "--json", *PERIOD, "--email", "åsa@example.com", now=LATER)
        assert result.exit_code == 0, result.output
        (received,) = server.wait_for(1)
    assert received.rcpt_tos == ("åsa@example.com",) and "SMTPUTF8" in received.mail_options
    assert received.parsed()["To"].addresses[0].addr_spec == "åsa@example.com"


@pytest.mark.smtp
def test_a_digest_to_an_address_that_needs_smtputf8_through_a_relay_without_it_exits_1_naming_why(
        shop: Shop) -> None:
    _seed(shop)
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("report", "--json", *PERIOD, "--email", "åsa@example.com", now=LATER)
        assert server.messages == []
    assert result.exit_code == 1, result.output
    message = result.json["error"]["message"]
    assert "SMTPUTF8" in message and "internal error" not in message


def test_an_invalid_digest_address_is_a_usage_error(shop: Shop) -> None:
    _seed(shop)
    result = shop.cli("report", "--json", *PERIOD, "--email", "not an address", now=LATER)
    assert result.exit_code == 2 and "--email: not a valid address" in result.json["error"]["message"]


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=150, deadline=None)
@given(text=_text, html=_text, files=st.lists(st.tuples(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    st.sampled_from(["text/html", "text/csv", "application/octet-stream"]), st.binary(max_size=2000)), max_size=3))
def test_attachments_parse_back_with_the_email_package(text: str, html: str,
                                                        files: list[tuple[str, str, bytes]]) -> None:
    message = OutgoingMessage("<cr.report.1@shop.example.com>", Address("shop@example.com", "Shop"),
                              Address("owner@example.com"), "Weekly report", text, html,
                              datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc))
    attachments = []
    for name, kind, data in files:
        if kind.startswith("text/"):
            data = data.decode("latin-1").encode("utf-8")
        attachments.append(Attachment(name, kind, data))
    parsed = email.message_from_bytes(build_with_attachments(message, attachments), policy=email.policy.default)
    assert parsed.defects == [] and parsed.get_content_type() == "multipart/mixed"
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == normalized
    got = list(parsed.iter_attachments())
    assert [(a.get_filename(), a.get_content_type()) for a in got] == [(n, k) for n, k, _d in files]
    for part, attachment in zip(got, attachments):
        assert part.get_payload(decode=True) == attachment.data


def test_an_attachment_name_that_needs_encoding_is_refused() -> None:
    message = OutgoingMessage("<cr.report.1@shop.example.com>", Address("shop@example.com"),
                              Address("owner@example.com"), "r", "t", "h", datetime(2026, 11, 23, tzinfo=timezone.utc))
    with pytest.raises(ValueError, match="ASCII file name"):
        build_with_attachments(message, [Attachment('r"; x=.html', "text/html", b"")])
