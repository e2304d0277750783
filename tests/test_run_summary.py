"""The summary panel of `run` says what `--json` says: a cart whose message could not be
rendered is not counted as one the run would send (a dry-run), and a delivering run's counts add
up (every send is delivered or failed, its render errors among the failures)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from smtpserver import Fault, LoopbackSMTP

from conftest import REPO, Shop, cart

TWO_ITEMS = (("SKU-1", "Blue mug", 1, "25.00"), ("SKU-2", "Red mug", 1, "20.00"))


def _shop_failing_for_one_item_carts(shop: Shop, tmp_path: Path) -> Shop:
    """Three carts; the first step's text names the second item, which a one-item cart lacks."""
    folder = tmp_path / "templates"
    shutil.copytree(REPO / "templates", folder)
    path = folder / "en" / "reminder-1.txt"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("{{ cart.total }}", "{{ cart.total }} (then {{ items[1].name }})", 1),
                    encoding="utf-8")
    shop.configure(templates=str(folder))
    shop.add(cart("c1", items=TWO_ITEMS), cart("c2", items=TWO_ITEMS), cart("c3"))
    return shop


def _panel(stdout: str) -> str:
    """The summary panel's words on one line (rich wraps and frames them)."""
    start = stdout.index("cartrescue")
    return " ".join(line.strip("│╭╮╰╯─ ") for line in stdout[start:].splitlines())


def test_a_dry_run_does_not_count_a_message_that_could_not_be_rendered_as_a_send(
        shop: Shop, tmp_path: Path) -> None:
    _shop_failing_for_one_item_carts(shop, tmp_path)
    as_json = shop.cli("run", "--json")
    assert as_json.json["counts"]["failed"] == 1, as_json.stdout
    result = shop.cli("run")
    assert result.exit_code == 1, result.output
    panel = _panel(result.stdout)
    assert "3 carts: 2 send, 1 could not be rendered (see the warnings), 0 defer" in panel, result.stdout


def test_an_outbox_run_counts_a_message_that_could_not_be_rendered_among_the_failed(
        shop: Shop, tmp_path: Path) -> None:
    _shop_failing_for_one_item_carts(shop, tmp_path)
    result = shop.cli("run", "--outbox", str(tmp_path / "outbox"))
    assert result.exit_code == 1, result.output
    panel = _panel(result.stdout)
    assert "3 carts: 3 send, 0 defer" in panel, result.stdout
    assert "delivered 2, failed 1" in panel, result.stdout
    assert "failed: 1 × en/reminder-1.txt" in panel, result.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2


def test_the_carts_summary_names_its_mode_as_its_json_does_and_no_option_it_lacks(shop: Shop) -> None:
    """`carts` renders nothing: its panel says `plan`, as `carts --json` does, and points to the
    commands that render, not to `--eml`, `--send` or `--outbox`, which `carts` refuses."""
    shop.add(cart("c1"), cart("c2"))
    assert shop.cli("carts", "--json").json["mode"] == "plan"
    result = shop.cli("carts")
    assert result.exit_code == 0, result.output
    panel = _panel(result.stdout)
    assert "mode plan at" in panel and "2 send" in panel, panel
    assert "plan: nothing was rendered, delivered or recorded" in panel, panel
    for option in ("--eml", "--send", "--outbox"):
        assert option not in panel, panel
        assert shop.cli("carts", option).exit_code == 2


def test_a_dry_run_summary_still_points_to_eml_and_the_delivering_options(shop: Shop) -> None:
    shop.add(cart("c1"))
    panel = _panel(shop.cli("run").stdout)
    assert "mode dry-run at" in panel and "--eml DIR writes the messages to read" in panel, panel


def test_the_panel_counts_every_failure_it_does_not_name(shop: Shop, tmp_path: Path) -> None:
    """The tally keeps 20 kinds of failure; on a disk that filled under `--outbox` each failure
    names its own file, so there are more kinds. The panel names three and said '17 for other
    reasons' of 25 failed: the last line counts every failure the lines above it do not."""
    outbox = tmp_path / "outbox"
    for n in range(25):
        shop.add(cart(f"c{n:02d}"))
        for claim in range(1, 26):  # a folder where the file would go: cannot write it
            (outbox / f"csv_c{n:02d}-step1-{claim}.eml").mkdir(parents=True)
    result = shop.cli("run", "--outbox", str(outbox))
    assert result.exit_code == 1, result.output
    panel = _panel(result.stdout)
    assert "delivered 0, failed 25" in panel, panel
    assert panel.count("failed: 1 × cannot write") == 3, panel
    assert "failed: 22 for other reasons (see --json)" in panel, panel


@pytest.mark.smtp
def test_the_panel_names_a_failures_reason_to_its_end(shop: Shop) -> None:
    """The panel (all cron's mail says under --quiet) cut each reason at 160 characters, mid-word:
    a relay that never greeted was '… no greeting came (a port tha', its advice lost."""
    advice = ("5.7.1 this relay takes mail from the shop's own network only, and this host is not in it: "
              "send through smtp.example.com on port 587 with the shop's account")
    with LoopbackSMTP(faults=[Fault(".*", f"550 {advice} instead (ask the postmaster to add this host)")]) as server:
        shop.add(cart("c1")).configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--quiet")
    assert result.exit_code == 1, result.output
    panel = " ".join(_panel(result.stdout).split())
    assert "instead (ask the postmaster to add this host)" in panel, panel
