"""Every eligibility reason, each triggered by its own fixture cart, through the real CLI."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from decimal import Decimal

from cartrescue.config import EligibilityConfig
from cartrescue.contacts import email_hash
from cartrescue.decide.eligibility import Gates
from cartrescue.ledger import Ledger
from cartrescue.model import Cart, Customer, LineItem, Order
from cartrescue.decide.orders import OrderFacts
from conftest import NOW, Shop, cart, order, texting

H = timedelta(hours=1)


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    shop = Shop(tmp_path_factory.mktemp("eligibility"))
    shop.configure(eligibility={"consent": "soft-opt-in", "disposable_domains": ["throwaway.example.net"]})
    shop.add(
        cart("passes", email="passes@example.com"),
        cart("empty", items=[("", "", "", "")]),
        cart("zero", items=[("FREE", "Free sample", 1, "0.00")]),
        cart("nocontact", email=""),
        cart("bot", email="bot-42@example.com"),
        cart("disposable", email="anna@throwaway.example.net"),
        cart("optout", consent="no"),
        cart("unknown-new", consent=""),
        cart("unknown-returning", email="loyal@example.com", consent=""),
        cart("suppressed", email="gone@example.com"),
        cart("converted"),
        cart("bought-by-email", email="buyer@example.com"),
        cart("pending", email="waiting@example.com"),
        cart("old", idle=timedelta(days=8)),
        cart("fresh", idle=timedelta(minutes=10)),
        cart("older-of-two", email="twice@example.com", idle=5 * H),
        cart("newer-of-two", email="twice@example.com", idle=2 * H),
        cart("not-due", idle=timedelta(minutes=50)),
    )
    shop.add_orders(
        order("o-converted", cart_id="converted", created=NOW - H),
        order("o-after", email="buyer@example.com", created=NOW - H),
        order("o-pending", email="waiting@example.com", created=NOW - timedelta(days=3), delivered="no"),
        order("o-loyal", email="loyal@example.com", created=NOW - timedelta(days=40)),
    )
    shop.write()
    Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").suppress(email_hash("Gone@Example.com"), "unsubscribed", "test")
    return shop.decisions()


@pytest.mark.parametrize(
    ("cart_id", "action", "reason"),
    [
        ("passes", "send", "due"),
        ("empty", "skip", "empty_cart"),
        ("zero", "skip", "zero_value"),
        ("nocontact", "skip", "no_contact"),
        ("bot", "skip", "bot_or_disposable"),
        ("disposable", "skip", "bot_or_disposable"),
        ("optout", "skip", "no_consent"),
        ("unknown-new", "skip", "no_consent"),
        ("unknown-returning", "send", "due"),
        ("suppressed", "skip", "suppressed"),
        ("converted", "skip", "ordered"),
        ("bought-by-email", "skip", "ordered"),
        ("pending", "skip", "pending_order"),
        ("old", "skip", "too_old"),
        ("fresh", "defer", "idle_below_cutoff"),
        ("older-of-two", "skip", "newer_cart_for_address"),
        ("newer-of-two", "send", "due"),
        ("not-due", "defer", "step_not_due"),
    ],
)
def test_each_gate_gives_its_reason(decisions: dict[str, dict[str, Any]], cart_id: str, action: str, reason: str) -> None:
    assert (decisions[cart_id]["action"], decisions[cart_id]["reason"]) == (action, reason)


def test_a_defer_says_when_to_look_again(decisions: dict[str, dict[str, Any]]) -> None:
    fresh = decisions["fresh"]
    assert fresh["not_before"] == (NOW - timedelta(minutes=10) + timedelta(minutes=45)).isoformat().replace("+00:00", "Z")


def test_consent_required_policy_refuses_unknown_consent_even_for_returning(shop: Shop) -> None:
    shop.configure(eligibility={"consent": "required"})
    shop.add(cart("c1", email="loyal@example.com", consent=""))
    shop.add_orders(order("o1", email="loyal@example.com", created=NOW - timedelta(days=40)))
    assert shop.decisions()["c1"]["reason"] == "no_consent"


def test_consent_none_policy_still_honours_an_explicit_no(shop: Shop) -> None:
    shop.configure(eligibility={"consent": "none"})
    shop.add(cart("unknown", consent=""), cart("no", consent="no"))
    found = shop.decisions()
    assert (found["unknown"]["action"], found["no"]["reason"]) == ("send", "no_consent")


@pytest.mark.parametrize(("written", "reason"), [("nein", "no_consent"), ("FALSCH", "no_consent"), ("FAUX", "no_consent"),
                                               ("WAHR", "due"), ("Sí", "due")])
def test_consent_words_of_other_languages_and_excels_booleans_are_read(shop: Shop, written: str, reason: str) -> None:
    """``ja`` was read while ``nein`` was a bad row (the cart reported and lost); a German or
    French Excel writes a boolean cell as WAHR/FALSCH, VRAI/FAUX."""
    shop.add(cart("c1", consent=written))
    result = shop.cli("carts", "--json")
    assert result.json["problems"] == [] and result.json["decisions"][0]["reason"] == reason


def test_quiet_hours_defer_to_the_end_of_the_window(shop: Shop) -> None:
    shop.configure(eligibility={"quiet_hours": {"start": "10:30", "end": "12:00"}})  # now = 11:00 Stockholm
    shop.add(cart("c1"))
    found = shop.decisions()["c1"]
    assert (found["action"], found["reason"], found["not_before"]) == ("defer", "quiet_hours", "2026-11-20T11:00:00Z")
    assert found["detail"] == "quiet hours until 2026-11-20 12:00 shop time"  # the table shows when, not only why


@pytest.mark.parametrize(("delay", "not_before", "detail"), [
    ("12h", "2026-11-21T07:00:00Z",  # due 21:00 Stockholm, in the quiet hours: 08:00, when they end
     "step 1, due 2026-11-20 20:00 UTC; then quiet_hours: quiet hours until 2026-11-21 08:00 shop time"),
    ("5h", "2026-11-20T13:00:00Z", "step 1"),  # due 14:00 Stockholm, before them: as it comes due
], ids=["due-in-quiet-hours", "due-before-them"])
def test_a_step_not_due_yet_says_the_first_moment_it_may_go(shop: Shop, delay: str, not_before: str,
                                                            detail: str) -> None:
    """``not_before`` is when a later run may act (README): a step that comes due inside the
    quiet hours said the moment it came due, and the run then deferred it again, as ``quiet_hours``."""
    shop.configure(eligibility={"quiet_hours": {"start": "21:00", "end": "08:00"}},
                   sequences={"default": {"steps": [{"delay": delay, "template": "reminder-1"}]}})
    shop.add(cart("c1"))  # last activity 09:00 UTC
    found = shop.decisions()["c1"]
    assert (found["action"], found["reason"], found["not_before"], found["detail"]) == (
        "defer", "step_not_due", not_before, detail)
    at = datetime.fromisoformat(not_before.replace("Z", "+00:00"))
    assert shop.decisions(at)["c1"]["reason"] == "due"  # and then it goes
    assert shop.decisions(at - timedelta(minutes=1))["c1"]["action"] == "defer"


def test_a_step_due_later_on_a_day_the_customer_got_a_message_waits_for_the_next_day(shop: Shop) -> None:
    """Step 1 went at 11:00; step 2 comes due at 12:00 that day, when one message a day holds it
    (``messaged_today``): its ``not_before`` said 12:00, not the shop's next midnight."""
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                                    {"delay": "3h", "template": "reminder-2"}]}})
    shop.add(cart("c1"))  # last activity 09:00 UTC: step 1 due at 10:00, step 2 at 12:00 UTC
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    found = shop.decisions(NOW + timedelta(minutes=30))["c1"]
    assert (found["reason"], found["step"], found["not_before"]) == ("step_not_due", 2, "2026-11-20T23:00:00Z")
    assert found["detail"] == "step 2, due 2026-11-20 12:00 UTC; then messaged_today: last message 2026-11-20 10:00 UTC"


def test_quiet_hours_across_midnight_defer_to_the_next_morning(shop: Shop) -> None:
    late = NOW.replace(hour=22, minute=30)  # 23:30 in Stockholm
    shop.configure(eligibility={"quiet_hours": {"start": "21:00", "end": "08:00"}})
    shop.add(cart("c1", now=late))
    found = shop.decisions(now=late)["c1"]
    assert (found["reason"], found["not_before"]) == ("quiet_hours", "2026-11-21T07:00:00Z")


@pytest.mark.parametrize(("timezone", "now", "window", "not_before", "shop_time"), [
    # the clocks go back at 03:00 CEST: a run at 02:10 CET, in the repeated hour, waits for its 02:30
    ("Europe/Stockholm", "2026-10-25T01:10:00Z", ("22:00", "02:30"), "2026-10-25T01:30:00Z", "2026-10-25 02:30"),
    # the clocks jump from 02:00 to 03:00: the window is over at 03:00, not at 03:30
    ("Europe/Stockholm", "2026-03-29T00:30:00Z", ("22:00", "02:30"), "2026-03-29T01:00:00Z", "2026-03-29 03:00"),
    # Chile's midnight is skipped (00:00 -04 is 01:00 -03): 00:30 never comes, the window ends at 01:00
    ("America/Santiago", "2026-09-06T03:30:00Z", ("22:00", "00:30"), "2026-09-06T04:00:00Z", "2026-09-06 01:00"),
], ids=["fall-back-second-pass", "spring-forward", "santiago-skipped-midnight"])
def test_quiet_hours_on_a_clock_change_day_end_at_the_first_moment_the_window_is_over(
    shop: Shop, timezone: str, now: str, window: tuple[str, str], not_before: str, shop_time: str
) -> None:
    """The deferral's ``not_before`` was the window's end read as the first pass of a repeated
    hour (00:30Z, 40 minutes before the run at 01:10Z) or an hour past a skipped one (03:30,
    where the gate lets the cart through at 03:00)."""
    at = datetime.fromisoformat(now)
    shop.configure(shop={"timezone": timezone}, eligibility={"quiet_hours": {"start": window[0], "end": window[1]}})
    shop.add(cart("c1", now=at))
    found = shop.decisions(now=at)["c1"]
    assert (found["action"], found["reason"], found["not_before"]) == ("defer", "quiet_hours", not_before)
    assert found["detail"] == f"quiet hours until {shop_time} shop time"
    later = shop.decisions(now=datetime.fromisoformat(not_before))["c1"]  # and then the gate lets it go
    assert (later["action"], later["reason"]) == ("send", "due")


def test_an_address_messaged_today_is_deferred_to_tomorrow(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                                    {"delay": "3h", "template": "reminder-2"}]}})
    shop.add(cart("c1", idle=90 * timedelta(minutes=1)))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    later = NOW + 2 * H  # step 2 is due (3 h after activity) but it is the same day in Stockholm
    found = shop.decisions(now=later)["c1"]
    assert (found["action"], found["reason"], found["step"], found["not_before"]) == (
        "defer", "messaged_today", 2, "2026-11-20T23:00:00Z")


@pytest.mark.parametrize("chunk", [2, 500])
def test_a_cart_listed_twice_is_planned_once_and_the_repeat_reported_even_chunks_apart(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # The cart keys seen in a run live in the planner's scratch file, not in memory: a later
    # chunk of the same run must still recognise a repeat.
    import cartrescue.pipeline.planner

    monkeypatch.setattr(cartrescue.pipeline.planner, "PLAN_CHUNK", chunk)  # the module that reads it
    shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bo@example.com"),
             cart("c3", email="cy@example.com"), cart("c1", email="ann@example.com"))
    result = shop.cli("run", "--json")
    rows = [(row["cart_id"], row["action"], row["reason"]) for row in result.json["decisions"]]
    assert rows == [("c1", "send", "due"), ("c2", "send", "due"), ("c3", "send", "due")]
    assert result.exit_code == 1
    assert result.json["problems"] == [f"{shop.folder / 'carts.csv'}:5: cart c1: the same cart id again "
                                       "(only its first appearance is used)"]




def test_googles_store_bot_is_skipped_by_default(shop: Shop) -> None:
    shop.add(cart("google", email="a1b2c3@storebotmail.joonix.net"), cart("person"))
    decided = shop.decisions()
    assert (decided["google"]["action"], decided["google"]["reason"]) == ("skip", "bot_or_disposable")
    assert decided["person"]["reason"] == "due"


@pytest.mark.parametrize(("within", "days", "reason"), [("30d", 10, "pending_order"), ("30d", 40, "due"),
                                                        (None, 400, "pending_order")])
def test_an_undelivered_order_holds_reminders_back_only_within_pending_within(
    shop: Shop, within: str | None, days: int, reason: str
) -> None:
    # A shop that never marks orders delivered would otherwise never remind a customer again.
    shop.add(cart("c1", email="ann@example.com")).configure(eligibility={"pending_within": within})
    shop.add_orders(order("o1", email="ann@example.com", created=NOW - timedelta(days=days), delivered="no"))
    assert shop.decisions()["c1"]["reason"] == reason


def test_the_latest_undelivered_order_counts_for_pending_within(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    shop.add_orders(order("old", email="ann@example.com", created=NOW - timedelta(days=90), delivered="no"),
                    order("new", email="ann@example.com", created=NOW - timedelta(days=5), delivered="no"))
    decided = shop.decisions()["c1"]
    assert (decided["reason"], decided["detail"]) == ("pending_order", "order new not delivered")


def test_a_cart_past_backfill_with_a_newer_cart_is_reported_as_the_newer_cart(shop: Shop) -> None:
    """The README's order of the gates: ``newer_cart_for_address`` before ``outside_backfill``
    (which the README had listed first; the code asks whether the sequence started only then)."""
    shop.add(cart("old", email="x@example.com", idle=timedelta(days=5)),
             cart("new", email="x@example.com", idle=timedelta(hours=2)))
    found = shop.decisions()
    assert (found["old"]["action"], found["old"]["reason"]) == ("skip", "newer_cart_for_address")
    assert found["new"]["reason"] == "due"


def test_a_newer_cart_without_items_leaves_the_older_cart_its_reminders(shop: Shop) -> None:
    """One address, one reminder stream: a newer cart with nothing in it (a session that added a
    product and removed it) has no stream. Taken as the address's newest, it silenced the older,
    real cart (``newer_cart_for_address``) and was skipped itself: no reminder at all."""
    shop.add(cart("old", email="x@example.com", idle=5 * H),
             cart("new", email="x@example.com", idle=2 * H, items=[("", "", "", "")]))
    found = shop.decisions()
    assert (found["old"]["action"], found["old"]["reason"], found["new"]["reason"]) == ("send", "due", "empty_cart")


@pytest.mark.parametrize(("items", "total"), [([("FREE", "Free sample", 1, "0.00")], ""),
                                              ([("SKU-1", "Blue mug", 1, "25.00")], "0.00")],
                         ids=["lines-priced-0", "total-0"])
def test_a_newer_cart_with_nothing_to_pay_leaves_the_older_cart_its_reminders(
    shop: Shop, items: list[tuple[Any, ...]], total: str
) -> None:
    shop.add(cart("old", email="x@example.com", idle=5 * H),
             cart("new", email="x@example.com", idle=2 * H, items=items, total=total))
    found = shop.decisions()
    assert (found["old"]["action"], found["old"]["reason"], found["new"]["reason"]) == ("send", "due", "zero_value")


def test_a_free_newer_cart_is_the_newest_where_min_total_lets_free_carts_be_reminded(shop: Shop) -> None:
    """``min_total: 0``: a cart with nothing to pay gets reminders, so it is the address's one
    stream, never a second beside the older cart's."""
    shop.configure(eligibility={"min_total": "0"})
    shop.add(cart("old", email="x@example.com", idle=5 * H),
             cart("new", email="x@example.com", idle=2 * H, items=[("FREE", "Free sample", 1, "0.00")]))
    found = shop.decisions()
    assert (found["old"]["reason"], found["new"]["reason"]) == ("newer_cart_for_address", "due")


def test_an_order_dated_without_a_time_on_the_carts_day_counts_as_placed_after_it(shop: Shop) -> None:
    """An export that writes an order's date alone (``2026-11-20``) read it as that midnight:
    before the cart abandoned that morning, so the customer who bought it that afternoon got a
    reminder. The day's end is read instead; an order of the day before stays an earlier one."""
    shop.add(cart("bought", email="ann@example.com"), cart("earlier", email="bo@example.com"))
    shop.add_orders({**order("o1", email="ann@example.com", created=NOW), "created_at": "2026-11-20"},
                    {**order("o2", email="bo@example.com", created=NOW), "created_at": "2026-11-19"})
    decided = shop.decisions()
    assert (decided["bought"]["reason"], decided["bought"]["detail"]) == ("ordered", "order o1")
    assert decided["earlier"]["reason"] == "due"


def test_an_order_dated_the_day_before_stays_an_earlier_order_of_a_cart_touched_just_after_midnight(shop: Shop) -> None:
    """The minute an order's time is allowed (it may be written to the minute) is not given to
    an order dated without a time: that is read as its day's end, 23:59:59.999 of the day
    before a cart touched at 00:00:30."""
    shop.add(cart("c1", email="ann@example.com", idle=timedelta(hours=10, minutes=59, seconds=30)))
    shop.add_orders({**order("o1", email="ann@example.com", created=NOW), "created_at": "2026-11-19"})
    decided = shop.decisions()["c1"]
    assert (decided["last_activity"], decided["reason"]) == ("2026-11-19T23:00:30Z", "due")


def test_a_refund_row_in_the_orders_is_no_purchase(shop: Shop) -> None:
    """A negative total (a refund or credit note written as an order row) is no order: it neither
    counts as the cart bought nor as an earlier order."""
    shop.add(cart("c1", email="ann@example.com"))
    shop.add_orders(order("r1", email="ann@example.com", created=NOW - timedelta(minutes=30), total="-25.00"))
    decided = shop.decisions()["c1"]
    assert decided["reason"] == "due"


@pytest.mark.parametrize(("written", "reason"), [
    ("2026-11-20T09:18+01:00", "ordered"),  # to the minute: placed in the cart's last minute, read as its start
    ("2026-11-20T08:18:19+00:00", "ordered"),  # a second before: the checkout touched the cart as it saved the order
    ("2026-11-20T08:17:20+00:00", "ordered"),  # a minute before, to the second
    ("2026-11-20T08:16:19+00:00", "due"),  # two minutes before: an earlier order of a returning customer
], ids=["same-minute-written-to-the-minute", "a-second-before", "a-minute-before", "two-minutes-before"])
def test_an_order_of_the_carts_last_minute_counts_as_the_cart_bought(shop: Shop, written: str, reason: str) -> None:
    """The cart's last activity is 08:18:20 UTC. An export that writes an order's time to the
    minute (``09:18+01:00``) read an order of that very minute as placed before the cart: an
    earlier order, and its buyer got a reminder of the cart they had bought."""
    shop.add(cart("c1", email="ann@example.com", idle=timedelta(hours=1, minutes=41, seconds=40)))
    shop.add_orders({**order("o1", email="ann@example.com", created=NOW), "created_at": written})
    decided = shop.decisions()["c1"]
    assert decided["last_activity"] == "2026-11-20T08:18:20Z"
    assert decided["reason"] == reason
    if reason == "due":
        assert decided["score"] == 25.0  # the earlier order makes a returning customer


def test_an_address_written_composed_and_decomposed_is_one_customers_for_the_newest_cart(shop: Shop) -> None:
    """``bücher`` typed with a composed ü on one cart and u + combining diaeresis on another is one
    mailbox: the export lower-cased each as written and reminded the customer of both carts."""
    composed, decomposed = "ann@bücher.example", "ann@bu\u0308cher.example"
    shop.add(cart("old", email=decomposed, idle=5 * H), cart("new", email=composed, idle=2 * H))
    found = shop.decisions()
    assert found["old"]["reason"] == "newer_cart_for_address", found["old"]
    assert found["new"]["action"] == "send" and found["new"]["email"] == composed, found["new"]


def _calls(shop: Shop) -> Shop:
    """A shop whose tier goes on the call list (no SMS: numbers are not read as mobiles)."""
    return shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "call-list"}]})


@pytest.mark.parametrize(("channel", "older", "newer"), [
    ("sms", "070-123 45 01", "+46 70 123 45 01"),  # a mobile, written in the shop's country and in E.164
    ("call-list", "+46 8 123 456 78", "+4681234567 8"),  # a landline: the call list reaches it too
], ids=["sms-mobile", "call-list-landline"])
def test_a_customer_with_a_number_and_no_address_gets_the_stream_of_their_newest_cart_only(
    shop: Shop, channel: str, older: str, newer: str
) -> None:
    """One customer, one reminder stream, by the number where the carts have no address: the
    newest-cart pass knew addresses only, so the older cart got a stream beside the newer one's
    (and was sent first: the newer one then waited as ``messaged_today``)."""
    (texting if channel == "sms" else _calls)(shop)
    shop.add(cart("old", email="", phone=older, sms_consent="yes", idle=5 * H),
             cart("new", email="", phone=newer, sms_consent="yes", idle=2 * H),
             cart("other", email="", phone="+46 70 123 45 02" if channel == "sms" else "+46 8 123 456 79",
                  sms_consent="yes", idle=6 * H))  # another number: its own newest
    found = shop.decisions()
    assert (found["old"]["action"], found["old"]["reason"], found["old"]["detail"]) == (
        "skip", "newer_cart_for_address", "newer cart csv:new")
    assert {key: (found[key]["action"], found[key]["channel"]) for key in ("new", "other")} == {
        "new": ("send", channel), "other": ("send", channel)}


def test_a_cart_touched_after_the_runs_now_is_the_newest_and_the_older_cart_gets_no_reminder(shop: Shop) -> None:
    """A shop database updated while a run reads it (or an export written after ``--now``): the
    customer is active right now. The cart touched after the run's clock was left out of the
    newest-cart pass, and the address's older cart was reminded."""
    shop.add(cart("old", email="x@example.com", idle=5 * H),
             cart("new", email="x@example.com", idle=-5 * timedelta(minutes=1)))
    found = shop.decisions()
    assert (found["old"]["action"], found["old"]["reason"], found["old"]["detail"]) == (
        "skip", "newer_cart_for_address", "newer cart csv:new")


def test_a_cart_touched_after_the_runs_now_is_deferred_as_not_idle(shop: Shop) -> None:
    """Not idle at all: it waits until it has been idle ``cutoff`` (45 min) from its last activity."""
    touched = NOW + 5 * timedelta(minutes=1)
    shop.add(cart("new", email="x@example.com", now=touched, idle=timedelta(0)))
    found = shop.decisions()["new"]
    assert (found["action"], found["reason"], found["not_before"], found["detail"]) == (
        "defer", "idle_below_cutoff", "2026-11-20T10:50:00Z", "last activity 5m after this run's now")


@pytest.mark.parametrize("per_statement", [1, 7, 100])
def test_each_addresses_newest_cart_is_the_same_whatever_rows_one_statement_upserts(
    monkeypatch: pytest.MonkeyPatch, per_statement: int
) -> None:
    """The first pass upserts many carts a statement (``scratch.ManyRows``): an address met again
    inside one statement or in a later one keeps its latest cart, a tie the larger key, as one
    row a statement did; the carts that compete are counted."""
    import cartrescue.decide.newest
    from cartrescue.decide.newest import NewestCarts
    from cartrescue.scratch import ManyRows
    from cartrescue.sources.base import Activity

    upsert = cartrescue.decide.newest._UPSERT
    monkeypatch.setattr(cartrescue.decide.newest, "_UPSERT", ManyRows(upsert.statement, upsert.row, per_statement))
    carts = [Activity(f"p{(n * 13) % 41}@example.com", NOW - ((n * 7) % 5) * H, f"csv:c{n:03d}",
                      empty=n % 11 == 0) for n in range(250)]
    expected: dict[str, tuple[datetime, str]] = {}
    for item in carts:
        if not item.empty:
            seen = (item.updated_at, item.cart_key)
            expected[item.email] = max(expected.get(item.email, seen), seen)
    with NewestCarts() as newest:
        assert newest.add(carts, batch=60) == sum(not item.empty for item in carts)
        assert newest.lookup(sorted(expected)) == {email: key for email, (_, key) in expected.items()}



@pytest.mark.parametrize("as_json", [True, False])
def test_a_chunks_newest_carts_and_messaged_customers_are_found_whatever_their_keys_hold(as_json: bool) -> None:
    """A chunk's keys are looked up as one JSON list (``json_each``), or as ``IN`` lists where
    SQLite has none: the same answer either way, for every key that is there and none of the
    others, a key with a NUL (which json_each would cut short), a quote or a backslash, in
    another script, a number, met twice, and more than one ``IN`` list's 500."""
    from cartrescue.decide.newest import NewestCarts
    from cartrescue.sources.base import Activity

    odd = ["a\x00b@example.com", 'q"uote@example.com', "back\\slash@example.com", "\u00e5sa@b\u00fccher.example",
           "+46701234567", "nul\x00"]
    there = [f"c{n}@example.com" for n in range(700)] + odd
    with NewestCarts() as newest:
        if not as_json:
            newest._json = False  # an SQLite without json_each
        newest.add([Activity(key, NOW - H, f"csv:{n}") for n, key in enumerate(there)])
        newest.mark_messaged(there[::3])
        asked = there + there[:50] + ["a@example.com", "a", "c1@example.co", "\x00"]
        assert newest.lookup(asked) == {key: f"csv:{n}" for n, key in enumerate(there)}
        assert newest.messaged(asked) == set(there[::3])
        assert newest.lookup(["a\x00b@example.com"]) == {"a\x00b@example.com": "csv:700"}
        assert newest.lookup(["a"]) == {} and newest.messaged([]) == set()

def test_the_gates_apply_the_configured_limits_not_the_defaults() -> None:
    gates = Gates(EligibilityConfig(min_total=Decimal("30"), cutoff=timedelta(hours=3), max_age=timedelta(days=2),
                                    consent="required", pending_within=timedelta(days=5)))

    def reason(idle: timedelta, total: str = "50", consent: bool | None = True, pending_age: timedelta | None = None) -> str:
        at = NOW - idle
        made = Cart("c", "csv", Customer("ann@example.com", marketing_consent=consent), "EUR",
                    (LineItem("A", "Mug", 1, Decimal(total)),), Decimal(total), at, at)
        pending = None if pending_age is None else Order("o", NOW - pending_age, email="ann@example.com", delivered=False)
        verdict = gates.check(made, OrderFacts(previous_orders=1, pending=pending), now=NOW, suppressed=set(),
                              newest_cart=None)
        return "passes" if verdict is None else verdict.reason.value

    assert reason(4 * H) == "passes"
    assert reason(2 * H) == "idle_below_cutoff"  # the default cutoff (45 minutes) passes it
    assert reason(timedelta(days=3)) == "too_old"  # the default max_age (7 days) passes it
    assert reason(4 * H, total="20") == "zero_value"  # under min_total 30
    assert reason(4 * H, consent=None) == "no_consent"  # required: soft opt-in would pass a returning customer
    assert reason(4 * H, pending_age=timedelta(days=4)) == "pending_order"
    assert reason(4 * H, pending_age=timedelta(days=6)) == "passes"  # the default pending_within (30 days) holds it


def test_a_bot_address_names_the_first_pattern_it_matches_as_the_config_wrote_it() -> None:
    gates = Gates(EligibilityConfig())
    first = r"matches bot pattern '^(bot|crawler|spider|test-crawler)[-_.+]'"
    assert gates.is_bot_or_disposable("Bot-7@example.com") == first
    assert gates.is_bot_or_disposable("crawler.x@storebotmail.joonix.net") == first  # the first of two
    assert gates.is_bot_or_disposable("NoReply@example.com") == "matches bot pattern '^noreply@'"
    assert gates.is_bot_or_disposable("no-reply@example.com") == "matches bot pattern '^no-reply@'"
    assert gates.is_bot_or_disposable("x@StoreBotMail.joonix.net") == \
        r"matches bot pattern '@storebotmail\\.joonix\\.net$'"
    assert gates.is_bot_or_disposable("robot-anna@example.com") is None
    assert gates.is_bot_or_disposable("anna@mail.mailinator.com") == "disposable domain mailinator.com"
    own = Gates(EligibilityConfig(bot_patterns=[r"^qa\d+@", "o'neil"]))
    assert own.is_bot_or_disposable("QA12@example.com") == r"matches bot pattern '^qa\\d+@'"
    assert own.is_bot_or_disposable("o'neil@example.com") == 'matches bot pattern "o\'neil"'


def test_a_phone_only_cart_skipped_on_an_email_step_says_why(shop: Shop) -> None:
    """A cart with a number and no address, on a sequence that opens with an e-mail, was skipped
    as ``no_contact`` with an empty detail in ``--json`` and the table (which shows the same detail)."""
    shop.add(cart("phoned", email="", phone="+46701234567"))
    result = shop.cli("carts", "--json")
    (decision,) = result.json["decisions"]
    assert (decision["reason"], decision["detail"]) == (
        "no_contact", "no e-mail address for the e-mail step; the phone number is not used by this step")
