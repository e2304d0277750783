"""docs/reporting.md's first example runs as written (on a copy of the demo shop)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from conftest import REPO, cli


def test_the_reporting_example_runs_on_the_demo_shop(tmp_path: Path) -> None:
    text = (REPO / "docs" / "reporting.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.+?)\n```", text, re.S)
    assert block is not None
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    for line in block.group(1).splitlines():
        line = line.replace("/tmp/", f"{tmp_path}/").replace(" examples/", f" {tmp_path}/examples/")
        words = shlex.split(line)
        assert words[0] == "cartrescue"
        result = cli(*words[1:])
        assert result.exit_code == 0, result.output
    page = (tmp_path / "cartrescue-report.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 3
    assert "By tier" in result.stdout and "attributed" in result.stdout
