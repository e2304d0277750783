"""Tables fit the terminal: at 80 columns one line a row, nothing a person copies cut; `--wide`
and wide terminals show every column; a terminal sees a progress bar with a total and an ETA."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from terminal import plain, run_in_terminal

from cartrescue.ledger import Ledger
from conftest import NOW, REPO, Shop, cart

LONG_EMAIL = "a.very.long.address.of.somebody.who.shops.a.lot@customers.example.com"
MARKUP_ID = "[bold red]boom[/]-cart"


def _table_rows(stdout: str) -> list[str]:
    """The body rows of the first rich table printed (between the header rule and the end rule)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    end = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return lines[start + 1:end]


def _shop_with_long_values(shop: Shop) -> Shop:
    shop.add(cart("c-short"), cart("c-long", email=LONG_EMAIL), cart(MARKUP_ID, email="markup@example.com"))
    return shop


def test_at_80_columns_the_carts_table_has_one_line_per_cart_and_never_cuts_a_reason(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    _shop_with_long_values(shop).add(cart("c-older", email="twice@example.com", idle=timedelta(hours=5)),
                                     cart("c-newer", email="twice@example.com"))
    result = shop.cli("carts")
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    rows = _table_rows(result.stdout)
    assert len(rows) == 5  # one line per cart: nothing wrapped
    header = result.stdout.splitlines()[1]
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == ["cart", "email", "step", "action", "reason"]
    long_row = next(row for row in rows if "c-long" in row)
    assert "a.very.long.address" in long_row and "…" in long_row and LONG_EMAIL not in long_row
    assert "newer_cart_for_address" in result.stdout  # the longest reason code, whole
    assert "[bold red]" in result.stdout  # data is shown as text, never read as markup
    assert "--wide shows every column" in result.stdout


def test_at_200_columns_the_table_shows_tier_score_and_the_subject(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = _shop_with_long_values(shop).cli("run")
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[1]
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == [
        "cart", "email", "tier", "score", "step", "action", "reason", "detail"]
    rows = _table_rows(result.stdout)
    assert len(rows) == 3 and all(len(row) <= 200 for row in rows)
    assert LONG_EMAIL in result.stdout  # room enough: nothing cut
    assert "Ann, you left something in your cart" in result.stdout  # the subject, as the detail of a send


def test_wide_shows_every_column_even_at_80(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = _shop_with_long_values(shop).cli("carts", "--wide")
    assert result.exit_code == 0, result.output
    assert "detail" in result.stdout.splitlines()[1] and "score" in result.stdout.splitlines()[1]
    assert "…" not in "".join(_table_rows(result.stdout))  # folded over lines, never cut


def test_delivered_sends_show_their_outcome_in_the_compact_table(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    shop.add(cart("c1"))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 0, result.output
    (row,) = _table_rows(result.stdout)
    assert re.search(r"│ send\s+│ sent\s+│$", row)


def _hand_out_long_codes(shop: Shop) -> None:
    """Three carts of long addresses, each handed a 33-character code by a delivering run."""
    shop.add(*(cart(f"c{i}", email=f"{i}.{LONG_EMAIL}") for i in range(3)))
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3",
         "incentive": {"kind": "percent", "value": 10, "valid_for": "3d",
                       "codes": {"pool": "a-pool-with-a-long-name", "pattern": "COMEBACK-{random:24}"}}}]}})
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0


def test_codes_list_at_80_columns_never_cuts_a_code(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    _hand_out_long_codes(shop)
    result = shop.cli("codes", "list", "--status", "all")
    assert result.exit_code == 0, result.output
    codes = re.findall(r"COMEBACK-[A-Z0-9]{24}", result.stdout)
    assert len(set(codes)) == 3  # every code whole, on its row
    listing = result.stdout.splitlines()
    assert max(len(line) for line in listing) <= 80
    assert sum(1 for line in listing if "COMEBACK-" in line) == 3  # one line each
    wide = shop.cli("codes", "list", "--status", "all", "--wide").stdout.split("code pools", 1)[1]
    headers = [line for line in wide.splitlines() if line.startswith("┃")]
    assert headers[1].count("┃") == 8  # pool, code, status, email, step, allocated_at, expires_at


def test_suppress_list_at_80_columns_is_one_line_a_suppression(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    ledger.suppress("ab" * 32, "bounced: no such user", "smtp: 550 5.1.1 <somebody@example.com>: Recipient "
                    "address rejected: User unknown in virtual mailbox table " * 2)
    ledger.close()
    result = shop.cli("suppress", "list", now=None)
    assert result.exit_code == 0, result.output
    rows = _table_rows(result.stdout)
    assert len(rows) == 1 and len(rows[0]) <= 80 and "bounced: no such user" in rows[0]
    wide = _table_rows(shop.cli("suppress", "list", "--wide", now=None).stdout)
    assert "".join(row.split("│")[1].strip() for row in wide) == "ab" * 32  # whole, folded over lines


def test_doctor_at_80_columns_wraps_details_under_themselves(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    shop.add(cart("c1"))
    result = shop.cli("doctor", "--no-smtp", now=None)
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith("config ") and "│" not in result.stdout  # a list, not a squeezed table
    assert any(line.startswith("staleness  fail") for line in lines)



def _deferred_shop(shop: Shop) -> Shop:
    """Carts a dry-run defers, with the longest details a run gives: a step due in the quiet
    hours (``step 1, due …; then quiet_hours: quiet hours until … shop time``), a cart not idle
    long enough, and an address long enough to be cut."""
    shop.configure(eligibility={"quiet_hours": {"start": "21:00", "end": "08:00"}},
                   sequences={"default": {"steps": [{"delay": "12h", "template": "reminder-1"}]}})
    return shop.add(cart("c-quiet"), cart("c-fresh", idle=timedelta(minutes=10)),
                    cart("c-long", email=LONG_EMAIL, idle=timedelta(hours=3)))


@pytest.mark.parametrize("width", [80, 120])
def test_the_run_table_shows_when_each_deferred_cart_goes_whole_at_80_and_120_columns(
        shop: Shop, width: int) -> None:
    """Its detail ended with the moment (``…, not before 2026-11-21 07:00 UTC``), cut with "…"
    below 160 columns and not shown at all below 120: an operator at an 80- or 120-column
    terminal could not see when a deferred cart would go."""
    import io

    from rich.console import Console

    from cartrescue.output import DecisionTable

    result = _deferred_shop(shop).cli("run", "--json")
    assert result.exit_code == 0, result.output
    decisions = result.json["decisions"]
    assert [row["action"] for row in decisions] == ["defer"] * 3
    table = DecisionTable(None, width=width)
    for row in decisions:
        table.add_row(row)
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table.table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width, text
    for row in decisions:
        when = datetime.fromisoformat(row["not_before"].replace("Z", "+00:00"))
        assert f"not before {when:%Y-%m-%d %H:%M} UTC" in text, text
    assert "not before 2026-11-21 07:00 UTC" in text  # the quiet hours' end, whole


def test_a_dry_run_at_80_columns_says_under_a_deferred_carts_reason_when_it_goes(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """The line under the reason, in the cart's row: a row whose cart is not deferred stays one line."""
    monkeypatch.setenv("COLUMNS", "80")
    result = _deferred_shop(shop).add(cart("c-due", idle=timedelta(hours=13))).cli("run")
    assert result.exit_code == 0, result.output
    rows = _table_rows(result.stdout)
    assert max(len(row) for row in rows) <= 80
    quiet = next(n for n, row in enumerate(rows) if " c-quiet " in row)
    assert re.search(r"│ defer\s+│ step_not_due\s+│$", rows[quiet]), rows[quiet]
    assert re.search(r"│ not before 2026-11-21 07:00 UTC\s+│$", rows[quiet + 1]), rows[quiet + 1]
    (due,) = [row for row in rows if " c-due " in row]
    assert re.search(r"│ send\s+│ due\s+│$", due)
    assert all(" c-" in row for row in rows[rows.index(due) + 1:rows.index(due) + 2])  # one line: the next is a cart's


# -- the progress bar -------------------------------------------------------------------------


def test_the_csv_source_reports_how_many_bytes_it_has_read(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    from cartrescue.sources.base import ALL_TIME
    from cartrescue.sources.csv import CsvSource

    source = CsvSource(REPO / "examples" / "carts.csv", shop_tz=ZoneInfo("UTC"))
    total = source.progress_total(ALL_TIME)
    assert total is not None and total.unit == "bytes"
    assert total.total == (REPO / "examples" / "carts.csv").stat().st_size
    assert total.position is not None and total.position() == 0
    seen = []
    for number, _cart in enumerate(source.carts(ALL_TIME)):
        if number % 100 == 0:
            seen.append(total.position())
    assert seen == sorted(seen) and 0 < seen[1] < total.total
    assert total.position() == total.total  # the pass is over


def test_a_sql_source_counts_with_its_count_query(tmp_path: Path) -> None:
    import sqlite3
    from datetime import datetime, timezone

    from cartrescue.sources.base import Window
    from cartrescue.sources.sql import SqlSource

    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE carts (id TEXT, email TEXT, updated TEXT, sku TEXT, qty INT, price TEXT)")
        conn.executemany("INSERT INTO carts VALUES (?, ?, ?, 'S', 1, '5')",
                         [(f"c{i}", f"p{i}@example.com", f"2026-11-{10 + i:02} 10:00:00") for i in range(6)])
    carts = ("SELECT id AS cart_id, email, 'EUR' AS currency, updated AS created_at, sku, qty AS quantity, "
             "price AS unit_price "
             "FROM carts WHERE updated >= :start AND updated <= :end ORDER BY id")
    window = Window(datetime(2026, 11, 12, tzinfo=timezone.utc), datetime(2026, 11, 30, tzinfo=timezone.utc))
    counted = SqlSource(f"sqlite:///{db}", queries={
        "carts": carts, "count": "SELECT COUNT(*) FROM carts WHERE updated >= :start AND updated <= :end"})
    total = counted.progress_total(window)
    assert total is not None and (total.total, total.unit, total.position) == (4, "carts", None)
    assert len(list(counted.carts(window))) == 4
    assert SqlSource(f"sqlite:///{db}", queries={"carts": carts}).progress_total(window) is None


@pytest.mark.slow
def test_a_terminal_sees_a_bar_with_a_total_and_an_eta(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    # Enough carts that the bar is drawn part-way on a fast machine too (~1 s at 10,000 carts/s).
    subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", "12000", "--out",
                    str(tmp_path)], check=True, capture_output=True)
    shutil.copy(REPO / "examples" / "cartrescue.yaml", tmp_path / "cartrescue.yaml")
    code, output = run_in_terminal(["carts", "--config", "cartrescue.yaml"], cwd=tmp_path, columns=140)
    assert code == 0, output[-2000:]
    bars = [line for line in plain(output) if "ETA" in line and "planning" in line]
    assert any(re.search(r"\b100%\s+12,000 carts [\d,]+ carts/s .* ETA 0:00:00", line) for line in bars), bars[-3:]
    assert any(re.search(r"\b([1-9]\d?)%", line) and "100%" not in line for line in bars)  # seen part-way

    quiet, output = run_in_terminal(["carts", "--config", "cartrescue.yaml", "--json"], cwd=tmp_path, columns=140)
    assert quiet == 0 and "ETA" not in output  # never in --json


@pytest.mark.slow
def test_run_with_workers_on_a_terminal_shows_the_share_done_and_the_time_left(tmp_path: Path) -> None:
    """The workers tell their parent how far they have read: its bar had a count and a rate only."""
    import shutil
    import subprocess
    import sys

    subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", "12000", "--out",
                    str(tmp_path)], check=True, capture_output=True)
    shutil.copy(REPO / "examples" / "cartrescue.yaml", tmp_path / "cartrescue.yaml")
    code, output = run_in_terminal(["run", "--workers", "2", "--config", "cartrescue.yaml"], cwd=tmp_path, columns=140)
    assert code == 0, output[-2000:]
    bars = [line for line in plain(output) if "ETA" in line and "dry-run (2 workers)" in line]
    assert any(re.search(r"\b([1-9]\d?)%\s+[\d,]+ carts [\d,]+ carts/s .* ETA \d+:\d\d:\d\d", line)
               for line in bars), bars[-3:]
    assert "cartrescue-progress" not in output  # the workers' progress lines are the parent's, never shown


def test_the_table_says_when_a_deferred_cart_is_looked_at_again(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """`carts --json` gives a defer its `not_before`; the table said only `step 2` or `idle 10m`,
    and a developer asking "when does this cart go?" had to reach for jq. The line under its
    reason says it (`preview`, in its detail)."""
    monkeypatch.setenv("COLUMNS", "200")
    shop.add(cart("c-fresh", idle=timedelta(minutes=10)), cart("c-next", email="next@example.com",
                                                               idle=timedelta(hours=2)))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0  # c-next got step 1
    later = NOW + timedelta(minutes=5)
    decisions = {row["cart_id"]: row for row in shop.cli("carts", "--json", now=later).json["decisions"]}
    assert {decisions[c]["reason"] for c in decisions} == {"idle_below_cutoff", "step_not_due"}
    rows = _table_rows(shop.cli("carts", now=later).stdout)
    for cart_id, row in decisions.items():
        when = datetime.fromisoformat(row["not_before"].replace("Z", "+00:00"))
        (at,) = [n for n, line in enumerate(rows) if f" {cart_id} " in line]
        assert f"│ {row['reason']} " in rows[at] and f"│ {row['detail']} " in rows[at], rows[at]
        assert f"│ not before {when:%Y-%m-%d %H:%M} UTC " in rows[at + 1], rows[at + 1]


def test_the_table_of_run_workers_says_when_a_deferred_cart_is_looked_at_again(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --workers N` prints the rows its workers sent as JSON: the same words, from `not_before`."""
    monkeypatch.setenv("COLUMNS", "200")
    shop.add(cart("c-fresh", idle=timedelta(minutes=10)))
    (row,) = shop.cli("run", "--json").json["decisions"]
    when = datetime.fromisoformat(row["not_before"].replace("Z", "+00:00"))
    result = shop.cli("run", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert re.search(rf"│ idle_below_cutoff +│ idle 10m +│\n.*│ not before {when:%Y-%m-%d %H:%M} UTC +│ +│",
                     result.stdout), result.stdout


def test_codes_list_wide_at_80_columns_keeps_each_code_on_one_line(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--wide`` folded every column, a code too: ``CALL-BWKHC`` on one line and ``G`` on the
    next, which a person copies into the shop as a code that does not exist."""
    monkeypatch.setenv("COLUMNS", "80")
    _hand_out_long_codes(shop)
    wide = shop.cli("codes", "list", "--status", "all", "--wide").stdout.split("code pools", 1)[1]
    assert len(set(re.findall(r"COMEBACK-[A-Z0-9]{24}", wide))) == 3


def _longest_pool_codes(shop: Shop) -> list[str]:
    """A pool file with codes as long as a pool file may hold them (64 characters)."""
    codes = [f"{letter * 60}-{n:03d}" for n, letter in enumerate("ABC")]
    (shop.folder / "codes.txt").write_text("\n".join(codes) + "\n", encoding="utf-8")
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3",
         "incentive": {"kind": "percent", "value": 10, "valid_for": "3d",
                       "codes": {"pool": "long", "file": "codes.txt"}}}]}})
    imported = shop.cli("codes", "import", now=None)
    assert imported.exit_code == 0, imported.output
    return codes


def test_codes_list_at_80_columns_never_cuts_a_64_character_code(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool file's code may be 64 characters: the table, too wide for 80 columns with it whole,
    cut it (``AAAA…``) rather than be printed wider."""
    monkeypatch.setenv("COLUMNS", "80")
    codes = _longest_pool_codes(shop)
    result = shop.cli("codes", "list", "--status", "all")
    assert result.exit_code == 0, result.output
    assert [code for code in codes if code in result.stdout] == codes
    assert result.stdout.count("unused") == 3 + 1  # each row's status, and the summary's header


def test_codes_list_wide_at_80_columns_keeps_every_column_beside_a_64_character_code(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--wide`` kept a 64-character code on one line and squeezed the other columns to nothing:
    no pool, no status."""
    monkeypatch.setenv("COLUMNS", "80")
    codes = _longest_pool_codes(shop)
    wide = shop.cli("codes", "list", "--status", "all", "--wide").stdout.split("code pools", 1)[1]
    rows = wide.splitlines()
    assert [code for code in codes if code in wide] == codes
    assert sum(1 for row in rows if "│ long " in row and "│ unused " in row) == 3, wide


@pytest.mark.parametrize("width", [40, 60])
def test_a_terminal_too_narrow_for_the_carts_table_still_shows_every_step_action_reason_and_moment(
        shop: Shop, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """Below the width the compact table needs (about 77 columns), rich squeezed every column:
    the step and action columns went to nothing, cart ids to ``…`` and the ``not before`` line
    was cut, at 40 columns a table of nothing a person could act on. The columns that are never
    cut stay whole, and the table is printed wider than the terminal, which folds its lines."""
    monkeypatch.setenv("COLUMNS", str(width))
    result = _deferred_shop(shop).add(cart("c-due", idle=timedelta(hours=13))).cli("carts")
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[1]
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == ["cart", "email", "step", "action", "reason"]
    rows = [row.strip("│").split("│") for row in _table_rows(result.stdout)]
    carts = [cells for cells in rows if cells[0].strip()]
    assert [cells[0].strip() for cells in carts] == ["c-quiet", "c-fresh", "c-long", "c-due"]
    assert [cells[2].strip() for cells in carts] == ["1", "", "1", "1"]  # none before a step is chosen
    assert [cells[3].strip() for cells in carts] == ["defer", "defer", "defer", "send"]
    assert [cells[4].strip() for cells in carts] == ["step_not_due", "idle_below_cutoff", "step_not_due", "due"]
    moments = [cells[4].strip() for cells in rows if not cells[0].strip()]
    assert moments == ["not before 2026-11-21 07:00 UTC", "not before 2026-11-20 10:35 UTC",
                       "not before 2026-11-20 19:00 UTC"]


@pytest.mark.parametrize("width", [40, 60, 80])
def test_codes_list_never_cuts_a_pools_counts_on_a_narrow_terminal(
        shop: Shop, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """The table of the pools' counts was rich's to squeeze: 12,345 unused codes read ``1234…``
    at 60 columns (``…`` at 40), and beside a long pool name at 80 columns too: the number an
    owner reads to know whether the pool will last. Counts stay whole; the pool's name is cut."""
    monkeypatch.setenv("COLUMNS", str(width))
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3",
         "incentive": {"kind": "percent", "value": 10, "valid_for": "3d",
                       "codes": {"pool": "a-pool-with-a-rather-long-name", "pattern": "CR-{random:8}"}}}]}})
    assert shop.cli("codes", "generate", "12345", "--pool", "a-pool-with-a-rather-long-name", now=None).exit_code == 0
    result = shop.cli("codes", "list", now=None)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == [
        "pool", "unused", "active", "expired", "undelivered", "withdrawn"]
    (row,) = _table_rows(result.stdout)
    assert [cell.strip() for cell in row.strip("│").split("│")][1:] == ["12345", "0", "0", "0", "0"]


@pytest.mark.slow
def test_codes_generate_on_a_terminal_shows_a_bar_of_the_codes_made(shop: Shop) -> None:
    """A million codes take minutes (pauses leave the ledger to runs): the command was silent
    until the end, like a hung one."""
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "incentive": {
        "kind": "percent", "value": 10, "valid_for": "3d", "codes": {"pool": "big", "pattern": "CR-{random:8}"}}}]}})
    code, output = run_in_terminal(["codes", "generate", "1200", "--pool", "big", "--config", str(shop.write())],
                                   cwd=shop.folder, columns=140)
    assert code == 0, output[-2000:]
    bars = [line for line in plain(output) if "generating (big)" in line]
    assert any(re.search(r"\b100%\s+1,200 codes [\d,]+ codes/s", line) for line in bars), bars[-3:]
    assert any("generated 1200 codes in pool big" in line for line in plain(output)), output[-500:]
