"""A ``suppressed`` decision says which contact is suppressed (the address or the number) and
why, as the ledger recorded it: ``run --json`` gave an empty ``detail``."""

from __future__ import annotations

from typing import Any

from cartrescue.contacts import phone_hash
from cartrescue.ledger import Ledger
from conftest import Shop, cart
from test_sms_channel import sms_shop


def _run_decisions(shop: Shop) -> dict[str, dict[str, Any]]:
    result = shop.cli("run", "--json")
    assert result.exit_code in (0, 1), result.output
    return {decision["cart_id"]: decision for decision in result.json["decisions"]}


def _suppress_number(shop: Shop, number: str, reason: str) -> None:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        assert ledger.suppress(phone_hash(number), reason, "sms reply SM1")
    finally:
        ledger.close()


def test_a_suppressed_address_is_named_with_its_reason(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    assert shop.cli("unsubscribe", "ann@example.com", now=None).exit_code == 0
    decision = _run_decisions(shop)["c1"]
    assert (decision["reason"], decision["detail"]) == ("suppressed", "the address is suppressed (unsubscribed)")


def test_a_suppressed_number_is_named_with_its_reason(shop: Shop) -> None:
    sms_shop(shop, "https://api.example.com", carts=1)
    _suppress_number(shop, "+46701234500", "sms stop")
    decision = _run_decisions(shop)["s000"]
    assert (decision["reason"], decision["detail"]) == ("suppressed", "the number is suppressed (sms stop)")


def test_a_suppressed_number_to_call_is_named_with_its_reason(shop: Shop) -> None:
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 0, "channel": "call-list"}]},
                   call_list={"path": "calls.csv"})
    shop.add(cart("c1", phone="+46 70 123 45 00"))
    _suppress_number(shop, "+46701234500", "forgotten")
    decision = _run_decisions(shop)["c1"]
    assert (decision["reason"], decision["detail"]) == ("suppressed",
                                                        "the number to call is suppressed (forgotten)")
