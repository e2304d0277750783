"""`cartrescue init` where its files cannot be written: a usage error naming the path, not a bug."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli


@pytest.mark.parametrize("blocked", ["templates", "cartrescue.yaml"])
def test_init_that_cannot_write_a_file_names_it_and_exits_2(tmp_path: Path, blocked: str) -> None:
    """With --force, a file where templates/ goes (or a folder named cartrescue.yaml) stopped init
    with "internal error ... a bug in cartrescue", exit 70."""
    shop = tmp_path / "shop"
    shop.mkdir()
    if blocked == "templates":
        (shop / "templates").write_text("not a folder\n", encoding="utf-8")
    else:
        (shop / "cartrescue.yaml").mkdir()
    result = cli("init", str(shop), "--force")
    assert result.exit_code == 2, result.output
    assert f"init {shop / blocked}: cannot write: " in result.stderr and "internal error" not in result.output
    assert not (shop / "cartrescue.yaml").is_file()  # no config pointing at templates that are not there
