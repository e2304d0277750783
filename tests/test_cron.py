"""Every cron line of the README and docs/ runs as written, the way cron runs it: `sh -c`, a
bare environment, the crontab's variables, from the home folder; cron mails whatever a job
prints, so a healthy shop's jobs print nothing, and the ones that need a person print why."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from smtpserver import LoopbackSMTP

from cartrescue.ledger import Ledger
from cartrescue.shards import Shard
from conftest import CART_COLUMNS, ORDER_COLUMNS, REPO, cart, cli, write_csv

pytestmark = pytest.mark.smtp

SHOP = "/srv/shop"  # the folder the documented lines cd into; the test's shop stands in for it
SECRETS = {"CARTRESCUE_SECRET": "a-long-random-value-for-the-test", "SMTP_PASSWORD": "s3cret"}
CRON_PATH = "/usr/bin:/bin"  # the PATH cron gives a job (crontab(5)); `pip install` puts cartrescue elsewhere
_JOB = re.compile(r"^(@\w+|(?:[\d*/,-]+\s+){4}[\d*/,-]+)\s+(.+)$")
_VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def cron_blocks() -> list[tuple[str, str]]:
    """(file, block) for every ```cron block of README.md and docs/*.md."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"```cron\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
            found.append((path.relative_to(REPO).as_posix(), block))
    return found


def parse(block: str) -> tuple[dict[str, str], list[str]]:
    """A crontab: its variables and its jobs' commands (what cron hands to ``sh -c``)."""
    variables: dict[str, str] = {}
    jobs: list[str] = []
    for line in block.splitlines():
        line = line.strip()  # a block inside a list item is indented; so may a crontab line be
        if not line or line.startswith("#"):
            continue
        job = _JOB.match(line)
        variable = _VARIABLE.match(line)
        if job:
            assert "%" not in job.group(2), f"cron turns % into a new line: {line}"
            jobs.append(job.group(2))
        elif variable:
            variables[variable.group(1)] = variable.group(2)
        else:
            raise AssertionError(f"not a crontab line: {line!r}")
    return variables, jobs


def test_the_documentation_has_cron_lines_for_the_run_and_the_doctor() -> None:
    blocks = cron_blocks()
    commands = [job for _file, block in blocks for job in parse(block)[1]]
    assert {file for file, _ in blocks} >= {"README.md", "docs/sending.md"}
    assert any("run --send --quiet" in c for c in commands) and any("doctor --quiet" in c for c in commands)


class Cron:
    """A shop made with `init` where the documented lines cd to, a relay, and cron's way of running."""

    def __init__(self, folder: Path, server: LoopbackSMTP) -> None:
        self.home = folder / "home"
        self.home.mkdir()
        self.shop = folder / "shop"
        assert cli("init", str(self.shop)).exit_code == 0
        config_path = self.shop / "cartrescue.yaml"
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        config["eligibility"]["quiet_hours"] = None  # the test runs at any hour
        config["smtp"].update(server.smtp_config(password="${SMTP_PASSWORD}"))
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        now = datetime.now(timezone.utc)
        write_csv(self.shop / "carts.csv", [row for i in range(3) for row in cart(f"c{i}", now=now)], CART_COLUMNS)
        write_csv(self.shop / "orders.csv", [], ORDER_COLUMNS)
        venv(self.shop)

    def run(self, command: str, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", command.replace(SHOP, str(self.shop))], cwd=self.home,
                              env=cron_environment(self.home, self.shop, variables),
                              capture_output=True, text=True, timeout=120)


def venv(shop: Path) -> None:
    """The shop's venv where the documented lines expect it (``/srv/shop/.venv``): the suite's own."""
    (shop / ".venv").mkdir()
    (shop / ".venv" / "bin").symlink_to(Path(sys.executable).parent, target_is_directory=True)


def cron_environment(home: Path, shop: Path, variables: dict[str, str]) -> dict[str, str]:
    """What cron gives a job: HOME, LOGNAME, SHELL, its own PATH, then the crontab's variables."""
    env = {"HOME": str(home), "LOGNAME": "shop", "SHELL": "/bin/sh", "PATH": CRON_PATH}
    for name, value in variables.items():
        if name == "PATH":
            env[name] = value.replace(SHOP, str(shop))
            continue
        assert name in SECRETS, f"a cron variable the test does not know: {name}={value}"
        env[name] = SECRETS[name] if "…" in value else value
    return env


@pytest.mark.parametrize(("file", "block"), cron_blocks(), ids=[file for file, _ in cron_blocks()])
def test_each_crontab_finds_cartrescue_on_crons_own_path(tmp_path: Path, file: str, block: str) -> None:
    """Cron's PATH is /usr/bin:/bin; a crontab copied as written that does not say where cartrescue is
    mails `cartrescue: not found` every ten minutes, and no reminder goes out."""
    variables, jobs = parse(block)
    venv(tmp_path)
    for command in jobs:
        found = subprocess.run(["/bin/sh", "-c", "command -v cartrescue"], cwd=tmp_path, capture_output=True,
                               text=True, env=cron_environment(tmp_path, tmp_path, variables))
        assert found.returncode == 0, f"{file}: {command}: cartrescue is not on cron's PATH {CRON_PATH}"


@pytest.mark.slow
@pytest.mark.parametrize(("file", "block"), cron_blocks(), ids=[file for file, _ in cron_blocks()])
def test_each_cron_block_runs_as_written_and_is_silent_while_all_is_well(tmp_path: Path, file: str, block: str) -> None:
    variables, jobs = parse(block)
    with LoopbackSMTP("starttls", auth=("shop", SECRETS["SMTP_PASSWORD"])) as server:
        cron = Cron(tmp_path, server)
        for command in jobs:
            done = cron.run(command, variables)
            assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), (command, done.stdout, done.stderr)
        expected: set[str] = set()
        for command in jobs:  # a send line delivers every due cart, or those of its shard
            if "run --send" in command:
                shard = re.search(r"--shard (\d+/\d+)", command)
                owner = Shard.parse(shard.group(1)) if shard else Shard(1, 1)
                expected |= {f"c{i}@example.com" for i in range(3) if owner.owns(f"c{i}@example.com", f"csv:c{i}")}
        expected |= {address for c in jobs for address in re.findall(r"--email (\S+@\S+)", c)}  # report digests
        assert server.recipients() == {address: 1 for address in expected}

        if not any("doctor" in command for command in jobs):
            return
        doctor = next(command for command in jobs if "doctor" in command)
        ledger = Ledger(f"sqlite:///{cron.shop / 'cartrescue.db'}")
        with ledger.engine.begin() as conn:  # cron stopped running the send job three hours ago
            conn.exec_driver_sql("UPDATE cr_run SET finished_at = ?",
                                 (datetime.now(timezone.utc) - timedelta(hours=3),))
        ledger.close()
        stale = cron.run(doctor, variables)
    assert stale.returncode == 5
    lines = (stale.stdout + stale.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartrescue doctor: staleness failed:"), lines
    assert "reminders have stopped" in lines[0]


@pytest.mark.slow
def test_the_send_line_is_silent_when_another_run_holds_the_lock(tmp_path: Path) -> None:
    variables, jobs = parse(dict(cron_blocks())["README.md"])
    send = next(command for command in jobs if "run --send" in command)
    with LoopbackSMTP("starttls", auth=("shop", SECRETS["SMTP_PASSWORD"])) as server:
        cron = Cron(tmp_path, server)
        ledger = Ledger(f"sqlite:///{cron.shop / 'cartrescue.db'}")
        holder = ledger.start_run("send", datetime.now(timezone.utc))
        with ledger.lock(holder, timedelta(hours=2)):
            done = cron.run(send, variables)
        ledger.close()
    assert (done.returncode, done.stdout, done.stderr) == (4, "", "")
    assert server.messages == []
    with sqlite3.connect(cron.shop / "cartrescue.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM cr_message").fetchone()[0] == 0


def test_the_run_that_finds_a_killed_runs_claims_says_so_once_under_quiet(tmp_path: Path) -> None:
    """Claims a killed run left without outcome stay so for good (not resent: at most once). The
    cron line hears of them once, from the run that finds the killed run and closes it, not
    every ten minutes after (``doctor`` keeps listing them)."""
    from conftest import NOW, Shop, iso

    from cartrescue.ledger import ClaimRequest

    shop = Shop(tmp_path)
    shop.add(cart("c1")).configure(outbox={"path": str(tmp_path / "out")})
    shop.write()
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        killed = ledger.start_run("send", NOW)
        with ledger.lock(killed, timedelta(hours=1)):
            ledger.claim(killed, [ClaimRequest(f"csv:k{n}", f"k{n}", f"k{n}@example.com", 1, "email", "smtp",
                                               "reminder-1", None, "standard", 1.0) for n in range(2)], NOW)
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        with sqlite3.connect(tmp_path / "ledger.db") as db:  # its process is gone: killed (kill -9, OOM)
            db.execute("UPDATE cr_run SET pid = ? WHERE id = ?", (int(gone.stdout), killed))
    finally:
        ledger.close()

    def quiet_run() -> str:
        result = cli("run", "--outbox", str(tmp_path / "out"), "--quiet", "--config", str(shop.config_path),
                     "--now", iso(NOW))
        assert result.exit_code == 0, result.output
        return result.stdout

    said = " ".join(quiet_run().replace("│", " ").split())  # the panel's lines, without its borders
    assert "2 earlier claims have no outcome" in said
    assert "2 of them were left by a run killed (or stopped with messages in flight: Ctrl-C, SIGTERM, a ledger " \
        "error) since the last run" in said
    assert quiet_run() == ""  # said once
    report = cli("run", "--outbox", str(tmp_path / "out"), "--json", "--config", str(shop.config_path),
                 "--now", iso(NOW)).json
    assert (report["unconfirmed"], report["killed_left"]) == (2, 0)
