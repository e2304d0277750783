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
