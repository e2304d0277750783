"""Text messages keep ``sms.quiet_hours`` on the recipient's clock, where the number tells it.

A Swedish shop's 11:00 is 05:00 in New York: with the window read on the shop's clock, a text
woke a customer there at five in the morning (and rules on texts, such as the US TCPA's
8:00-21:00, count the recipient's local time). A number whose plan spans several zones (a
Russian or Australian mobile) gets a text only when it is daytime in every one of them, or by
e-mail where no moment of the day is.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from test_run_clock import _wall_reads

from conftest import NOW, Shop, cart

MINUTE = timedelta(minutes=1)
NEW_YORK = "+1 212 555 0123"
STOCKHOLM = "070-123 45 67"


def _texting_shop(shop: Shop, **sms: Any) -> None:
    shop.configure(shop={"country": "SE"},
                   priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"sender": "+46700000000", "quiet_hours": {"start": "20:00", "end": "09:00"},
                        "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "not-a-token",
                                   "base_url": "http://127.0.0.1:9"}, **sms})


def _decisions(shop: Shop, **kwargs: Any) -> dict[str, dict[str, Any]]:
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", **kwargs)
    assert result.exit_code == 0, result.output
    return {row["cart_id"]: row for row in result.json["decisions"]}


def test_a_text_to_a_number_where_it_is_night_waits_for_the_morning_there(shop: Shop) -> None:
    """11:00 in Stockholm (NOW), 05:00 in New York: the Swedish number gets its text, the New York
    one waits for 09:00 there (14:00 UTC), and the decision says whose clock."""
    _texting_shop(shop)
    shop.add(cart("se", phone=STOCKHOLM, sms_consent="yes"), cart("us", phone=NEW_YORK, sms_consent="yes"))
    decided = _decisions(shop)
    assert (decided["se"]["action"], decided["se"]["delivery"]) == ("send", "sent")
    us = decided["us"]
    assert (us["action"], us["reason"], us["not_before"]) == ("defer", "quiet_hours", "2026-11-20T14:00:00Z")
    assert "09:00 in America/New_York" in us["detail"], us["detail"]
    assert [row["cart_key"] for row in shop.messages()] == ["csv:se"]


def test_quiet_hours_zone_shop_keeps_the_shops_clock_for_every_number(shop: Shop) -> None:
    _texting_shop(shop, quiet_hours_zone="shop")
    shop.add(cart("se", phone=STOCKHOLM, sms_consent="yes"), cart("us", phone=NEW_YORK, sms_consent="yes"))
    decided = _decisions(shop)
    assert [decided[key]["delivery"] for key in ("se", "us")] == ["sent", "sent"]


RUSSIA = "+7 916 123 45 67"  # its plan: Europe/Bucharest (UTC+2) to Asia/Anadyr (UTC+12)
AUSTRALIA = "+61 412 345 678"  # its plan: Indian/Cocos (UTC+6:30) to Sydney and Lord Howe (UTC+11 in November)


def test_a_multi_zone_number_waits_until_it_is_daytime_in_all_its_zones(shop: Shop) -> None:
    """19:00 in Stockholm is 21:00 in Moscow and 04:00 in Vladivostok: the Russian mobile waits
    for the one hour that is day from Europe/Bucharest to Asia/Anadyr (07:00-08:00 UTC, 10:00 in
    Moscow, 17:00 in Vladivostok). The shop's clock let it go, and woke Vladivostok."""
    _texting_shop(shop)
    evening = NOW.replace(hour=18)
    shop.add(cart("ru", phone=RUSSIA, sms_consent="yes", now=evening))
    ru = _decisions(shop, now=evening)["ru"]
    assert (ru["action"], ru["reason"], ru["not_before"]) == ("defer", "quiet_hours", "2026-11-21T07:00:00Z")
    assert "09:00 in Europe/Bucharest to 19:00 in Asia/Anadyr" in ru["detail"], ru["detail"]
    assert shop.messages() == []


def test_a_multi_zone_number_in_the_daytime_of_one_zone_only_waits_for_the_others(shop: Shop) -> None:
    """10:00 UTC: 13:00 in Moscow, but 20:00 in Vladivostok (and 22:00 in Anadyr)."""
    _texting_shop(shop)
    shop.add(cart("ru", phone=RUSSIA, sms_consent="yes"))
    ru = _decisions(shop)["ru"]
    assert (ru["action"], ru["not_before"]) == ("defer", "2026-11-21T07:00:00Z")


def test_a_multi_zone_number_gets_its_text_when_it_is_day_in_every_zone(shop: Shop) -> None:
    morning = NOW.replace(hour=7, minute=30)  # 09:30 in Bucharest, 19:30 in Anadyr
    _texting_shop(shop)
    shop.add(cart("ru", phone=RUSSIA, sms_consent="yes", now=morning))
    assert _decisions(shop, now=morning)["ru"]["delivery"] == "sent"


def test_an_australian_mobile_waits_for_the_morning_in_the_west_when_perth_allows_it(shop: Shop) -> None:
    """10:00 UTC: 18:00 in Perth, 21:00 in Sydney. It waits for 09:00 in Indian/Cocos, its plan's
    westernmost zone (02:30 UTC, 10:30 in Perth, 13:30 in Sydney)."""
    _texting_shop(shop)
    shop.add(cart("au", phone=AUSTRALIA, sms_consent="yes"))
    au = _decisions(shop)["au"]
    assert (au["action"], au["reason"], au["not_before"]) == ("defer", "quiet_hours", "2026-11-21T02:30:00Z")
    assert "09:00 in Indian/Cocos to 13:30 in Australia/" in au["detail"], au["detail"]


KAZAKHSTAN = "+7 701 234 56 78"  # +7 as Russia's, but one country on one clock (UTC+5)


def test_a_kazakh_mobile_gets_its_text_in_the_afternoon_in_kazakhstan(shop: Shop) -> None:
    """10:00 UTC is 15:00 in Almaty. The plan of +7 gave a Kazakh mobile Russia's 16 zones (and
    Vladivostok's 20:00): it waited for the one hour of the day that is day from Bucharest to
    Anadyr, and under a 10:00-19:00 window never got a text at all."""
    _texting_shop(shop)
    shop.add(cart("kz", phone=KAZAKHSTAN, sms_consent="yes"))
    assert _decisions(shop)["kz"]["delivery"] == "sent"


def test_a_single_zone_number_keeps_its_one_zone_in_the_detail(shop: Shop) -> None:
    _texting_shop(shop)
    shop.add(cart("us", phone=NEW_YORK, sms_consent="yes"))
    us = _decisions(shop)["us"]
    assert us["detail"] == ("sms quiet hours until 2026-11-20 15:00 shop time "
                            "(09:00 in America/New_York, the number's time)")


def test_a_multi_zone_number_no_moment_reaches_by_day_gets_the_step_by_email(shop: Shop) -> None:
    """A window of 10:00-19:00 (nine hours of day) is day nowhere at once from Bucharest to
    Anadyr (ten hours apart): the step goes by e-mail, as for a number no text reaches."""
    _texting_shop(shop, quiet_hours={"start": "19:00", "end": "10:00"})
    shop.add(cart("ru", phone=RUSSIA, sms_consent="yes"))
    ru = _decisions(shop)["ru"]
    assert (ru["action"], ru["channel"], ru["delivery"]) == ("send", "email", "sent"), ru
    assert ru["detail"].startswith("by email, not sms (no moment of the next 24 hours is outside sms.quiet_hours "
                                   "in all 16 of the number's zones"), ru["detail"]


def test_a_multi_zone_number_no_moment_reaches_by_day_is_skipped_without_channel_fallback(shop: Shop) -> None:
    _texting_shop(shop, quiet_hours={"start": "19:00", "end": "10:00"})
    shop.configure(eligibility={"channel_fallback": False})
    shop.add(cart("ru", phone=RUSSIA, sms_consent="yes"))
    ru = _decisions(shop)["ru"]
    assert (ru["action"], ru["reason"]) == ("skip", "no_contact"), ru
    assert shop.messages() == []


NEW_ZEALAND = "+64 21 123 4567"  # its plan: Pacific/Auckland and Pacific/Chatham (UTC+13, +13:45 in November)


@pytest.mark.parametrize("at", [NOW, NOW.replace(hour=3), NOW.replace(hour=20, minute=30)])
def test_a_number_whose_day_falls_in_the_shops_quiet_hours_gets_the_step_by_email(shop: Shop, at: datetime) -> None:
    """Texts 09:00-20:00 in Auckland are 20:00-07:00 UTC; the shop's quiet hours (21:00-08:00 in
    Stockholm) leave 07:00-20:00 UTC: no moment is open for both. The text was deferred to a
    moment two days on, inside the shop's quiet hours, and again from there, run after run: the
    customer got nothing until the cart was too old. The step goes by e-mail, as for a number
    whose zones leave no moment of the day."""
    _texting_shop(shop)
    shop.configure(eligibility={"quiet_hours": {"start": "21:00", "end": "08:00"}})
    shop.add(cart("nz", phone=NEW_ZEALAND, sms_consent="yes", now=at))
    nz = _decisions(shop, now=at)["nz"]
    assert nz["channel"] == "email", nz
    if at == NOW:
        assert (nz["action"], nz["delivery"]) == ("send", "sent")
        assert nz["detail"].startswith(
            "by email, not sms (no moment of the next 24 hours is outside both eligibility.quiet_hours on the shop's "
            "clock and sms.quiet_hours on the number's (Pacific/Auckland, Pacific/Chatham))"), nz
    else:  # the e-mail waits for the shop's morning only
        morning = "2026-11-21T07:00:00Z" if at.hour == 20 else "2026-11-20T07:00:00Z"
        assert (nz["action"], nz["reason"], nz["not_before"]) == ("defer", "quiet_hours", morning), nz


def test_quiet_hours_zone_shop_keeps_the_shops_clock_for_a_multi_zone_number(shop: Shop) -> None:
    _texting_shop(shop, quiet_hours_zone="shop")
    shop.add(cart("ru", phone=RUSSIA, sms_consent="yes"))
    assert _decisions(shop)["ru"]["delivery"] == "sent"


@pytest.mark.parametrize(("hour", "action"), [(13, "defer"), (14, "send")])
def test_the_morning_there_begins_at_the_windows_end_on_that_clock(shop: Shop, hour: int, action: str) -> None:
    _texting_shop(shop)
    shop.add(cart("us", phone=NEW_YORK, sms_consent="yes", now=NOW.replace(hour=hour)))
    assert _decisions(shop, now=NOW.replace(hour=hour))["us"]["action"] == action


def test_a_live_run_that_reaches_a_numbers_evening_holds_its_text_unclaimed(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned at 19:59 in New York, claimed at 20:01 there: the claim checks the number's
    window too (the shop's clock says 02:01, which the window would hold as well; the number's
    says it may go at 09:00 New York time, not the shop's 09:00)."""
    _texting_shop(shop)
    started = datetime(2026, 11, 21, 0, 59, tzinfo=timezone.utc)  # 19:59 in New York
    shop.configure(eligibility={"quiet_hours": None})
    shop.add(cart("us", phone=NEW_YORK, sms_consent="yes", now=started, idle=61 * MINUTE))
    _wall_reads(monkeypatch, started, started + 2 * MINUTE)
    decided = _decisions(shop, now=None)
    us = decided["us"]
    assert (us["action"], us["reason"], us["not_before"]) == ("defer", "quiet_hours", "2026-11-21T14:00:00Z")
    assert "as this run claimed it" in us["detail"]
    assert shop.messages() == []


def test_a_text_a_days_budget_defers_keeps_the_numbers_quiet_hours_not_the_shops(shop: Shop) -> None:
    """A day's budget of texts deferred the rest until the shop's next day after the window on
    the shop's clock (09:00 in Stockholm, 03:00 in New York), unlike every other text the run
    defers (``messaged_today``): the window it waits out is the number's."""
    _texting_shop(shop)
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms",
                                        "budget": 1, "budget_per": "day"}]})
    afternoon = NOW.replace(hour=15)  # 16:00 in Stockholm, 10:00 in New York
    shop.add(cart("us1", phone=NEW_YORK, sms_consent="yes", now=afternoon),
             cart("us2", phone="+1 212 555 0199", sms_consent="yes", now=afternoon))
    decided = _decisions(shop, now=afternoon)
    deferred = [row for row in decided.values() if row["action"] == "defer"]
    assert [row["reason"] for row in deferred] == ["tier_budget"], decided
    # The shop's next day begins at 23:00 UTC: 18:00 in New York, outside the number's quiet hours.
    assert deferred[0]["not_before"] == "2026-11-20T23:00:00Z"


def test_a_live_run_that_reaches_the_evening_of_one_of_a_numbers_zones_holds_its_text(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned at 07:59 UTC (19:59 in Anadyr, day in every zone of the Russian mobile), claimed
    at 08:01 (20:01 in Anadyr): the claim reads every zone, and the text waits for the next
    day's hour, unclaimed."""
    _texting_shop(shop)
    started = datetime(2026, 11, 21, 7, 59, tzinfo=timezone.utc)
    shop.add(cart("ru", phone=RUSSIA, sms_consent="yes", now=started, idle=61 * MINUTE))
    _wall_reads(monkeypatch, started, started + 2 * MINUTE)
    ru = _decisions(shop, now=None)["ru"]
    assert (ru["action"], ru["reason"], ru["not_before"]) == ("defer", "quiet_hours", "2026-11-22T07:00:00Z")
    assert "as this run claimed it" in ru["detail"]
    assert shop.messages() == []
