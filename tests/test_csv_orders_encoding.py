"""The orders export's own encoding (``source.orders_encoding``): a shop whose carts export is
UTF-8 and whose orders export Excel saved as Windows-1252 could not read both, the one
``source.encoding`` being the carts' and the orders'. Real files in both encodings, the real CLI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from conftest import NOW, Shop, cart, order

LATER = NOW + timedelta(days=6)  # every attribution window of the report's period has closed
PERIOD = ("--since", "2026-11-19", "--until", "2026-11-21")


def _orders_in(shop: Shop, encoding: str, *, carts: str = "utf-8") -> Path:
    """The shop's files written now, its orders export in ``encoding`` (its carts in ``carts``),
    with an order whose id Excel's cp1252 writes as one byte (``Bestellung-ö1``); the shop's
    CLI then leaves them as they are."""
    shop.write()
    for name, used in (("carts.csv", carts), ("orders.csv", encoding)):
        path = shop.folder / name
        path.write_bytes(path.read_text(encoding="utf-8").encode(used))
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    return shop.folder / "orders.csv"


def _bought(shop: Shop) -> Shop:
    """Zoë's cart (her name in the carts export) and the order she placed for it."""
    return shop.add(cart("c1", first_name="Zoë")).add_orders(
        order("Bestellung-ö1", cart_id="c1", created=NOW - timedelta(minutes=30)))


def test_utf8_carts_and_cp1252_orders_are_both_read_with_the_orders_own_encoding(shop: Shop) -> None:
    _bought(shop).configure(source={"orders_encoding": "cp1252"})
    _orders_in(shop, "cp1252")
    decision = shop.decisions()["c1"]
    assert (decision["reason"], decision["detail"]) == ("ordered", "order Bestellung-ö1")


def test_the_orders_encoding_defaults_to_the_carts_encoding(shop: Shop) -> None:
    _bought(shop).configure(source={"encoding": "cp1252"})
    _orders_in(shop, "cp1252", carts="cp1252")
    assert shop.decisions()["c1"]["detail"] == "order Bestellung-ö1"


def test_an_orders_export_in_another_encoding_names_the_orders_setting_to_change(shop: Shop) -> None:
    """The error said "set source.encoding", the carts' setting too: set so, the carts broke."""
    _bought(shop)
    path = _orders_in(shop, "cp1252")
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{path}:2: not utf-8-sig text")
    assert message.endswith("set source.orders_encoding to the export's encoding, e.g. cp1252"), message


def test_an_orders_export_with_another_byte_order_mark_names_the_orders_setting(shop: Shop) -> None:
    _bought(shop)
    path = _orders_in(shop, "utf-16")
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"].startswith(
        f"{shop.config_path}: source.orders: {path}: starts with UTF-16's byte-order mark, and "
        "source.orders_encoding is utf-8-sig: the export is UTF-16")
    assert "set source.orders_encoding to utf-16" in result.json["error"]["message"]


def test_the_report_reads_a_cp1252_orders_export_with_the_orders_own_encoding(shop: Shop) -> None:
    """A reminder sent, then the order it won, in an export Excel saved as cp1252."""
    shop.add(cart("c1", first_name="Zoë")).configure(source={"orders_encoding": "cp1252"})
    sent = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert sent.exit_code == 0 and sent.json["counts"]["sent"] == 1, sent.output
    _orders_in(shop.add_orders(order("Bestellung-ö1", cart_id="c1", created=NOW + timedelta(hours=2),
                                     total="40.00")), "cp1252")
    result = shop.cli("report", "--json", *PERIOD, now=LATER)
    assert result.exit_code == 0, result.output
    assert (result.json["summary"]["orders"], result.json["summary"]["revenue"]) == (1, "40.00")


def test_an_unknown_orders_encoding_is_a_config_error_naming_its_key(shop: Shop) -> None:
    result = shop.add(cart("c1")).configure(source={"orders_encoding": "cp-1252x"}).cli("carts", "--json")
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert "source.orders_encoding" in message and "unknown encoding 'cp-1252x'" in message, message



def test_a_utf8_orders_export_beside_utf16_carts_is_told_to_set_utf8_not_a_utf16_byte_order(shop: Shop) -> None:
    """Excel's "Unicode Text" carts (``source.encoding: utf-16``) beside a UTF-8 orders export:
    the error said "set source.orders_encoding ... e.g. utf-16-le"; set so, the UTF-8 file read
    as garbage ("missing column(s): order_id, created_at"), and then "e.g. cp1252". A file with
    no NUL byte is no UTF-16 at all: the setting that reads it is utf-8-sig."""
    _bought(shop).configure(source={"encoding": "utf-16"})
    path = _orders_in(shop, "utf-8", carts="utf-16")
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{path}:1: not utf-16 text"), message
    assert message.endswith("set source.orders_encoding to the export's encoding, e.g. utf-8-sig"), message


def test_a_utf8_orders_export_read_as_cp1252_names_the_orders_setting_to_set_to_utf8(shop: Shop) -> None:
    """An orders export in UTF-8 under ``source.encoding: cp1252`` (the carts' Excel encoding)
    decoded without an error, every ö an Ã¶ (``order Bestellung-Ã¶1``), and an address or a cart
    id beyond ASCII matched no cart: its buyer reminded of the cart she bought. Exit 3, naming the
    orders' own setting."""
    _bought(shop).configure(source={"encoding": "cp1252"})
    path = _orders_in(shop, "utf-8", carts="cp1252")
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{shop.config_path}: source.orders: {path}:2: UTF-8 text, and "
                              "source.orders_encoding is cp1252: "), message
    assert message.endswith("set source.orders_encoding to utf-8-sig"), message
