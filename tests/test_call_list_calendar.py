"""The call list and the shop's calendar: a call is one of the customer's messages of the day,
but quiet hours and the shop's newsletter do not hold it back (staff call when they work).
"""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

from conftest import NOW, Shop, cart

PRICEY = [("S", "Lamp", 1, "900.00")]  # high value: the vip tier


def _calling_shop(shop: Shop) -> Shop:
    return shop.configure(
        priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                            {"name": "standard", "min_score": 0}]},
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "channel": "email"},
                                         {"delay": "3h", "template": "reminder-2"}]}})


def test_a_customer_emailed_today_is_called_tomorrow_not_this_afternoon(shop: Shop, tmp_path: Path) -> None:
    """Before: the call-list step skipped the whole calendar, so a customer got the e-mail of
    step 1 at 11:00 and a call at 13:00, against one message a day "whatever the channel"."""
    _calling_shop(shop).add(cart("c1", phone="+46701234567", items=PRICEY))
    assert shop.cli("run", "--outbox", str(tmp_path / "out"), now=NOW).exit_code == 0  # step 1 by e-mail
    later = shop.decisions(NOW + timedelta(hours=3))["c1"]  # step 2, the call, is due the same day
    assert (later["action"], later["reason"], later["channel"]) == ("defer", "messaged_today", "call-list")
    assert later["not_before"] == "2026-11-20T23:00:00Z"  # the shop's midnight: no quiet hours to wait out
    assert shop.decisions(NOW + timedelta(hours=22))["c1"]["reason"] == "due"


def test_quiet_hours_do_not_hold_back_the_call_list(shop: Shop) -> None:
    _calling_shop(shop).configure(
        eligibility={"quiet_hours": {"start": "10:30", "end": "12:00"}},  # now = 11:00 Stockholm
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    shop.add(cart("called", phone="+46701234567", items=PRICEY), cart("mailed"))
    decisions = shop.decisions()
    assert (decisions["called"]["reason"], decisions["called"]["channel"]) == ("due", "call-list")
    assert (decisions["mailed"]["reason"], decisions["mailed"]["channel"]) == ("quiet_hours", "email")


def test_a_forgotten_number_is_not_put_on_the_call_list_again(shop: Shop, tmp_path: Path) -> None:
    """A shop without SMS reads no numbers, so a suppressed one (``forget +46…``) was never looked
    up, and the cart went back on the call list; docs/channels.md: a cart whose address or
    number is suppressed gets nothing on any channel."""
    _calling_shop(shop).configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    shop.add(cart("called", phone="+46701234567", items=PRICEY),
             cart("other", email="o@example.com", phone="+46701234568", items=PRICEY))
    assert shop.cli("forget", "+46701234567", now=None).exit_code == 0
    found = shop.cli("run", "--outbox", str(tmp_path / "out"), "--json").json["decisions"]
    assert {d["cart_id"]: (d["action"], d["reason"]) for d in found} == {
        "called": ("skip", "suppressed"), "other": ("send", "due")}
    rows = (shop.folder / "call-list.csv").read_text(encoding="utf-8")
    assert "+46 70 123 45 68" in rows and "+46 70 123 45 67" not in rows


def _listed(shop: Shop, tmp_path: Path, column: str, country: str = "SE", **phones: str) -> dict[str, str]:
    """``column`` of each cart's row, after a run of a shop of ``country`` called a cart per number of ``phones``."""
    _calling_shop(shop).configure(shop={"country": country},
                                  sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    shop.add(*(cart(cart_id, phone=phone, items=PRICEY) for cart_id, phone in phones.items()))
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    with (shop.folder / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        return {row["cart_id"]: row[column] for row in csv.DictReader(handle)}


def test_the_call_lists_number_is_written_as_staff_dial_it_from_the_shops_country(shop: Shop, tmp_path: Path) -> None:
    """A Swedish shop's staff dial 070-123 45 67, and 00 47 … abroad: the raw 0701234567 became
    the number 701234567 in a spreadsheet, and +46… needed an apostrophe a dialer does not want."""
    phones = _listed(shop, tmp_path, "phone", local="0701234567", e164="+46701234568", norway="+47 912 34 567",
                     note="after 17:00")
    assert phones == {"local": "070-123 45 67", "e164": "070-123 45 68", "norway": "00 47 91 23 45 67",
                      "note": "after 17:00"}
    forgotten = shop.cli("forget", "+4791234567", "--files", "--json", now=None)  # its row is still found
    assert forgotten.exit_code == 0, forgotten.output
    assert "norway" not in (shop.folder / "call-list.csv").read_text(encoding="utf-8")


def test_a_shop_without_sms_calls_one_number_once_a_day_whichever_address_its_carts_have(
        shop: Shop, tmp_path: Path) -> None:
    """Numbers were read only where the shop sends SMS: two carts of one person under two
    addresses were two rows of the day's call list, one number, called twice."""
    _calling_shop(shop).configure(shop={"country": "SE"},
                                  sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    shop.add(cart("home", email="carol@example.com", phone="+46701234503", items=PRICEY),
             cart("work", email="carol.work@example.com", phone="070-123 45 03", items=PRICEY))
    found = shop.cli("run", "--outbox", str(tmp_path / "out"), "--json").json["decisions"]
    outcomes = sorted((d["action"], d["reason"]) for d in found)
    assert outcomes == [("defer", "messaged_today"), ("send", "due")], found
    with (shop.folder / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 1


def _one_number_two_addresses(shop: Shop) -> Shop:
    """A shop without SMS and one person with a cart under each of two addresses, one number."""
    _calling_shop(shop).configure(shop={"country": "SE"},
                                  sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    return shop.add(cart("home", email="carol@example.com", phone="+46701234503", items=PRICEY))


def test_a_dry_run_defers_a_call_to_a_number_called_today_under_another_address(shop: Shop, tmp_path: Path) -> None:
    """The real run's claim refuses the call (the number had its message of the day); the
    dry-run listed the row as due, and the owner expected a call the run then deferred."""
    _one_number_two_addresses(shop)
    assert shop.cli("run", "--outbox", str(tmp_path / "out"), now=NOW).exit_code == 0  # "home" is called
    shop.add(cart("work", email="carol.work@example.com", phone="070-123 45 03", items=PRICEY))
    later = NOW + timedelta(hours=2)
    dry = {d["cart_id"]: d for d in shop.cli("run", "--json", now=later).json["decisions"]}
    real = {d["cart_id"]: d for d in shop.cli("run", "--outbox", str(tmp_path / "out"), "--json",
                                              now=later).json["decisions"]}
    assert (real["work"]["action"], real["work"]["reason"]) == ("defer", "messaged_today"), real
    assert (dry["work"]["action"], dry["work"]["reason"]) == ("defer", "messaged_today"), dry
    assert dry["work"]["not_before"] == real["work"]["not_before"] == "2026-11-20T23:00:00Z"


def test_a_dry_run_defers_the_second_call_to_one_number_in_the_run_as_the_real_run_does(shop: Shop) -> None:
    _one_number_two_addresses(shop).add(cart("work", email="carol.work@example.com", phone="070-123 45 03",
                                             items=PRICEY))
    found = shop.cli("run", "--json").json["decisions"]
    assert sorted((d["action"], d["reason"]) for d in found) == [("defer", "messaged_today"), ("send", "due")], found


def _added_at(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [row["added_at"] for row in csv.DictReader(handle)]


def test_a_russian_shops_call_list_writes_a_number_abroad_without_the_dial_tone_wait(
        shop: Shop, tmp_path: Path) -> None:
    """From Russia (and Kazakhstan) the plan's prefix for abroad is ``8~10``, the ``~`` a wait for
    the dial tone: the cell said ``8~10 46 70 123 45 67``, which no phone, softphone or dialer
    takes. It is written as it is dialled, ``8 10 46 …``."""
    phones = _listed(shop, tmp_path, "phone", country="RU", se="+46 70 123 45 67", ru="+7 916 123 45 67")
    assert phones == {"se": "8 10 46 70 123 45 67", "ru": "8 (916) 123-45-67"}


def test_the_call_lists_row_names_the_customers_clock_for_staff_to_call_by_day_there(
        shop: Shop, tmp_path: Path) -> None:
    """A call list has no quiet hours: staff call when they work. A Swedish shop's 09:00 is 03:00
    in New York and 13:00 in Almaty, and the row said nothing of it: staff woke customers abroad.
    The row names the number's zone and its UTC offset (of a plan of several zones, the
    westernmost and easternmost), as a text's quiet hours read it."""
    zones = _listed(shop, tmp_path, "timezone", ny="+1 212 555 0123", kz="+7 701 234 56 78", ru="+7 916 123 45 67",
                    se="0701234567", note="after 17:00")
    assert zones == {"ny": "America/New_York (UTC-05:00)", "kz": "Asia/Almaty (UTC+05:00)",
                     "ru": "Europe/Bucharest (UTC+02:00) to Asia/Anadyr (UTC+12:00)",
                     "se": "Europe/Stockholm (UTC+01:00)", "note": ""}


def test_under_a_pinned_clock_the_call_lists_added_at_is_the_pinned_instant(shop: Shop, tmp_path: Path) -> None:
    """The claim is stamped with the pinned ``now`` (docs/sending.md), its row was stamped with
    the real time: a replay of last Friday listed calls added today, beside claims of Friday."""
    _one_number_two_addresses(shop)
    assert shop.cli("run", "--eml", str(tmp_path / "eml"), now=NOW).exit_code == 0  # the dry-run's rows
    assert shop.cli("run", "--outbox", str(tmp_path / "out"), now=NOW).exit_code == 0
    pinned = "2026-11-20T11:00:00+01:00"  # NOW on the shop's clock (Stockholm)
    assert _added_at(shop.folder / "call-list.csv") == [pinned]
    assert _added_at(tmp_path / "eml" / "call-list.csv") == [pinned]
