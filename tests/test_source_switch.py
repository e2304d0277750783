"""A delivering run whose source names its carts otherwise than the ledger did stops before it claims.

A step is claimed under its cart's key (``csv:c1``, ``shopify:#1001``, ``magento2:42``). Switching
``source.type`` (the Shopify preset for the generic CSV with the same columns, an export for the
shop's database) would give every cart a new key, and every customer the steps they already got.
``source.key_prefix`` keeps the old name for the same cart ids.
"""

from __future__ import annotations

from datetime import timedelta

from conftest import NOW, Shop, cart

from cartrescue.ledger import Ledger


def _steps(shop: Shop) -> list[tuple[str, int]]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return sorted((message["cart_key"], message["step"]) for message in ledger.messages())
    finally:
        ledger.close()


def _sent_once(shop: Shop) -> Shop:
    shop.add(cart("c1"), cart("c2"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert _steps(shop) == [("csv:c1", 1), ("csv:c2", 1)]
    return shop


def test_a_source_that_names_its_carts_otherwise_stops_the_run_before_any_claim(shop: Shop) -> None:
    _sent_once(shop).configure(source={"key_prefix": "shop2"})
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(days=1, hours=1))
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"]
    assert "names its carts 'shop2:…', but the ledger's latest message" in message and "'csv:c" in message
    assert "source.key_prefix: csv" in message
    assert _steps(shop) == [("csv:c1", 1), ("csv:c2", 1)]  # nothing claimed under the new name


def test_the_old_name_as_key_prefix_goes_on_with_the_same_carts(shop: Shop) -> None:
    _sent_once(shop).configure(source={"key_prefix": "csv"})
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(days=1, hours=1))
    assert later.exit_code == 0, later.output
    assert _steps(shop) == [("csv:c1", 1), ("csv:c1", 2), ("csv:c2", 1), ("csv:c2", 2)]


def test_a_dry_run_is_not_stopped_but_says_that_a_sending_run_would_be(shop: Shop) -> None:
    _sent_once(shop).configure(source={"key_prefix": "shop2"})
    result = shop.cli("run", "--json", now=NOW + timedelta(hours=1))
    assert result.exit_code == 0
    (note,) = [n for n in result.json["notes"] if "key_prefix" in n]
    assert note.startswith("a sending run would stop (exit 2): ") and "names its carts 'shop2:…'" in note


def test_the_doctor_fails_the_ledger_check_after_a_switch(shop: Shop) -> None:
    from cartrescue.doctor import run_checks

    _sent_once(shop).configure(source={"key_prefix": "shop2"}).write()
    report = run_checks(shop.config_path, smtp=False, now=NOW + timedelta(hours=1))  # doctor's clock is the wall's
    ledger = next(check for check in report.checks if check.name == "ledger")
    assert (ledger.status, ledger.exit_code) == ("fail", 2) and "source.key_prefix: csv" in ledger.detail


def test_once_the_latest_message_is_older_than_max_age_a_new_name_is_free(shop: Shop) -> None:
    _sent_once(shop).configure(source={"key_prefix": "shop2"})
    shop.carts = []
    shop.add(cart("c3", now=NOW + timedelta(days=8)))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(days=8))
    assert result.exit_code == 0, result.output
    assert ("shop2:c3", 1) in _steps(shop)


def test_a_key_prefix_that_is_no_key_name_is_a_config_error(shop: Shop) -> None:
    shop.add(cart("c1")).configure(source={"key_prefix": "My Shop"})
    result = shop.cli("run", "--json")
    assert result.exit_code == 2 and "source.key_prefix: expected lower-case letters" in result.json["error"]["message"]
