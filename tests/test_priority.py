"""The four priority rules, scores, tiers and a tier budget, on fixture carts via the CLI."""

from __future__ import annotations

import contextlib
import csv
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from cartrescue.config import Config, PriorityConfig
from cartrescue.ledger import History, SentStep
from cartrescue.model import Cart, Customer, LineItem
from cartrescue.decide.orders import OrderBook
from cartrescue.pipeline import Planner
from cartrescue.decide.priority import Prioritizer, margin_share
import shopdb
from conftest import NOW, Shop, cart, order

RULES = {
    "high_value": {"weight": 40, "threshold": 200},
    "returning_customer": {"weight": 25, "min_orders": 1},
    "high_margin": {"weight": 20, "threshold": 0.5},
    "overstock": {"weight": 10, "threshold": 100, "skus": ["CLEARANCE-1"]},
}
TIERS = [
    {"name": "call", "min_score": 60, "sequence": "default", "channel": "call-list"},
    {"name": "high", "min_score": 30},
    {"name": "standard", "min_score": 0},
]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    shop = Shop(tmp_path_factory.mktemp("priority"))
    shop.configure(priority={"rules": RULES, "tiers": TIERS})
    shop.add(
        cart("plain", items=[("A", "Mug", 1, "20.00")]),
        cart("valuable", items=[("B", "Lamp", 1, "250.00")]),
        cart("returning", email="back@example.com"),
        cart("margin", items=[("C", "Scarf", 2, "40.00", "10.00")]),
        cart("thin-margin", items=[("C", "Scarf", 2, "40.00", "35.00")]),
        cart("stocky", items=[("D", "Socks", 1, "9.00", None, 500)]),
        cart("listed", items=[("CLEARANCE-1", "Old model", 1, "9.00")]),
        cart("everything", email="vip@example.com", phone="+46700000000",
             items=[("E", "Sofa", 1, "900.00", "300.00", 150)]),
    )
    shop.add_orders(
        order("o1", email="back@example.com", created=NOW - timedelta(days=30)),
        order("o2", email="vip@example.com", created=NOW - timedelta(days=60)),
    )
    return shop.decisions()


@pytest.mark.parametrize(
    ("cart_id", "score", "tier"),
    [
        ("plain", 0, "standard"),
        ("valuable", 40, "high"),
        ("returning", 25, "standard"),
        ("margin", 20, "standard"),
        ("thin-margin", 0, "standard"),
        ("stocky", 10, "standard"),
        ("listed", 10, "standard"),
        ("everything", 95, "call"),
    ],
)
def test_rules_add_their_weights_and_the_score_picks_the_tier(
    scored: dict[str, dict[str, Any]], cart_id: str, score: float, tier: str
) -> None:
    assert (scored[cart_id]["score"], scored[cart_id]["tier"]) == (score, tier)


def test_the_top_tier_goes_to_the_call_list_channel(scored: dict[str, dict[str, Any]]) -> None:
    assert scored["everything"]["channel"] == "call-list"
    assert {scored[c]["channel"] for c in ("plain", "valuable")} == {"email"}


def test_carts_without_cost_data_have_unknown_margin_not_zero() -> None:
    assert margin_share(_one_cart([("A", "Mug", 1, "20.00")])) is None
    assert margin_share(_one_cart([("A", "Mug", 1, "20.00", "5.00")])) == Decimal("0.75")


def _one_cart(items: list[tuple[Any, ...]]) -> Cart:
    lines = tuple(
        LineItem(sku=i[0], name=i[1], quantity=i[2], unit_price=Decimal(i[3]),
                 unit_cost=Decimal(i[4]) if len(i) > 4 else None)
        for i in items
    )
    return Cart(id="x", source="t", customer=Customer(email="x@example.com"), currency="EUR", items=lines,
                total=sum((line.line_total for line in lines), Decimal(0)), created_at=NOW, updated_at=NOW)


def test_a_tier_budget_keeps_the_best_scoring_carts_and_defers_the_rest(shop: Shop) -> None:
    shop.configure(priority={"rules": RULES, "tiers": [
        {"name": "high", "min_score": 30, "budget": 2}, {"name": "standard", "min_score": 0}]})
    shop.add(
        cart("h1", items=[("B", "Lamp", 1, "250.00")]),  # 40
        cart("h2", items=[("B", "Lamp", 1, "250.00", "100.00")]),  # 60
        cart("h3", items=[("B", "Lamp", 1, "250.00", None, 500)]),  # 50
        cart("h4", items=[("B", "Lamp", 1, "260.00")]),  # 40
        cart("s1"),
    )
    found = shop.decisions()
    assert {c: found[c]["action"] for c in ("h1", "h2", "h3", "h4", "s1")} == {
        "h1": "defer", "h2": "send", "h3": "send", "h4": "defer", "s1": "send"}
    assert found["h1"]["reason"] == "tier_budget"


def test_a_tier_budget_gives_every_cart_one_decision_the_displaced_ones_too(shop: Shop) -> None:
    shop.configure(priority={"rules": RULES, "tiers": [
        {"name": "high", "min_score": 30, "budget": 1}, {"name": "standard", "min_score": 0}]})
    shop.add(*(cart(f"h{n}", items=[("B", "Lamp", 1, f"{250 + n}.00")]) for n in range(4)), cart("s1"))
    rows = shop.cli("carts", "--json", now=NOW).json["decisions"]
    assert sorted(row["cart_id"] for row in rows) == ["h0", "h1", "h2", "h3", "s1"]
    assert sorted(row["action"] for row in rows) == ["defer", "defer", "defer", "send", "send"]


@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_a_days_budget_counts_what_the_days_earlier_runs_used(shop: Shop, kind: str) -> None:
    """``budget_per: day``: staff who make three calls a day get three a day, not three from
    every run of a cron that runs every ten minutes; the next day has its budget again."""
    with contextlib.ExitStack() as stack:
        if kind != "sqlite":
            shop.configure(ledger={"url": stack.enter_context(shopdb.shop_database(kind, "daybudget")).url})
        _days_budget(shop)


def _days_budget(shop: Shop) -> None:
    shop.configure(priority={"rules": RULES, "tiers": [
        {"name": "high", "min_score": 30, "budget": 3, "budget_per": "day"}, {"name": "standard", "min_score": 0}]})
    shop.add(*(cart(f"h{n}", email=f"h{n}@example.com", now=NOW - timedelta(minutes=10 * n),
                    items=[("B", "Lamp", 1, f"{250 + n}.00")]) for n in range(5)))
    out = str(shop.folder / "out")

    def sent(at: datetime) -> list[str]:
        result = shop.cli("run", "--outbox", out, "--json", now=at)
        assert result.exit_code == 0, result.output
        return sorted(d["cart_id"] for d in result.json["decisions"] if d["delivery"] == "sent")

    assert sent(NOW) == ["h0", "h1", "h2"]  # equal scores: the first three
    later = shop.cli("carts", "--json", now=NOW + timedelta(minutes=10)).json["decisions"]
    waiting = {d["cart_id"]: d for d in later if d["step"] == 1}
    assert {key: d["reason"] for key, d in waiting.items()} == {"h3": "tier_budget", "h4": "tier_budget"}
    assert waiting["h3"]["detail"] == "tier high takes 0 today (its day's budget is 3; the day's earlier runs used 3)"
    assert sent(NOW + timedelta(minutes=10)) == []
    tomorrow = NOW.replace(hour=7) + timedelta(days=1)  # 08:00 in Stockholm
    assert sent(tomorrow) == ["h3", "h4"]


@pytest.mark.parametrize(("per", "not_before"), [("day", "2026-11-20T23:00:00Z"), ("run", None)])
def test_a_cart_a_days_budget_defers_says_it_waits_for_the_shops_next_day(
    shop: Shop, per: str, not_before: str | None
) -> None:
    """A day's budget spent, the cart waits for the next day: its ``not_before`` was null, while
    every other deferral to tomorrow (``messaged_today``) says when: the shop's next midnight,
    after the channel's quiet hours. A run's budget: the next run may take it, so none."""
    shop.configure(priority={"rules": RULES, "tiers": [
        {"name": "high", "min_score": 30, "budget": 1, "budget_per": per}, {"name": "standard", "min_score": 0}]})
    shop.add(cart("h1", items=[("B", "Lamp", 1, "250.00", "100.00")]),  # 60: kept
             cart("h2", items=[("B", "Lamp", 1, "250.00")]))  # 40: deferred
    planned = shop.decisions()["h2"]
    assert (planned["action"], planned["reason"], planned["not_before"]) == ("defer", "tier_budget", not_before)
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    later = shop.decisions(NOW + timedelta(minutes=10))["h2"]  # the day's budget is spent: it waits all day
    assert (later["reason"], later["not_before"]) == (("tier_budget", not_before) if per == "day" else ("due", None))
    if per == "day":  # texts wait out their quiet hours as well (20:00-09:00 by default)
        shop.configure(shop={"country": "SE"}, priority={"tiers": [
            {"name": "high", "min_score": 30, "budget": 1, "budget_per": "day", "channel": "sms"},
            {"name": "standard", "min_score": 0}]},
            sms={"sender": "+46700000001", "twilio": {"account_sid": "AC0", "auth_token": "t",
                                                      "base_url": "https://api.example.com"}})
        shop.carts = []
        shop.add(cart("t1", email="t1@example.com", phone="0701234501", sms_consent="yes",
                      items=[("B", "Lamp", 1, "250.00", "100.00")]),
                 cart("t2", email="t2@example.com", phone="0701234502", sms_consent="yes",
                      items=[("B", "Lamp", 1, "250.00")]))
        texted = shop.decisions()["t2"]
        assert (texted["reason"], texted["not_before"]) == ("tier_budget", "2026-11-21T08:00:00Z")  # 09:00 Stockholm


def _midnight_budget(shop: Shop) -> tuple[datetime, Any]:
    """A day's budget of 3 and five carts, for a first run at exactly the shop's midnight."""
    midnight = datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc)  # 00:00 in Stockholm
    shop.configure(priority={"rules": RULES, "tiers": [
        {"name": "high", "min_score": 30, "budget": 3, "budget_per": "day"}, {"name": "standard", "min_score": 0}]})
    shop.add(*(cart(f"m{n}", email=f"m{n}@example.com", now=midnight - timedelta(hours=1, minutes=n),
                    items=[("B", "Lamp", 1, "250.00")]) for n in range(5)))

    def waiting(at: datetime) -> dict[str, str]:
        later = shop.cli("carts", "--json", now=at).json["decisions"]
        return {d["cart_id"]: d["detail"] for d in later if d["step"] == 1}

    first = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=midnight)
    assert first.exit_code == 0, first.output
    assert first.json["counts"]["sent"] == 3
    return midnight, waiting


def test_a_days_budget_counts_the_claims_made_at_exactly_the_shops_midnight(shop: Shop) -> None:
    """A run pinned to 00:00:00 claims at a whole second: its claims are the day's, as any other."""
    midnight, waiting = _midnight_budget(shop)
    assert set(waiting(midnight + timedelta(minutes=10)).values()) == {
        "tier high takes 0 today (its day's budget is 3; the day's earlier runs used 3)"}


def test_an_older_sqlite_ledgers_times_are_rewritten_once_to_compare_as_text(shop: Shop) -> None:
    """Earlier versions wrote '… 23:00:00+00:00' beside SQLAlchemy's '… 23:00:00.000000'."""
    midnight, waiting = _midnight_budget(shop)
    path = shop.folder / "ledger.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE cr_message SET claimed_at = substr(claimed_at, 1, 19) || '+00:00'")
        db.execute("UPDATE cr_message SET finished_at = substr(finished_at, 1, 26) || '+00:00'")
        db.execute("PRAGMA user_version = 0")
    assert set(waiting(midnight + timedelta(minutes=10)).values()) == {
        "tier high takes 0 today (its day's budget is 3; the day's earlier runs used 3)"}
    with contextlib.closing(sqlite3.connect(path)) as db:
        claimed = {row[0] for row in db.execute("SELECT claimed_at FROM cr_message")}
        finished = [row[0] for row in db.execute("SELECT finished_at FROM cr_message")]
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1  # rewritten (then stamped up to date)
    assert claimed == {"2026-11-20 23:00:00.000000"}
    assert all(len(moment) == 26 and "+" not in moment for moment in finished), finished


def test_the_call_list_channel_writes_a_row_for_staff(shop: Shop) -> None:
    shop.configure(priority={"rules": RULES, "tiers": TIERS}, call_list={"path": "calls.csv"})
    shop.add(cart("big", email="vip@example.com", phone="+46700000001", items=[("E", "Sofa", 1, "900.00", "300.00", 150)]))
    shop.add_orders(order("o2", email="vip@example.com", created=NOW - timedelta(days=60)))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    with (shop.folder / "calls.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["cart_id"], r["phone"], r["tier"]) for r in rows] == [("big", "'+46 70 000 00 01", "call")]
    assert not list((shop.folder / "out").glob("*.eml"))
    (row,) = rows
    assert row["step"] == "1" and row["last_activity"] == "2026-11-20T09:00:00+01:00"  # the shop's clock
    assert datetime.fromisoformat(row["added_at"]).utcoffset() == timedelta(hours=1)  # when it was written


def test_a_call_list_row_and_the_carts_table_give_a_large_score_whole_as_the_json_does(shop: Shop) -> None:
    """Weights may be up to 1,000,000: a score of 1,234,567.5 was written ``1.23457e+06`` in the
    call list staff sort by and in ``carts``' table, and 234,567.5 as ``234568``, where ``--json``
    said 1234567.5: six significant digits, in a spreadsheet's scientific notation."""
    rules = {"high_value": {"weight": 1_000_000, "threshold": 200},
             "returning_customer": {"weight": 234_567.5, "min_orders": 1}}
    shop.configure(priority={"rules": rules, "tiers": [{"name": "call", "min_score": 1, "channel": "call-list"},
                                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls.csv"})
    shop.add(cart("both", email="vip@example.com", phone="+46700000001", items=[("E", "Sofa", 1, "900.00")]),
             cart("back", email="old@example.com", phone="+46700000002", items=[("M", "Mug", 1, "9.00")]))
    shop.add_orders(order("o1", email="vip@example.com", created=NOW - timedelta(days=60)),
                    order("o2", email="old@example.com", created=NOW - timedelta(days=60)))
    planned = shop.cli("carts", "--json")
    assert {d["cart_id"]: d["score"] for d in planned.json["decisions"]} == {"both": 1234567.5, "back": 234567.5}
    table = shop.cli("carts", "--wide")
    assert table.exit_code == 0, table.output
    assert "1234567.5" in table.output and "234567.5" in table.output and "e+06" not in table.output
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    with (shop.folder / "calls.csv").open(encoding="utf-8") as handle:
        assert {r["cart_id"]: r["score"] for r in csv.DictReader(handle)} == {"both": "1234567.5", "back": "234567.5"}


def _call_carts(shop: Shop, count: int) -> Shop:
    shop.configure(priority={"rules": RULES, "tiers": TIERS}, call_list={"path": "calls.csv"})
    for n in range(count):
        shop.add(cart(f"big{n}", email=f"vip{n}@example.com", phone=f"+467000000{n:02d}",
                      items=[("E", "Sofa", 1, "900.00", "300.00", 150)]))
        shop.add_orders(order(f"o{n}", email=f"vip{n}@example.com", created=NOW - timedelta(days=60)))
    return shop


def test_a_call_list_begun_with_other_columns_keeps_them(shop: Shop) -> None:
    """Staff's file from an older version: new rows go under its header, never a row that does
    not match it."""
    _call_carts(shop, 1)
    old = "cart_id,first_name,last_name,phone,email,total\r\nc0,Ann,Berg,+46700000099,a@example.com,10\r\n"
    (shop.folder / "calls.csv").write_text(old, encoding="utf-8", newline="")
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    with (shop.folder / "calls.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["cart_id", "first_name", "last_name", "phone", "email", "total"]
    assert rows[2] == ["big0", "Ann", "Tester", "'+46 70 000 00 00", "vip0@example.com", "900.00"]


def test_workers_append_to_one_call_list_with_one_header_and_whole_rows(shop: Shop) -> None:
    _call_carts(shop, 40)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--workers", "2", "--json")
    assert result.exit_code == 0, result.output
    with (shop.folder / "calls.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "cart_id" and all(row[0] != "cart_id" for row in rows[1:])
    assert sorted(row[0] for row in rows[1:]) == sorted(f"big{n}" for n in range(40))
    assert {len(row) for row in rows} == {len(rows[0])}


def test_a_dry_run_with_eml_writes_the_call_lists_rows_beside_the_messages(shop: Shop) -> None:
    _call_carts(shop, 2)
    look = shop.folder / "look"
    result = shop.cli("run", "--eml", str(look), "--json")
    assert result.exit_code == 0, result.output
    assert {d["detail"] for d in result.json["decisions"] if d["channel"] == "call-list"} == {str(look / "call-list.csv")}
    with (look / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        assert sorted(row["cart_id"] for row in csv.DictReader(handle)) == ["big0", "big1"]
    assert not (shop.folder / "calls.csv").exists()  # the shop's own list: a dry-run adds nothing
    again = shop.cli("run", "--eml", str(look), "--workers", "2", "--json")  # a second look replaces the first
    assert again.exit_code == 0, again.output
    with (look / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        assert sorted(row["cart_id"] for row in csv.DictReader(handle)) == ["big0", "big1"]


def test_high_value_is_judged_in_the_shops_base_currency(shop) -> None:
    """517.50 SEK (45 EUR) is not a high-value cart against a 500 EUR threshold; 6,000 SEK (522 EUR) is."""
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.087"}},
                   priority={"rules": {"high_value": {"threshold": 500}},
                             "tiers": [{"name": "high", "min_score": 40}, {"name": "standard", "min_score": 0}]})
    shop.add(cart("small-sek", currency="SEK", items=(("S", "Lamp", 1, "517.50"),)),
             cart("big-sek", currency="SEK", items=(("S", "Sofa", 1, "6000.00"),)),
             cart("eur", currency="EUR", items=(("S", "Sofa", 1, "517.50"),)),
             cart("nok", currency="NOK", items=(("S", "Sofa", 1, "99999"),)))
    decided = shop.decisions()
    assert decided["small-sek"]["tier"] == "standard"
    assert decided["big-sek"]["tier"] == "high"
    assert decided["eur"]["tier"] == "high"
    assert decided["nok"]["tier"] == "standard"  # no rate for NOK: not known to be high value


def test_a_run_says_which_carts_it_could_not_value_in_the_shops_currency(shop: Shop) -> None:
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.087"}})
    shop.add(cart("sek", currency="SEK"), cart("nok1", currency="NOK"), cart("nok2", currency="NOK"))
    result = shop.cli("run", "--json")
    assert result.exit_code == 0, result.output
    assert ("carts in NOK have no rate to EUR (add shop.exchange_rates): priority.rules.high_value cannot count them "
            "as high value") in result.json["notes"]


def test_a_run_without_a_shop_currency_says_its_carts_in_several_currencies_are_valued_as_they_are(
        shop: Shop) -> None:
    """Without shop.currency a 546 SEK cart (about 50 EUR) was a high-value cart against a
    threshold of 200 meant in euros, and 199 EUR was not: the top tier's calls went by the digits
    of each currency, and nothing said so. The scores stay as documented; the run says it."""
    shop.add(cart("sek", email="a@example.com", currency="SEK", items=(("S", "Lamp", 1, "546.00"),)),
             cart("eur", email="b@example.com", currency="EUR", items=(("S", "Lamp", 1, "199.00"),)))
    result = shop.cli("run", "--json")
    assert result.exit_code == 0, result.output
    found = {d["cart_id"]: d["score"] for d in result.json["decisions"]}
    assert found["sek"] > found["eur"]  # as documented: "null = amounts as they are"
    assert ("carts come in more than one currency and shop.currency is not set: priority.rules.high_value "
            "compares each cart's total, in its own currency, with its threshold 200 (set shop.currency, and "
            "shop.exchange_rates for the others)") in result.json["notes"]


def test_a_run_without_a_shop_currency_on_carts_of_one_currency_says_nothing_of_it(shop: Shop) -> None:
    shop.add(cart("a", email="a@example.com", currency="SEK"), cart("b", email="b@example.com", currency="SEK"))
    result = shop.cli("run", "--json")
    assert result.exit_code == 0, result.output
    assert not [note for note in result.json["notes"] if "shop.currency" in note]


def test_a_cart_below_every_tiers_min_score_goes_to_the_lowest_tier(shop: Shop) -> None:
    shop.configure(priority={"rules": RULES, "tiers": [{"name": "high", "min_score": 30},
                                                       {"name": "low", "min_score": 10}]})
    shop.add(cart("plain", items=[("A", "Mug", 1, "20.00")]))
    found = shop.decisions()["plain"]
    assert (found["score"], found["tier"], found["action"]) == (0, "low", "send")


def test_calls_that_failed_leave_the_days_budget_to_their_retry(shop: Shop) -> None:
    """A day's budget counts what went out (or may have): calls that failed transiently (a list
    staff had broken) are written by a later run of the day, not deferred to tomorrow as if made."""
    shop.configure(priority={"rules": RULES, "tiers": [
        {"name": "call", "min_score": 60, "channel": "call-list", "budget": 2, "budget_per": "day"},
        {"name": "standard", "min_score": 0}]}, call_list={"path": "calls.csv"})
    for n in range(2):
        shop.add(cart(f"big{n}", email=f"vip{n}@example.com", phone=f"+4670000000{n}",
                      items=[("E", "Sofa", 1, "900.00", "300.00", 150)]))
        shop.add_orders(order(f"o{n}", email=f"vip{n}@example.com", created=NOW - timedelta(days=60)))
    calls = shop.folder / "calls.csv"
    calls.write_text("not|a|call|list\r\n", encoding="utf-8")
    out = str(shop.folder / "out")
    failed = shop.cli("run", "--outbox", out, "--json")
    assert failed.exit_code == 1, failed.output
    assert {d["delivery"] for d in failed.json["decisions"]} == {"failed_transient"}
    calls.unlink()  # staff fixed the list
    retry = shop.cli("run", "--outbox", out, "--json", now=NOW + timedelta(minutes=10))
    assert retry.exit_code == 0, retry.output
    assert sorted((d["cart_id"], d["delivery"] or d["reason"]) for d in retry.json["decisions"]) == [
        ("big0", "sent"), ("big1", "sent")]
    with calls.open(encoding="utf-8", newline="") as handle:
        assert sorted(row["cart_id"] for row in csv.DictReader(handle)) == ["big0", "big1"]
    later = shop.cli("carts", "--json", now=NOW + timedelta(minutes=20)).json["decisions"]
    assert {d["cart_id"]: d["reason"] for d in later} == {"big0": "step_not_due", "big1": "step_not_due"}


def test_a_score_that_adds_up_to_a_tiers_min_score_reaches_that_tier(shop: Shop) -> None:
    """Weights written as decimals add up as written: 0.1 + 0.7 is 0.8, not 0.7999999999999999,
    which fell below the top tier's ``min_score: 0.8`` and gave the cart the tier below."""
    shop.configure(priority={
        "rules": {"high_value": {"weight": 0.1, "threshold": 200}, "returning_customer": {"weight": 0.7},
                  "high_margin": {"weight": 0.2}, "overstock": {"weight": 0.05}},
        "tiers": [{"name": "top", "min_score": 0.8}, {"name": "standard", "min_score": 0}]})
    shop.add(cart("both", email="back@example.com", items=[("B", "Lamp", 1, "250.00")]))
    shop.add_orders(order("o1", email="back@example.com", created=NOW - timedelta(days=30)))
    found = shop.decisions()["both"]
    assert (found["score"], found["tier"]) == (0.8, "top")


def test_two_tiers_with_one_min_score_are_refused_as_the_second_would_get_no_cart(shop: Shop) -> None:
    """Tiers are matched from the highest ``min_score`` down: of two with the same one, the
    first listed took every cart and the other, its channel and budget, silently none."""
    shop.configure(priority={"rules": RULES, "tiers": [
        {"name": "sms", "min_score": 40, "channel": "sms"}, {"name": "calls", "min_score": 40, "channel": "call-list"},
        {"name": "standard", "min_score": 0}]})
    shop.add(cart("valuable", items=[("B", "Lamp", 1, "250.00")]))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 2, result.output
    assert ("tiers 'sms' and 'calls' have the same min_score 40: no cart would ever get tier 'calls'"
            in result.json["error"]["message"])


# A kept send this run does not claim gives its budget slot to the tier's next deferred cart.
# The subject fails for a cart of 7 items (a render_error, before any claim); every other cart renders.
BROKEN_SUBJECT = "{{ 100 // (cart.item_count - 7) }} things"
LAMPS = ("B", "Lamp", 7, "250.00")  # 40: high value; a render_error


def _budget_shop(shop: Shop, *tiers: dict[str, Any]) -> str:
    """The shop with the broken subject and ``tiers`` (then the standard one); its outbox."""
    from test_bad_carts import _own_templates

    _own_templates(shop, BROKEN_SUBJECT)
    shop.configure(priority={"rules": RULES, "tiers": [*tiers, {"name": "standard", "min_score": 0}]})
    return str(shop.folder / "out")


def _run(shop: Shop, out: str, *args: str, at: datetime = NOW) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """A delivering run: its decisions by cart id, and its counts (which must add up)."""
    result = shop.cli("run", "--outbox", out, "--json", *args, now=at)
    assert "Traceback" not in result.output, result.output
    counts = result.json["counts"]
    assert counts["send"] + counts["skip"] + counts["defer"] + counts["holdout"] == counts["carts"]
    assert sum(counts["deliveries"].values()) == sum(bool(d["delivery"]) for d in result.json["decisions"])
    return {d["cart_id"]: d for d in result.json["decisions"]}, counts


def _claimed(url: str) -> list[str]:
    """The cart ids of the ledger's messages, sorted."""
    from cartrescue.ledger import Ledger

    ledger = Ledger(url)
    try:
        return sorted(row["cart_id"] for row in ledger.messages())
    finally:
        ledger.close()


@pytest.fixture(params=[250, 1], ids=["one-chunk", "chunk-per-cart"])
def delivery_chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The executor's chunk: the slot goes to a spare in the same chunk, or in a later one."""
    from cartrescue.pipeline import executor

    monkeypatch.setattr(executor, "DELIVERY_CHUNK", request.param)
    return int(request.param)


def test_a_kept_send_that_fails_to_render_gives_its_budget_slot_to_the_tiers_next_cart(
        shop: Shop, delivery_chunk: int) -> None:
    """``budget: 1`` per run: the tier's best cart fails to render, nothing is claimed, and the
    second best, which the budget deferred, goes out in its slot in the same run."""
    out = _budget_shop(shop, {"name": "high", "min_score": 30, "budget": 1})
    shop.add(cart("bad", items=[(*LAMPS, "100.00")]),  # 60: kept
             cart("next", items=[("B", "Lamp", 1, "250.00", None, 500)]),  # 50
             cart("last", items=[("B", "Lamp", 1, "250.00")]),  # 40
             cart("s1"))
    found, counts = _run(shop, out)
    assert found["bad"]["delivery"] == "render_error"
    assert (found["next"]["action"], found["next"]["reason"], found["next"]["delivery"]) == ("send", "due", "sent")
    assert found["next"]["detail"].startswith("in the slot of a send this run did not claim (tier high takes 1 per run)")
    assert (found["last"]["action"], found["last"]["reason"]) == ("defer", "tier_budget")
    assert (counts["carts"], counts["send"], counts["defer"], counts["sent"], counts["failed"]) == (4, 3, 1, 2, 1)
    assert _claimed(f"sqlite:///{shop.folder / 'ledger.db'}") == ["next", "s1"]


@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_a_days_budget_gives_the_slot_of_a_kept_send_that_fails_to_render_to_the_tiers_next_cart(
        shop: Shop, kind: str) -> None:
    """``budget: 1, budget_per: day``: the next cart goes out in the failed one's slot, and that
    claim spends the day: a run ten minutes later sends nothing more of the tier."""
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{shop.folder / 'ledger.db'}"
        if kind != "sqlite":
            url = stack.enter_context(shopdb.shop_database(kind, "slotday")).url
            shop.configure(ledger={"url": url})
        out = _budget_shop(shop, {"name": "high", "min_score": 30, "budget": 1, "budget_per": "day"})
        shop.add(cart("bad", items=[(*LAMPS, "100.00")]),  # 60: kept
                 cart("next", items=[("B", "Lamp", 1, "250.00", None, 500)]),  # 50
                 cart("last", items=[("B", "Lamp", 1, "250.00")]))  # 40
        found, counts = _run(shop, out)
        assert [found[key]["delivery"] or found[key]["reason"] for key in ("bad", "next", "last")] == [
            "render_error", "sent", "tier_budget"]
        assert (counts["sent"], counts["failed"], counts["defer"]) == (1, 1, 1)
        later, counts = _run(shop, out, at=NOW + timedelta(minutes=10))
        assert {key: later[key]["detail"] for key in ("bad", "last")} == dict.fromkeys(
            ("bad", "last"), "tier high takes 0 today (its day's budget is 1; the day's earlier runs used 1)")
        assert counts["sent"] == 0
        assert _claimed(url) == ["next"]


def test_a_budget_gives_no_more_slots_than_its_kept_sends_left_when_fewer_carts_wait(
        shop: Shop, delivery_chunk: int) -> None:
    """Three kept sends of ``high`` fail to render and one cart waits: it goes out, and the two
    slots left are nobody's: not ``low``'s, whose budget of 1 is spent, nor a later run's."""
    out = _budget_shop(shop, {"name": "high", "min_score": 30, "budget": 3}, {"name": "low", "min_score": 10, "budget": 1})
    shop.add(*(cart(f"bad{n}", items=[(*LAMPS, "100.00")]) for n in range(3)),  # 60 each: kept
             cart("next", items=[("B", "Lamp", 1, "250.00")]),  # 40: waits, alone
             cart("l1", items=[("D", "Socks", 1, "9.00", None, 500)]),  # 10: low, kept
             cart("l2", items=[("D", "Socks", 1, "9.00", None, 500)]))  # 10: low, waits
    found, counts = _run(shop, out)
    assert {key: d["delivery"] or d["reason"] for key, d in found.items()} == {
        "bad0": "render_error", "bad1": "render_error", "bad2": "render_error", "next": "sent", "l1": "sent",
        "l2": "tier_budget"}
    assert (counts["sent"], counts["failed"], counts["defer"]) == (2, 3, 1)
    assert _claimed(f"sqlite:///{shop.folder / 'ledger.db'}") == ["l1", "next"]


def test_a_slot_given_to_a_cart_that_fails_too_goes_on_to_the_next_and_the_budget_holds(
        shop: Shop, delivery_chunk: int) -> None:
    """``budget: 2``: a kept send fails, the best waiting cart that takes its slot fails too, and
    the slot goes on to the next one; the tier claims 2, its budget, and the last cart waits."""
    out = _budget_shop(shop, {"name": "high", "min_score": 30, "budget": 2})
    shop.add(cart("bad-a", items=[(*LAMPS, "100.00", 500)]),  # 70: kept
             cart("good-a", items=[("B", "Lamp", 1, "250.00", "100.00")]),  # 60: kept
             cart("bad-b", items=[(*LAMPS, None, 500)]),  # 50: waits, first
             cart("good-b", items=[("B", "Lamp", 1, "250.00")]),  # 40: waits, second
             cart("good-c", items=[("B", "Lamp", 1, "260.00")]))  # 40: waits, third
    found, counts = _run(shop, out)
    assert {key: d["delivery"] or d["reason"] for key, d in found.items()} == {
        "bad-a": "render_error", "good-a": "sent", "bad-b": "render_error", "good-b": "sent", "good-c": "tier_budget"}
    assert _claimed(f"sqlite:///{shop.folder / 'ledger.db'}") == ["good-a", "good-b"]


@pytest.mark.parametrize(("per", "next_cart"), [("run", "sent"), ("day", "tier_budget")])
def test_a_kept_send_another_run_claimed_first_frees_a_runs_budget_slot_not_a_days(
        shop: Shop, monkeypatch: pytest.MonkeyPatch, per: str, next_cart: str) -> None:
    """Shard 1/2 (a budget of 2: its share is 1) plans; then shard 2/2's run claims the step of
    the cart shard 1 kept: shard 1 claims nothing of it (``claimed_elsewhere``). A run's budget
    counts this run's claims: the next cart takes the slot. A day's budget counts every claim
    of the day of shard 1's addresses: that claim spent its share, and the next cart waits."""
    from cartrescue.ledger import ClaimRequest, Ledger
    from cartrescue.pipeline import Planner
    from cartrescue.shards import shard_of

    out = _budget_shop(shop, {"name": "high", "min_score": 30, "budget": 2, "budget_per": per})
    kept, waiting = [a for a in (f"v{n}@example.com" for n in range(50)) if shard_of(a, 2) == 1][:2]
    shop.add(cart("kept", email=kept, items=[("B", "Lamp", 1, "250.00", "100.00")]),  # 60
             cart("next", email=waiting, items=[("B", "Lamp", 1, "250.00")]))  # 40
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    original = Planner.decide

    def claimed_meanwhile(self: Planner, source: Any) -> Any:
        decisions = list(original(self, source))  # planned, with the ledger's history and the day's claims
        ledger = Ledger(url)
        try:
            other = ledger.start_run("send", NOW, "2/2")
            with ledger.lock(other, timedelta(hours=1), "run:2/2"):
                won = ledger.claim(other, [ClaimRequest("csv:kept", "kept", kept, 1, "email", "outbox", "reminder-1",
                                                        None, "high", 60.0)], NOW, lock_name="run:2/2")
                ledger.record([(claim_id, "sent", "written", "") for claim_id in won.values()])
            ledger.finish_run(other, "ok", {"sent": 1})
        finally:
            ledger.close()
        yield from decisions

    monkeypatch.setattr(Planner, "decide", claimed_meanwhile)
    found, _counts = _run(shop, out, "--shard", "1/2")
    assert (found["kept"]["delivery"], found["next"]["delivery"] or found["next"]["reason"]) == (
        "claimed_elsewhere", next_cart)
    assert _claimed(url) == (["kept", "next"] if next_cart == "sent" else ["kept"])


def test_a_score_takes_the_first_tier_whose_min_score_it_reaches_else_the_last() -> None:
    prioritizer = Prioritizer(PriorityConfig(tiers=[{"name": "low", "min_score": 10}, {"name": "top", "min_score": 60},
                                                    {"name": "mid", "min_score": 35}]))
    picked = {score: (prioritizer.tier_index(score), prioritizer.tier(score).name) for score in (95, 60, 59.9, 35, 10, 0)}
    assert picked == {95: (0, "top"), 60: (0, "top"), 59.9: (1, "mid"), 35: (1, "mid"), 10: (2, "low"), 0: (2, "low")}


def test_a_carts_tier_decides_its_sequence_and_each_steps_channel_and_template() -> None:
    config = Config.model_validate({
        "source": {"type": "csv", "carts": "carts.csv"},
        "priority": {"rules": {"high_value": {"weight": 70}},
                     "tiers": [{"name": "vip", "min_score": 60, "sequence": "call", "channel": "call-list"},
                               {"name": "standard", "min_score": 0}]},
        "sequences": {"default": {"steps": [{"delay": "1h", "template": "reminder-2"}]},
                      "call": {"steps": [{"delay": "1h", "template": "reminder-1", "tier_channels": {"vip": "email"}},
                                         {"delay": "2h", "template": "reminder-3"}]}},
    })
    planner = Planner(config, NOW)

    def decide(cart_id: str, price: str, sent: list[SentStep]) -> tuple[object, ...]:
        made = Cart(cart_id, "csv", Customer(f"{cart_id}@example.com", phone="+46700000000", marketing_consent=True),
                    "EUR", (LineItem("A", "Mug", 1, Decimal(price)),), Decimal(price), NOW - timedelta(hours=5),
                    NOW - timedelta(hours=5))
        history = History(by_cart={made.key: sent})
        d = planner._decide(made, OrderBook([]), history, {}, set(), {}, set())
        return d.action.value, d.tier, d.step, d.channel, d.template

    first = SentStep(1, "email", "sent", NOW - timedelta(hours=4), sequence="call")
    assert decide("big", "900.00", []) == ("send", "vip", 1, "email", "reminder-1")  # step 1's own channel for vip
    assert decide("big-2", "900.00", [first]) == ("send", "vip", 2, "call-list", "reminder-3")  # the tier's
    assert decide("small", "20.00", []) == ("send", "standard", 1, "email", "reminder-2")
    own = SentStep(1, "email", "sent", NOW - timedelta(hours=4), sequence="default")
    assert decide("small-done", "20.00", [own])[:3] == ("skip", "standard", None)  # its one step was sent
    # A cart that moved tiers starts the new tier's sequence (sequence.of_sequence), but a step
    # claimed by the other on the same channel (one row per cart, step and channel) counts as
    # done: call's step 1 went by e-mail for vip, as default's one step goes.
    assert decide("small-moved", "20.00", [first])[:3] == ("skip", "standard", None)
    assert decide("big-moved", "900.00", [own]) == ("send", "vip", 2, "call-list", "reminder-3")
    called = SentStep(1, "call-list", "sent", NOW - timedelta(hours=4), sequence="call")
    assert decide("small-called", "20.00", [called])[:3] == ("send", "standard", 1)
