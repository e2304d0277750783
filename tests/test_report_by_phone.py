"""``report`` credits a text or a call to a customer known by phone number alone with the order
that customer then placed, matched by that number (in E.164, however the order writes it) as the
run matches a cart to its orders (:mod:`cartrescue.decide.orders`). Before, the report matched by
cart id, address and customer id only: the order of an SMS-only customer, placed under another
cart id, was never counted recovered, and "recovered" undercounted every shop that texts.

A number the orders give to two customers (the shop's own, typed where a checkout requires one)
credits nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from httpserver import ACCOUNT_SID, AUTH_TOKEN, TwilioEmulator

import shopdb
from conftest import NOW, ORDER_COLUMNS, Shop, cart, iso, texting, write_csv

H = timedelta(hours=1)
LATER = NOW + timedelta(days=6)
PHONE_COLUMNS = [*ORDER_COLUMNS, "phone"]


def _order(order_id: str, phone: str, *, email: str = "", cart_id: str = "", placed: timedelta = 3 * H,
           total: str = "40.00") -> dict[str, str]:
    """An order with a phone number, placed ``placed`` after the run that texted."""
    return {"order_id": order_id, "email": email, "customer_id": "", "cart_id": cart_id, "total": total,
            "currency": "EUR", "status": "paid", "created_at": iso(NOW + placed), "delivered": "yes", "phone": phone}


def _texted(shop: Shop, url: str) -> None:
    """A run that texts the two carts known by their number alone (``ann``'s and ``bob``'s)."""
    texting(shop).configure(sms={"backoff": "0.05s", "twilio": {
        "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": url}})
    shop.add(cart("ann-cart", email="", phone="070-123 45 67", sms_consent="yes"),
             cart("bob-cart", email="", phone="070-123 45 99", sms_consent="yes"))
    result = shop.cli("run", "--send", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["counts"]["sent"] == 2, result.output


def _report(shop: Shop, *orders: dict[str, str]) -> dict[str, Any]:
    """``report --json`` of the run's day, the orders export holding ``orders``."""
    write_csv(shop.folder / "orders.csv", orders, PHONE_COLUMNS)
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # keep these orders
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    return result.json


def test_a_texted_customers_order_under_another_cart_is_recovered_by_their_number(shop: Shop) -> None:
    """The number typed in the shop's country's way in the cart, in E.164 with spaces in the order."""
    with TwilioEmulator() as twilio:
        _texted(shop, twilio.url)
    document = _report(shop, _order("o1", "+46 70 123 45 67", email="ann@example.com", cart_id="ann-second-cart"))
    assert (document["summary"]["orders"], document["summary"]["revenue"]) == (1, "40.00"), document["summary"]
    (sms,) = document["breakdowns"]["channel"]
    assert (sms["channel"], sms["recipients"], sms["orders"], sms["revenue"]) == ("sms", 2, 1, "40.00"), sms


def test_a_number_the_orders_give_to_two_customers_credits_nothing(shop: Shop) -> None:
    """The shop's own number, typed by two buyers whose checkout required one: neither order is
    the texted customer's."""
    with TwilioEmulator() as twilio:
        _texted(shop, twilio.url)
    document = _report(shop, _order("o1", "+46701234567", email="carol@example.com"),
                       _order("o2", "0701234567", email="dave@example.com"))
    assert document["summary"]["orders"] == 0, document["summary"]


def test_an_order_after_the_attribution_window_is_not_credited_by_number(shop: Shop) -> None:
    """The number keys an order as an address does, within the same window (five days)."""
    with TwilioEmulator() as twilio:
        _texted(shop, twilio.url)
    document = _report(shop, _order("o1", "+46701234567", placed=timedelta(days=5, hours=1)))
    assert document["summary"]["orders"] == 0, document["summary"]


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_database_ledger_credits_a_texted_customers_order_by_number_too(shop: Shop, kind: str) -> None:
    """The streamed rows of a PostgreSQL or MariaDB ledger carry the number as a SQLite one's do."""
    with shopdb.shop_database(kind, "reportphone") as db:
        shop.configure(ledger={"url": db.url})
        with TwilioEmulator() as twilio:
            _texted(shop, twilio.url)
        document = _report(shop, _order("o1", "+46 70 123 45 67", email="ann@example.com"),
                           _order("o2", "+46701234599", email="carol@example.com"),
                           _order("o3", "070-123 45 99", email="dave@example.com"))
    assert document["summary"]["orders"] == 1, document["summary"]
    assert document["breakdowns"]["channel"][0]["orders"] == 1, document["breakdowns"]["channel"]
