"""The call list's ``recovery_url``: the link staff read out or send is the one the customer's
message would have had, the shop's URL when the cart has none of its own."""

from __future__ import annotations

import csv
import io

from conftest import Shop, cart
from test_call_list_spreadsheets import PRICEY, _calling_shop, _send

SHOP_URL = "https://shop.example.com/?from=calls"


def _call_rows(shop: Shop) -> dict[str, dict[str, str]]:
    text = (shop.folder / "calls.csv").read_text(encoding="utf-8")
    return {row["cart_id"]: row for row in csv.DictReader(io.StringIO(text))}


def _cart_with_link(cart_id: str, recovery_url: str, phone: str = "+46701234560") -> list[dict[str, str]]:
    rows = cart(cart_id, phone=phone, items=PRICEY)
    rows[0]["recovery_url"] = recovery_url
    return rows


def test_a_cart_without_a_recovery_url_is_listed_with_the_shops_url(shop: Shop) -> None:
    """The row's cell was empty, while the message gives the shop's URL (compose/render.py)."""
    _calling_shop(shop, 0).configure(shop={"url": SHOP_URL})
    shop.add(_cart_with_link("bare", ""), _cart_with_link("own", "https://shop.example.com/cart/own", "+46701234561"))
    _send(shop)
    rows = _call_rows(shop)
    assert rows["bare"]["recovery_url"] == SHOP_URL
    assert rows["own"]["recovery_url"] == "https://shop.example.com/cart/own"


def test_a_recovery_url_no_message_would_link_is_listed_as_the_shops_url(shop: Shop) -> None:
    """A message links only http(s) URLs, and the shop's URL in place of any other."""
    _calling_shop(shop, 0).configure(shop={"url": SHOP_URL})
    shop.add(_cart_with_link("odd", "javascript:alert(1)"))
    _send(shop)
    assert _call_rows(shop)["odd"]["recovery_url"] == SHOP_URL
