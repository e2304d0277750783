"""A customer without an address is sharded by their number, as they are known by it.

"Newest cart wins" and "one message a day" key a phone-only customer by the E.164 number
(``newest.customer_key``); the shards put such a cart by its cart key, so two carts of one number
could fall in two shards, each took its cart for the customer's newest, and the customer got the
older cart's calls too. Real runs of ``--workers 2`` and of two ``--shard`` runs on one ledger.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from cartrescue.shards import Shard, owner, shard_of
from conftest import NOW, REPO, Shop, cart, iso

NUMBER = "+46701234567"
PRICEY = [("S", "Lamp", 1, "900.00")]


def _calling_shop(shop: Shop) -> Shop:
    """A Swedish shop that calls every customer (one step), and one customer without an address
    whose two carts have cart keys of two shards of 2. The newer one's number is written as
    dialled in Sweden, and only read in the shop's region is it the number of the older one."""
    assert shard_of("csv:old0", 2) == shard_of(NUMBER, 2) != shard_of("csv:new0", 2)
    shop.configure(shop={"country": "SE"},
                   priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "call-list"}]},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    return shop.add(cart("old0", email="", phone=NUMBER, idle=timedelta(hours=5), items=PRICEY),
                    cart("new0", email="", phone="070-123 45 67", idle=timedelta(hours=2), items=PRICEY))


def _delivered(shop: Shop, split: str, out: Path, days: int = 0) -> dict[str, tuple[str, str]]:
    """Each cart's decision of a delivering run in two shards, ``days`` after NOW: ``cartrescue
    run`` as a user starts it, its own process (``--workers``: its helper splits the carts file
    into the workers' spools, which it does only in a process whose streams are its own)."""
    shop.write()
    runs = [("--workers", "2")] if split == "workers" else [("--shard", "1/2"), ("--shard", "2/2")]
    decided: dict[str, tuple[str, str]] = {}
    for args in runs:
        done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--outbox", str(out), "--json",
                               "--config", str(shop.config_path), "--now", iso(NOW + timedelta(days=days)), *args],
                              cwd=REPO, capture_output=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr.decode()
        decided.update({row["cart_id"]: (row["action"], row["reason"])
                        for row in json.loads(done.stdout)["decisions"]})
    return decided


def _called(shop: Shop) -> list[str]:
    with (shop.folder / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        return [row["cart_id"] for row in csv.DictReader(handle)]


@pytest.mark.parametrize("split", ["workers", "shards"])
def test_a_phone_only_customer_with_carts_in_two_shards_gets_one_reminder_stream(
        shop: Shop, tmp_path: Path, split: str) -> None:
    _calling_shop(shop)
    decided = _delivered(shop, split, tmp_path / "out")
    assert decided == {"new0": ("send", "due"), "old0": ("skip", "newer_cart_for_address")}
    assert _called(shop) == ["new0"]
    assert [(row["cart_key"], row["phone"]) for row in shop.messages()] == [("csv:new0", NUMBER)]
    tomorrow = _delivered(shop, split, tmp_path / "out", days=1)  # the older cart's stream never starts
    assert tomorrow["old0"] == ("skip", "newer_cart_for_address")
    assert _called(shop) == ["new0"] and len(shop.messages()) == 1


def test_a_cart_without_an_address_goes_to_the_shard_of_its_number_read_in_the_shops_region() -> None:
    home = shard_of(NUMBER, 4)
    for key in ("csv:a", "csv:b", "csv:c", "csv:d"):
        assert owner(None, key, 4, "070-123 45 67", "SE") == owner("", key, 4, "+46 70 123 45 67") == home
        assert Shard(home, 4, "SE").owns(None, key, "0701234567")
    assert owner("ann@example.com", "csv:a", 4, NUMBER) == shard_of("ann@example.com", 4)  # the address first
    for key in ("csv:a", "csv:b"):  # neither address nor valid number: the cart key
        assert owner(None, key, 4, "after 17:00", "SE") == owner(None, key, 4) == shard_of(key, 4)


def test_the_ledgers_counts_of_a_shard_take_a_phone_only_customers_claims_by_their_number(tmp_path: Path) -> None:
    """A shard's part of a tier's day, of the hourly quota and of the dead runs' claims counts
    the claims of the customers it owns: a call to a customer without an address is the number's
    shard's, as their carts are, whichever cart key it was claimed under."""
    from cartrescue.ledger import ClaimRequest, Ledger

    home, other = Shard(shard_of(NUMBER, 2), 2, "SE"), Shard(shard_of("csv:new0", 2), 2, "SE")
    assert home != other
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        dead = ledger.start_run("send", NOW)
        with ledger.lock(dead, timedelta(hours=1)):
            ledger.claim(dead, [ClaimRequest("csv:new0", "new0", None, 1, "call-list", "call-list", "reminder-1",
                                             None, "standard", 1.0, phone=NUMBER)], NOW)
        ledger.finish_run(dead, "failed", {})
        day = NOW - timedelta(hours=12), NOW + timedelta(hours=1)
        steps = [(1, "call-list")]
        assert [ledger.tier_used_since("standard", steps, *day, shard.owns).own for shard in (home, other)] == [1, 0]
        assert [len(ledger.unconfirmed(0, shard.owns)) for shard in (home, other)] == [1, 0]
    finally:
        ledger.close()
