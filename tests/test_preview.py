"""`preview`: one cart's message as a run would render it, and nothing recorded."""

from __future__ import annotations

from cartrescue.ledger import Ledger
from conftest import Shop, cart


def test_preview_renders_the_requested_step_in_the_customers_locale(shop: Shop) -> None:
    shop.add(cart("c1", locale="sv", first_name="Åsa", items=[("A", "Kaffekopp", 2, "19.50")]))
    result = shop.cli("preview", "c1", "--step", "2", "--json")
    assert result.exit_code == 0, result.output
    shown = result.json
    assert (shown["step"], shown["decision"], shown["to"]) == (2, "send", "c1@example.com")
    assert "Åsa" in shown["text"] and "Kaffekopp" in shown["text"] and "39,00" in shown["text"]
    assert Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").messages() == []


def test_preview_of_an_unknown_cart_is_a_usage_error(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "nope")
    assert result.exit_code == 2 and "cart 'nope': not found" in result.stderr


def test_preview_beyond_the_last_step_is_a_usage_error(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--step", "9")
    assert result.exit_code == 2 and "the sequence has 3 steps" in result.stderr
