"""What identifies a message to the mail systems it meets: its Message-ID (unique in the world,
ASCII), its Date (when it left, not the run's clock) and a List-Unsubscribe header a mail
client can read (a structured header: ASCII only)."""

from __future__ import annotations

import email
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from typing import Callable

from conftest import Shop, cart


def _sent(shop: Shop, *args: str) -> list[EmailMessage]:
    out = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(out), "--json", *args)
    assert result.exit_code == 0, result.output
    return [email.message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[misc]
            for path in sorted(out.glob("*.eml"))]


def test_a_sender_in_another_script_gets_an_ascii_message_id(shop: Shop) -> None:
    """``butik@bücher.example``: the From header went out in IDNA form, the Message-ID did not,
    and no message of the shop could be built."""
    shop.configure(shop={"from_email": "butik@bücher.example"}).add(cart("c1"))
    (message,) = _sent(shop)
    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert message["From"].addresses[0].domain in ("bücher.example", "xn--bcher-kva.example")


def test_an_unsubscribe_mailbox_in_another_script_keeps_the_header_readable(shop: Shop) -> None:
    shop.configure(shop={"unsubscribe_mailto": "avregistrera@bücher.example"}).add(cart("c1"))
    (message,) = _sent(shop)
    header = message["List-Unsubscribe"]
    assert header.isascii() and "=?" not in header
    assert "<mailto:avregistrera@xn--bcher-kva.example?subject=unsubscribe%20" in header


def test_an_unsubscribe_mailbox_whose_name_is_not_ascii_is_a_config_error(shop: Shop) -> None:
    shop.configure(shop={"unsubscribe_mailto": "avslutå@example.com"}).add(cart("c1"))
    result = shop.cli("run", "--json")
    assert result.exit_code == 2
    assert "shop.unsubscribe_mailto" in result.json["error"]["message"]


def test_a_delivered_message_is_dated_when_it_was_built_and_a_dry_runs_by_the_runs_clock(shop: Shop) -> None:
    """A pinned ``--now`` (a replay), or the start of an hour-long run, dated sent mail in the past."""
    shop.add(cart("c1"))
    before = datetime.now(timezone.utc).replace(microsecond=0)
    look = shop.folder / "look"
    assert shop.cli("run", "--eml", str(look)).exit_code == 0
    (shown,) = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in look.glob("*.eml")]
    assert shown["Date"].datetime < before - timedelta(days=1)  # the suite's pinned clock: reproducible
    (delivered,) = _sent(shop)
    assert before <= delivered["Date"].datetime <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_two_shops_with_one_sending_domain_and_the_same_cart_ids_never_share_a_message_id(
        make_shop: Callable[[str], Shop]) -> None:
    first, second = make_shop("first"), make_shop("second")
    second.configure(shop={"name": "Second Shop"})
    ids = []
    for shop in (first, second):
        shop.add(cart("1042"))
        (message,) = _sent(shop)
        ids.append(message["Message-ID"])
    assert ids[0] != ids[1] and ids[0].endswith("@example.com>") and ids[1].endswith("@example.com>")

