"""``run-all``: many shops (one config and one ledger each) in one cron job, reported as one.

Each shop's run is the plain ``run --config FILE --json --workers 1`` in a process of its own
(forked from the command where that is safe: the tests that run the real command line check it),
so one shop's failure costs only that shop, and every shop keeps its exactly-once ledger.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from smtpserver import Fault, LoopbackSMTP

from cartrescue.batch import SHOP_PREFIX, Batch, ShopRun, config_files, shop_outboxes
import yaml

from conftest import BASE_CONFIG, NOW, Shop, cart, iso, worker_pids


def _shops(make_shop: Callable[[str], Shop], count: int, carts: int = 12) -> list[Shop]:
    """``count`` shops whose carts share addresses: separate shops, separate customers' streams."""
    shops = []
    for index in range(count):
        shop = make_shop(f"shop{index}")
        for n in range(carts + index):
            shop.add(cart(f"s{index}c{n}", email=f"c{n}@example.com"))
        shop.write()
        shops.append(shop)
    return shops


def _run_all(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, as cron runs it (so its shops' runs are forked)."""
    return subprocess.run([sys.executable, "-m", "cartrescue.cli", "run-all", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_every_shop_runs_as_its_own_run_and_the_counts_add_up(make_shop: Callable[[str], Shop],
                                                               tmp_path: Path) -> None:
    shops = _shops(make_shop, 3)
    done = _run_all("--json", "--now", iso(NOW), *(shop.config_path for shop in shops), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    alone = [shop.cli("run", "--json").json["counts"] for shop in shops]
    assert [row["config"] for row in document["shops"]] == [str(shop.config_path) for shop in shops]
    assert [row["counts"]["send"] for row in document["shops"]] == [counts["send"] for counts in alone]
    assert [row["counts"]["send"] for row in document["shops"]] == [12, 13, 14]
    assert document["counts"]["carts"] == sum(counts["carts"] for counts in alone)
    assert {row["started"] for row in document["shops"]} == {"fork"}
    assert document["exit_code"] == 0 and "error" not in document


def test_a_broken_config_costs_only_its_shop(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    good, broken = _shops(make_shop, 2)
    broken.config_path.write_text("shop: [not closed\n", encoding="utf-8")
    done = _run_all("--json", "--now", iso(NOW), broken.config_path, good.config_path, cwd=tmp_path)
    assert done.returncode == 2
    document = json.loads(done.stdout)  # one document, whatever the shops did
    first, second = document["shops"]
    assert first["exit_code"] == 2 and first["error"]["code"] == "config"
    assert second["exit_code"] == 0 and second["counts"]["send"] == 12
    assert document["error"]["message"].startswith(f"{broken.config_path}:2: not valid YAML")
    assert f"{broken.config_path}: {broken.config_path}" not in document["error"]["message"]  # named once
    assert f"error: {broken.config_path}:" in done.stderr  # the shop's own line, named (once)


def test_a_source_error_naming_its_config_after_its_source_is_named_once(make_shop: Callable[[str], Shop],
                                                                         tmp_path: Path) -> None:
    """A database source's error names the config after the source (``sql source: shops/b/…:
    source.url: …``): run-all put the config in front again, on stderr and in the document's
    ``error``, where the README says a line that names its config is not prefixed."""
    good, missing = _shops(make_shop, 2)
    missing.config["source"] = {"type": "sql", "url": "sqlite:///missing.db",
                                "queries": {"carts": "SELECT * FROM carts ORDER BY cart_id"}}
    missing.write()
    table = _run_all("--now", iso(NOW), missing.config_path, good.config_path, cwd=tmp_path)
    document = json.loads(_run_all("--json", "--now", iso(NOW), missing.config_path, good.config_path,
                                   cwd=tmp_path).stdout)
    name = str(missing.config_path)
    said = [line for line in table.stderr.splitlines() if "source.url" in line]
    assert table.returncode == document["exit_code"] == 3 and len(said) == 1, table.stderr
    assert said[0].count(name) == 1 and said[0].startswith("error: sql source: "), said
    assert document["error"]["message"].count(name) == 1, document["error"]
    assert document["shops"][1]["exit_code"] == 0


def test_sending_delivers_every_shop_once_and_a_second_run_delivers_nothing(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    with LoopbackSMTP() as server:
        shops = _shops(make_shop, 2, carts=5)
        for shop in shops:
            shop.configure(smtp=server.smtp_config()).write()
        configs = [shop.config_path for shop in shops]
        first = _run_all("--send", "--json", "--now", iso(NOW), *configs, cwd=tmp_path)
        again = _run_all("--send", "--json", "--now", iso(NOW), *configs, cwd=tmp_path)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert json.loads(first.stdout)["counts"]["sent"] == 11 and json.loads(again.stdout)["counts"]["sent"] == 0
    assert len(server.messages) == 11  # c0..c4 of both shops, c5 of the second: each shop writes to its own
    assert [len(shop.messages()) for shop in shops] == [5, 6]


def test_quiet_says_nothing_when_every_shop_went_well(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    shops = _shops(make_shop, 2, carts=3)
    done = _run_all("--quiet", "--now", iso(NOW), *(shop.folder for shop in shops), cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_quiet_says_the_clock_a_shops_config_pins_and_no_table(make_shop: Callable[[str], Shop],
                                                               tmp_path: Path) -> None:
    """A cron config that kept the demo's ``now:`` decided every round as of that instant: run
    --quiet says so (a warning naming the key), and run-all --quiet held that line back as one of
    a shop that went well."""
    pinned, other = _shops(make_shop, 2, carts=3)
    pinned.config = {"now": iso(NOW), **pinned.config}
    pinned.write()
    done = _run_all("--quiet", pinned.folder, other.folder, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert [line for line in done.stderr.splitlines() if line] == [
        f"warning: {pinned.config_path}: now: pins the clock at {iso(NOW)}: every run without --now decides as of "
        "that moment, and carts left after it are never reminded (a demo's or a replay's setting: remove it for "
        "cron) (line 1)"]


def test_quiet_shows_the_table_and_the_shops_words_when_one_failed(make_shop: Callable[[str], Shop],
                                                                   tmp_path: Path) -> None:
    good, missing = _shops(make_shop, 2, carts=3)
    (missing.folder / "carts.csv").unlink()
    done = _run_all("--quiet", "--now", iso(NOW), good.folder, missing.folder, cwd=tmp_path)
    assert done.returncode == 3
    assert f"error: {missing.config_path}: source.carts" in done.stderr and "carts.csv" in done.stderr
    assert "run-all (dry-run): 2 shops" in done.stdout and "source" in done.stdout
    assert str(missing.config_path) in done.stdout  # whole on its line in cron's mail, not folded


def test_quiet_tables_only_the_shops_that_need_a_look(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """Under --quiet the table listed every shop: for an agency's 200, cron mailed 200 rows every
    ten minutes for the one shop whose export went missing."""
    first, missing, last = _shops(make_shop, 3, carts=3)
    (missing.folder / "carts.csv").unlink()
    done = _run_all("--quiet", "--now", iso(NOW), first.folder, missing.folder, last.folder, cwd=tmp_path)
    assert done.returncode == 3
    assert str(missing.config_path) in done.stdout
    assert str(first.config_path) not in done.stdout and str(last.config_path) not in done.stdout
    assert "run-all (dry-run): 3 shops, 2 not listed: they went well" in done.stdout
    totals = next(line for line in done.stdout.splitlines() if line.startswith("│ all"))
    assert totals.split("│")[3].strip() == "8"  # the carts of every shop: 3 + 5 (none read of the missing export)


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux's setpriv (to be refused as a user is)")
def test_an_unreadable_config_costs_that_shop_only(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """The config files were checked as the command line was read: one that could not be read
    was a usage error of the whole command, and no shop ran. Run without the capability to read
    any file (root here), as a user without the permission is refused."""
    good, locked = _shops(make_shop, 2, carts=3)
    locked.config_path.chmod(0)
    done = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m",
                           "cartrescue.cli", "run-all", "--json", "--now", iso(NOW), str(good.config_path),
                           str(locked.config_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False)
    document = json.loads(done.stdout)
    assert done.returncode == 2, done.stderr
    assert [row["exit_code"] for row in document["shops"]] == [0, 2]
    assert document["shops"][0]["counts"]["send"] == 3


@pytest.mark.smtp
def test_quiet_says_why_a_shops_deliveries_failed(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """A shop's run writes only its document under run-all: the relay's reason was in --json alone,
    and cron's mail said "failed 3" without why (run --quiet says it)."""
    with LoopbackSMTP(faults=[Fault(r"^c\d@", "550 5.7.1 relaying denied for this sender")]) as server:
        (shop,) = _shops(make_shop, 1, carts=3)
        shop.configure(smtp=server.smtp_config()).write()
        done = _run_all("--send", "--quiet", "--now", iso(NOW), shop.folder, cwd=tmp_path)
    assert done.returncode == 1
    assert f"{shop.config_path}: failed: 3 × " in done.stderr and "relaying denied" in done.stderr


@pytest.mark.slow
def test_a_second_shop_on_a_ledger_is_said_under_quiet_and_its_next_round_stops(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    first, second = _shops(make_shop, 2, carts=2)
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    first.configure(ledger={"url": shared}).write()
    second.configure(ledger={"url": shared}, shop={"name": "Second Shop"}).write()
    one = _run_all("--outbox", "out", "--quiet", "--jobs", "1", "--now", iso(NOW), first.folder, second.folder,
                   cwd=tmp_path)
    assert one.returncode == 0 and f"{second.config_path}: this ledger's last run was for shop " in one.stderr
    two = _run_all("--outbox", "out", "--quiet", "--json", "--jobs", "1", "--now", iso(NOW), first.folder,
                   second.folder, cwd=tmp_path)
    document = json.loads(two.stdout)
    assert two.returncode == 2 and [row["exit_code"] for row in document["shops"]] == [2, 2]
    assert "take turns in this ledger" in document["error"]["message"]


def test_a_folder_stands_for_its_config_and_a_config_named_twice_runs_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    named = tmp_path / "b.yaml"
    assert config_files([tmp_path / "a", named, tmp_path / "a" / "cartrescue.yaml", named]) == [
        tmp_path / "a" / "cartrescue.yaml", named]


@pytest.mark.parametrize(("codes", "worst"), [
    ([0, 1, 0], 1), ([1, 4, 0], 1), ([4, 0], 4), ([2, 3, 1], 2), ([3, -9, 70], 137)])
def test_the_exit_code_is_the_most_serious_shops(codes: list[int], worst: int) -> None:
    shops = [ShopRun(Path(f"s{n}.yaml"), pid=100 + n, started="fork", returncode=code,
                     trailer=None if code < 0 or code == 70 else {"counts": {}})
             for n, code in enumerate(codes)]
    assert Batch(shops).exit_code == worst


def test_a_killed_shop_says_by_which_signal_and_a_shop_never_started_says_why() -> None:
    killed = ShopRun(Path("s.yaml"), pid=42, started="fork", returncode=-9)
    never = ShopRun(Path("t.yaml"))
    error: dict[str, Any] = killed.error()  # type: ignore[assignment]
    assert (killed.exit_code, error["code"]) == (137, "killed") and "SIGKILL" in error["message"]
    assert never.exit_code == 130 and never.error()["code"] == "interrupted"  # type: ignore[index]


def test_claims_a_killed_run_left_are_said_for_the_shop_and_kept_in_its_row() -> None:
    """``run --quiet`` says once that a killed run left claims without outcome; under run-all the
    shop's run wrote only its document, and run-all dropped it (the notice was lost for good)."""
    found = ShopRun(Path("s.yaml"), pid=42, started="fork", returncode=0,
                    trailer={"counts": {}, "unconfirmed": 8, "released": 0, "killed_left": 8})
    released = ShopRun(Path("t.yaml"), pid=43, started="fork", returncode=0,
                       trailer={"counts": {}, "unconfirmed": 0, "released": 8, "killed_left": 8})
    assert [line.split(" claims")[0] for line in found.attention()] == ["s.yaml: 8"]
    assert released.attention() == []  # --resend-unconfirmed sent them again
    assert (found.as_json()["killed_left"], found.as_json()["unconfirmed"]) == (8, 8)


def test_one_claim_a_killed_run_left_is_said_in_the_singular() -> None:
    one = ShopRun(Path("s.yaml"), pid=42, started="fork", returncode=0,
                  trailer={"counts": {}, "unconfirmed": 1, "released": 0, "killed_left": 1})
    assert one.attention()[0].startswith("s.yaml: 1 claim was left without outcome by a run killed")


@pytest.mark.slow
def test_sigterm_stops_the_running_shop_starts_no_other_and_still_prints_one_document(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    with LoopbackSMTP(faults=[Fault(r"^c0@", "hang")]) as server:
        stuck, waiting = _shops(make_shop, 2, carts=3)
        for shop in (stuck, waiting):
            shop.configure(smtp=server.smtp_config(timeout="60s")).write()
        command = [sys.executable, "-m", "cartrescue.cli", "run-all", "--send", "--json", "--jobs", "1",
                   "--now", iso(NOW), str(stuck.config_path), str(waiting.config_path)]
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not server.attempts["c0@example.com"] and time.monotonic() < deadline:
            time.sleep(0.05)  # the first shop's relay has the stuck recipient
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    document = json.loads(out)
    assert document["error"]["code"] == "interrupted"
    first, second = document["shops"]
    assert first["exit_code"] == 130 and first["started"] == "fork"
    assert second["started"] is None and second["error"]["code"] == "interrupted"
    assert not (waiting.folder / "ledger.db").exists()  # the second shop never ran
    assert "c0@example.com" not in {to for message in server.messages for to in message.rcpt_tos}
    # The stopped shop's counts are what its ledger recorded, in its row and in the total.
    sent = sum(message["status"] == "sent" for message in stuck.messages())
    assert first["counts"]["sent"] == document["counts"]["sent"] == sent


def test_the_shops_a_stop_left_unstarted_are_one_line_not_one_each(make_shop: Callable[[str], Shop],
                                                                    tmp_path: Path) -> None:
    """A stop early in an agency's round (200 shops) printed an error line for every shop it had not
    started yet: the lines that mattered, the stopped shops', were lost in the wall."""
    with LoopbackSMTP(faults=[Fault(r"^c0@", "hang")]) as server:
        shops = _shops(make_shop, 4, carts=3)
        for shop in shops:
            shop.configure(smtp=server.smtp_config(timeout="60s")).write()
        command = [sys.executable, "-m", "cartrescue.cli", "run-all", "--send", "--json", "--jobs", "1",
                   "--now", iso(NOW), *(str(shop.config_path) for shop in shops)]
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not server.attempts["c0@example.com"] and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert [row["started"] for row in json.loads(out)["shops"]] == ["fork", None, None, None]  # each still in its row
    lines = [line for line in err.splitlines() if "not started" in line]
    assert len(lines) == 2, err  # the round's own line, and one for the shops it left
    assert (f"3 shops not started: run-all was interrupted ({shops[1].config_path} to {shops[3].config_path}, "
            "in the order given)") in " ".join(err.split())


def test_a_shop_whose_run_cannot_start_fails_alone(make_shop: Callable[[str], Shop]) -> None:
    from cartrescue.batch import run_shops

    shops = _shops(make_shop, 2, carts=2)
    configs = [shop.config_path for shop in shops]

    def arguments(config: Path) -> list[str]:
        if config == configs[0]:
            raise OSError(11, "Resource temporarily unavailable")  # what fork says past a process limit
        return ["run", "--config", str(config), "--json", "--workers", "1", "--now", iso(NOW)]

    batch = run_shops(arguments, configs, jobs=2, warn=lambda line: None)
    assert [shop.exit_code for shop in batch.shops] == [70, 0]
    assert "could not start its run" in batch.shops[0].error()["message"]  # type: ignore[index]
    assert batch.shops[1].counts()["send"] == 3


@pytest.mark.slow
def test_a_shop_past_its_timeout_is_stopped_and_the_others_finish(make_shop: Callable[[str], Shop],
                                                                 tmp_path: Path) -> None:
    with LoopbackSMTP(faults=[Fault(r"^c3@", "hang")]) as server:  # a customer of the second shop only
        fine, stuck = _shops(make_shop, 2, carts=3)
        for shop in (stuck, fine):
            shop.configure(smtp=server.smtp_config(timeout="60s")).write()
        done = _run_all("--send", "--json", "--timeout", "3s", "--now", iso(NOW), stuck.config_path,
                        fine.config_path, cwd=tmp_path)
    document = json.loads(done.stdout)
    first, second = document["shops"]
    assert first["error"]["code"] == "timeout" and first["exit_code"] == 130 and first["seconds"] < 30
    assert second["exit_code"] == 0 and second["counts"]["sent"] == 3
    assert done.returncode == 130 and document["error"]["message"].startswith(f"{stuck.config_path}: stopped after")
    assert f"error: {stuck.config_path}: stopped after running 3 s (--timeout)" in " ".join(done.stderr.split())
    assert "c3@example.com" not in {to for message in server.messages for to in message.rcpt_tos}


def test_a_shop_past_its_timeout_does_not_hide_another_shops_config_error(make_shop: Callable[[str], Shop],
                                                                         tmp_path: Path) -> None:
    """A shop stopped by --timeout is 130, which tells cron "nothing: the next run goes on"; it
    ranked above config and source, so a round with a stuck relay in one shop and a config typo in
    another exited 130 every round, and the typo's shop never sent (a person must fix it)."""
    with LoopbackSMTP(faults=[Fault(r"^c3@", "hang")]) as server:
        fine, broken, stuck = _shops(make_shop, 3, carts=3)  # c3@ is a customer of the last two
        for shop in (stuck, broken, fine):
            shop.configure(smtp=server.smtp_config(timeout="60s")).write()
        broken.configure(eligibility={"cutoff": "45x"}).write()  # a typo: exit 2, a person must fix it
        done = _run_all("--send", "--json", "--timeout", "3s", "--now", iso(NOW), stuck.config_path,
                        broken.config_path, fine.config_path, cwd=tmp_path)
    document = json.loads(done.stdout)
    assert [row["exit_code"] for row in document["shops"]] == [130, 2, 0]
    assert document["shops"][0]["error"]["code"] == "timeout"  # still said for its shop
    assert done.returncode == 2 and document["exit_code"] == 2
    assert document["error"]["code"] == "config" and document["error"]["message"].startswith(f"{broken.config_path}:")


@pytest.mark.parametrize(("codes", "worst"), [([130, 0], 130), ([130, 1, 4], 130), ([130, 3], 3), ([130, 6], 6),
                                              ([130, 2], 2), ([130, 70], 70), ([130, -9], 137)])
def test_a_shop_stopped_by_its_timeout_ranks_below_config_source_and_a_lost_lock(codes: list[int],
                                                                                 worst: int) -> None:
    first, *others = codes
    shops = [ShopRun(Path("s0.yaml"), pid=100, started="fork", returncode=first, trailer={"counts": {}}, timed_out=3.0)]
    shops += [ShopRun(Path(f"s{n}.yaml"), pid=100 + n, started="fork", returncode=code,
                      trailer=None if code < 0 or code == 70 else {"counts": {}}) for n, code in enumerate(others, 1)]
    assert Batch(shops).exit_code == worst


def test_a_shop_past_its_timeout_keeps_the_id_of_its_run(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """The shop's row named no run (``run_id`` null) though its run had a ``cr_run`` row, marked
    interrupted: the run to look up (its unconfirmed claims, in ``doctor``) was not said."""
    with LoopbackSMTP(faults=[Fault(r"^c1@", "hang")]) as server:
        (stuck,) = _shops(make_shop, 1, carts=3)
        stuck.configure(smtp=server.smtp_config(timeout="60s")).write()
        done = _run_all("--send", "--json", "--timeout", "3s", "--now", iso(NOW), stuck.config_path, cwd=tmp_path)
    row = json.loads(done.stdout)["shops"][0]
    assert row["error"]["code"] == "timeout"
    import sqlite3

    with sqlite3.connect(stuck.folder / "ledger.db") as ledger:
        runs = ledger.execute("SELECT id, status FROM cr_run").fetchall()
    assert runs == [(row["run_id"], "interrupted")], (runs, row["run_id"])


def test_the_progress_bar_leaves_the_shops_forked() -> None:
    """The bar on a terminal is refreshed by hand: no thread, and the streams stay the process's own."""
    code = ("from rich.console import Console\n"
            "from cartrescue.commands.shops_progress import shops_progress\n"
            "from cartrescue.processes import start_method\n"
            "with shops_progress(Console(stderr=True, force_terminal=True), True, 2) as (say, done, tick):\n"
            "    assert say is not None\n"
            "    print(start_method())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "fork"), done.stderr


@pytest.mark.postgres
@pytest.mark.slow
def test_shops_in_one_postgresql_database_keep_a_schema_each(make_shop: Callable[[str], Shop],
                                                             tmp_path: Path) -> None:
    """The agency's layout: one database, a schema per shop (``options=-csearch_path=…``): each
    shop its own tables, lock and claims, even for customers the shops share."""
    from shopdb import shop_database
    from sqlalchemy import text

    with shop_database("postgres", "agency") as db, LoopbackSMTP() as server:
        with db.admin.begin() as connection:
            connection.execute(text("CREATE SCHEMA shop0"))
            connection.execute(text("CREATE SCHEMA shop1"))
        shops = _shops(make_shop, 2, carts=3)
        for index, shop in enumerate(shops):
            shop.configure(ledger={"url": f"{db.url}?options=-csearch_path%3Dshop{index}"},
                           smtp=server.smtp_config()).write()
        done = _run_all("--send", "--json", "--now", iso(NOW), *(shop.config_path for shop in shops), cwd=tmp_path)
        with db.admin.connect() as connection:
            rows = [connection.execute(text(f"SELECT count(*) FROM shop{index}.cr_message")).scalar()
                    for index in (0, 1)]
            public = connection.execute(text("SELECT to_regclass('public.cr_message')")).scalar()
    assert done.returncode == 0, done.stderr
    assert [row["counts"]["sent"] for row in json.loads(done.stdout)["shops"]] == [3, 4]
    assert rows == [3, 4] and public is None and len(server.messages) == 7


def test_an_outbox_folder_is_each_shops_own_beside_its_config(make_shop: Callable[[str], Shop],
                                                               tmp_path: Path) -> None:
    shops = _shops(make_shop, 2, carts=2)
    done = _run_all("--outbox", "out", "--json", "--now", iso(NOW), *(shop.folder for shop in shops), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "outbox"
    assert [len(list((shop.folder / "out").glob("*.eml"))) for shop in shops] == [2, 3]
    assert not (tmp_path / "out").exists()


def test_an_absolute_outbox_gets_a_folder_per_shop_so_one_shop_never_writes_over_another(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """Two shops with the same cart ids: file names are per ledger (cart, step, claim id), and
    the second shop's messages replaced the first's while both ledgers said sent."""
    shops = []
    for name in ("north", "south"):
        shop = make_shop(name)
        shop.add(cart("c1", email=f"ann@{name}.example.com"), cart("c2", email=f"bob@{name}.example.com"))
        shop.write()
        shops.append(shop)
    shared = tmp_path / "all-out"
    done = _run_all("--outbox", shared, "--json", "--now", iso(NOW), *(shop.folder for shop in shops), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["sent"] == 4
    for name in ("north", "south"):
        files = sorted((shared / name).glob("*.eml"))
        assert len(files) == 2 and all(f"@{name}.example.com".encode() in path.read_bytes() for path in files)


def test_an_absolute_outbox_gives_every_shop_its_own_folder_whatever_their_folders_are_named(
        tmp_path: Path) -> None:
    """Folders ``p1/a`` and ``p2/a`` were told apart as ``a-cartrescue-1`` and ``a-cartrescue-2``
    without a look at the other shops' names: ``p3/a-cartrescue-1`` got ``a-cartrescue-1`` too, the
    first shop's messages and its own went into one folder and wrote over each other (same cart
    ids, same claim ids), and every ledger said sent."""
    shops = []
    for index, folder in enumerate(("p1/a", "p2/a", "p3/a-cartrescue-1")):
        shop = Shop(tmp_path / folder)
        shop.folder.mkdir(parents=True)
        shop.add(cart("c1", email=f"ann@shop{index}.example.com"), cart("c2", email=f"bob@shop{index}.example.com"))
        shop.write()
        shops.append(shop)
    shared = tmp_path / "all-out"
    done = _run_all("--outbox", shared, "--json", "--now", iso(NOW), *(shop.folder for shop in shops), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [row["counts"]["sent"] for row in json.loads(done.stdout)["shops"]] == [2, 2, 2]
    folders = sorted(shared.iterdir())
    assert len(folders) == 3 and sum(len(list(folder.glob("*.eml"))) for folder in folders) == 6
    for folder in folders:  # each folder holds one shop's messages, both of them
        owners = {index for path in folder.glob("*.eml") for index in range(3)
                  if f"@shop{index}.example.com".encode() in path.read_bytes()}
        assert len(owners) == 1 and len(list(folder.glob("*.eml"))) == 2, folder


@pytest.mark.parametrize("folders", [
    ["p1/a", "p2/a", "p3/a-cartrescue-1"],
    ["p3/a-cartrescue-1", "p2/a", "p1/a"],
    ["p1/a", "p2/a", "p3/a", "q/a-cartrescue-1", "r/a-cartrescue-2", "s/a-cartrescue-4", "t/a-cartrescue-5"],
    ["x/Shop", "y/shop", "z/SHOP-2"],  # one folder on a case-insensitive disk (macOS, a mounted share)
    ["m/n/..", "k/m", "/", "o/shop"],  # "m/n/.." was named "..": DIR's parent; "/" is named "shop"
])
def test_shop_outboxes_are_distinct_inside_dir_and_the_same_on_every_run(tmp_path: Path, folders: list[str]) -> None:
    configs = [Path(folder) / "cartrescue.yaml" for folder in folders]
    outboxes = shop_outboxes(configs, tmp_path / "out")
    assert len({str(outbox).casefold() for outbox in outboxes.values()}) == len(configs), outboxes
    assert all(outbox is not None and outbox.parent == tmp_path / "out" and outbox.name not in ("", ".", "..")
               for outbox in outboxes.values()), outboxes
    assert shop_outboxes(configs, tmp_path / "out") == outboxes


def test_shop_outboxes_keep_the_folders_of_shops_named_apart() -> None:
    """The names the docs give (the config's folder, and its file name where folders are named
    alike) stay as they were: a shop's messages do not move to another folder."""
    out = Path("/srv/out")
    named = shop_outboxes([Path("s/north/cartrescue.yaml"), Path("s/south/cartrescue.yaml"),
                           Path("s/west/a.yaml"), Path("s/west/b.yaml"),
                           Path("p1/a/cartrescue.yaml"), Path("p2/a/cartrescue.yaml")], out)
    assert [path.name for path in named.values()] == ["north", "south", "west-a", "west-b",
                                                      "a-cartrescue-5", "a-cartrescue-6"]


@pytest.mark.slow
def test_the_next_round_skips_a_shop_still_running_and_runs_the_others(make_shop: Callable[[str], Shop],
                                                                      tmp_path: Path) -> None:
    """Overlapping cron rounds: a shop stuck on its relay holds its lock; the next round's run-all
    finds it held (exit 4, silent under --quiet) and still runs every other shop."""
    with LoopbackSMTP(faults=[Fault(r"^c3@", "hang")]) as server:  # a customer of the second shop only
        fine, stuck = _shops(make_shop, 2, carts=3)
        for shop in (fine, stuck):
            shop.configure(smtp=server.smtp_config(timeout="60s")).write()
        first = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", "run-all", "--send", "--json", "--now",
                                  iso(NOW), str(stuck.config_path)], cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not server.attempts["c3@example.com"] and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            second = _run_all("--send", "--quiet", "--now", iso(NOW), fine.config_path, stuck.config_path, cwd=tmp_path)
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=120)
    assert (second.returncode, second.stdout, second.stderr) == (4, "", "")
    assert [row["status"] for row in fine.messages()] == ["sent"] * 3


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.slow
def test_sigkill_of_run_all_ends_its_shops_and_a_rerun_sends_no_step_twice(make_shop: Callable[[str], Shop],
                                                                          tmp_path: Path) -> None:
    """A killed run-all leaves no shop delivering on its own (each dies with it, as an interrupted
    run ends); the message in flight stays claimed, and the next round sends every other step once."""
    with LoopbackSMTP(faults=[Fault(r"^c3@", "hang", times=1)]) as server:
        fine, stuck = _shops(make_shop, 2, carts=3)
        stuck.configure(smtp=server.smtp_config(timeout="900s")).write()  # it would wait that long on its own
        parent = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", "run-all", "--send", "--json", "--now",
                                   iso(NOW), str(stuck.config_path)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not server.attempts["c3@example.com"] and time.monotonic() < deadline:
            time.sleep(0.05)
        shops = worker_pids(parent.pid, SHOP_PREFIX)
        assert len(shops) == 1
        parent.kill()
        parent.wait(30)
        # Interrupted, it closes the stuck connection and ends within a second or two; the bound
        # is generous for a loaded CI machine and still far below the 900 s it would wait alone.
        deadline = time.monotonic() + 120
        while not _gone(shops[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(shops[0])
        again = _run_all("--send", "--json", "--now", iso(NOW), stuck.config_path, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    received = Counter(to for message in server.messages for to in message.rcpt_tos)
    assert set(received.values()) <= {1}  # whatever was in flight when it was killed: at most once
    rows = stuck.messages()
    assert sorted(row["cart_id"] for row in rows) == ["s1c0", "s1c1", "s1c2", "s1c3"]  # every step claimed, once
    assert sum(row["status"] == "sent" for row in rows) == len(server.messages)


def _run_all_with(prelude: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line as cron runs it, after ``prelude`` (Python) has set up where a stop
    comes: the instants a person's Ctrl-C or a service manager's SIGTERM cannot be aimed at."""
    code = prelude + "\nimport sys\nsys.argv = ['cartrescue', *sys.argv[1:]]\nfrom cartrescue.entry import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, "run-all", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.slow
def test_a_stop_as_run_all_forks_a_shop_stops_that_shop_as_interrupted(make_shop: Callable[[str], Shop],
                                                                        tmp_path: Path) -> None:
    """SIGTERM the instant run-all has forked its first shop: it was raised before the shop was
    known to be running, so the shop was never stopped nor waited for, and its row (and
    run-all's exit code) said 70, "a bug", while it went on alone."""
    first, second = _shops(make_shop, 2, carts=2)
    prelude = ("import os, signal\n"
               "fork = os.fork\n"
               "def forked() -> int:  # the stop comes the instant the first shop is forked\n"
               "    pid = fork()\n"
               "    if pid and not getattr(forked, 'done', False):\n"
               "        forked.done = True\n"
               "        os.kill(os.getpid(), signal.SIGTERM)\n"
               "    return pid\n"
               "os.fork = forked\n")
    done = _run_all_with(prelude, "--json", "--outbox", "out", "--jobs", "1", "--now", iso(NOW), first.folder,
                         second.folder, cwd=tmp_path)
    document = json.loads(done.stdout)
    row, never = document["shops"]
    assert (done.returncode, document["exit_code"], document["error"]["code"]) == (130, 130, "interrupted"), done.stderr
    assert (row["started"], row["exit_code"], row["error"]["code"]) == ("fork", 130, "interrupted")
    assert _gone(row["pid"])  # stopped and waited for, not left running on its own
    assert never["started"] is None and "Traceback" not in done.stderr


def test_a_stop_at_a_forked_runs_first_instant_ends_it_as_interrupted(make_shop: Callable[[str], Shop],
                                                                      tmp_path: Path) -> None:
    """run-all passes its stop on to every shop running, one forked a moment ago too. Reaching
    the shop before its own handlers, the stop met its parent's: a traceback and exit 70, or
    it was dropped and the shop ran to its end. Now it ends as a run stopped before it began."""
    (shop,) = _shops(make_shop, 1, carts=2)
    code = ("import json, signal, sys\n"
            "from cartrescue import processes, stops\n"
            "stops.install()\n"
            "processes.preload()\n"
            "for _ in range(3):\n"
            "    process = processes.start(sys.argv[1:], {}, 'fork', '1', prefix='cr-shop-')\n"
            "    process.send_signal(signal.SIGTERM)\n"
            "    out, err = process.stdout.read().decode(), process.stderr.read().decode()\n"
            "    print(json.dumps([process.wait(), out, err]))\n")
    done = subprocess.run([sys.executable, "-c", code, "run", "--config", str(shop.config_path), "--json",
                           "--workers", "1", "--outbox", "out", "--now", iso(NOW)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        returncode, out, err = json.loads(line)
        assert (returncode, json.loads(out)["error"]["code"]) == (130, "interrupted"), (returncode, out, err)
        assert "Traceback" not in err


def test_a_stop_while_run_all_prepares_still_prints_the_documents_shape(make_shop: Callable[[str], Shop],
                                                                         tmp_path: Path) -> None:
    """A stop while run-all imports what every shop's run needs (a second or more, before the
    first shop starts) printed {"error": ...} alone: no "shops", no "counts", no "exit_code"."""
    shops = _shops(make_shop, 2, carts=2)
    prelude = ("import os, signal, sys\n"
               "class Stop:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'jinja2.sandbox':  # preloaded for the shops, imported by nothing before\n"
               "            os.kill(os.getpid(), signal.SIGTERM)\n"
               "        return None\n"
               "sys.meta_path.insert(0, Stop())\n")
    done = _run_all_with(prelude, "--json", "--now", iso(NOW), *(shop.folder for shop in shops), cwd=tmp_path)
    document = json.loads(done.stdout)
    assert (done.returncode, document["exit_code"], document["error"]["code"]) == (130, 130, "interrupted")
    assert [(row["started"], row["exit_code"]) for row in document["shops"]] == [(None, 130), (None, 130)]
    assert document["counts"]["carts"] == 0 and not any((shop.folder / "ledger.db").exists() for shop in shops)


def test_a_stop_while_run_all_reads_a_shop_keeps_what_the_shop_said(make_shop: Callable[[str], Shop],
                                                                    tmp_path: Path) -> None:
    """A stop that came as run-all had read a block of a shop's document, before it took it: the
    block was lost (here the document's first line), and the shop's row said "internal: ended
    without a report" with no counts, while the shop had ended its document as interrupted."""
    (shop,) = _shops(make_shop, 1, carts=3)
    prelude = ("import os, signal\n"
               "read, parent = os.read, os.getpid()\n"
               "def reading(fd: int, size: int) -> bytes:  # the stop comes with the shop's first block\n"
               "    data = read(fd, size)\n"
               "    if os.getpid() == parent and b'\"decisions\": [' in data and not getattr(reading, 'done', 0):\n"
               "        reading.done = True\n"
               "        os.kill(parent, signal.SIGTERM)\n"
               "    return data\n"
               "os.read = reading\n")
    done = _run_all_with(prelude, "--json", "--outbox", "out", "--now", iso(NOW), shop.folder, cwd=tmp_path)
    document = json.loads(done.stdout)
    (row,) = document["shops"]
    assert done.returncode == 130, done.stderr
    assert row["decisions"] == row["counts"]["carts"] == document["counts"]["carts"] == 3, row
    assert row["exit_code"] in (0, 130) and row.get("error", {"code": "interrupted"})["code"] == "interrupted", row


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux's setpriv (to be refused as a user is)")
def test_a_config_run_all_cannot_look_at_costs_that_shop_only(make_shop: Callable[[str], Shop],
                                                               tmp_path: Path) -> None:
    """A shop's folder run-all may not search (another user's, 0700), or a symlink loop where a
    shop was: looking at the path raised, and run-all stopped before any shop (exit 70, "a bug");
    then the shop's own run did the same. Run without the capability to read any file (root
    here), as a user without the permission is refused."""
    good, locked = _shops(make_shop, 2, carts=3)
    locked.folder.chmod(0)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    try:
        done = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m",
                               "cartrescue.cli", "run-all", "--json", "--now", iso(NOW), str(good.folder),
                               str(locked.config_path), str(tmp_path / "loop")], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, check=False)
    finally:
        locked.folder.chmod(0o755)
    document = json.loads(done.stdout)
    assert done.returncode == 2, done.stderr
    assert [(row["exit_code"], row.get("error", {}).get("code")) for row in document["shops"]] == [
        (0, None), (2, "config"), (2, "config")]
    assert document["shops"][1]["error"]["message"] == f"{locked.config_path}: cannot read: Permission denied"
    assert document["shops"][0]["counts"]["send"] == 3


def test_a_shops_config_error_names_its_config_once_on_its_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    done = _run_all(missing, cwd=tmp_path)
    (line,) = [line for line in done.stderr.splitlines() if "config file not found" in line]
    assert done.returncode == 2 and line.count(str(missing)) == 1, line


@pytest.mark.smtp
@pytest.mark.slow
def test_a_shop_stopped_with_messages_in_flight_says_how_many_as_run_does(make_shop: Callable[[str], Shop],
                                                                          tmp_path: Path) -> None:
    """``run`` stopped while its messages wait for the relay's reply says ``stopped: 0 delivered,
    0 failed, 3 in flight without an answer`` (they keep their claim, never resent). A shop's run
    under run-all wrote only its document, and run-all said ``interrupted`` and a row of ``sent
    0, failed 0``: cron's mail left out the customers whose reminder may never have arrived."""
    with LoopbackSMTP(faults=[Fault(r"@", "late", stage="DATA", delay=30)]) as server:
        (slow,) = _shops(make_shop, 1, carts=3)
        slow.configure(smtp=server.smtp_config(timeout="60s")).write()
        done = _run_all("--send", "--quiet", "--timeout", "2s", "--now", iso(NOW), slow.config_path, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    said = " ".join(done.stderr.split())
    assert f"{slow.config_path}: stopped: 0 delivered, 0 failed, 3 in flight without an answer" in said
    assert [message["status"] for message in slow.messages()] == ["claimed"] * 3  # kept, as the line says


@pytest.mark.smtp
@pytest.mark.slow
def test_the_progress_bar_names_the_shop_running_longest_and_keeps_counting_its_time(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """On a terminal the bar was redrawn only when a shop ended: while one shop waited for a slow
    relay, it stood still (its clock too) and said nothing of which shop it waited for."""
    from terminal import plain, run_in_terminal

    with LoopbackSMTP(faults=[Fault(r"^c\d@", "late", stage="DATA", delay=4)]) as server:
        (slow,) = _shops(make_shop, 1, carts=2)
        slow.configure(smtp=server.smtp_config()).write()
        code, output = run_in_terminal(["run-all", "--send", "--now", iso(NOW), "shop0"], cwd=tmp_path, columns=120)
    assert code == 0, output[-2000:]
    bars = [line for line in plain(output) if line.startswith("shops ")]
    running = [line for line in bars if "shop0/cartrescue.yaml" in line]
    assert any(re.search(r"shop0/cartrescue\.yaml [2-9] s", line) for line in running), bars


def test_a_config_path_not_in_utf_8_costs_that_shop_only(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """A shop's folder named in Latin-1 (unpacked from a Windows zip): run-all wrote its path into
    the document and the table as it had it, stdout refused the bytes, and the whole round was
    reported as one internal error (exit 70): no shop's row, no table, for cron or a script."""
    import os

    good, other = _shops(make_shop, 2, carts=3)
    latin = tmp_path / os.fsdecode(b"caf\xe9")
    other.folder.rename(latin)
    done = _run_all("--json", "--now", iso(NOW), good.folder, latin, cwd=tmp_path)
    document = json.loads(done.stdout)
    assert [row["config"] for row in document["shops"]] == [str(good.config_path),
                                                            str(tmp_path / "caf\\xe9" / "cartrescue.yaml")]
    assert document["shops"][0]["exit_code"] == 0 and document["shops"][0]["counts"]["send"] == 3
    table = _run_all("--now", iso(NOW), good.folder, latin, cwd=tmp_path)
    assert "run-all (dry-run): 2 shops" in table.stdout and "caf\\xe9" in table.stdout, table.stderr


def test_a_config_error_in_a_folder_not_named_in_utf8_names_the_config_once(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """The shop's own run names its config as Python holds the name (``caf\\udce9``), run-all as
    it writes it (``caf\\xe9``): the two were taken for two names, so the error named the config
    twice, in two spellings, in the document and on stderr, and the document's message held a
    lone surrogate that strict JSON readers refuse or replace."""
    import os

    good, other = _shops(make_shop, 2, carts=3)
    other.configure(eligibility={"cutoff": "45x"}).write()
    latin = tmp_path / os.fsdecode(b"caf\xe9")
    other.folder.rename(latin)
    done = _run_all("--json", "--now", iso(NOW), good.folder, latin, cwd=tmp_path)
    document = json.loads(done.stdout)
    name = str(tmp_path / "caf\\xe9" / "cartrescue.yaml")
    message = document["shops"][1]["error"]["message"]
    assert message.startswith(f"{name}: eligibility.cutoff") and message.count("cartrescue.yaml") == 1, ascii(message)
    message.encode("utf-8")  # no lone surrogate
    assert document["error"]["message"] == message
    said = [line for line in done.stderr.splitlines() if "eligibility.cutoff" in line]
    assert said and all(line.count("cartrescue.yaml") == 1 for line in said), ascii(done.stderr)


def test_the_table_of_one_shop_says_one_shop(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    (only,) = _shops(make_shop, 1, carts=2)
    done = _run_all("--now", iso(NOW), only.folder, cwd=tmp_path)
    assert re.search(r"^run-all \(dry-run\): 1 shop\s*$", done.stdout, re.M), done.stdout


# -- a copied shop folder --------------------------------------------------------------------------


def _copied_shops(make_shop: Callable[[str], Shop], tmp_path: Path, server: LoopbackSMTP) -> tuple[Shop, Shop]:
    """``acme`` and ``acme-test``, a copy of its config (its own ledger beside it) over the same export."""
    export = tmp_path / "exports"
    export.mkdir()
    acme, copy = make_shop("acme"), make_shop("acme-test")
    for shop in (acme, copy):
        shop.add(*(cart(f"d{n}", email=f"d{n}@example.com") for n in range(5)))
        shop.configure(smtp=server.smtp_config(),
                       source={"carts": str(export / "carts.csv"), "orders": str(export / "orders.csv")})
        shop.write()
    for name in ("carts.csv", "orders.csv"):
        shutil.copy(acme.folder / name, export / name)
    return acme, copy


def _take_sources(folder: str, config: str, count: int, found: Any) -> None:
    """One shop's process of a round: take ``count`` sources, report the names it was refused by."""
    import os

    from cartrescue.batch import ROUND_ENV, take_in_round

    os.environ[ROUND_ENV] = folder
    found.put([take_in_round(f"source-{n}", Path(config)) for n in range(count)])


def test_a_shop_refused_a_source_another_took_always_learns_which_shop_took_it(tmp_path: Path) -> None:
    """The file of a source was made empty, then written: a shop that found it in between was
    refused naming no shop ("reads the same carts as  in this run-all round"): the CI saw it."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    found = context.Queue()
    configs = [f"/srv/shops/{name}/cartrescue.yaml" for name in ("acme", "acme-test", "acme-old")]
    shops = [context.Process(target=_take_sources, args=(str(tmp_path), config, 3000, found)) for config in configs]
    for shop in shops:
        shop.start()
    answers = [found.get(timeout=120) for _shop in shops]
    for shop in shops:
        shop.join()
    refused = [other for answer in answers for other in answer if other is not None]
    assert len(refused) == 2 * 3000 and set(refused) <= set(configs)  # each source taken once, by a named shop
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(f"source-{n}" for n in range(3000))


@pytest.mark.smtp
def test_a_copied_shop_folder_over_the_same_export_delivers_no_step_twice(make_shop: Callable[[str], Shop],
                                                                         tmp_path: Path) -> None:
    with LoopbackSMTP() as server:
        acme, copy = _copied_shops(make_shop, tmp_path, server)
        done = _run_all("--send", "--json", "--jobs", "2", "--now", iso(NOW), acme.config_path, copy.config_path,
                        cwd=tmp_path)
        server.wait_for(5)
        received = server.recipients()
    assert set(received.values()) == {1} and len(received) == 5  # every customer once
    document = json.loads(done.stdout)
    assert done.returncode == 2 and document["exit_code"] == 2  # loud: a person must look
    delivered = [row for row in document["shops"] if row["exit_code"] == 0]
    refused = [row for row in document["shops"] if row["exit_code"] == 2]
    assert len(delivered) == len(refused) == 1 and delivered[0]["counts"]["sent"] == 5
    assert refused[0]["counts"].get("sent", 0) == 0 and delivered[0]["config"] in refused[0]["error"]["message"]
    assert "same carts" in done.stderr


def test_shops_sharing_a_database_under_other_table_prefixes_are_other_shops(tmp_path: Path) -> None:
    from cartrescue.config import load_config
    from cartrescue.sources import source_identity

    def config(name: str, **source: Any) -> Any:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cartrescue.yaml").write_text(yaml.safe_dump(dict(BASE_CONFIG, source=source)), encoding="utf-8")
        return load_config(folder / "cartrescue.yaml")

    url = "mysql+pymysql://shop:secret@db.example.com/agency"
    first = config("a", type="magento2", url=url, prefix="a_")
    second = config("b", type="magento2", url=url, prefix="b_")
    copied = config("c", type="magento2", url=url.replace("secret", "other"), prefix="a_")
    assert source_identity(first) != source_identity(second)
    assert source_identity(first) == source_identity(copied)  # the same tables, whoever logs in
    assert "secret" not in source_identity(first)


def _sqlite_shop_database(path: Path, rows: list[dict[str, str]]) -> None:
    """A shop's SQLite database at ``path``: one ``carts`` table of the CSV format's columns."""
    import sqlite3

    from conftest import CART_COLUMNS

    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(f"CREATE TABLE carts ({', '.join(f'{column} TEXT' for column in CART_COLUMNS)})")
        connection.executemany(f"INSERT INTO carts VALUES ({', '.join('?' * len(CART_COLUMNS))})",
                               [[row.get(column) or None for column in CART_COLUMNS] for row in rows])
    connection.close()


@pytest.mark.smtp
def test_a_copied_shop_folder_over_one_sqlite_database_by_a_relative_path_delivers_no_step_twice(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    """``sqlite:///../exports/shop.db`` in ``acme`` and in its copy ``acme-test`` is one file, but
    the round compared the paths as joined to each folder (``acme/../exports/shop.db``,
    ``acme-test/../exports/shop.db``): both shops delivered, every customer got each step twice."""
    _sqlite_shop_database(tmp_path / "exports" / "shop.db",
                          [row for n in range(5) for row in cart(f"d{n}", email=f"d{n}@example.com")])
    with LoopbackSMTP() as server:
        shops = []
        for name in ("acme", "acme-test"):
            shop = make_shop(name)
            shop.configure(smtp=server.smtp_config())
            shop.config["source"] = {"type": "sql", "url": "sqlite:///../exports/shop.db",
                                     "queries": {"carts": "SELECT * FROM carts ORDER BY cart_id"}}
            shop.write()
            shops.append(shop)
        done = _run_all("--send", "--json", "--jobs", "2", "--now", iso(NOW), *(shop.config_path for shop in shops),
                        cwd=tmp_path)
        server.wait_for(5)
        time.sleep(0.5)  # a second shop's mail, had it gone, would be in by now
        received = server.recipients()
    assert len(received) == 5 and set(received.values()) == {1}, received  # every customer once
    assert done.returncode == 2 and "same carts" in done.stderr, done.stderr


def test_one_shop_database_is_one_source_however_its_url_spells_the_server(tmp_path: Path) -> None:
    """The default port written out or left off, the host's case, MariaDB's own dialect name: one
    server and database, so one source (a copy whose URL was retyped sent every step twice)."""
    from cartrescue.config import load_config
    from cartrescue.sources import source_identity

    def identity(name: str, url: str) -> str:
        folder = tmp_path / name
        folder.mkdir()
        source = {"type": "magento2", "url": url}
        (folder / "cartrescue.yaml").write_text(yaml.safe_dump(dict(BASE_CONFIG, source=source)), encoding="utf-8")
        return source_identity(load_config(folder / "cartrescue.yaml"))

    assert len({identity("a", "mysql+pymysql://shop@db.example.com/agency"),
                identity("b", "mysql+pymysql://shop@db.example.com:3306/agency"),
                identity("c", "mysql+pymysql://shop@DB.Example.com/agency"),
                identity("d", "mariadb+pymysql://shop@db.example.com/agency")}) == 1
    assert identity("e", "postgresql+psycopg://shop@db.example.com/agency") == \
        identity("f", "postgresql://shop@db.example.com:5432/agency")
    assert identity("g", "mysql+pymysql://shop@db.example.com:3307/agency") != identity("h", "mysql+pymysql://shop@db.example.com/agency")


@pytest.mark.smtp
def test_a_dry_run_of_a_copied_shop_folder_says_a_sending_round_would_refuse_the_copy(
        make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    with LoopbackSMTP() as server:
        acme, copy = _copied_shops(make_shop, tmp_path, server)
        done = _run_all("--json", "--jobs", "1", "--now", iso(NOW), acme.config_path, copy.config_path, cwd=tmp_path)
    first, second = json.loads(done.stdout)["shops"]
    assert done.returncode == 0 and first["notes"] == []
    assert [note.split(": ")[0] for note in second["notes"]] == ["a sending run would stop (exit 2)"]
    assert str(acme.config_path) in second["notes"][0] and "same carts" in second["notes"][0]
