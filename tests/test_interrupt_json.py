"""Ctrl-C or SIGTERM at any moment: ``--json`` still prints exactly one valid document.

The real command line in its own process; the moment of the signal is pinned down from outside
(a config file that is a FIFO the run waits on, a stdout pipe the run has filled), never guessed
with a sleep.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from conftest import NOW, REPO, Shop, cart, iso, stopped_reading_fifo

PIPE_CAPACITY = 65536  # Linux's default; the run blocks writing once this much is unread


#: What the console script ``cartrescue`` runs (pyproject.toml), from a checkout.
CONSOLE_SCRIPT = "import sys; from cartrescue.entry import main; sys.argv[0] = 'cartrescue'; main()"


def start(*args: str, cwd: Path, ctrl_c: bool = False) -> subprocess.Popen[bytes]:
    """The command line in a process of its own. ``ctrl_c``: as a user's shell starts the console
    script, with SIGINT's default action (a test runner may start its processes with SIGINT
    ignored, which the run then keeps ignoring, as under nohup)."""
    def take_ctrl_c() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    command = ["-c", CONSOLE_SCRIPT] if ctrl_c else ["-m", "cartrescue.cli"]
    return subprocess.Popen([sys.executable, *command, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=take_ctrl_c if ctrl_c else None)


def unread(process: subprocess.Popen[bytes]) -> int:
    """Bytes the process wrote to its stdout pipe that nobody has read yet."""
    assert process.stdout is not None
    return int.from_bytes(fcntl.ioctl(process.stdout.fileno(), termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def test_an_interrupt_before_the_document_begins_still_prints_one(tmp_path: Path) -> None:
    """Stopped while it reads its config (typer ends such a command with a silent exit 130)."""
    config = tmp_path / "cartrescue.yaml"
    os.mkfifo(config)
    process = start("run", "--json", "--config", str(config), cwd=tmp_path)
    out, err = stopped_reading_fifo(process, config)  # while the run waits for the config's text
    assert process.returncode == 130
    document = json.loads(out)
    assert document["error"] == {"code": "interrupted", "exit_code": 130, "message": "interrupted"}
    assert document["counts"]["carts"] == document["counts"]["sent"] == 0  # a run's counts, none yet
    assert err.decode().strip() == "interrupted"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize(("carts", "ends"), [(300, "whole"), (1500, "interrupted")])
def test_an_interrupt_while_the_document_waits_on_a_full_pipe_keeps_it_valid(shop: Shop, carts: int,
                                                                            ends: str, stop: signal.Signals) -> None:
    """The reader stops reading (a slow ``| jq``, a busy parent) and the run blocks writing its
    document; then SIGTERM. 300 carts: the run had ended, blocked in writing the document's
    end, and its outcome stands (exit 0). 1,500 carts: it was still deciding, blocked in a block
    of decisions, and the document ends with the interruption (exit 130). Before, the signal
    broke into the write: its text could be lost (a document cut in the middle), and a run that
    had ended exited 130 under a document that said nothing of it."""
    shop.add(*(cart(f"c{n:04d}", email=f"c{n:04d}@example.com") for n in range(carts)))
    shop.write()
    process = start("run", "--json", "--now", iso(NOW), "--config", str(shop.config_path), cwd=REPO,
                    ctrl_c=True)
    deadline = time.monotonic() + 60
    while unread(process) < PIPE_CAPACITY and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert unread(process) == PIPE_CAPACITY, "the run never filled its stdout pipe"
    process.send_signal(stop)
    out, err = process.communicate(timeout=60)
    document = json.loads(out)  # one valid document
    if ends == "whole":
        assert process.returncode == 0, err.decode()
        assert "error" not in document and document["counts"]["carts"] == carts == len(document["decisions"])
    else:
        assert process.returncode == 130, err.decode()
        assert document["error"]["code"] == "interrupted" and 0 < len(document["decisions"]) < carts


def test_a_stop_that_lands_in_an_exec_of_a_string_still_exits_130(shop: Shop, tmp_path: Path) -> None:
    """A dataclass builds its methods with ``exec`` of a string, and modules are imported lazily
    during a run: a stop can land there. CPython then marks the KeyboardInterrupt unhandled,
    however it was handled after, and a ``python -m`` process (the console script's way too)
    kills itself with SIGINT as it exits: -2, read as "killed" by the parent of run --workers
    and run-all. The moment is forced here, by a module run as ``cartrescue`` is."""
    shop.write()
    (tmp_path / "stopped_in_exec.py").write_text("\n".join([
        "import runpy, sys",
        "import cartrescue.commands.run as run",
        "original = run.load",
        "def load(path, **options):",
        "    exec('import signal; signal.raise_signal(signal.SIGTERM)')",
        "    return original(path, **options)",
        "run.load = load",
        "sys.argv = ['cartrescue', 'run', '--json', '--config', sys.argv[1]]",
        "runpy.run_module('cartrescue.cli', run_name='__main__')",
    ]), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "stopped_in_exec", str(shop.config_path)], cwd=tmp_path,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 130, done.stderr.decode()
    assert json.loads(done.stdout)["error"]["code"] == "interrupted"


def test_a_stop_while_a_commands_document_waits_on_a_full_pipe_lets_it_end_whole(shop: Shop, tmp_path: Path) -> None:
    """Any command's one document (here ``suppress list --json``, ~500 KB): a SIGTERM while the
    write is blocked on a reader that stopped reading lets the command finish it. Raised inside
    the write, the stop lost the text the pipe had no room for, and cli.main printed a second,
    ``interrupted`` document after the cut one (exit 130): nothing a script could parse."""
    shop.write()
    addresses = tmp_path / "unsubscribed.txt"
    addresses.write_text("".join(f"person{n:05d}@example.com\n" for n in range(2500)), encoding="utf-8")
    assert shop.cli("suppress", "import", str(addresses), now=None).exit_code == 0
    process = start("suppress", "list", "--json", "--config", str(shop.config_path), cwd=REPO)
    deadline = time.monotonic() + 60
    while unread(process) < PIPE_CAPACITY and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert unread(process) == PIPE_CAPACITY, "the command never filled its stdout pipe"
    process.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # the handler has run (or the process has died) before anything is read
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    assert len(json.loads(out)["suppressions"]) == 2500  # one valid document, whole


_STOP_DURING_IMPORTS = """
import os, signal, sys
sys.argv = ["cartrescue", *sys.argv[1:]]

class StopOnTyper:  # SIGTERM while the command line is still being imported
    def find_spec(self, name, path=None, target=None):
        if name == "typer":
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, StopOnTyper())
from cartrescue.entry import main
main()
"""


def test_a_stop_while_the_command_line_is_imported_still_gives_one_document_and_130(tmp_path: Path) -> None:
    """The console script's handlers go in before its imports: no exit 143 without a word."""
    done = subprocess.run([sys.executable, "-c", _STOP_DURING_IMPORTS, "run", "--json"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert json.loads(done.stdout)["error"]["code"] == "interrupted"


def test_a_run_stopped_while_the_command_line_is_imported_gives_its_counts_all_zero(tmp_path: Path) -> None:
    """As a run stopped later, before it began: the console script's own document had the
    ``error`` alone, and a script reading every run's ``counts`` met a KeyError."""
    from cartrescue.pipeline import Counts

    done = subprocess.run([sys.executable, "-c", _STOP_DURING_IMPORTS, "run", "--json"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert json.loads(done.stdout) == {"error": {"code": "interrupted", "exit_code": 130, "message": "interrupted"},
                                       "counts": Counts().as_dict()}


def test_the_console_script_is_the_entry_that_installs_the_handlers_first() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["cartrescue"] == "cartrescue.entry:main"


def _run_stopped_importing(tmp_path: Path, module: str) -> subprocess.CompletedProcess[str]:
    """``run --json`` on a shop without carts, SIGTERM'd as it imports ``module``."""
    script = _STOP_DURING_IMPORTS.replace('name == "typer"', f'name == "{module}"')
    (tmp_path / "cartrescue.yaml").write_text("source: {type: csv, carts: carts.csv}\n", encoding="utf-8")
    (tmp_path / "carts.csv").write_text("cart_id,email,currency,created_at,sku,name,quantity,unit_price\n",
                                        encoding="utf-8")
    return subprocess.run([sys.executable, "-c", script, "run", "--json", "--workers", "1"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)


def test_a_run_stopped_before_it_began_gives_its_counts_all_zero(tmp_path: Path) -> None:
    done = _run_stopped_importing(tmp_path, "cartrescue.job")
    assert done.returncode == 130, (done.returncode, done.stderr)
    document = json.loads(done.stdout)
    assert document["error"]["code"] == "interrupted" and document["counts"]["sent"] == 0


def test_the_counts_of_a_run_stopped_before_it_began_are_a_runs_counts() -> None:
    from cartrescue.entry import NO_COUNTS
    from cartrescue.pipeline import Counts

    assert NO_COUNTS == Counts().as_dict()


def test_the_counts_of_shards_or_shops_that_all_failed_before_counting_are_a_runs_counts() -> None:
    """run-all's document for shops that all failed on their config had counts without
    ``failures`` (merge_counts' shape missed the key), which a script reading it looked up."""
    from cartrescue.pipeline import Counts
    from cartrescue.workers import merge_counts

    assert merge_counts([]) == Counts().as_dict()


def test_a_stop_while_the_run_imports_its_modules_still_gives_one_document(tmp_path: Path) -> None:
    """The stop lands inside a lazy import of the run (asyncio half imported): the interrupted
    document must not import those modules again (it did: NameError, a traceback, exit 1)."""
    done = _run_stopped_importing(tmp_path, "asyncio.base_events")
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert json.loads(done.stdout)["counts"]["sent"] == 0 and "Traceback" not in done.stderr


def test_a_stop_while_the_command_line_gets_ready_still_gives_one_document(tmp_path: Path) -> None:
    """The stop lands after the command line is imported, before it runs the command (cli.main
    imports logging to quiet the libraries' logs): a traceback on stderr, no document on stdout."""
    done = _run_stopped_importing(tmp_path, "logging")
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert json.loads(done.stdout)["error"]["code"] == "interrupted" and "Traceback" not in done.stderr


_STOP_ONCE_DURING_IMPORTS = """
import os, signal, sys
module, *arguments = sys.argv[1:]
sys.argv = ["cartrescue", *arguments]

class StopOnce:  # SIGTERM as ``module`` is first looked for; a later import of it goes on
    stopped = False
    def find_spec(self, name, path=None, target=None):
        if name == module and not StopOnce.stopped:
            StopOnce.stopped = True
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, StopOnce())
from cartrescue.entry import main
main()
"""


@pytest.mark.parametrize("module", ["json", "typing"])
def test_a_stop_while_the_console_script_loads_its_first_modules_still_gives_one_document(
        tmp_path: Path, module: str) -> None:
    """A stop in the console script's first milliseconds (cron's ``timeout``, a service manager,
    Ctrl-C; on a host busy with overlapping ticks they last a tenth of a second) landed before
    the handlers were in: ``cartrescue.entry`` imported json and typing (and ``stops`` typing)
    first, and the run died of the signal, exit 143 (SIGINT: a traceback), without a document."""
    done = subprocess.run([sys.executable, "-c", _STOP_ONCE_DURING_IMPORTS, module, "run", "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert json.loads(done.stdout)["error"]["code"] == "interrupted" and "Traceback" not in done.stderr


@pytest.mark.parametrize("configs", [["cartrescue.yaml"], ["cartrescue.yaml", "other/cartrescue.yaml", "--jobs", "2"]],
                         ids=["one-shop", "jobs-2"])
def test_report_all_stopped_while_sqlalchemy_is_half_imported_still_gives_its_document(
        tmp_path: Path, configs: list[str]) -> None:
    """The stop lands while SQLAlchemy is half imported: in the one shop's report, or in the
    modules report-all imports before it forks its shops. The totals after the stop imported it
    again, which fails (``module 'sqlalchemy.sql' has no attribute 'base'``): exit 70, an
    internal error, instead of the interrupted document and 130."""
    for folder in (tmp_path, tmp_path / "other"):
        folder.mkdir(exist_ok=True)
        (folder / "cartrescue.yaml").write_text("source: {type: csv, carts: carts.csv}\n", encoding="utf-8")
        (folder / "carts.csv").write_text("cart_id,email,currency,created_at,sku,name,quantity,unit_price\n",
                                          encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", _STOP_ONCE_DURING_IMPORTS, "sqlalchemy.sql.elements", "report-all",
                           "--json", *configs], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 130, (done.returncode, done.stderr)
    document = json.loads(done.stdout)
    assert document["error"]["code"] == "interrupted" and "Traceback" not in done.stderr
    assert [shop["error"]["code"] for shop in document["shops"]][0] == "interrupted"


# A stop at a moment pinned down from inside the real command line: the script patches the run's
# own steps (as a module run as ``cartrescue`` is) and raises the signal there. SIGINT is given
# Python's default handler first, as a terminal's shell gives it: a test runner may start its
# processes with SIGINT ignored, which the run then keeps ignoring (nohup's case).
_STOPPED_AT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
import cartrescue.commands.run as run
import cartrescue.output as output
import cartrescue.processes as processes
import cartrescue.workers as workers

moments, SIGNAL, *arguments = sys.argv[1:]
moments, SIGNAL = moments.split(","), getattr(signal, SIGNAL)
PARENT = os.getpid()  # the run's own process, not a worker forked from it
raised = []

def stop_once(where):
    if os.getpid() == PARENT and where in moments and where not in raised:
        raised.append(where)
        signal.raise_signal(SIGNAL)

def patched(owner, name, where, before=True):
    original = getattr(owner, name)
    def step(*args, **kwargs):
        if before:
            stop_once(where)
        result = original(*args, **kwargs)
        if not before:
            stop_once(where)
        return result
    setattr(owner, name, step)

patched(output.JsonStream, "close", "after-document", before=False)
patched(output.JsonStream, "add_result", "first-decision")
patched(output.JsonStream, "add_lines", "first-decision")
patched(run, "stopped_after_document", "after-interrupted-document")
patched(processes, "preload", "preparing-workers")
patched(workers.Workers, "follow", "workers-started")
patched(workers._Worker, "start", "readers-started", before=False)

class StopAtTheLastStep:  # and at the interpreter's last step, its handlers back to the default
    def __del__(self, kill=os.kill, pid=PARENT, sig=SIGNAL, getpid=os.getpid):
        if getpid() == pid:
            kill(pid, sig)

sys.stop_at_the_last_step = StopAtTheLastStep()  # sys is cleared last (a __main__ global, frozen, never is)
sys.argv = ["cartrescue", *arguments]
from cartrescue.entry import main
main()
"""


def _stopped_at(shop: Shop, tmp_path: Path, moments: str, stop: str, workers: str,
                *more: str) -> subprocess.CompletedProcess[bytes]:
    """``run --json --workers N`` stopped by ``stop`` at each of ``moments`` (see _STOPPED_AT), and
    again at the interpreter's last step."""
    return subprocess.run([sys.executable, "-c", _STOPPED_AT, moments, stop, "run", "--json", "--workers", workers,
                           "--now", iso(NOW), "--config", str(shop.config_path), *more],
                          capture_output=True, cwd=tmp_path, timeout=120, check=False)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stop_after_the_runs_document_is_let_go(shop: Shop, tmp_path: Path, workers: str, stop: str) -> None:
    """README: a stop that comes after the document is let go, the exit code is the one the
    document gives. It was not: under ``--workers 2`` a Ctrl-C after the document printed a
    second one; a SIGTERM in the interpreter's last step (its handlers back to the default)
    killed the run, exit 143 under a document that said 0."""
    shop.add(*(cart(f"c{n:03d}", email=f"c{n:03d}@example.com") for n in range(40)))
    shop.write()
    done = _stopped_at(shop, tmp_path, "after-document", stop, workers)
    assert done.returncode == 0, (done.returncode, done.stderr.decode())
    document = json.loads(done.stdout)  # one document
    assert "error" not in document and document["counts"]["carts"] == 40 == len(document["decisions"])
    assert b"Traceback" not in done.stderr and b"Exception ignored" not in done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_stop_after_the_interrupted_document_prints_no_second_one(shop: Shop, tmp_path: Path,
                                                                         workers: str) -> None:
    """Ctrl-C, then Ctrl-C again as the interrupted run ends: one document (it printed two)."""
    shop.add(*(cart(f"c{n:04d}", email=f"c{n:04d}@example.com") for n in range(600)))
    shop.write()
    done = _stopped_at(shop, tmp_path, "first-decision,after-interrupted-document", "SIGINT", workers)
    assert done.returncode == 130, (done.returncode, done.stderr.decode())
    document = json.loads(done.stdout)  # one document: json.loads refuses a second one after it
    assert document["error"]["code"] == "interrupted" and len(document["decisions"]) < 600
    assert b"Traceback" not in done.stderr


def test_a_run_with_workers_stopped_before_they_start_gives_its_counts_all_zero(shop: Shop, tmp_path: Path) -> None:
    """Stopped while the run prepared its workers: the document's trailer is a run's, counts
    all zero and no worker (it had the error alone)."""
    shop.add(*(cart(f"c{n:03d}", email=f"c{n:03d}@example.com") for n in range(40)))
    shop.write()
    done = _stopped_at(shop, tmp_path, "preparing-workers", "SIGTERM", "2")
    assert done.returncode == 130, (done.returncode, done.stderr.decode())
    document = json.loads(done.stdout)
    assert document["error"]["code"] == "interrupted" and document["decisions"] == []
    assert document["counts"]["carts"] == document["counts"]["sent"] == 0 and document["workers"] == 0


@pytest.mark.parametrize("moment", ["workers-started", "readers-started"])
def test_a_run_stopped_as_its_workers_start_stops_them_and_keeps_what_they_decided(shop: Shop, tmp_path: Path,
                                                                                   moment: str) -> None:
    """Stopped in the instant between starting its workers and reading them, or as the threads
    that read them start: the workers get the stop and are read to their end, and the document
    has their counts (it had none, and the workers were left to their parent's death)."""
    shop.add(*(cart(f"c{n:03d}", email=f"c{n:03d}@example.com") for n in range(40)))
    shop.write()
    done = _stopped_at(shop, tmp_path, moment, "SIGTERM", "2")
    assert done.returncode == 130, (done.returncode, done.stderr.decode())
    document = json.loads(done.stdout)
    assert document["error"]["code"] == "interrupted" and document["workers"] == 2
    assert document["counts"]["carts"] == len(document["decisions"]) <= 40
    assert [shard["shard"] for shard in document["shards"]] == ["1/2", "2/2"]
