"""A hangup (SIGHUP: the SSH session of a developer running ``run --send`` by hand dropped) stops
a run as SIGTERM and Ctrl-C do: the messages in flight get their outcomes, the lock is released,
the run says what it had delivered (or its one ``--json`` document does), exit 130. Before, Python's
default action killed it at once: claims left without outcome, no document, no line.

The terminal's hangup reaches the whole foreground process group (the kernel sends it there), so
the tests send it to the group the command leads: its workers and shops get it too.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from smtpserver import Fault, LoopbackSMTP

from conftest import NOW, REPO, Shop, cart, iso, worker_pids

pytestmark = [pytest.mark.smtp, pytest.mark.slow]


def _start(cwd: Path, out: Path, err: Path, *arguments: str) -> subprocess.Popen[bytes]:
    """The real command line leading a process group of its own, as a shell's job leads one."""
    return subprocess.Popen([sys.executable, "-m", "cartrescue.cli", *arguments], cwd=cwd, stdout=out.open("wb"),
                            stderr=err.open("wb"), start_new_session=True)


def _hang_up_when(process: subprocess.Popen[bytes], ready: Callable[[], bool], err: Path) -> int:
    """SIGHUP to the command's process group once ``ready()``; its exit code."""
    deadline = time.monotonic() + 60
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, err.read_text()
    os.killpg(process.pid, signal.SIGHUP)
    return process.wait(60)


def _sending_shop(shop: Shop, server: LoopbackSMTP, carts: int = 60, **smtp: object) -> None:
    shop.add(*(cart(f"h{n:03d}") for n in range(carts)))
    shop.configure(smtp=server.smtp_config(**smtp)).write()


def test_a_hangup_mid_send_records_the_messages_in_flight_and_prints_one_document(shop: Shop) -> None:
    with LoopbackSMTP(faults=[Fault(r"^h", "late", stage="DATA", delay=0.2)]) as server:
        _sending_shop(shop, server, pool_size=4)
        out, err = shop.folder / "run.out", shop.folder / "run.err"
        process = _start(REPO, out, err, "run", "--send", "--json", "--config", str(shop.config_path),
                         "--now", iso(NOW))
        assert _hang_up_when(process, lambda: len(server.messages) >= 8, err) == 130, err.read_text()
        document = json.loads(out.read_text())
    assert document["error"]["code"] == "interrupted"
    statuses = [message["status"] for message in shop.messages()]
    assert set(statuses) <= {"sent", "failed_transient"}  # none left claimed
    assert document["counts"]["sent"] == statuses.count("sent") == len(server.messages) < 60
    with sqlite3.connect(shop.folder / "ledger.db") as db:
        assert db.execute("SELECT status FROM cr_run").fetchall() == [("interrupted",)]
        assert db.execute("SELECT COUNT(*) FROM cr_lock").fetchone() == (0,)


def test_a_hangup_without_json_says_what_the_run_had_delivered(shop: Shop) -> None:
    with LoopbackSMTP(faults=[Fault(r"^h", "late", stage="DATA", delay=0.2)]) as server:
        _sending_shop(shop, server, pool_size=4)
        out, err = shop.folder / "run.out", shop.folder / "run.err"
        process = _start(REPO, out, err, "run", "--send", "--config", str(shop.config_path), "--now", iso(NOW))
        assert _hang_up_when(process, lambda: len(server.messages) >= 8, err) == 130, err.read_text()
    sent = sum(message["status"] == "sent" for message in shop.messages())
    assert f"stopped: {sent} delivered" in err.read_text()


def test_a_hangup_reaching_a_run_and_its_workers_ends_them_with_one_document(shop: Shop) -> None:
    with LoopbackSMTP() as server:
        _sending_shop(shop, server, carts=200, rate_per_second=20)
        out, err = shop.folder / "run.out", shop.folder / "run.err"
        process = _start(REPO, out, err, "run", "--send", "--json", "--workers", "2", "--config",
                         str(shop.config_path), "--now", iso(NOW))
        workers: list[int] = []

        def sending() -> bool:
            workers[:] = worker_pids(process.pid)
            return len(server.messages) >= 5 and len(workers) == 2

        assert _hang_up_when(process, sending, err) == 130, err.read_text()
        document = json.loads(out.read_text())
        assert set(server.recipients().values()) == {1}
    assert document["error"]["code"] == "interrupted" and document["workers"] == 2
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert document["counts"]["sent"] == sum(message["status"] == "sent" for message in shop.messages()) > 0


def test_a_hangup_stops_run_all_as_sigterm_does(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    with LoopbackSMTP(faults=[Fault(r"^c0@", "hang")]) as server:
        stuck, waiting = make_shop("stuck"), make_shop("waiting")
        for shop in (stuck, waiting):
            shop.add(*(cart(f"{shop.folder.name}{n}", email=f"c{n}@example.com") for n in range(3)))
            shop.configure(smtp=server.smtp_config(timeout="60s")).write()
        out, err = tmp_path / "all.out", tmp_path / "all.err"
        process = _start(tmp_path, out, err, "run-all", "--send", "--json", "--jobs", "1", "--now", iso(NOW),
                         str(stuck.config_path), str(waiting.config_path))
        code = _hang_up_when(process, lambda: bool(server.attempts["c0@example.com"]), err)
    assert code == 130, err.read_text()
    document = json.loads(out.read_text())
    first, second = document["shops"]
    assert document["error"]["code"] == "interrupted" and first["exit_code"] == 130
    assert second["started"] is None and not (waiting.folder / "ledger.db").exists()


def test_under_nohup_a_hangup_is_ignored_and_the_run_finishes(shop: Shop) -> None:
    """``nohup cartrescue run --send`` asks for the run to outlive the terminal: SIGHUP stays ignored."""
    with LoopbackSMTP(faults=[Fault(r"^h", "late", stage="DATA", delay=0.05)]) as server:
        _sending_shop(shop, server, carts=20, pool_size=2)
        out, err = shop.folder / "run.out", shop.folder / "run.err"
        process = subprocess.Popen(
            [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--config", str(shop.config_path),
             "--now", iso(NOW)], cwd=REPO, stdout=out.open("wb"), stderr=err.open("wb"), start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # what nohup does
        assert _hang_up_when(process, lambda: len(server.messages) >= 2, err) == 0, err.read_text()
    assert json.loads(out.read_text())["counts"]["sent"] == 20 == len(server.messages)


def test_a_terminal_that_hangs_up_mid_send_leaves_every_message_recorded(shop: Shop) -> None:
    """The real thing: the run's controlling terminal goes away (its master end closed, as sshd
    does when the connection drops); the kernel sends SIGHUP, and writes to it fail after."""
    import fcntl
    import pty
    import termios

    with LoopbackSMTP(faults=[Fault(r"^h", "late", stage="DATA", delay=0.2)]) as server:
        _sending_shop(shop, server, pool_size=4)
        master, terminal = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--config", str(shop.config_path),
             "--now", iso(NOW)], cwd=REPO, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # its controlling terminal
        os.close(terminal)
        os.set_blocking(master, False)
        deadline = time.monotonic() + 60
        while len(server.messages) < 8 and process.poll() is None and time.monotonic() < deadline:
            try:
                os.read(master, 1 << 16)  # drained, as a terminal is
            except OSError:
                pass
            time.sleep(0.01)
        os.close(master)  # the terminal hangs up
        assert process.wait(60) == 130
    statuses = [message["status"] for message in shop.messages()]
    assert set(statuses) <= {"sent", "failed_transient"} and statuses.count("sent") == len(server.messages) < 60
    with sqlite3.connect(shop.folder / "ledger.db") as db:
        assert db.execute("SELECT status FROM cr_run").fetchall() == [("interrupted",)]
