"""``doctor-all``: every shop's ``doctor`` in one command, one row a shop, one exit code; one shop
whose config cannot even be loaded costs only its row."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import update
from tcpproxy import SilentServer

from conftest import Shop, cart, cli, stopped_with_shops_running


def _healthy(make_shop: Callable[[str], Shop], name: str) -> Shop:
    """A shop whose doctor passes, and says the same for a while: its last successful run and its
    exports an hour and 30 s old ("1h 0m ago" for the next 30 s)."""
    from cartrescue.ledger import Ledger, Run

    shop = make_shop(name).configure(shop={"name": f"Shop {name}"})
    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), now=None).exit_code == 0
    before = datetime.now(timezone.utc) - timedelta(hours=1, seconds=30)
    for export in ("carts.csv", "orders.csv"):
        os.utime(shop.folder / export, (before.timestamp(), before.timestamp()))
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        with ledger.engine.begin() as conn:
            conn.execute(update(Run.__table__).values(finished_at=before))  # type: ignore[attr-defined]
    finally:
        ledger.close()
    return shop


def _broken(make_shop: Callable[[str], Shop], name: str) -> Shop:
    shop = _healthy(make_shop, name)
    shop.config_path.write_text("shop: [not closed\n", encoding="utf-8")
    return shop


def _without_carts(make_shop: Callable[[str], Shop], name: str) -> Shop:
    shop = _healthy(make_shop, name)
    (shop.folder / "carts.csv").unlink()
    return shop


def _doctor_all(*args: str | Path) -> Any:
    """``doctor-all --no-smtp --jobs 1 ARGS`` in this process."""
    return cli("doctor-all", "--no-smtp", "--jobs", "1", *map(str, args))


def _own_doctor(shop: Shop) -> dict[str, Any]:
    done = cli("doctor", "--json", "--no-smtp", "--config", str(shop.config_path))
    return json.loads(done.stdout)


def test_healthy_shops_exit_0_and_quiet_prints_nothing(make_shop: Callable[[str], Shop]) -> None:
    shops = [_healthy(make_shop, "a"), _healthy(make_shop, "b")]
    done = _doctor_all("--quiet", *(shop.config_path for shop in shops))
    assert done.exit_code == 0, done.output
    assert done.stdout == "" and done.stderr == ""


def test_a_broken_config_and_a_missing_csv_cost_only_their_rows_and_the_worst_code_wins(
        make_shop: Callable[[str], Shop]) -> None:
    shops = [_without_carts(make_shop, "nocsv"), _healthy(make_shop, "good"), _broken(make_shop, "broken")]
    done = _doctor_all("--json", *(shop.config_path for shop in shops))
    assert done.exit_code == 2, done.output  # config ranks above source, whatever their order
    document = json.loads(done.stdout)
    assert [row["exit_code"] for row in document["shops"]] == [3, 0, 2]
    assert document["exit_code"] == 2
    for row, shop in zip(document["shops"], shops):  # each row is the shop's own doctor's
        own = _own_doctor(shop)
        assert row["exit_code"] == own["exit_code"]
        assert _without_ages(json.dumps(row["checks"])) == _without_ages(json.dumps(own["checks"]))


def test_a_config_error_outranks_a_stale_shop_whatever_their_order(make_shop: Callable[[str], Shop]) -> None:
    """Stale (5) ranked as an unknown code, with a bug: the first of the two in the list won."""
    stale = make_shop("stale").add(cart("c1"))
    stale.write()  # never ran: its staleness check fails, exit 5
    broken = _broken(make_shop, "broken")
    for order in ((stale, broken), (broken, stale)):
        done = _doctor_all("--json", *(shop.config_path for shop in order))
        assert sorted(row["exit_code"] for row in json.loads(done.stdout)["shops"]) == [2, 5]
        assert done.exit_code == 2, done.output


def test_json_is_one_document_with_a_row_per_shop_in_the_configs_order(make_shop: Callable[[str], Shop]) -> None:
    shops = [_healthy(make_shop, "b"), _broken(make_shop, "a"), _healthy(make_shop, "c")]
    done = _doctor_all("--json", *(shop.config_path for shop in shops))
    document = json.loads(done.stdout)  # one document
    assert set(document) == {"shops", "exit_code"}
    assert [row["config"] for row in document["shops"]] == [str(shop.config_path) for shop in shops]
    assert [row["shop"] for row in document["shops"]] == ["Shop b", None, "Shop c"]
    assert [{check["name"] for check in row["checks"]} >= {"config", "ledger", "source", "staleness"}
            for row in document["shops"]] == [True] * 3


def test_quiet_prints_one_line_per_failed_check_as_doctor_quiet_does(make_shop: Callable[[str], Shop]) -> None:
    good, broken, nocsv = _healthy(make_shop, "good"), _broken(make_shop, "broken"), _without_carts(make_shop, "nocsv")
    done = _doctor_all("--quiet", good.config_path, broken.config_path, nocsv.config_path)
    assert done.exit_code == 2, done.output
    own = [cli("doctor", "--quiet", "--no-smtp", "--config", str(shop.config_path)).stdout for shop in (broken, nocsv)]
    assert done.stdout == "".join(own)
    lines = done.stdout.splitlines()
    assert [line.split(": ")[1] for line in lines] == [str(broken.config_path), str(nocsv.config_path)], lines
    assert [line.split(": ")[2].split(" ")[0] for line in lines] == ["config", "source"], lines


def test_the_table_has_a_row_per_shop_the_failed_checks_and_a_summary(make_shop: Callable[[str], Shop]) -> None:
    good, nocsv = _healthy(make_shop, "good"), _without_carts(make_shop, "nocsv")
    done = _doctor_all(good.config_path, nocsv.config_path)
    assert done.exit_code == 3, done.output
    lines = done.stdout.splitlines()
    row = next(line for line in lines if str(nocsv.config_path) in line)
    assert "fail" in row and "source" in row and "Shop nocsv" in row
    assert "ok" in next(line for line in lines if str(good.config_path) in line)
    assert "1 healthy, 1 failing" in done.stdout


def test_a_timeout_that_is_no_duration_is_one_usage_error_before_any_shop(make_shop: Callable[[str], Shop]) -> None:
    shop = _healthy(make_shop, "a")
    done = _doctor_all("--json", "--timeout", "soon", shop.config_path)
    assert done.exit_code == 2
    assert json.loads(done.stdout)["error"]["message"].startswith("--timeout: ")


def test_help_documents_the_ranking_with_a_cron_line() -> None:
    done = cli("doctor-all", "--help")
    assert done.exit_code == 0
    text = " ".join(done.stdout.split())
    assert "0 * * * * cartrescue doctor-all --quiet /srv/shops/*/cartrescue.yaml" in text
    assert "2 config or ledger" in text and "5 stale" in text and "--jobs" in text


def _command(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cartrescue.cli", "doctor-all", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def _without_ages(text: str) -> str:
    """``text`` with each "… ago" age written as ``N ago``: the two runs read the clock apart, and
    under load more than the 30 s a healthy shop's "1h 0m ago" lasts (a minute turned between them)."""
    return re.sub(r"\b(\d+[dhm] )*\d+[dhms] ago\b", "N ago", text)


@pytest.mark.slow
def test_one_job_and_three_give_the_same_json(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    shops = [_healthy(make_shop, "a"), _broken(make_shop, "b"), _without_carts(make_shop, "c"),
             _healthy(make_shop, "d")]
    args = ["--json", "--no-smtp", *(shop.config_path for shop in shops)]
    alone, together = (_command("--jobs", jobs, *args, cwd=tmp_path) for jobs in ("1", "3"))
    assert alone.returncode == together.returncode == 2, alone.stderr + together.stderr
    assert _without_ages(json.dumps(json.loads(together.stdout), indent=1)).splitlines() == \
        _without_ages(json.dumps(json.loads(alone.stdout), indent=1)).splitlines()
    assert [row["exit_code"] for row in json.loads(together.stdout)["shops"]] == [0, 2, 3, 0]


@pytest.mark.slow
def test_a_stop_with_two_jobs_still_prints_one_document(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """SIGTERM while two shops' doctors wait on a relay that never greets: they are stopped, the
    third is never started, and the one document has a row for each, exit 130."""
    shops = [_healthy(make_shop, name) for name in ("a", "b", "c")]
    with SilentServer() as port:
        for shop in shops:
            shop.configure(smtp={"host": "127.0.0.1", "port": port, "security": "none"}).write()
        code, out, err = stopped_with_shops_running(  # both first shops' doctors wait on the relay
            ["doctor-all", "--json", "--jobs", "2", "--timeout", "60s", *(str(shop.config_path) for shop in shops)],
            tmp_path, 2, settle=1.0)
    assert code == 130, err
    document = json.loads(out)  # one document
    assert document["exit_code"] == 130 and document["error"]["code"] == "interrupted"
    assert [row["config"] for row in document["shops"]] == [str(shop.config_path) for shop in shops]
    assert [row["exit_code"] for row in document["shops"]] == [130] * 3
    assert document["shops"][2]["error"]["message"] == f"{shops[2].config_path}: not started: doctor-all was interrupted"
    assert "Traceback" not in err
