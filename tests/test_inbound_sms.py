"""Replies to text messages: the WSGI app on a real loopback server, signed as the provider signs.

A signed STOP (in any shipped language) suppresses the number, and the cart's later steps are
skipped; a forged, unsigned or replayed request is refused and changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
from httpserver import ACCOUNT_SID, AUTH_TOKEN

from cartrescue.config import load_config
from cartrescue.contacts import phone_hash
from cartrescue.inbound import twilio_signature
from cartrescue.ledger import Ledger
from cartrescue.signing import HEADER, sign
from cartrescue.webhook import make_app
from conftest import NOW, Shop, cart

INBOUND = "https://shop.example.com/cartrescue/sms-inbound"
NUMBER = "+46701234501"
GATEWAY_SECRET = "gateway-inbound-secret-0123456789"


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def texting_shop(shop: Shop) -> Shop:
    shop.configure(shop={"country": "SE"},
                   priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"sender": "+46700000001", "quiet_hours": None, "inbound_url": INBOUND,
                        "twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN},
                        "http": {"inbound_secret": GATEWAY_SECRET}})
    shop.add(cart("c1", phone="070-123 45 01", sms_consent="yes"))
    shop.write()
    return shop


@contextmanager
def serving(shop: Shop) -> Iterator[str]:
    """The shop's WSGI app on a real wsgiref server on loopback: its inbound URL."""
    app = make_app(load_config(shop.config_path))
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/cartrescue/sms-inbound"
    finally:
        server.shutdown()
        server.server_close()
        app.ledger.close()  # type: ignore[attr-defined]


@pytest.fixture
def app_url(texting_shop: Shop) -> Iterator[str]:
    with serving(texting_shop) as url:
        yield url


def twilio_post(url: str, body: str, sid: str = "SM" + "1" * 32, *, number: str = NUMBER, token: str = AUTH_TOKEN,
                account: str = ACCOUNT_SID, signature: str | None = None) -> httpx.Response:
    params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": account, "From": number, "To": "+46700000001",
              "Body": body, "NumSegments": "1", "ApiVersion": "2010-04-01"}
    signed = twilio_signature(token, INBOUND, params.items()) if signature is None else signature
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signed}, timeout=10)


def is_suppressed(shop: Shop, number: str = NUMBER) -> bool:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return ledger.suppression(phone_hash(number)) is not None
    finally:
        ledger.close()


def test_the_signature_is_twilios_documented_scheme() -> None:
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
              "To": "+18005551212"}
    assert twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params.items()) == \
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_a_real_stop_suppresses_the_number_and_its_later_steps(texting_shop: Shop, app_url: str,
                                                               tmp_path: Path) -> None:
    assert texting_shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0  # step 1 went out
    response = twilio_post(app_url, "STOP")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    assert b"<Response></Response>" in response.content  # nothing texted back by us
    assert is_suppressed(texting_shop)
    later = texting_shop.decisions(NOW + timedelta(days=1))
    assert later["c1"]["reason"] == "suppressed"


@pytest.mark.parametrize("word", ["stop", "Stopp", "СТОП", "ТОҚТАТУ", "Leiratkozás", "Kanselleer", "unsubscribe"])
def test_every_shipped_languages_stop_word_suppresses(texting_shop: Shop, app_url: str, word: str) -> None:
    assert twilio_post(app_url, word).status_code == 200
    assert is_suppressed(texting_shop)


def test_another_reply_is_kept_and_suppresses_nothing(texting_shop: Shop, app_url: str) -> None:
    assert twilio_post(app_url, "Is the blue mug still in stock?").status_code == 200
    assert not is_suppressed(texting_shop)


@pytest.mark.parametrize("forgery", ["wrong token", "no signature", "tampered", "other account"])
def test_a_forged_stop_is_refused_and_changes_nothing(texting_shop: Shop, app_url: str, forgery: str) -> None:
    if forgery == "wrong token":
        response = twilio_post(app_url, "STOP", token="not-the-auth-token")
    elif forgery == "no signature":
        response = twilio_post(app_url, "STOP", signature="")
    elif forgery == "tampered":  # signed for another number
        good = twilio_signature(AUTH_TOKEN, INBOUND, {"MessageSid": "SM" + "1" * 32, "SmsSid": "SM" + "1" * 32,
                                                       "AccountSid": ACCOUNT_SID, "From": "+46709999999",
                                                       "To": "+46700000001", "Body": "STOP", "NumSegments": "1",
                                                       "ApiVersion": "2010-04-01"}.items())
        response = twilio_post(app_url, "STOP", signature=good)
    else:
        response = twilio_post(app_url, "STOP", account="AC" + "f" * 32)
    assert response.status_code == 403 and AUTH_TOKEN not in response.text
    assert not is_suppressed(texting_shop)


@pytest.mark.parametrize(("provider", "header"), [
    ("twilio", b"\xe9t\xe9"),  # a non-ASCII signature
    ("http", b"t=%d,v1=\xe9t\xe9"),  # the same, under the generic gateway's scheme
    ("http", b"t=" + b"9" * 400 + b",v1=00"),  # a timestamp no float can hold
])
def test_a_signature_no_provider_would_send_is_403_not_a_server_error(texting_shop: Shop, provider: str,
                                                                       header: bytes) -> None:
    """Anyone can post to the inbound URL: hmac.compare_digest raised TypeError on a non-ASCII
    signature, and a huge timestamp overflowed the window's arithmetic, both a 500 with a
    traceback in the server's log where docs promise a 403 that changes nothing."""
    if provider == "http":
        texting_shop.configure(sms={"provider": "http", "http": {"url": "https://gateway.example.com/send"}})
        texting_shop.write()
    body = b"id=in-1&from=%2B46701234501&text=STOP&MessageSid=SM1&From=%2B46701234501&Body=STOP"
    name = "X-Twilio-Signature" if provider == "twilio" else HEADER
    value = header.replace(b"%d", str(int(time.time())).encode())
    with serving(texting_shop) as url:
        response = httpx.post(url, content=body, timeout=10, headers={
            "Content-Type": "application/x-www-form-urlencoded", name: value})
    assert response.status_code == 403, response.text
    assert response.text.startswith("refused: ") and not is_suppressed(texting_shop)


def test_an_unset_auth_token_variable_verifies_nothing(texting_shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``auth_token: ${TWILIO_AUTH_TOKEN}`` with the variable unset: the placeholder itself was the
    HMAC key, so anyone who knew the config's convention could sign a STOP."""
    monkeypatch.delenv("CR_TEST_TWILIO_TOKEN", raising=False)
    texting_shop.configure(sms={"twilio": {"auth_token": "${CR_TEST_TWILIO_TOKEN}"}})
    texting_shop.write()
    with serving(texting_shop) as url:
        answer = twilio_post(url, "STOP", token="${CR_TEST_TWILIO_TOKEN}")
    assert answer.status_code == 403 and "CR_TEST_TWILIO_TOKEN is not set" in answer.text
    assert not is_suppressed(texting_shop)


def test_a_replayed_stop_is_refused_even_after_the_suppression_was_lifted(texting_shop: Shop, app_url: str) -> None:
    assert twilio_post(app_url, "STOP").status_code == 200
    assert texting_shop.cli("suppress", "remove", NUMBER, "--json", now=None).exit_code == 0  # texted START
    assert not is_suppressed(texting_shop)
    replay = twilio_post(app_url, "STOP")  # the same signed request, captured and sent again
    assert replay.status_code == 409
    assert not is_suppressed(texting_shop)


def test_forget_of_a_number_unlinks_its_replies_which_stay_received(texting_shop: Shop, app_url: str) -> None:
    """``cr_inbound`` kept each reply with the number's hash: forget left it beside the provider's
    ids. The rows stay (without it), so a replayed reply is still refused."""
    from test_lifecycle import columns_holding

    replies = {"SM" + "1" * 32: "STOP", "SM" + "2" * 32: "Is the blue mug still in stock?"}
    assert [twilio_post(app_url, body, sid).status_code for sid, body in replies.items()] == [200, 200]
    assert texting_shop.cli("forget", NUMBER, now=None).exit_code == 0
    db = texting_shop.folder / "ledger.db"
    assert columns_holding(db, phone_hash(NUMBER)) == [("cr_suppression", "email_hash")]
    assert [twilio_post(app_url, body, sid).status_code for sid, body in replies.items()] == [409, 409]


def test_only_post_is_answered(app_url: str) -> None:
    assert httpx.get(app_url, timeout=10).status_code == 405


def test_a_signed_reply_through_a_generic_gateway_suppresses(texting_shop: Shop) -> None:
    texting_shop.configure(sms={"provider": "http", "http": {"url": "https://gateway.example.com/send"}})
    texting_shop.write()
    app = make_app(load_config(texting_shop.config_path))
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/cartrescue/sms-inbound"
    try:
        body = b'{"id": "in-1", "from": "0701234501", "text": "STOP"}'
        old = httpx.post(url, content=body, timeout=10, headers={
            "Content-Type": "application/json", HEADER: sign(GATEWAY_SECRET, body, 1_700_000_000)})
        assert old.status_code == 403 and not is_suppressed(texting_shop)  # outside the five-minute window
        good = httpx.post(url, content=body, timeout=10, headers={
            "Content-Type": "application/json", HEADER: sign(GATEWAY_SECRET, body)})
        assert good.status_code == 200 and good.json() == {"ok": True, "opt_out": True}
        assert is_suppressed(texting_shop)  # the local number was read in the shop's country
    finally:
        server.shutdown()
        server.server_close()
        app.ledger.close()  # type: ignore[attr-defined]


def test_the_unsubscribe_pages_still_answer_beside_the_inbound_path(texting_shop: Shop, app_url: str) -> None:
    page = httpx.get(app_url.replace("/cartrescue/sms-inbound", "/unsubscribe?token=nope.nope"), timeout=10)
    assert page.status_code == 400 and "unsubscribe" in page.text.lower()


def test_a_head_request_to_the_inbound_path_gets_no_body(app_url: str) -> None:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(app_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(f"HEAD {parts.path} HTTP/1.0\r\nHost: shop.example.com\r\n\r\n".encode())
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 405") and body == b""


@contextmanager
def gateway_serving(shop: Shop) -> Iterator[str]:
    """The shop, switched to the generic gateway (Sweden and Norway texted), served on loopback."""
    shop.configure(sms={"provider": "http", "countries": ["SE", "NO"], "http": {"url": "https://gateway.example.com/send"}})
    shop.write()
    with serving(shop) as url:
        yield url


def gateway_post(url: str, body: bytes, kind: str = "application/json") -> httpx.Response:
    return httpx.post(url, content=body, timeout=10, headers={"Content-Type": kind, HEADER: sign(GATEWAY_SECRET, body)})


@pytest.mark.parametrize(("kind", "body", "texted"), [
    ("application/json", b'{"id": "in-7", "from": "4791234567", "text": "STOP"}', "+4791234567"),  # no +
    ("application/x-www-form-urlencoded", b"id=in-7&from=+4791234567&text=STOP", "+4791234567"),  # + unescaped
    ("application/json", b'{"id": "in-7", "from": "412 34 567", "text": "STOPP"}', "+4741234567"),  # local to NO
])
def test_a_gateway_stop_from_a_number_without_plus_suppresses_the_e164_number(texting_shop: Shop, kind: str,
                                                                              body: bytes, texted: str) -> None:
    with gateway_serving(texting_shop) as url:
        answer = gateway_post(url, body, kind)
    assert answer.status_code == 200 and answer.json() == {"ok": True, "opt_out": True}
    assert is_suppressed(texting_shop, texted)  # the hash the outbound side checks before texting it


def test_a_gateway_stop_from_an_unreadable_number_is_422_and_a_retry_once_readable_suppresses(
        texting_shop: Shop) -> None:
    body = b'{"id": "in-8", "from": "0151 23456789", "text": "STOP"}'  # German, local form: no SE, NO or E.164
    with gateway_serving(texting_shop) as url:
        answer = gateway_post(url, body)
    assert answer.status_code == 422 and "opt_out" not in answer.text  # no opt-out claimed
    assert not is_suppressed(texting_shop, "+4915123456789")
    texting_shop.configure(sms={"countries": ["SE", "NO", "DE"]})  # the config fixed: the retry is no replay
    texting_shop.write()
    with serving(texting_shop) as url:
        retry = gateway_post(url, body)
    assert retry.status_code == 200 and retry.json() == {"ok": True, "opt_out": True}
    assert is_suppressed(texting_shop, "+4915123456789")
