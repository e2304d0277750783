"""A step whose channel cannot reach the customer (the call list without a phone number, SMS
without a mobile) goes by e-mail: the customer is not dropped from the sequence, and the tier's
budget stays for its own channel."""

from __future__ import annotations

import csv
from datetime import timedelta

from conftest import NOW, Shop, cart

PRICEY = [("S", "Lamp", 1, "900.00")]  # high value: the vip tier


def _call_shop(shop: Shop, budget: int = 1) -> Shop:
    return shop.configure(
        priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list", "budget": budget},
                            {"name": "standard", "min_score": 0}]},
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                         {"delay": "24h", "template": "reminder-2"}]}})


def test_a_call_list_step_without_a_phone_number_goes_by_email_outside_the_calls_budget(shop: Shop) -> None:
    _call_shop(shop, budget=1).add(
        cart("phoned", email="ann@example.com", phone="+46701234567", items=PRICEY),
        cart("mailed", email="bo@example.com", items=PRICEY),
        cart("waits", email="cy@example.com", phone="+46701234568", items=PRICEY))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    found = {d["cart_id"]: d for d in result.json["decisions"]}
    assert {key: (d["action"], d["channel"]) for key, d in found.items()} == {
        "phoned": ("send", "call-list"), "mailed": ("send", "email"), "waits": ("defer", "call-list")}
    assert found["mailed"]["detail"].startswith("by email, not call-list (no phone number to call); ")
    assert found["waits"]["reason"] == "tier_budget"
    with (shop.folder / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        assert [row["cart_id"] for row in csv.DictReader(handle)] == ["phoned"]


def test_a_phone_cell_with_no_number_in_it_is_no_number_to_call(shop: Shop) -> None:
    """What customers type in a required phone field (``-``, ``N/A``, ``0000000000``) got a row
    nobody can dial, recorded sent, and the customer no e-mail: such a cell is no phone number.
    A number staff can read stays a call, valid or not."""
    _call_shop(shop, budget=10).add(*(
        cart(key, email=f"{key}@example.com", phone=phone, items=PRICEY)
        for key, phone in (("dash", "-"), ("na", "N/A"), ("zeros", "0000000000"), ("zero", "0"),
                           ("phoned", "070-123 45 67"), ("odd", "070 12"))))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    found = {d["cart_id"]: d for d in result.json["decisions"]}
    assert {key: d["channel"] for key, d in found.items()} == {
        "dash": "email", "na": "email", "zeros": "email", "zero": "email", "phoned": "call-list", "odd": "call-list"}
    assert found["na"]["detail"].startswith("by email, not call-list (no phone number to call: 'N/A'); "), found["na"]
    with (shop.folder / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        assert [row["cart_id"] for row in csv.DictReader(handle)] == ["phoned", "odd"]


def test_after_a_step_by_email_the_sequence_goes_on_and_never_repeats_it(shop: Shop) -> None:
    _call_shop(shop).add(cart("mailed", email="bo@example.com", items=PRICEY))
    first = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert [(d["step"], d["channel"]) for d in first.json["decisions"]] == [(1, "email")]
    again = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(hours=2))
    assert [(d["action"], d["reason"]) for d in again.json["decisions"]] == [("defer", "step_not_due")]
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(hours=26))
    assert [(d["step"], d["channel"], d["delivery"]) for d in later.json["decisions"]] == [(2, "email", "sent")]
    assert [(row["step"], row["channel"]) for row in shop.messages()] == [(1, "email"), (2, "email")]


def test_without_channel_fallback_such_a_cart_is_skipped(shop: Shop) -> None:
    _call_shop(shop).configure(eligibility={"channel_fallback": False}).add(
        cart("mailed", email="bo@example.com", items=PRICEY))
    (decision,) = shop.cli("carts", "--json").json["decisions"]
    assert (decision["action"], decision["reason"], decision["channel"]) == ("skip", "no_contact", "call-list")


def test_a_step_that_went_by_email_instead_leaves_the_days_budget_to_the_tiers_own_sends(shop: Shop) -> None:
    """The fallback does not use the budget in its own run, and now not in the day's later runs
    either: they counted every e-mail of the tier that day, the fallbacks too, and deferred
    the tier's own sends (here the vip step 1 of a cart that came in later)."""
    shop.configure(
        priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list", "budget": 1, "budget_per": "day"},
                            {"name": "standard", "min_score": 0}]},
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "channel": "email"},
                                         {"delay": "3h", "template": "reminder-2"}]}})
    shop.add(cart("mailed", email="bo@example.com", items=PRICEY))
    out = str(shop.folder / "out")
    assert shop.cli("run", "--outbox", out, now=NOW).exit_code == 0  # step 1: the day's budget
    next_day = NOW + timedelta(hours=24)
    first = shop.cli("run", "--outbox", out, "--json", now=next_day)
    assert [(d["step"], d["channel"], d["delivery"]) for d in first.json["decisions"]] == [(2, "email", "sent")]
    later = next_day + timedelta(hours=1)
    shop.add(cart("newer", email="cy@example.com", phone="+46701234568", items=PRICEY, now=later))
    found = {d["cart_id"]: d for d in shop.cli("run", "--outbox", out, "--json", now=later).json["decisions"]}
    assert (found["newer"]["action"], found["newer"]["step"], found["newer"]["reason"]) == ("send", 1, "due")


def _over_budget_shop(shop: Shop, budget: int = 1, **tier: object) -> Shop:
    return shop.configure(
        priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list", "budget": budget,
                             "over_budget": "email", **tier},
                            {"name": "standard", "min_score": 0}]},
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                         {"delay": "24h", "template": "reminder-2"}]}})


def test_with_over_budget_email_a_call_the_budget_has_no_room_for_goes_by_email_now(shop: Shop) -> None:
    _over_budget_shop(shop).add(
        cart("called", email="ann@example.com", phone="+46701234567", items=[("S", "Lamp", 1, "990.00")]),
        cart("mailed", email="cy@example.com", phone="+46701234568", items=PRICEY))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    found = {d["cart_id"]: d for d in result.json["decisions"]}
    assert {key: (d["action"], d["channel"], d["delivery"]) for key, d in found.items()} == {
        "called": ("send", "call-list", "sent"), "mailed": ("send", "email", "sent")}
    assert found["mailed"]["detail"].startswith("by email, not call-list: tier vip takes 1 per run")
    assert [(row["cart_id"], row["step"], row["channel"]) for row in shop.messages()] == [
        ("mailed", 1, "email"), ("called", 1, "call-list")]
    with (shop.folder / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        assert [row["cart_id"] for row in csv.DictReader(handle)] == ["called"]


def test_over_budget_email_leaves_the_days_budget_to_the_calls(shop: Shop) -> None:
    """The e-mails instead of calls do not count against a day's budget: the day's next cart
    that outscores nobody still gets its call when the budget has room."""
    _over_budget_shop(shop, budget=1, budget_per="day").add(
        cart("mailed", email="cy@example.com", phone="+46701234568", items=PRICEY))
    out = str(shop.folder / "out")
    shop.add(cart("called", email="ann@example.com", phone="+46701234567", items=[("S", "Lamp", 1, "990.00")]))
    assert shop.cli("run", "--outbox", out).exit_code == 0
    later = NOW + timedelta(hours=2)
    shop.add(cart("next", email="bo@example.com", phone="+46701234569", items=PRICEY, now=later))
    found = {d["cart_id"]: d for d in shop.cli("run", "--outbox", out, "--json", now=later).json["decisions"]}
    assert (found["next"]["action"], found["next"]["channel"]) == ("send", "email")  # the day's one call is gone
    assert found["next"]["detail"].startswith("by email, not call-list: tier vip takes 0 today")


def test_over_budget_email_without_an_address_waits_for_the_budget(shop: Shop) -> None:
    _over_budget_shop(shop, budget=0).add(cart("waits", email="", phone="+46701234568", items=PRICEY))
    (decision,) = shop.cli("carts", "--json").json["decisions"]
    assert (decision["action"], decision["reason"], decision["channel"]) == ("defer", "tier_budget", "call-list")


def test_over_budget_email_needs_a_budget(shop: Shop) -> None:
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list",
                                        "over_budget": "email"}]})
    result = shop.cli("carts")
    assert result.exit_code == 2
    assert "priority.tiers" in result.output and "over_budget: email needs a budget" in result.output


def test_a_tiers_budget_caps_its_own_channel_not_the_e_mail_steps_of_its_sequence(shop: Shop) -> None:
    """A call-list tier whose sequence opens with an e-mail (``channel: email`` on the step) and
    calls the next day: its e-mails took the budget's call slots, so with one call a run the
    call of yesterday's cart waited behind today's first e-mail."""
    shop.configure(
        priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list", "budget": 1},
                            {"name": "standard", "min_score": 0}]},
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "channel": "email"},
                                         {"delay": "24h", "template": "reminder-2"}]}})
    shop.add(cart("called", email="ann@example.com", phone="+46701234567", items=PRICEY))
    out = str(shop.folder / "out")
    assert shop.cli("run", "--outbox", out, now=NOW).exit_code == 0  # step 1, by e-mail
    later = NOW + timedelta(hours=26)
    shop.add(cart("mailed", email="bo@example.com", phone="+46701234568", items=PRICEY, now=later))
    result = shop.cli("run", "--outbox", out, "--json", now=later)
    found = {d["cart_id"]: d for d in result.json["decisions"]}
    assert (found["called"]["action"], found["called"]["step"], found["called"]["channel"]) == ("send", 2, "call-list")
    assert (found["mailed"]["action"], found["mailed"]["step"], found["mailed"]["channel"]) == ("send", 1, "email")
