"""``report-all``: every shop's own report for one period, one row a shop, totals per currency;
one shop that cannot be reported costs only its row."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import NOW, Shop, cli, iso, stopped_reading_fifo, stopped_with_shops_running
from reportdata import Experiment, order_row, write_ledger

LATER = NOW + timedelta(days=6)  # every attribution window of the period has closed
PERIOD = ("--since", "2026-11-19", "--until", "2026-11-21")


def _shop(make_shop: Callable[[str], Shop], name: str, currency: str, totals: list[str], discount: int = 0) -> Shop:
    """A shop in ``currency`` whose ledger has 20 messaged and 10 held-out carts, and whose first
    messaged carts ordered ``totals`` within the window (after ``discount`` % off, if any)."""
    shop = make_shop(name).configure(shop={"name": f"Shop {name}", "currency": currency})
    if discount:
        shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": {
            "kind": "percent", "value": discount, "code": "BACK"}}]}})
    write_ledger(shop.folder / "ledger.db", Experiment(20, 10, 0, 0).rows(NOW))
    shop.add_orders(*(order_row(f"o{n}", at=NOW + timedelta(hours=2), total=total, cart_id=f"t{n}", currency=currency)
                      for n, total in enumerate(totals)))
    shop.write()
    return shop


def _mixed_shop(make_shop: Callable[[str], Shop]) -> Shop:
    """A shop without ``shop.currency`` whose first two messaged carts ordered 100 EUR and 900 SEK."""
    mixed = make_shop("mixed")
    mixed.config["shop"] = {key: value for key, value in mixed.config["shop"].items() if key != "currency"}
    write_ledger(mixed.folder / "ledger.db", Experiment(20, 10, 0, 0).rows(NOW))
    mixed.add_orders(order_row("o0", at=NOW + timedelta(hours=2), total="100.00", cart_id="t0", currency="EUR"),
                     order_row("o1", at=NOW + timedelta(hours=2), total="900.00", cart_id="t1", currency="SEK"))
    mixed.write()
    return mixed


def _report_all(*configs: Path) -> Any:
    """``report-all --json`` in this process (``--jobs 1``; the shops in processes: the ``--jobs`` tests)."""
    return cli("report-all", "--json", "--jobs", "1", *PERIOD, "--now", iso(LATER), *map(str, configs))


def _own_report(shop: Shop) -> dict[str, Any]:
    result = shop.cli("report", "--json", *PERIOD, now=LATER)
    assert result.exit_code == 0, result.output
    return result.json


def test_each_row_is_the_shops_own_report_and_amounts_add_up_per_currency(make_shop: Callable[[str], Shop]) -> None:
    shops = [_shop(make_shop, "a", "EUR", ["10.00", "20.50"], discount=20), _shop(make_shop, "b", "SEK", ["1000.00"]),
             _shop(make_shop, "c", "EUR", ["5.25"], discount=50)]
    done = _report_all(*(shop.config_path for shop in shops))
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    own = [_own_report(shop) for shop in shops]
    assert [row["config"] for row in document["shops"]] == [str(shop.config_path) for shop in shops]
    assert [row["shop"] for row in document["shops"]] == ["Shop a", "Shop b", "Shop c"]
    assert [row["summary"] for row in document["shops"]] == [report["summary"] for report in own]
    assert [row["money"] for row in document["shops"]] == [report["money"] for report in own]
    assert [row["currency"] for row in document["shops"]] == ["EUR", "SEK", "EUR"]
    assert [row["exit_code"] for row in document["shops"]] == [0, 0, 0]
    assert set(document["totals"]) == {"EUR", "SEK"}  # kronor are never added to euros
    eur, sek = document["totals"]["EUR"], document["totals"]["SEK"]
    assert eur["shops"] == 2 and Decimal(eur["revenue"]) == Decimal("35.75") and eur["orders"] == 3
    assert eur["messages"] == own[0]["summary"]["messages"] + own[2]["summary"]["messages"] == 40
    assert sek["shops"] == 1 and Decimal(sek["revenue"]) == Decimal("1000.00") and sek["orders"] == 1
    # 20 % off: 10.00 and 20.50 paid are 2.50 and 5.125 of discount (7.625: the report rounds half to even);
    # 50 % off: 5.25 paid, 5.25 of discount
    assert [row["incentive_cost"] for row in document["shops"]] == ["7.62", "0.00", "5.25"]
    assert eur["incentive_cost"] == "12.87" and sek["incentive_cost"] == "0.00"
    assert document["exit_code"] == 0


def test_a_shop_with_a_broken_config_costs_only_its_row(make_shop: Callable[[str], Shop]) -> None:
    good = _shop(make_shop, "good", "EUR", ["12.00"])
    broken = _shop(make_shop, "broken", "EUR", [])
    broken.config_path.write_text("shop: [not closed\n", encoding="utf-8")
    done = _report_all(broken.config_path, good.config_path)
    assert done.exit_code == 2, done.output
    document = json.loads(done.stdout)  # one document, whatever the shops did
    first, second = document["shops"]
    assert first["exit_code"] == 2 and first["error"]["code"] == "config" and "summary" not in first
    assert first["error"]["message"].startswith(f"{broken.config_path}:")
    assert "\n" not in first["error"]["message"]
    assert second["exit_code"] == 0 and second["summary"] == _own_report(good)["summary"]
    assert document["totals"]["EUR"]["shops"] == 1 and document["totals"]["EUR"]["revenue"] == "12.00"
    assert document["exit_code"] == 2
    assert f"error: {broken.config_path}:" in done.stderr


def test_the_table_has_a_line_per_shop_and_a_total_per_currency(make_shop: Callable[[str], Shop]) -> None:
    shops = [_shop(make_shop, "a", "EUR", ["10.00"]), _shop(make_shop, "b", "SEK", ["1000.00"])]
    done = cli("report-all", "--jobs", "1", *PERIOD, "--now", iso(LATER), *(str(shop.config_path) for shop in shops))
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert any("Shop a" in line and "10.00" in line and "EUR" in line for line in lines), done.stdout
    assert any(line.lstrip("│ ").startswith("all in SEK (1 shop)") and "1000.00" in line and "SEK" in line
               for line in lines), done.stdout


def test_each_total_line_names_its_currency_and_so_does_every_incentive_cost(make_shop: Callable[[str], Shop]) -> None:
    """Two shops in euros and one in kronor: the euro total is two shops' and leaves the krona shop
    out. Labelled "all (2 shops)" under a table of three, its sent, orders and carts read as every
    shop's; and an incentive cost without its currency beside another shop's read as one figure."""
    shops = [_shop(make_shop, "a", "EUR", ["10.00"], discount=20), _shop(make_shop, "b", "EUR", ["20.00"]),
             _shop(make_shop, "c", "SEK", ["1000.00"], discount=20)]
    done = cli("report-all", "--jobs", "1", *PERIOD, "--now", iso(LATER), *(str(shop.config_path) for shop in shops))
    assert done.exit_code == 0, done.output
    lines = [line.strip() for line in done.stdout.splitlines()]
    euros = next(line for line in lines if line.startswith("all in EUR (2 shops)"))
    kronor = next(line for line in lines if line.startswith("all in SEK (1 shop)"))
    assert euros.split()[-4:] == ["30.00", "EUR", "2.50", "EUR"], euros
    assert kronor.split()[-4:] == ["1000.00", "SEK", "250.00", "SEK"], kronor
    assert not any(line.startswith("all (") for line in lines), done.stdout
    shop_a = next(line for line in lines if line.startswith("Shop a"))
    assert shop_a.split()[-5:] == ["10.00", "EUR", "2.50", "EUR", "0"], shop_a


def test_help_explains_the_exit_codes_with_an_example() -> None:
    done = cli("report-all", "--help")
    assert done.exit_code == 0
    text = " ".join(done.stdout.split())
    assert "Exit code" in text and "2 a config or ledger error" in text and "3 a source that cannot be read" in text
    assert "0 every shop was reported" in text and "cartrescue report-all --since" in text
    assert "--jobs" in text and "the same whatever N" in text


def test_a_shop_without_a_currency_is_in_no_total_and_a_note_says_so(make_shop: Callable[[str], Shop]) -> None:
    """Its orders in euros and kronor are never added up by its own report (each is given in its
    currency): added to the euros' total, its kronor became euros."""
    euros = _shop(make_shop, "euros", "EUR", ["10.00"])
    mixed = _mixed_shop(make_shop)
    document = json.loads(_report_all(euros.config_path, mixed.config_path).stdout)
    row = document["shops"][1]
    assert row["currency"] is None and row["summary"]["revenue"] is None and row["incentive_cost"] is None
    assert row["by_currency"] == {
        "EUR": {"orders": 1, "revenue": "100.00", "revenue_per_recipient": "5.00", "incentive_cost": "0.00"},
        "SEK": {"orders": 1, "revenue": "900.00", "revenue_per_recipient": "45.00", "incentive_cost": "0.00"}}
    assert document["totals"] == {"EUR": {"shops": 1, "messages": 20, "recipients": 20, "orders": 1,
                                          "converted_carts": 1, "revenue": "10.00", "incentive_cost": "0.00"}}
    assert document["notes"] == [f"{mixed.config_path}: shop.currency is not set: its amounts are in no currency's total"]
    assert document["exit_code"] == 0


def test_a_shop_in_several_currencies_shows_each_in_its_row_and_no_sum(make_shop: Callable[[str], Shop]) -> None:
    """Its row said "1000.00" (100 EUR and 900 SEK added up)."""
    mixed = _mixed_shop(make_shop)
    done = cli("report-all", "--jobs", "1", *PERIOD, "--now", iso(LATER), str(mixed.config_path))
    assert done.exit_code == 0, done.output
    assert "1000.00" not in done.stdout and "100.00 EUR, 900.00 SEK" in done.stdout, done.stdout


def test_quiet_prints_nothing_when_every_shop_is_reported(make_shop: Callable[[str], Shop]) -> None:
    shop = _shop(make_shop, "a", "EUR", ["10.00"])
    done = cli("report-all", "--quiet", *PERIOD, "--now", iso(LATER), str(shop.config_path))
    assert done.exit_code == 0 and done.stdout == "", done.output


def test_on_a_terminal_the_figures_stay_whole_and_a_shops_error_prints_above_the_bar(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """80 columns: the shop's name and config give way, never a figure. The bar of the shops
    reported takes stderr's lines: a shop's error printed by another console went across it."""
    from terminal import plain, run_in_terminal

    shops = [_shop(make_shop, "a", "EUR", ["30.50"]), _shop(make_shop, "b", "SEK", ["1000.00"]),
             _shop(make_shop, "broken", "EUR", [])]
    shops[2].config_path.write_text("shop: [not closed\n", encoding="utf-8")
    code, output = run_in_terminal(["report-all", "--jobs", "1", *PERIOD, "--now", iso(LATER), *(str(s.config_path) for s in shops)],
                                   cwd=tmp_path, columns=80)
    assert code == 2, output
    lines = plain(output)
    assert any(line.startswith(f"error: {shops[2].config_path}:2: not valid YAML") for line in lines), output
    assert any("30.50 EUR" in line for line in lines) and any("1000.00 SEK" in line for line in lines), output
    assert any(line.lstrip().startswith("all") and "30.50 EUR" in line for line in lines), output


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_since_that_is_no_date_is_one_usage_error_and_one_document_before_any_shop_is_read(
        make_shop: Callable[[str], Shop]) -> None:
    """The command line's mistake, not a shop's: once, naming the option, exit 2, and under
    ``--json`` the one document every failed command writes. Said per shop, it was a wall of
    200 identical lines in an agency's round; a shop whose config is broken is not even read."""
    shops = [_shop(make_shop, "a", "EUR", ["10.00"]), _shop(make_shop, "b", "SEK", ["1000.00"])]
    shops[1].config_path.write_text("shop: [not closed\n", encoding="utf-8")
    done = cli("report-all", "--json", "--since", "2026-13-45", "--now", iso(LATER),
               *(str(shop.config_path) for shop in shops))
    assert done.exit_code == 2, done.output
    assert json.loads(done.stdout) == {"error": {
        "code": "config", "exit_code": 2,
        "message": "--since: expected a date like 2026-11-23 or an ISO 8601 time, got '2026-13-45'"}}
    assert _errors(done.stderr) == ["error: --since: expected a date like 2026-11-23 or an ISO 8601 time, got "
                                    "'2026-13-45'"], done.stderr
    assert "not valid YAML" not in done.stderr  # no shop was opened


def test_a_since_after_the_until_is_one_usage_error_and_no_table(make_shop: Callable[[str], Shop]) -> None:
    shops = [_shop(make_shop, "a", "EUR", ["10.00"]), _shop(make_shop, "b", "SEK", ["1000.00"])]
    done = cli("report-all", "--since", "2026-11-22", "--until", "2026-11-20", "--now", iso(LATER),
               *(str(shop.config_path) for shop in shops))
    assert done.exit_code == 2, done.output
    assert done.stdout == ""
    (line,) = _errors(done.stderr)
    assert line.startswith("error: --since 2026-11-22 is after --until 2026-11-20"), line
    assert "cartrescue.yaml" not in done.stderr  # no shop's


def test_a_period_that_depends_on_the_shops_timezone_is_still_judged_per_shop(
        make_shop: Callable[[str], Shop]) -> None:
    """``--until 2026-11-20`` ends at midnight of each shop's own clock: 23:00 UTC in Stockholm,
    05:00 UTC the next day in New York. A period from 23:30 UTC is empty for the one only."""
    stockholm = _shop(make_shop, "stockholm", "EUR", ["10.00"])
    new_york = _shop(make_shop, "new-york", "USD", ["10.00"])
    new_york.configure(shop={"timezone": "America/New_York"}).write()
    done = cli("report-all", "--json", "--jobs", "1", "--since", "2026-11-20T23:30:00Z", "--until", "2026-11-20", "--now", iso(LATER),
               str(stockholm.config_path), str(new_york.config_path))
    assert done.exit_code == 2, done.output
    first, second = json.loads(done.stdout)["shops"]
    assert first["error"]["code"] == "config" and "is not before --until" in first["error"]["message"], first
    assert first["error"]["message"].startswith(f"{stockholm.config_path}:")
    assert second["exit_code"] == 0 and "error" not in second, second


def test_a_shops_warnings_name_its_config_as_run_all_names_them(make_shop: Callable[[str], Shop]) -> None:
    """An order row that cannot be read is said on stderr as the shop's report says it; among an
    agency's 200 shops the line must say which shop's, as run-all's lines do (config first)."""
    good = _shop(make_shop, "good", "EUR", ["10.00"])
    bad = _shop(make_shop, "bad", "EUR", ["10.00"])
    bad.add_orders(order_row("o-bad", at=NOW + timedelta(hours=3), total="abc", cart_id="t9")).write()
    done = _report_all(good.config_path, bad.config_path)
    assert done.exit_code == 0, done.output
    warnings = [line for line in done.stderr.splitlines() if "warning:" in line]
    assert warnings == [f"{bad.config_path}: warning: {bad.folder / 'orders.csv'}:3: order o-bad: total: not a "
                        "number: 'abc'"], done.stderr


def test_a_shops_warning_that_names_its_config_already_is_not_named_twice(make_shop: Callable[[str], Shop]) -> None:
    shop = _shop(make_shop, "a", "EUR", ["10.00"])
    shop.configure(sms={"sender": "Shop"}).write()  # a key nothing reads: its warning names the config
    done = _report_all(shop.config_path)
    assert done.exit_code == 0, done.output
    (line,) = [line for line in done.stderr.splitlines() if "sms.sender" in line]
    assert line.startswith(f"warning: {shop.config_path}: sms.sender: ignored"), line


@pytest.mark.parametrize("others", [0, 1], ids=["one-shop", "under-the-bar"])
def test_on_a_terminal_a_shops_warnings_name_its_config_once(
        make_shop: Callable[[str], Shop], tmp_path: Path, others: int) -> None:
    """On a terminal the console writes ``warning:`` in colour (one shop: straight to the
    terminal; more: through the bar of the shops): named as elsewhere, and a line that names the
    config already not named twice."""
    from terminal import plain, run_in_terminal

    good = [_shop(make_shop, f"good{n}", "EUR", ["10.00"]) for n in range(others)]
    bad = _shop(make_shop, "bad", "EUR", ["10.00"])
    bad.configure(sms={"sender": "Shop"})
    bad.add_orders(order_row("o-bad", at=NOW + timedelta(hours=3), total="abc", cart_id="t9")).write()
    code, output = run_in_terminal(["report-all", *PERIOD, "--now", iso(LATER), *(str(s.config_path) for s in good),
                                    str(bad.config_path)], cwd=tmp_path, columns=300)
    assert code == 0, output
    lines = plain(output)
    assert f"{bad.config_path}: warning: {bad.folder / 'orders.csv'}:3: order o-bad: total: not a number: 'abc'" \
        in lines, output
    assert any(line.startswith(f"warning: {bad.config_path}: sms.sender: ignored") for line in lines), output
    assert not any(line.count(str(bad.config_path)) > 1 for line in lines), output


# --jobs N: each shop's report in a process of its own, forked as run-all forks its shops' runs
# (the real command line: a test runner's captured streams are no process's own to fork with).


def _report_all_command(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cartrescue.cli", "report-all", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def _slow(shop: Shop, rows: int = 200_000, bad_last: bool = False) -> Shop:
    """``shop`` with a big orders export (a second or more to read), before the period; its
    last row unreadable if ``bad_last`` (said on stderr once the whole file has been read)."""
    at = iso(NOW - timedelta(days=30))
    with open(shop.folder / "orders.csv", "a", encoding="utf-8") as orders:
        orders.writelines(f"x{n},,,,1.00,EUR,complete,{at},yes\n" for n in range(rows))
        if bad_last:
            orders.write(f"x-bad,,,t9,abc,EUR,complete,{iso(NOW + timedelta(hours=3))},yes\n")
    return shop


def _agency(make_shop: Callable[[str], Shop]) -> list[Shop]:
    """Five shops: two currencies, one whose config is broken, one whose orders cannot be read."""
    shops = [_shop(make_shop, "a", "EUR", ["10.00", "20.50"], discount=20), _shop(make_shop, "b", "SEK", ["1000.00"]),
             _shop(make_shop, "broken", "EUR", []), _shop(make_shop, "unreadable", "EUR", ["3.00"]),
             _shop(make_shop, "c", "EUR", ["5.25"], discount=50)]
    shops[2].config_path.write_text("shop: [not closed\n", encoding="utf-8")
    (shops[3].folder / "orders.csv").unlink()
    (shops[3].folder / "orders.csv").mkdir()  # there, and no file to read
    return shops


@pytest.mark.slow
def test_the_rows_and_totals_are_the_same_with_one_job_and_with_three(make_shop: Callable[[str], Shop],
                                                                       tmp_path: Path) -> None:
    shops = _agency(make_shop)
    args = ["--json", *PERIOD, "--now", iso(LATER), *(shop.config_path for shop in shops)]
    alone, together = (_report_all_command("--jobs", jobs, *args, cwd=tmp_path) for jobs in ("1", "3"))
    assert alone.returncode == together.returncode == 2, alone.stderr + together.stderr  # config ranks above source
    assert json.loads(together.stdout) == json.loads(alone.stdout)
    document = json.loads(together.stdout)
    assert [row["exit_code"] for row in document["shops"]] == [0, 0, 2, 3, 0]
    assert [row["error"]["code"] for row in document["shops"] if "error" in row] == ["config", "source"]
    assert set(document["totals"]) == {"EUR", "SEK"} and document["totals"]["EUR"]["shops"] == 2
    assert sorted(alone.stderr.splitlines()) == sorted(together.stderr.splitlines())  # the same lines, named once
    assert f"error: {shops[2].config_path}:2: not valid YAML" in together.stderr


@pytest.mark.slow
def test_rows_keep_the_configs_order_when_a_later_shop_finishes_first(make_shop: Callable[[str], Shop],
                                                                       tmp_path: Path) -> None:
    first = _slow(_shop(make_shop, "big", "EUR", ["10.00"]), bad_last=True)
    later = _shop(make_shop, "small", "SEK", ["1000.00"])
    later.add_orders(order_row("o-bad", at=NOW + timedelta(hours=3), total="abc", cart_id="t9")).write()
    done = _report_all_command("--json", "--jobs", "2", *PERIOD, "--now", iso(LATER), first.config_path,
                               later.config_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = [line.split(":")[0] for line in done.stderr.splitlines() if "warning:" in line]
    assert said == [str(later.config_path), str(first.config_path)], done.stderr  # the later shop ended first
    document = json.loads(done.stdout)
    assert [row["config"] for row in document["shops"]] == [str(first.config_path), str(later.config_path)]
    assert [row["shop"] for row in document["shops"]] == ["Shop big", "Shop small"]


@pytest.mark.slow
def test_a_stop_with_two_jobs_still_prints_one_document(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """SIGTERM while two shops' reports run: they are stopped, the third is never started, and
    the one document has a row for each (as run-all's), exit 130."""
    shops = [_slow(_shop(make_shop, f"big{n}", "EUR", ["10.00"]), rows=400_000) for n in range(2)]
    shops.append(_shop(make_shop, "small", "SEK", ["1000.00"]))
    code, out, err = stopped_with_shops_running(  # both big shops' reports are reading their orders
        ["report-all", "--json", "--jobs", "2", *PERIOD, "--now", iso(LATER), *(str(shop.config_path) for shop in shops)],
        tmp_path, 2)
    assert code == 130, err
    document = json.loads(out)  # one document
    assert document["exit_code"] == 130 and document["error"]["code"] == "interrupted"
    assert [row["config"] for row in document["shops"]] == [str(shop.config_path) for shop in shops]
    assert [(row["exit_code"], row["error"]["code"]) for row in document["shops"]] == [(130, "interrupted")] * 3
    assert document["shops"][2]["error"]["message"] == f"{shops[2].config_path}: not started: report-all was interrupted"
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_stop_with_one_job_still_prints_one_document(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """SIGTERM while ``--jobs 1`` reads the second shop's config (a FIFO it waits on): as
    doctor-all's, the one document has a row a shop, the stopped one and the unstarted one
    interrupted, and exit 130. Before, it printed no document at all."""
    import os

    shops = [_shop(make_shop, name, "EUR", ["10.00"]) for name in ("a", "b", "c")]
    config = shops[1].config_path
    config.unlink()
    os.mkfifo(config)
    process = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", "report-all", "--json", "--jobs", "1",
                                *PERIOD, "--now", iso(LATER), *(str(shop.config_path) for shop in shops)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = stopped_reading_fifo(process, config)  # while the second shop's report waits for its config
    assert process.returncode == 130, err
    document = json.loads(out)  # one document
    assert document["exit_code"] == 130 and document["error"]["code"] == "interrupted"
    assert [row["config"] for row in document["shops"]] == [str(shop.config_path) for shop in shops]
    assert [row["exit_code"] for row in document["shops"]] == [0, 130, 130]
    assert document["shops"][1]["error"]["message"] == f"{shops[1].config_path}: interrupted: its report was stopped"
    assert document["shops"][2]["error"]["message"] == f"{shops[2].config_path}: not started: report-all was interrupted"
    assert document["totals"]["EUR"]["shops"] == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("jobs", ["1", "2"], ids=["in-process", "processes"])
def test_a_config_error_in_a_folder_not_named_in_utf8_names_the_config_once(
        make_shop: Callable[[str], Shop], tmp_path: Path, jobs: str) -> None:
    """As run-all's (tests/test_run_all.py): the row's error names the config once, as the row's
    ``config`` writes it (``caf\\xe9``), and so does the line on stderr."""
    import os

    good = _shop(make_shop, "good", "EUR", ["12.00"])
    broken = _shop(make_shop, "broken", "EUR", [])
    broken.configure(eligibility={"cutoff": "45x"}).write()
    latin = tmp_path / os.fsdecode(b"caf\xe9")
    broken.folder.rename(latin)
    done = _report_all_command("--json", "--jobs", jobs, *PERIOD, "--now", iso(LATER), good.config_path,
                               latin / "cartrescue.yaml", cwd=tmp_path)
    assert done.returncode == 2, ascii(done.stderr)
    row = json.loads(done.stdout)["shops"][1]
    assert row["config"] == str(tmp_path / "caf\\xe9" / "cartrescue.yaml")
    message = row["error"]["message"]
    assert message.startswith(f"{row['config']}: eligibility.cutoff") and message.count("cartrescue.yaml") == 1, ascii(message)
    message.encode("utf-8")  # no lone surrogate
    said = [line for line in done.stderr.splitlines() if "eligibility.cutoff" in line]
    assert said and all(line.count("cartrescue.yaml") == 1 for line in said), ascii(done.stderr)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_quiet_still_says_a_shops_bad_order_row_as_report_quiet_does(make_shop: Callable[[str], Shop], jobs: str) -> None:
    """``--quiet`` is for cron, which mails what is printed: the table and the notes go, a
    warning (an order left out of the figures) stays, as ``report --quiet`` keeps it."""
    good = _shop(make_shop, "good", "EUR", ["10.00"])
    bad = _shop(make_shop, "bad", "EUR", ["10.00"])
    bad.add_orders(order_row("o-bad", at=NOW + timedelta(hours=3), total="abc", cart_id="t9")).write()
    own = bad.cli("report", "--quiet", *PERIOD, now=LATER)
    done = cli("report-all", "--quiet", "--jobs", jobs, *PERIOD, "--now", iso(LATER), str(good.config_path),
               str(bad.config_path))
    assert done.exit_code == 0 == own.exit_code, done.output
    assert done.stdout == "" == own.stdout
    (theirs,) = [line for line in own.stderr.splitlines() if "warning:" in line]
    assert [line for line in done.stderr.splitlines() if "warning:" in line] == [f"{bad.config_path}: {theirs}"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_table_says_a_shops_own_notes_naming_its_config(make_shop: Callable[[str], Shop], jobs: str) -> None:
    """A shop's report notes what its figures lack (an orders export its job stopped writing:
    "shows less won back than there is"); the table's row alone showed the smaller figure as if
    it were all, so each note is said on stderr, naming its config, as ``report`` says it."""
    import os

    good = _shop(make_shop, "good", "EUR", ["10.00"])
    stale = _shop(make_shop, "stale", "EUR", ["10.00"])
    written = (LATER - timedelta(days=30)).timestamp()
    os.utime(stale.folder / "orders.csv", (written, written))
    mine = cli("report", "--json", *PERIOD, "--now", iso(LATER), "--config", str(stale.config_path))
    own = json.loads(mine.stdout)["notes"]
    assert any("orders.csv was last written" in note for note in own), own
    done = cli("report-all", "--jobs", jobs, *PERIOD, "--now", iso(LATER), str(good.config_path), str(stale.config_path))
    assert done.exit_code == 0, done.output
    said = " ".join(done.stderr.split())
    for note in own:
        assert f"note: {stale.config_path}: {' '.join(note.split())}" in said, done.stderr
    assert str(good.config_path) not in said
