"""An amount or a count of the config that cannot be below 0 is refused there, naming the file,
the key and its line.

``eligibility.min_total: -1``, ``priority.rules.high_value.threshold: -5`` and
``priority.rules.overstock.threshold: -100`` were taken: a cart's total and an item's stock are
never below 0, so each matched every cart (or item) as 0 would, and nothing said the shop's
number was one no cart can have (a sign typed by mistake, a value meant for another key).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Shop, cart, cli


def _refusal(tmp_path: Path, section: str) -> str:
    path = tmp_path / "cartrescue.yaml"
    path.write_text(f"source: {{type: csv, carts: carts.csv}}\n{section}\n", encoding="utf-8")
    result = cli("carts", "--json", "--config", str(path))
    assert result.exit_code == 2, result.output
    return str(result.json["error"]["message"]).removeprefix(f"{path}: ")


@pytest.mark.parametrize(("section", "key", "value"), [
    ("eligibility:\n  min_total: -1", "eligibility.min_total", "-1"),
    ("priority:\n  rules:\n    high_value: {weight: 40, threshold: -5}", "priority.rules.high_value.threshold", "-5"),
    ("priority:\n  rules:\n    overstock: {threshold: -100}", "priority.rules.overstock.threshold", "-100"),
], ids=["min_total", "high_value", "overstock"])
def test_a_negative_amount_or_stock_is_refused_naming_its_key_and_line(tmp_path: Path, section: str, key: str,
                                                                       value: str) -> None:
    line = section.count("\n") + 2
    assert _refusal(tmp_path, section) == f"{key}: Input should be greater than or equal to 0 (got {value}) (line {line})"


def test_a_min_total_of_0_is_still_taken(shop: Shop) -> None:
    """0 means every cart with something in it (a shop that gives samples away): no refusal."""
    result = shop.configure(eligibility={"min_total": 0}).add(cart("c1")).cli("carts", "--json")
    assert result.exit_code == 0 and result.json["counts"]["carts"] == 1, result.output


@pytest.mark.parametrize(("written", "shown"), [("-1h", "'-1h'"), ("-5", "-5"), ("'-2d'", "'-2d'")],
                         ids=["with-unit", "bare", "quoted"])
def test_a_negative_delay_is_refused_as_negative(tmp_path: Path, written: str, shown: str) -> None:
    """``delay: -5`` was told to write "-5m, -5h or -5s?", each refused in turn, and ``-1h`` was
    "expected a duration like 45m": neither said that no duration may be below 0."""
    section = f"sequences:\n  default:\n    steps:\n      - {{delay: {written}, template: reminder-1}}"
    assert _refusal(tmp_path, section) == (f"sequences.default.steps[0].delay: a duration cannot be negative, "
                                           f"got {shown} (line 5)")
