"""An export its job stopped writing (or that came out empty) holds back every sending run (exit 3).

A run that reads an old orders export does not know of the orders placed since, and would
remind those customers of carts they bought; one that reads an old carts export reminds of carts
as they were. The file's age (its modification time against the run's clock) is all that shows
it, so ``source.export_stale_after`` (1d) holds back ``--send`` and ``--outbox`` runs, on one
process, on workers and on each shop of ``run-all``; a dry-run plans and says so in a note.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from smtpserver import LoopbackSMTP

from cartrescue.errors import ExitCode
from conftest import NOW, Outcome, Shop, cart, cli, iso

TWO_DAYS = 2 * 86400


def _live(shop: Shop, *names: str) -> Shop:
    """Carts idle for two hours by the real clock (the hold-back looks at the real clock), written."""
    now = datetime.now(timezone.utc)
    shop.add(*(cart(name, now=now) for name in names))
    shop.write()
    return shop


def _age(path: Path, seconds: float = TWO_DAYS) -> None:
    """The export job last wrote ``path`` ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def _run(shop: Shop, *args: str, now: datetime | None = None) -> Outcome:
    """``run`` on the files as they are (``Shop.cli`` would write them again, fresh)."""
    return cli("run", "--json", *args, "--config", str(shop.config_path), *(["--now", iso(now)] if now else []))


def _outbox(shop: Shop) -> list[Path]:
    folder = shop.folder / "out"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


@pytest.mark.smtp
def test_a_stale_orders_export_holds_back_a_sending_run_until_it_is_written_again(shop: Shop) -> None:
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        _live(shop, "c1", "c2")
        _age(shop.folder / "orders.csv")
        held = _run(shop, "--send")
        time.sleep(0.2)
        assert server.messages == []
        _age(shop.folder / "orders.csv", 60)  # the export job runs again
        sent = _run(shop, "--send")
        server.wait_for(2)
    assert held.exit_code == ExitCode.SOURCE, held.output
    error = held.json["error"]
    assert error["code"] == "source" and error["exit_code"] == ExitCode.SOURCE
    assert error["message"].startswith("orders.csv was last written 2d 0h ago (source.export_stale_after 24h 0m)")
    assert "reminded of carts they bought" in error["message"] and "Nothing was delivered" in error["message"]
    assert str(shop.config_path) in error["message"]  # where to raise it
    assert list(held.json) == ["error"]  # held back before any decision: the error document alone (README)
    assert sent.exit_code == 0, sent.output
    assert sent.json["counts"]["sent"] == 2 and len(shop.messages()) == 2


def test_a_stale_carts_export_holds_back_an_outbox_run(shop: Shop) -> None:
    _live(shop, "c1")
    _age(shop.folder / "carts.csv")
    held = _run(shop, "--outbox", str(shop.folder / "out"))
    assert held.exit_code == ExitCode.SOURCE
    assert held.json["error"]["message"].startswith("carts.csv was last written 2d 0h ago")
    assert "orders.csv" not in held.json["error"]["message"]
    assert _outbox(shop) == [] and shop.messages() == []


def test_a_stale_newsletter_export_holds_back_the_run(shop: Shop) -> None:
    (shop.folder / "sends.csv").write_text("email,sent_at,campaign\n", encoding="utf-8")
    shop.configure(source={"newsletters": {"file": "sends.csv"}})
    _live(shop, "c1")
    _age(shop.folder / "sends.csv")
    held = _run(shop, "--outbox", str(shop.folder / "out"))
    assert held.exit_code == ExitCode.SOURCE
    assert held.json["error"]["message"].startswith("sends.csv was last written 2d 0h ago")
    assert "a reminder may land on a newsletter's day" in held.json["error"]["message"]
    assert _outbox(shop) == []


def test_workers_hold_back_before_any_starts_with_one_document(shop: Shop) -> None:
    _live(shop, *(f"c{n}" for n in range(20)))
    _age(shop.folder / "orders.csv")
    held = _run(shop, "--outbox", str(shop.folder / "out"), "--workers", "2")
    assert held.exit_code == ExitCode.SOURCE
    assert held.json["error"]["code"] == "source"  # json.loads: exactly one document
    assert "orders.csv was last written" in held.stderr
    assert _outbox(shop) == []


def test_an_export_within_the_limit_is_fresh(shop: Shop) -> None:
    shop.configure(source={"export_stale_after": "3d"})
    _live(shop, "c1")
    _age(shop.folder / "orders.csv")
    sent = _run(shop, "--outbox", str(shop.folder / "out"))
    assert sent.exit_code == 0, sent.output
    assert sent.json["counts"]["sent"] == 1 and len(_outbox(shop)) == 1


def test_null_switches_the_hold_back_off(shop: Shop) -> None:
    shop.configure(source={"export_stale_after": None})
    _live(shop, "c1")
    _age(shop.folder / "orders.csv", 30 * 86400)
    sent = _run(shop, "--outbox", str(shop.folder / "out"))
    assert sent.exit_code == 0, sent.output
    assert sent.json["counts"]["sent"] == 1 and sent.json["notes"] == []


def test_a_dry_run_on_a_stale_export_plans_and_says_a_sending_run_would_hold_back(shop: Shop) -> None:
    _live(shop, "c1")
    _age(shop.folder / "orders.csv")
    planned = _run(shop)
    assert planned.exit_code == 0, planned.output
    assert planned.json["counts"]["send"] == 1
    [note] = planned.json["notes"]
    assert note.startswith("a sending run would hold back (exit 3): orders.csv was last written 2d 0h ago")


def test_workers_say_the_note_once(shop: Shop) -> None:
    _live(shop, *(f"c{n}" for n in range(20)))
    _age(shop.folder / "orders.csv")
    planned = _run(shop, "--workers", "2")
    assert planned.exit_code == 0, planned.output
    [note] = planned.json["notes"]
    assert note.startswith("a sending run would hold back (exit 3): orders.csv was last written 2d 0h ago")


def test_a_clock_pinned_before_the_export_was_written_finds_it_fresh(shop: Shop) -> None:
    # Demos, tests and re-runs of a past moment (`now:`, --now) read files written after it.
    shop.add(cart("c1"))
    shop.write()
    _age(shop.folder / "orders.csv")  # two days ago is still after NOW
    assert datetime.now(timezone.utc) - timedelta(days=2) > NOW
    sent = _run(shop, "--outbox", str(shop.folder / "out"), now=NOW)
    assert sent.exit_code == 0, sent.output
    assert sent.json["counts"]["sent"] == 1


def test_a_stale_shop_costs_only_its_own_run_in_run_all(make_shop, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stale, fresh = _live(make_shop("stale"), "a1"), _live(make_shop("fresh"), "b1")
    _age(stale.folder / "orders.csv")
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run-all", "--json", "--outbox", "out",
                           str(stale.config_path), str(fresh.config_path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == ExitCode.SOURCE, done.stderr
    first, second = json.loads(done.stdout)["shops"]
    assert first["exit_code"] == ExitCode.SOURCE and "orders.csv was last written" in first["error"]["message"]
    assert second["exit_code"] == 0 and second["counts"]["sent"] == 1
    assert _outbox(stale) == [] and len(_outbox(fresh)) == 1


def test_the_doctor_key_it_replaces_names_where_it_moved(shop: Shop) -> None:
    shop.configure(doctor={"export_stale_after": "1d"})
    shop.add(cart("c1"))
    result = shop.cli("run", "--json")
    assert result.exit_code == ExitCode.CONFIG
    moved = (f"{shop.config_path}: doctor.export_stale_after: moved to source.export_stale_after "
             "(it now also holds back sending runs)")
    assert re.fullmatch(re.escape(moved) + r" \(line \d+\)", result.json["error"]["message"]), result.output


def test_a_report_on_a_stale_orders_export_says_it_shows_less_won_back(shop: Shop) -> None:
    _live(shop, "c1")
    _age(shop.folder / "orders.csv")
    stale = cli("report", "--json", "--config", str(shop.config_path))
    _age(shop.folder / "orders.csv", 60)
    fresh = cli("report", "--json", "--config", str(shop.config_path))
    assert stale.exit_code == 0 and fresh.exit_code == 0, stale.output + fresh.output
    assert ("orders.csv was last written 2d 0h ago (source.export_stale_after 24h 0m): the orders placed since are "
            "not in this report, which shows less won back than there is") in stale.json["notes"]
    assert not any("orders.csv" in note for note in fresh.json["notes"])


def test_a_clock_pinned_ahead_counts_the_files_real_age(shop: Shop) -> None:
    # A replay of the days to come: the export job cannot have written the file in the future.
    later = datetime.now(timezone.utc) + timedelta(days=5)
    shop.add(cart("c1", now=later))
    shop.write()
    sent = _run(shop, "--outbox", str(shop.folder / "out"), now=later)
    assert sent.exit_code == 0, sent.output
    _age(shop.folder / "orders.csv")
    held = _run(shop, "--outbox", str(shop.folder / "out"), now=later)
    assert held.exit_code == ExitCode.SOURCE
    assert held.json["error"]["message"].startswith("orders.csv was last written 2d 0h ago")


def test_an_orders_export_of_zero_bytes_stops_the_run_naming_its_config_key(shop: Shop) -> None:
    # A failed export, read as "no orders", would remind customers of carts they bought. The error
    # names the config file and key that point at it, as an orders file that cannot be opened does.
    _live(shop, "c1")
    (shop.folder / "orders.csv").write_bytes(b"")
    held = _run(shop, "--outbox", str(shop.folder / "out"))
    assert held.exit_code == ExitCode.SOURCE, held.output
    assert held.json["error"]["message"].startswith(
        f"{shop.config_path}: source.orders: {shop.folder / 'orders.csv'}: empty, not even a header")
    assert _outbox(shop) == []


def test_an_orders_export_with_its_header_alone_is_a_shop_without_orders(shop: Shop) -> None:
    _live(shop, "c1")  # conftest writes the header of an empty orders list
    sent = _run(shop, "--outbox", str(shop.folder / "out"))
    assert sent.exit_code == 0, sent.output
    assert sent.json["counts"]["sent"] == 1


def test_a_newsletter_export_of_zero_bytes_stops_the_run(shop: Shop) -> None:
    (shop.folder / "sends.csv").write_bytes(b"")
    shop.configure(source={"newsletters": {"file": "sends.csv"}})
    _live(shop, "c1")
    held = _run(shop, "--outbox", str(shop.folder / "out"))
    assert held.exit_code == ExitCode.SOURCE
    assert held.json["error"]["message"].startswith(
        f"{shop.config_path}: source.newsletters.file: {shop.folder / 'sends.csv'}: empty, not even a header")
