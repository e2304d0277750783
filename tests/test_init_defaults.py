"""`init`'s defaults on the bundled sample: the phone list is a small, budgeted top slice."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, cli


def test_with_inits_defaults_the_phone_list_is_a_small_budgeted_top_slice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shop"
    assert cli("init", str(folder)).exit_code == 0
    for name in ("carts.csv", "orders.csv"):  # init's config reads these beside it
        shutil.copy(REPO / "examples" / name, folder / name)
    monkeypatch.setenv("CARTRESCUE_SECRET", "a-long-random-value")
    config = str(folder / "cartrescue.yaml")
    result = cli("run", "--outbox", str(folder / "out"), "--json", "--config", config,
                 "--now", "2026-11-20T10:00:00Z")  # the sample's pinned clock
    assert result.exit_code == 0, result.output
    decisions = result.json["decisions"]
    carts = len(decisions)
    tiers = Counter(d["tier"] for d in decisions)
    called = [d for d in decisions if d["channel"] == "call-list" and d["delivery"] == "sent"]
    with (folder / "call-list.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert carts == 300
    assert len(rows) == len(called) <= 5  # the tier's budget of a day
    assert len(called) / carts <= 0.02  # 1 % of the sample in this run (it was 20 calls, 6.7 %)
    assert tiers["vip"] / carts < 0.10  # the tier itself: 8 % (it was 47 % with min_score 60)
    assert all(row["phone"] for row in rows)  # staff have a number to call on every row
    # The tier's carts without a phone number get the step by e-mail, outside the calls' budget.
    mailed = [d for d in decisions if d["tier"] == "vip" and d["action"] == "send" and d["channel"] == "email"]
    assert mailed and all(d["detail"].startswith("by email, not call-list (no phone number to call)")
                          for d in mailed)
    assert all(d["score"] >= 85 for d in called + mailed)
