"""A budget's spare that the hourly quota holds back is deferred ``hourly_quota``, not ``tier_budget``.

A kept send of a budgeted tier that this run does not claim (its template fails on its cart)
hands its slot to the tier's best deferred cart. When the channel's hour has no room left by
then, that cart waits for the hour, not for the budget: its tier had room. It was reported
``tier_budget`` ("tier high takes 2 per run", with a day's budget ``not_before`` the shop's next
midnight), and the owner who read why raised the budget, which changed nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from smtpserver import LoopbackSMTP

from conftest import Shop, cart
from test_priority import LAMPS, _budget_shop


def _decisions(shop: Shop, budget_per: str) -> dict[str, dict[str, Any]]:
    """A sending run behind an hourly quota of 1 with tier ``high``'s budget of 2: ``bad`` (kept,
    fails to render), ``next`` (kept, past the quota), ``last`` (the budget's spare)."""
    _budget_shop(shop, {"name": "high", "min_score": 30, "budget": 2, "budget_per": budget_per})
    shop.add(cart("bad", items=[(*LAMPS, "100.00")]),  # 60: kept, a render_error
             cart("next", items=[("B", "Lamp", 1, "250.00", None, 500)]),  # 50: kept
             cart("last", items=[("B", "Lamp", 1, "250.00")]))  # 40: the spare
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config(rate_per_hour=1))
        result = shop.cli("run", "--send", "--json")
        server.wait_for(1)
    assert "Traceback" not in result.output, result.output
    return {d["cart_id"]: d for d in result.json["decisions"]}


@pytest.mark.smtp
@pytest.mark.parametrize("budget_per", ["run", "day"])
def test_a_budgets_spare_the_hourly_quota_holds_back_waits_for_the_hour(shop: Shop, budget_per: str) -> None:
    found = _decisions(shop, budget_per)
    assert [found[key]["delivery"] or found[key]["reason"] for key in ("bad", "next", "last")] == [
        "render_error", "sent", "hourly_quota"]
    last = found["last"]
    assert last["action"] == "defer" and last["not_before"].startswith("2026-11-20T1"), last  # within the hour
    assert last["detail"].startswith("smtp.rate_per_hour (1) reached"), last
