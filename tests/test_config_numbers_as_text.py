"""A text key given an unquoted number says that YAML read a number, and to quote the value.

``sender: +46701234567``, as config.example.yaml's comment writes the number, is an integer to
YAML, its ``+`` dropped: the refusal said "Input should be a valid string (got 46701234567)", a
value the shop never wrote, and did not say what to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli


@pytest.mark.parametrize(("text", "key", "read"), [
    ("sms:\n  sender: +46701234567", "sms.sender", "46701234567"),
    ("shop:\n  support_phone: +4681234567", "shop.support_phone", "4681234567"),
    ("shop:\n  name: 1.5", "shop.name", "1.5"),
])
def test_an_unquoted_number_for_a_text_key_says_to_quote_it(tmp_path: Path, text: str, key: str, read: str) -> None:
    path = tmp_path / "cartrescue.yaml"
    path.write_text(f"source: {{type: csv, carts: carts.csv}}\n{text}\n", encoding="utf-8")
    result = cli("carts", "--json", "--config", str(path))
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"] == (
        f"{path}: {key}: Input should be a valid string (got {read}: YAML reads an unquoted number as a number, "
        "without a leading + or 0: quote the value as written, e.g. '+46701234567') (line 3)")
