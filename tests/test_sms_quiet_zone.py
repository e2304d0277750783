"""Text messages keep ``sms.quiet_hours`` on the recipient's clock, where the number tells it.

A Swedish shop's 11:00 is 05:00 in New York: with the window read on the shop's clock, a text
woke a customer there at five in the morning (and rules on texts, such as the US TCPA's
8:00-21:00, count the recipient's local time). Numbers whose plan spans several zones keep the
shop's clock.
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


def test_a_number_whose_plan_spans_several_zones_keeps_the_shops_clock(shop: Shop) -> None:
    """A Russian mobile may be anywhere from Kaliningrad to Kamchatka: no one zone to read."""
    _texting_shop(shop)
    shop.add(cart("ru", phone="+7 916 123 45 67", sms_consent="yes"))
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
