"""`cartrescue init` where its files cannot be written: a usage error naming the path, not a bug;
and its ``--json`` document, as every command's, for a script that sets shops up."""

from __future__ import annotations

import json
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


def test_init_with_json_prints_the_files_it_wrote(tmp_path: Path) -> None:
    """A script setting up a shop (``cartrescue init /srv/shops/x --json``) got a usage error,
    "No such option: --json", exit 2, though init would have written the shop's files."""
    result = cli("init", str(tmp_path / "shop"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"config": str(tmp_path / "shop" / "cartrescue.yaml"),
                                         "templates": str(tmp_path / "shop" / "templates")}
    assert (tmp_path / "shop" / "cartrescue.yaml").is_file()


def test_init_refused_under_json_is_the_error_document_alone(tmp_path: Path) -> None:
    assert cli("init", str(tmp_path)).exit_code == 0
    result = cli("init", str(tmp_path), "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "config" and error["message"].endswith("exist already (use --force to overwrite)")


@pytest.mark.parametrize("folder", ["my shop", "it's"])
def test_init_tells_a_command_that_runs_as_pasted_for_a_folder_with_a_space_or_quote(
        tmp_path: Path, folder: str) -> None:
    """It said ``then run `cartrescue run --config my shop/cartrescue.yaml` ``: pasted into a shell,
    that is a config ``my`` and a stray argument, and ``it's`` an unclosed quote."""
    import re
    import shlex

    shop = tmp_path / folder
    result = cli("init", str(shop))
    assert result.exit_code == 0, result.output
    command = re.search(r"then run `(.+)`", result.stderr.replace("\n", ""))
    assert command is not None, result.stderr
    assert shlex.split(command.group(1)) == ["cartrescue", "run", "--config", str(shop / "cartrescue.yaml")]
