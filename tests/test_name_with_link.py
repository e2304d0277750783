"""A customer "name" that carries a link or an address never reaches the message.

Bots fill a cart's name fields with an advert ("Win $5000 at https://…") and its address field
with someone else's address: the shop's reminder then carries the advert, under the shop's
domain and DKIM signature, into a stranger's inbox, in its subject and greeting. Mailbox
providers count it against the shop. The real ``run --send`` to a loopback SMTP server; the
bytes it receives are parsed back.
"""

from __future__ import annotations

import pytest
from smtpserver import LoopbackSMTP

from conftest import Shop, cart

pytestmark = pytest.mark.smtp


@pytest.mark.parametrize(("first_name", "last_name", "payload"), [
    ("Win $5000 at https://prize.example.net/claim now", "Tester", "prize.example.net"),
    ("Claim your prize", "www.prize.example.net", "prize.example.net"),
    ("Free gift: prize.example.net/gift", "", "prize.example.net"),
    ("Подарок: приз.рф/gift", "", "приз.рф"),
    ("Write to winner@prize.example.net", "Tester", "prize.example.net"),
])
def test_a_name_that_carries_a_link_is_left_out_of_subject_greeting_and_to(
        shop: Shop, first_name: str, last_name: str, payload: str) -> None:
    shop.add(cart("spam", first_name=first_name, last_name=last_name), cart("real", first_name="Anna"))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        received = {message.rcpt_tos[0]: message for message in server.wait_for(2)}
    spam = received["spam@example.com"]
    assert payload.encode() not in spam.data and payload.encode("idna") not in spam.data
    parsed = spam.parsed()
    assert parsed["To"].addresses[0].display_name == ""
    assert parsed["Subject"] == "You left something in your cart"
    text = parsed.get_body(("plain",)).get_content()
    assert payload not in text and "Hi there," in text
    assert payload not in parsed.get_body(("html",)).get_content()
    real = received["real@example.com"].parsed()
    assert real["Subject"] == "Anna, you left something in your cart"
    assert real["To"].addresses[0].display_name == "Anna Tester"


def test_a_name_too_long_to_be_one_is_left_out_and_a_long_real_name_is_kept(shop: Shop) -> None:
    """A bot's sentence in the name field (no link, 80 characters) became the subject's first
    words; a double-barrelled name of 46 characters is still a name."""
    advert = "Congratulations You have won a gift card Reply YES before midnight to claim it"
    real = "Maximilianna-Alexandrina-Josephine Anne-Sophie"
    shop.add(cart("spam", first_name=advert), cart("real", first_name=real))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        received = {message.rcpt_tos[0]: message.parsed() for message in server.wait_for(2)}
    spam = received["spam@example.com"]
    assert spam["Subject"] == "You left something in your cart" and spam["To"].addresses[0].display_name == ""
    assert "gift card" not in spam.get_body(("plain",)).get_content()
    assert received["real@example.com"]["Subject"] == f"{real}, you left something in your cart"
