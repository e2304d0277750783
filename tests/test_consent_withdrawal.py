"""A customer's later "no" to marketing, said on any of their carts, withdraws an older cart's "yes".

A CSV export writes consent per cart. The newest-cart pass skipped a newer cart with nothing in
it (or nothing to pay) whole, its consent cell with it: the customer who said no on it still got
reminders of the older cart they had said yes on. The latest word wins (GDPR); only a "no"
travels to the older carts: a later "yes" grants nothing to an older "no", and a "no" older than
a cart is no withdrawal of it. Every test runs the real CLI (``run --json``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from conftest import NOW, REPO, Shop, cart, iso

H = timedelta(hours=1)
EMPTY = [("", "", "", "")]
FREE = [("FREE", "Free sample", 1, "0.00")]


def _run(shop: Shop, *args: str) -> dict[str, dict[str, Any]]:
    result = shop.cli("run", "--json", *args)
    assert result.exit_code == 0, result.output
    return {row["cart_id"]: row for row in result.json["decisions"]}


@pytest.mark.parametrize("items", [EMPTY, FREE], ids=["empty", "free"])
def test_a_newer_cart_with_nothing_in_it_that_says_no_withdraws_the_older_carts_yes(
    shop: Shop, items: list[tuple[Any, ...]]
) -> None:
    shop.add(cart("old", email="ann@example.com", idle=5 * H, consent="yes"),
             cart("new", email="ann@example.com", idle=2 * H, items=items, consent="no"))
    old = _run(shop)["old"]
    assert (old["action"], old["reason"]) == ("skip", "no_consent"), old
    assert old["detail"] == "consent=True, withdrawn: no on the later cart csv:new"


def test_a_later_no_withdraws_an_unknown_consent_the_policy_let_through(shop: Shop) -> None:
    """``consent: none`` reminds a cart that does not say; a later "no" still stops it."""
    shop.configure(eligibility={"consent": "none"})
    shop.add(cart("old", email="ann@example.com", idle=5 * H, consent=""),
             cart("new", email="ann@example.com", idle=2 * H, items=EMPTY, consent="no"))
    old = _run(shop)["old"]
    assert (old["action"], old["reason"], old["detail"]) == (
        "skip", "no_consent", "consent=None, withdrawn: no on the later cart csv:new")


def test_a_newer_full_cart_that_says_no_leaves_the_older_cart_superseded_by_it(shop: Shop) -> None:
    """No reminder of either cart: the newer cart is the address's newest, so the older one is
    not reminded whatever it said (its "no" is read from the carts that do not compete alone)."""
    shop.add(cart("old", email="ann@example.com", idle=5 * H, consent="yes"),
             cart("new", email="ann@example.com", idle=2 * H, consent="no"))
    found = _run(shop)
    assert {cart_id: (row["action"], row["reason"]) for cart_id, row in found.items()} == {
        "old": ("skip", "newer_cart_for_address"), "new": ("skip", "no_consent")}, found


def test_a_later_yes_grants_nothing_to_an_older_cart_that_said_no(shop: Shop) -> None:
    shop.add(cart("old", email="ann@example.com", idle=5 * H, consent="no"),
             cart("new", email="ann@example.com", idle=2 * H, items=EMPTY, consent="yes"))
    old = _run(shop)["old"]
    assert (old["action"], old["reason"], old["detail"]) == ("skip", "no_consent", "consent=False, policy required")


def test_a_no_said_before_the_carts_yes_is_no_withdrawal(shop: Shop) -> None:
    """The customer opted back in: the cart's own "yes" is their latest word."""
    shop.add(cart("earlier", email="ann@example.com", idle=5 * H, items=EMPTY, consent="no"),
             cart("cart", email="ann@example.com", idle=2 * H, consent="yes"))
    decided = _run(shop)["cart"]
    assert (decided["action"], decided["reason"]) == ("send", "due"), decided


def _command(shop: Shop, *args: str) -> dict[str, Any]:
    """``cartrescue run --json ...`` in its own process, as a user starts it: with its own streams
    it forks its workers and the helper that splits the export into each one's spools."""
    shop.write()
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--config", str(shop.config_path),
                           "--now", iso(NOW), *args], cwd=REPO, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    document = json.loads(done.stdout)
    assert [s["started"] for s in document["shards"]] == ["fork", "fork"]
    return {row["cart_id"]: row for row in document["decisions"]}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
@pytest.mark.parametrize("split", ["workers", "shards"])
def test_a_later_no_withdraws_the_older_carts_yes_in_every_shard(shop: Shop, split: str) -> None:
    """A shard owns every cart of its addresses, the empty ones too: from the activity spool the
    run's helper writes (``--workers``), or from its own pass over the export (``--shard``)."""
    for n in range(8):
        shop.add(cart(f"old{n}", email=f"ann{n}@example.com", idle=5 * H, consent="yes"),
                 cart(f"new{n}", email=f"ann{n}@example.com", idle=2 * H, items=EMPTY, consent="no"),
                 cart(f"kept{n}", email=f"bo{n}@example.com", idle=2 * H, consent="yes"),
                 cart(f"before{n}", email=f"bo{n}@example.com", idle=5 * H, items=EMPTY, consent="no"))
    if split == "workers":
        found = _command(shop, "--workers", "2")
    else:
        found = {}
        for k in (1, 2):
            found.update(_run(shop, "--shard", f"{k}/2"))
    assert {(found[f"old{n}"]["action"], found[f"old{n}"]["reason"]) for n in range(8)} == {("skip", "no_consent")}
    assert {found[f"kept{n}"]["action"] for n in range(8)} == {"send"}


def test_a_later_no_to_texts_withdraws_the_older_carts_sms_consent(shop: Shop) -> None:
    """Consent to texts is kept apart from e-mail consent, and withdrawn the same way."""
    shop.configure(shop={"country": "SE"}, eligibility={"channel_fallback": False},
                   priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"sender": "+46700000001", "quiet_hours": None,
                        "twilio": {"account_sid": "AC0", "auth_token": "t", "base_url": "https://api.example.com"}})
    shop.add(cart("old", email="ann@example.com", idle=5 * H, phone="0701234501", sms_consent="yes"),
             cart("new", email="ann@example.com", idle=2 * H, phone="0701234501", items=EMPTY, sms_consent="no"))
    old = _run(shop)["old"]
    assert (old["action"], old["reason"], old["detail"]) == (
        "skip", "no_consent", "sms_consent=True, withdrawn: no on the later cart csv:new")


def test_a_later_no_to_texts_withdraws_the_older_carts_sms_consent_of_a_customer_known_by_the_number(
    shop: Shop
) -> None:
    """Without an address, the customer is their number (``newest.customer_key``): their later
    cart's "no" was kept under no key at all, and the older cart was texted."""
    shop.configure(shop={"country": "SE"},
                   priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"sender": "+46700000001", "quiet_hours": None,
                        "twilio": {"account_sid": "AC0", "auth_token": "t", "base_url": "https://api.example.com"}})
    shop.add(cart("old", email="", idle=5 * H, phone="070-123 45 01", sms_consent="yes"),
             cart("new", email="", idle=2 * H, phone="+46701234501", items=EMPTY, sms_consent="no"))
    old = _run(shop)["old"]
    assert (old["action"], old["reason"], old["detail"]) == (
        "skip", "no_consent", "sms_consent=True, withdrawn: no on the later cart csv:new")


def test_a_later_no_to_texts_leaves_the_older_carts_email_consent(shop: Shop) -> None:
    """The customer said no to texts only: the e-mail reminder of the older cart still goes."""
    shop.add(cart("old", email="ann@example.com", idle=5 * H, consent="yes"),
             cart("new", email="ann@example.com", idle=2 * H, items=EMPTY, consent="yes", sms_consent="no"))
    old = _run(shop)["old"]
    assert (old["action"], old["reason"]) == ("send", "due"), old


def test_the_first_pass_keeps_each_addresses_latest_no_to_each_consent_in_its_scratch_file() -> None:
    """Only the "no"s of carts that do not compete for the newest are kept, written in batches
    (a million carts cost flat memory), the latest per address and consent; a cart that said
    yes, or nothing, leaves no row, and so does a full cart that said no (it competes)."""
    from cartrescue.decide.newest import MARKETING, SMS, NewestCarts, Withdrawal
    from cartrescue.sources.base import Activity

    at = [NOW - n * H for n in range(6)]
    with NewestCarts() as newest:
        newest.add([Activity("ann@example.com", at[5], "csv:a1", no_marketing=True),
                    Activity("ann@example.com", at[3], "csv:a2", empty=True, no_marketing=True),
                    Activity("ann@example.com", at[1], "csv:a3"),
                    Activity("bo@example.com", at[2], "csv:b1", free=True, no_sms=True),
                    Activity("cy@example.com", at[0], "csv:c1"),
                    Activity("dee@example.com", at[0], "csv:d1", no_marketing=True)], batch=2)
        assert newest.withdrawn(["ann@example.com", "bo@example.com", "cy@example.com", "dee@example.com"]) == {
            "ann@example.com": {MARKETING: Withdrawal(at[3].timestamp(), "csv:a2")},
            "bo@example.com": {SMS: Withdrawal(at[2].timestamp(), "csv:b1")},
        }
        assert newest.lookup(["ann@example.com"]) == {"ann@example.com": "csv:a3"}  # the newest, as before


def test_preview_of_the_older_cart_shows_the_later_no_that_withdrew_it(shop: Shop) -> None:
    """``preview`` plans a cart with every address's activity, as a run does: the withdrawn cart
    shows no message, and why."""
    shop.add(cart("old", email="ann@example.com", idle=5 * H, consent="yes"),
             cart("new", email="ann@example.com", idle=2 * H, items=EMPTY, consent="no"))
    result = shop.cli("preview", "old", "--json")
    assert result.exit_code == 0, result.output
    shown = result.json
    assert (shown["decision"], shown["reason"], shown["shown"]) == ("skip", "no_consent", False)
    assert shown["detail"] == "no_consent: consent=True, withdrawn: no on the later cart csv:new"
