"""A country code of ``shop.country``, ``sms.default_region`` or ``sms.countries`` must name a
region whose phone numbers are known, checked when the config loads.

``country: SW`` (a typo of SE) or ``XX`` was taken as written: every number written without
``+`` and its country code was unreadable in that region, and ``countries: [SW]`` made every
number another country's, so each text went by e-mail or was skipped, without a word.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli


def _outcome(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "cartrescue.yaml"
    path.write_text(f"source: {{type: csv, carts: carts.csv}}\n{text}\n", encoding="utf-8")
    return path, cli("carts", "--json", "--config", str(path))


@pytest.mark.parametrize(("text", "key", "code"), [
    ("shop: {country: SW}", "shop.country", "SW"),
    ("sms: {default_region: xx}", "sms.default_region", "xx"),
    ("sms: {countries: [SE, SW]}", "sms.countries", "SW"),
])
def test_a_country_with_no_phone_numbers_is_refused_naming_the_key_and_line(tmp_path: Path, text: str, key: str,
                                                                            code: str) -> None:
    path, result = _outcome(tmp_path, text)
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"] == (f"{path}: {key}: {code!r} is no country whose phone numbers are known: "
                                               "expected an ISO 3166 country code like SE (line 2)")


@pytest.mark.parametrize("text", ["shop: {country: se}", "sms: {default_region: NO, countries: [SE, NO, FI, GB]}"])
def test_iso_country_codes_are_taken(tmp_path: Path, text: str) -> None:
    _path, result = _outcome(tmp_path, text)
    assert result.exit_code == 3, result.output  # the config loaded; carts.csv is not there
