"""An incentive's ``valid_for: 0`` is refused when the config loads, naming the key and its line.

It was taken as "until the end of today" (the day of delivery + 0 days): a code the 23:50 run
sent died ten minutes later, and the message told the customer it was valid "until today". A
code must work for some time; the shortest is the shop's to write (``12h``, ``1d``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Shop, cart, cli

_STEP = "sequences:\n  default:\n    steps:\n      - delay: 1h\n        template: reminder-1\n"


def _loaded(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "cartrescue.yaml"
    (tmp_path / "carts.csv").write_text("cart_id,email,updated_at,total\n", encoding="utf-8")
    path.write_text(f"source: {{type: csv, carts: carts.csv}}\n{text}", encoding="utf-8")
    return cli("carts", "--json", "--config", str(path)).json  # type: ignore[no-any-return]


@pytest.mark.parametrize("zero", ["0", "0h", "0d"])
def test_an_incentive_valid_for_0_is_refused_naming_the_key_and_line(tmp_path: Path, zero: str) -> None:
    document = _loaded(tmp_path, _STEP + f"        incentive: {{kind: percent, value: 10, code: X, valid_for: {zero}}}\n")
    message = document["error"]["message"]  # type: ignore[index]
    assert message.endswith("sequences.default.steps[0].incentive.valid_for: must be longer than zero, got 0s (a code "
                            "valid for no time: it would die the day it is sent, at midnight) (line 7)"), message


def test_a_tiers_incentive_valid_for_0_is_refused_too(tmp_path: Path) -> None:
    document = _loaded(tmp_path, _STEP + "        tier_incentives:\n          standard: {kind: fixed, value: 5, "
                                         "code: X, valid_for: 0}\n")
    message = document["error"]["message"]  # type: ignore[index]
    assert "sequences.default.steps[0].tier_incentives.standard.valid_for: must be longer than zero" in message, message
    assert message.endswith("(line 8)"), message


def test_an_incentive_valid_for_a_few_hours_is_taken(shop: Shop) -> None:
    offer = {"kind": "percent", "value": 10, "code": "X", "valid_for": "12h"}
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "incentive": offer}]}})
    result = shop.add(cart("c1")).cli("carts", "--json")
    assert result.exit_code == 0 and result.json["counts"]["carts"] == 1, result.output
