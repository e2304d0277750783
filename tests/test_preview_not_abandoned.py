"""``preview ID`` of a cart the shop has but the source leaves out of its abandoned carts says
why (exit 2 still): its order (by number), an inactive quote, an empty cart, a visitor's cart, a
shop not read, a CartFlows row whose status is not read. It said "not found in the source", as of a typo, which sent a developer looking
for one. A cart that is not there keeps saying so. On the real MariaDB and PostgreSQL servers,
through the real CLI (``send-test --cart`` looks the cart up the same way)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import shopdb
import test_source_magento as magento
import test_source_prestashop as prestashop
import test_source_woocommerce as woocommerce
from conftest import cli

NOW = "2026-03-29T12:00:00Z"


def preview(config: Path, cart_id: str, *extra: str) -> tuple[int, str, str]:
    result = cli("preview", cart_id, "--config", str(config), "--now", NOW, *extra)
    return result.exit_code, " ".join(result.stderr.split()), result.stdout


def says_why(config: Path, cart_id: str, said: str) -> None:
    """``preview cart_id`` exits 2 saying ``said``, and not "not found"."""
    code, told, _ = preview(config, cart_id)
    assert code == 2, told
    assert said in told
    assert "not found" not in told


@pytest.fixture(scope="module", params=shopdb.KINDS)
def magento_config(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("magento")
    with shopdb.configured(request.param, "whymagento", magento.fill, folder, {"type": "magento2"}) as (_, config):
        yield config


@pytest.fixture(scope="module", params=shopdb.KINDS)
def prestashop_config(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prestashop")
    with shopdb.configured(request.param, "whyprestashop", prestashop.fill, folder,
                           {"type": "prestashop"}) as (_, config):
        yield config


@pytest.mark.parametrize("cart_id, said", [
    ("104", "cart '104': in the shop, not an abandoned cart: it was ordered (order 000000001, pending)"),
    ("119", "cart '119': in the shop, not an abandoned cart: it was ordered (order 000000007, pending_payment)"),
    ("105", "cart '105': in the shop, not an abandoned cart: the quote is inactive (converted or closed)"),
    ("111", "cart '111': in the shop, not an abandoned cart: it is empty (items_count 0)"),
], ids=["ordered", "pending-payment", "inactive", "empty"])
def test_preview_of_a_magento_quote_that_is_not_abandoned_says_why(magento_config: Path, cart_id: str,
                                                                  said: str) -> None:
    says_why(magento_config, cart_id, said)


@pytest.mark.parametrize("cart_id, said", [
    ("203", "cart '203': in the shop, not an abandoned cart: it was ordered (order 1, state 2)"),
    ("208", "cart '208': in the shop, not an abandoned cart: it has no customer (a visitor's: nobody to remind)"),
    ("209", "cart '209': in the shop, not an abandoned cart: it is empty (no ps_cart_product row)"),
    ("213", "cart '213': in the shop, not an abandoned cart: it is shop 3's, which the source does not read "
            "(shops read: 1, 2)"),
], ids=["ordered", "visitor", "empty", "other-shop"])
def test_preview_of_a_prestashop_cart_that_is_not_abandoned_says_why(prestashop_config: Path, cart_id: str,
                                                                    said: str) -> None:
    says_why(prestashop_config, cart_id, said)


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_preview_of_a_cartflows_row_in_a_status_not_read_says_why(kind: str, tmp_path: Path) -> None:
    with shopdb.configured(kind, "whywoocommerce", woocommerce.fill, tmp_path, {"type": "woocommerce"}) as (_, config):
        code, told, _ = preview(config, "3")
        assert code == 2, told
        assert ("cart '3': in the shop, not an abandoned cart: its order_status is 'completed' "
                "(it became an order; the source reads normal, abandoned, lost)") in told
        assert "cart '4242': not found in the source" in preview(config, "4242")[1]


def test_preview_of_a_cart_the_shop_does_not_have_says_not_found(magento_config: Path,
                                                                prestashop_config: Path) -> None:
    for config in (magento_config, prestashop_config):
        code, told, _ = preview(config, "4242")
        assert code == 2, told
        assert "cart '4242': not found in the source" in told


def test_preview_json_of_an_ordered_cart_is_one_document_with_the_reason(magento_config: Path) -> None:
    code, _, out = preview(magento_config, "104", "--json")
    assert code == 2
    error = json.loads(out)["error"]
    assert error["code"] == "config"
    assert "it was ordered (order 000000001, pending)" in error["message"]


def test_send_test_of_an_ordered_cart_says_why(prestashop_config: Path, tmp_path: Path) -> None:
    result = cli("send-test", "ann@example.com", "203", "--config", str(prestashop_config), "--now", NOW,
                 "--outbox", str(tmp_path / "outbox"))
    assert result.exit_code == 2, result.stderr
    assert "it was ordered (order 1, state 2)" in " ".join(result.stderr.split())
