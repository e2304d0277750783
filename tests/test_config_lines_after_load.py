"""An error about a key found after the config loaded (a secret's variable unset, a step's
template missing, a pinned clock that is no time, a channel's empty key) ends with the line the
file writes the key on, as every error found while loading does (README, Configuration).

They named the file and the key, and no line: in a config of 270 lines the shop owner searched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Shop, cart


def _line(path: Path, text: str) -> int:
    """The 1-based line of ``path`` that holds ``text`` (the only one)."""
    lines = [number for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line]
    assert len(lines) == 1, lines
    return lines[0]


def _message(shop: Shop, *args: str, **pinned: Any) -> str:
    result = shop.cli(*args, "--json", **pinned)
    assert result.exit_code == 2, result.output
    return str(result.json["error"]["message"])


def test_an_unset_variable_of_the_relays_password_names_its_line(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CR_TEST_LINE_PASSWORD", raising=False)
    shop.configure(smtp={"host": "127.0.0.1", "port": 2525, "username": "shop",
                         "password": "${CR_TEST_LINE_PASSWORD}"}).add(cart("c1"))
    message = _message(shop, "run", "--send")
    assert message == (f"{shop.config_path}: smtp.password: environment variable CR_TEST_LINE_PASSWORD is not set "
                       f"(or is empty) (line {_line(shop.config_path, 'CR_TEST_LINE_PASSWORD')})")


def test_a_step_whose_template_is_missing_names_its_line(shop: Shop) -> None:
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-9"}]}}).add(cart("c1"))
    message = _message(shop, "run")
    assert message.startswith(f"{shop.config_path}: sequences.default.steps[0].template: no template reminder-9 ")
    assert message.endswith(f" (line {_line(shop.config_path, 'reminder-9')})"), message


def test_a_pinned_clock_that_is_no_time_names_its_line(shop: Shop) -> None:
    shop.configure(now="yesterday").add(cart("c1"))
    message = _message(shop, "run", now=None)  # no --now: the config's clock is read
    assert message == (f"{shop.config_path}: now: expected an ISO 8601 time, got 'yesterday' "
                       f"(line {_line(shop.config_path, 'yesterday')})")


def test_a_webhook_channel_without_its_url_names_the_sections_line(shop: Shop) -> None:
    """The file leaves ``webhook.url`` out: the line is its section's, as for an error while loading."""
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                   webhook={"secret": "a-long-random-webhook-secret"}).add(cart("c1"))
    message = _message(shop, "run", "--send")
    assert message == (f"{shop.config_path}: webhook.url: empty; a tier or step sends on the webhook channel "
                       f"(line {_line(shop.config_path, 'webhook:')})")
