"""Files that hold customers' personal data are the owner's alone (0600), whatever the umask.

The ledger keeps every address, name and phone number the shop ever reminded; an outbox or
``--eml`` file is the whole message (address, name, cart). Under the usual umask 022 they were
made 0644, readable by every account on the machine, as mail tools (a mailbox, a Maildir) and
credential stores never leave theirs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Shop, cart


@pytest.fixture(autouse=True)
def _umask_022() -> Iterator[None]:
    """The common default umask, which leaves new files readable by everyone."""
    was = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(was)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_ledger_is_readable_by_its_owner_only(shop: Shop) -> None:
    result = shop.add(cart("c1", email="ann@example.com")).cli("run", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 0, result.output
    assert _mode(shop.folder / "ledger.db") == 0o600


@pytest.mark.parametrize("option", ["--outbox", "--eml"])
def test_message_files_are_readable_by_their_owner_only(shop: Shop, option: str) -> None:
    folder = shop.folder / "out"
    result = shop.add(cart("c1", email="ann@example.com")).cli("run", option, str(folder))
    assert result.exit_code == 0, result.output
    files = list(folder.iterdir())
    assert files and {_mode(path) for path in files} == {0o600}


def test_a_new_call_list_is_readable_by_its_owner_only(shop: Shop) -> None:
    """The list staff phone from holds each customer's name, number and cart: it was made 0644."""
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 0, "channel": "call-list"}]},
                   call_list={"path": "calls.csv"})
    result = shop.add(cart("c1", email="ann@example.com", phone="+46701234561")).cli(
        "run", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 0, result.output
    assert "+46 70 123 45 61" in (shop.folder / "calls.csv").read_text(encoding="utf-8")
    assert _mode(shop.folder / "calls.csv") == 0o600


def test_a_survey_export_file_is_readable_by_its_owner_only(shop: Shop) -> None:
    """The export holds each answer's address and the customer's own words."""
    target = shop.folder / "exports" / "survey.csv"
    result = shop.cli("survey", "export", "-o", str(target), now=None)
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8").startswith("answered_at,")
    assert _mode(target) == 0o600


def test_a_previews_html_file_is_readable_by_its_owner_only(shop: Shop) -> None:
    """``preview --html`` writes a customer's message: their name, cart and recovery link."""
    target = shop.folder / "step1.html"
    result = shop.add(cart("c1", email="ann@example.com", first_name="Ann")).cli("preview", "c1", "--html", str(target))
    assert result.exit_code == 0, result.output
    assert "Ann" in target.read_text(encoding="utf-8")
    assert _mode(target) == 0o600


@pytest.mark.slow
def test_a_previews_screenshot_is_readable_by_its_owner_only(shop: Shop, chromium: str) -> None:
    """``preview --screenshot`` is a picture of the same message."""
    target = shop.folder / "step1.png"
    result = shop.add(cart("c1", first_name="Ann")).cli("preview", "c1", "--screenshot", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(b"\x89PNG")
    assert _mode(target) == 0o600


def test_an_export_file_that_is_there_keeps_its_mode(shop: Shop) -> None:
    """A file the shop shared with its staff's group (0640) stays shared when written again."""
    target = shop.folder / "survey.csv"
    target.write_text("", encoding="utf-8")
    target.chmod(0o640)
    assert shop.cli("survey", "export", "-o", str(target), now=None).exit_code == 0
    assert _mode(target) == 0o640
