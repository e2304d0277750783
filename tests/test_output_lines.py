"""What cron mails: stdout that is not a terminal gets tables whose lines end at their content.

Rich pads each cell, and a table's title, to the width of its column or table: a ``doctor-all``
line was 592 characters of cron mail, mostly trailing spaces. A terminal shows what it did."""

from __future__ import annotations

import os
from typing import Callable

import pytest

from conftest import Shop, cart, cli


def _no_padding(stdout: str) -> None:
    lines = stdout.splitlines()
    assert lines, "nothing printed"
    assert [line for line in lines if line != line.rstrip(" ")] == []


def _ran(shop: Shop) -> Shop:
    shop.add(cart("c1", email="c1@example.com"), cart("a-much-longer-cart-id", email="longer@example.com"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), now=None).exit_code == 0
    return shop


def test_doctor_all_lines_into_a_pipe_end_at_their_content(make_shop: Callable[[str], Shop]) -> None:
    short, long = _ran(make_shop("a")), _ran(make_shop("b-with-a-much-longer-folder-name"))
    os.utime(short.folder / "carts.csv", (0, 0))  # a long failure reason on one row, none on the other
    done = cli("doctor-all", "--no-smtp", "--jobs", "1", str(short.config_path), str(long.config_path))
    _no_padding(done.stdout)


def test_run_all_and_report_all_lines_into_a_pipe_end_at_their_content(make_shop: Callable[[str], Shop]) -> None:
    shops = [_ran(make_shop("a")), _ran(make_shop("b-with-a-much-longer-folder-name"))]
    configs = [str(shop.config_path) for shop in shops]
    _no_padding(cli("run-all", *configs).stdout)
    _no_padding(cli("report-all", *configs).stdout)


def test_run_codes_and_suppress_lists_into_a_pipe_end_at_their_content(shop: Shop) -> None:
    shop.add(cart("c1", email="c1@example.com"), cart("a-much-longer-cart-id", email="longer@example.com"))
    shop.write()
    _no_padding(shop.cli("run").stdout)
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "incentive": {
        "kind": "percent", "value": 10, "valid_for": "3d", "codes": {"pool": "comeback", "pattern": "CR-{random:8}"}}}]}})
    _no_padding(shop.cli("codes", "list", "--status", "all").stdout)
    assert shop.cli("suppress", "import", str(_list(shop)), now=None).exit_code == 0
    _no_padding(shop.cli("suppress", "list", now=None).stdout)


def _list(shop: Shop) -> os.PathLike[str]:
    path = shop.folder / "optouts.txt"
    path.write_text("a@example.com\nsomeone-with-a-long-address@example.com\n", encoding="utf-8")
    return path


def test_text_that_is_no_table_keeps_its_spaces_into_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    """A message's text (``preview``) is printed as it is: a ``-- `` signature line keeps its space."""
    from cartrescue.commands.common import out_console

    out_console().print("Thanks\n-- \nThe shop")
    assert capsys.readouterr().out == "Thanks\n-- \nThe shop\n"
