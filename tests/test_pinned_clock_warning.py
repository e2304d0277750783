"""A config that pins the clock (``now:``) is said by every command that decides by it: ``run``
(under ``--quiet`` too, and in ``--json``'s ``warnings``), ``carts``, ``preview``, ``send-test``, and
the commands whose figures go by it: ``report`` (its period ends then), ``codes list`` and
``codes export`` (a code's active or expired).

``now:`` is the demo's and a replay's setting. Copied into a shop's cron config, every run
decided as of that instant: carts left after it never came into the window, each run succeeded
sending nothing new, and ``run`` said nothing (only ``doctor`` warned). The demo still runs as
the README's quick start writes it: the line is a warning, the exit code unchanged.
"""

from __future__ import annotations

import pytest

from conftest import NOW, Shop, cart, iso

PINNED = f"now: pins the clock at {iso(NOW)}: every run without --now decides as of that moment"


def _pinned(shop: Shop) -> Shop:
    """``shop`` with its clock pinned by the config at NOW, on the file's first line, and a cart due."""
    shop.config = {"now": iso(NOW), **shop.config}
    return shop.add(cart("c1"))


def _said(shop: Shop, text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"warning: {shop.config_path}: {PINNED}")]


@pytest.mark.parametrize("args", [("run",), ("run", "--quiet"), ("carts",), ("report", "--quiet"), ("codes", "list")],
                         ids=["run", "quiet", "carts", "report", "codes"])
def test_a_clock_pinned_by_the_config_is_a_warning_on_stderr_naming_the_key_and_line(shop: Shop,
                                                                                    args: tuple[str, ...]) -> None:
    result = _pinned(shop).cli(*args, now=None)
    assert result.exit_code == 0, result.output
    said = _said(shop, result.stderr)
    assert len(said) == 1 and said[0].endswith("remove it for cron) (line 1)"), result.stderr


@pytest.mark.parametrize("args", [("run", "--json"), ("run", "--json", "--quiet"), ("carts", "--json"),
                                  ("preview", "c1", "--json"), ("report", "--json"), ("codes", "list", "--json"),
                                  ("codes", "export", "--json")],
                         ids=["run", "quiet", "carts", "preview", "report", "codes-list", "codes-export"])
def test_a_clock_pinned_by_the_config_is_in_the_warnings_of_the_json(shop: Shop, args: tuple[str, ...]) -> None:
    result = _pinned(shop).cli(*args, now=None)
    assert result.exit_code == 0, result.output
    assert [line for line in result.json["warnings"] if PINNED in line] == [
        f"{shop.config_path}: {PINNED}, and carts left after it are never reminded (a demo's or a replay's setting: "
        "remove it for cron) (line 1)"]


def test_a_sending_run_lists_the_pinned_clock_in_its_json_too(shop: Shop) -> None:
    result = _pinned(shop).cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert result.exit_code == 0 and result.json["counts"]["sent"] == 1, result.output
    assert len([line for line in result.json["warnings"] if PINNED in line]) == 1
    assert len(_said(shop, result.stderr)) == 1


def test_a_codes_command_that_goes_by_no_clock_says_nothing_of_it(shop: Shop) -> None:
    """``codes generate`` makes codes whatever the time: the pinned clock changes nothing there."""
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "incentive": {
        "kind": "percent", "value": 10, "valid_for": "3d", "codes": {"pool": "comeback", "pattern": "CB-{random:8}"}}}]}})
    result = _pinned(shop).cli("codes", "generate", "1", "--pool", "comeback", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert "pins the clock" not in result.stderr and result.json["warnings"] == []


def test_a_config_without_now_says_nothing_of_the_clock(shop: Shop) -> None:
    result = shop.add(cart("c1")).cli("run", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["warnings"] == [] and "pins the clock" not in result.stderr
