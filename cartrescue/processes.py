"""How a worker process of ``run --workers N`` starts: forked from its parent, or a fresh interpreter.

Owns starting one worker with its stdout and stderr on pipes, and the one process interface the
parent reads (``pid``, ``stdout``, ``stderr``, ``poll``, ``wait``, ``send_signal``: a subset of
:class:`subprocess.Popen`). It must not know what a worker does (:mod:`cartrescue.workers`).

Why fork: a fresh interpreter spends ~0.5 s of CPU importing SQLAlchemy, SQLModel, pydantic, Jinja,
Babel and the channels before its first cart, and every worker paid it, on cores the other
workers needed. A forked worker inherits the modules its parent imported once (:func:`preload`)
and its first instruction is its own run. Both ways run the same command line
(``run --shard K/N --json ...``) through the same CLI entry point, so a worker behaves the same
however it started.

Fork is used only where it is safe: on Linux, from the ``cartrescue`` command itself (its standard
streams are the process's own, not a host's capture such as a test runner's) and with no other
thread alive (a fork copies locks that another thread may hold; the parent starts its reading
threads and its progress bar only after every worker has started). Elsewhere, or with
``CARTRESCUE_WORKER_START=spawn``, each worker is a fresh interpreter, as on macOS and Windows.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Literal, NoReturn, Protocol

from cartrescue.stops import SIGNALS

#: What a worker imports on its way to its first cart and its first message. The parent imports
#: them once before forking; a module missing here costs its worker the import, nothing else.
PRELOAD = (
    "cartrescue.job", "cartrescue.pipeline", "cartrescue.compose.render", "cartrescue.compose.mime",
    "cartrescue.sources.csv", "cartrescue.channels.smtp", "cartrescue.channels.pipelining", "cartrescue.output",
    "jinja2.sandbox", "babel.numbers", "babel.dates", "aiosmtplib", "uvloop",
)


class WorkerProcess(Protocol):
    """What the parent needs of a worker process (``subprocess.Popen`` has it too)."""

    pid: int
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...


def start_method() -> Literal["fork", "spawn"]:
    """``fork`` where it is safe (see the module's docstring), else ``spawn``."""
    if os.environ.get("CARTRESCUE_WORKER_START", "").strip().lower() == "spawn":
        return "spawn"
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return "spawn"
    if threading.active_count() > 1:
        return "spawn"
    if sys.stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__:
        return "spawn"  # embedded (a test runner captures the streams): the streams are not ours to pass on
    return "fork"


def preload(modules: Sequence[str] = PRELOAD) -> None:
    """Import ``modules`` (by default :data:`PRELOAD`, what a run needs) in this process, before
    its workers are forked."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional module (uvloop on this platform): the worker does without
            pass


def start(arguments: list[str], env: dict[str, str], method: Literal["fork", "spawn"], name: str = "",
          prefix: str | None = None) -> WorkerProcess:
    """Start ``cartrescue <arguments>`` as a worker with ``env`` added to its environment; a forked
    one is called ``prefix`` + ``name`` (default prefix: :data:`WORKER_PREFIX`)."""
    if method == "fork":
        return ForkedProcess(arguments, env, (WORKER_PREFIX if prefix is None else prefix) + name)
    command = [sys.executable, "-m", "cartrescue.cli", *arguments]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, **env))


class Child:
    """A child process of this one, by its pid: as much of ``Popen`` as a run needs, reaped once."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _pid, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never a pid already reaped (it may be another process's by now)
            os.kill(self.pid, sig)


class Helper(Child):
    """A helper process of :func:`fork_helper`: :meth:`succeeded` waits for it, :meth:`end` ends
    it first if it is still at work."""

    def succeeded(self) -> bool:
        """Wait for it to end: whether it did its work (exit code 0)."""
        return self.wait() == 0

    def end(self) -> None:
        """Kill it if it has not ended, and reap it."""
        self.send_signal(signal.SIGKILL)
        self.wait()


class ForkedProcess(Child):
    """A worker forked from this process, its stdout and stderr on pipes read by this process."""

    def __init__(self, arguments: list[str], env: dict[str, str], name: str) -> None:
        """``name``: what the worker calls itself (``ps``), its prefix included."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # nothing buffered here may be written twice, once by each process
            except (AttributeError, OSError, ValueError):
                pass
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)  # see _child: held over the fork
        try:
            pid = os.fork()
        except OSError:  # no process left (a ulimit, the memory): the pipes go, the error is the run's
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for descriptor in (out_read, out_write, err_read, err_write):
                os.close(descriptor)
            raise
        if pid == 0:  # pragma: no cover - runs in the child, which ends in os._exit
            _child(arguments, env, out_write, err_write, name, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a stop meanwhile is the parent's now
        os.close(out_write)
        os.close(err_write)
        super().__init__(pid)
        self.stdout: IO[bytes] | None = open(out_read, "rb")  # noqa: SIM115 - kept open as Popen's are
        self.stderr: IO[bytes] | None = open(err_read, "rb")  # noqa: SIM115



#: The signals that stop a run (cartrescue.stops): blocked over a fork, see :func:`_child`.
_STOPS: set[int | signal.Signals] = set(SIGNALS)


def _child(arguments: list[str], env: dict[str, str], out_fd: int, err_fd: int, name: str,
           mask: set[int | signal.Signals]) -> NoReturn:
    """The forked worker: the CLI on ``arguments`` with fresh standard streams, then ``os._exit``.

    Every descriptor but the three streams is closed (as ``Popen(close_fds=True)`` does): the
    other workers' pipes stay theirs. ``os._exit`` skips the parent's exit handlers and
    ``finally`` blocks, which are the parent's to run.

    It starts with the stops (Ctrl-C, SIGTERM, SIGHUP) blocked (``mask``: the parent's own mask, put back once
    the child's handlers are its own). A stop that came at its first instant (``run-all``
    stopped as it forked a shop, and passing the stop on) met the parent's handler there (a
    traceback, exit 70: "a bug"), or none (dropped: the child ran to its end). It is raised
    when the mask is put back, and the child ends as a command stopped before it began: its
    ``--json`` document, exit 130.
    """
    code = 70
    try:
        _own_streams(os.open(os.devnull, os.O_RDONLY), out_fd, err_fd)
        os.environ.update(env)
        _name(name)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.argv = [sys.argv[0] if sys.argv else "cartrescue", *arguments]
        from cartrescue import stops
        from cartrescue.cli import main

        signal.signal(signal.SIGINT, signal.default_int_handler)  # so that the CLI's handler takes it too
        stops.install()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a stop since the fork is raised here
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except KeyboardInterrupt:  # before the command began (cli.main takes every stop after)
        from cartrescue.entry import stopped_before_start

        stopped_before_start()
    except BaseException:  # noqa: BLE001 - a worker never returns into its parent's code
        import traceback

        try:
            traceback.print_exc()
        except Exception:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - the pipe may be gone: the exit code still goes
                pass
        os._exit(code)


#: What ``ps`` and ``/proc/<pid>/comm`` call a helper process (:func:`fork_helper`): its ``name``
#: after this prefix (15 bytes in all), so that it is never taken for a worker.
HELPER_PREFIX = "cr-helper-"
#: ... and a forked worker: its shard after this prefix (``cr-worker-2/4``, :func:`start`'s ``name``).
WORKER_PREFIX = "cr-worker-"


def fork_helper(work: Callable[[], object], nice: int = 0, name: str = "") -> int | None:
    """Fork a helper process that runs ``work()`` and ends (``os._exit``); its pid, or None where
    forking is not safe (:func:`start_method`) or not possible. Call it while this process has
    one thread.

    The helper's standard streams are ``/dev/null`` (nothing it does reaches the run's output or
    its one JSON document), it keeps no other descriptor of its parent's, and it dies with its
    parent (Linux): a killed run leaves no helper behind. Its parent must reap it
    (``os.waitpid``). ``work``'s exceptions end it with exit code 1, silently: the work reports
    its failures in what it writes. ``nice``: how much lower its priority is than its parent's;
    ``name``: what it is called after :data:`HELPER_PREFIX` (Linux).
    """
    if start_method() != "fork":
        return None
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid:
        return pid
    code = 1  # pragma: no cover - runs in the child, which ends in os._exit
    try:
        null = os.open(os.devnull, os.O_RDWR)
        _own_streams(null, null, null)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
        die_with(parent)
        _name(HELPER_PREFIX + name)
        if nice:
            os.nice(nice)
        work()
        code = 0
    except BaseException:  # noqa: BLE001, S110 - the helper never returns into its parent's code
        pass
    finally:
        os._exit(code)


def _own_streams(stdin: int, stdout: int, stderr: int) -> None:
    """A new process's standard streams, and no other descriptor of its parent's (as
    ``Popen(close_fds=True)`` leaves them): the other processes' pipes stay theirs."""
    for descriptor, target in enumerate((stdin, stdout, stderr)):
        os.dup2(target, descriptor)
    os.closerange(3, _max_fd())


def _name(name: str) -> None:
    """What ``ps -o comm`` and ``top`` call this process (Linux's ``PR_SET_NAME``: 15 bytes)."""
    _prctl(15, name[:15].encode())


def die_with(parent: int, sig: int = signal.SIGKILL) -> None:
    """Have this process get ``sig`` when ``parent`` (the process that started it) dies: Linux's
    ``PR_SET_PDEATHSIG``, nothing elsewhere. If ``parent`` is already gone, ``sig`` comes now."""
    if _prctl(1, int(sig)) and os.getppid() != parent:  # PR_SET_PDEATHSIG; the parent died before the call
        os.kill(os.getpid(), sig)


#: Names the process that started this one as a worker of ``run --workers`` or a shop of ``run-all``.
PARENT_ENV = "CARTRESCUE_PARENT_PID"


def started_by() -> int | None:
    """The pid of the run that started this process as its worker or shop (:data:`PARENT_ENV`), or None."""
    parent = os.environ.get(PARENT_ENV, "")
    return int(parent) if parent.isdigit() else None


def orphaned() -> bool:
    """Whether the run that started this process (:func:`started_by`) is dead or dying.

    Asked when a stop comes: the SIGTERM of :func:`die_with` (``PR_SET_PDEATHSIG``) is sent when
    the parent's thread that started this process ends, which may be before the parent's last
    thread (a killed parent's threads end one by one, and this process is handed to the next
    one first: ``getppid`` still names the parent). That thread is its main thread, the
    process's leader, whose state ``/proc`` shows: a zombie, or flagged exiting (``PF_EXITING``,
    set before the signal is sent), is a parent dying. Nothing reads such a worker's output any
    more, and its lock keeps the next run out until it has ended.
    """
    parent = started_by()
    if parent is None:
        return False
    if os.getppid() != parent:
        return True
    try:
        fields = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] in ("Z", "X", "x") or bool(int(fields[6]) & _PF_EXITING)
    except (OSError, IndexError, ValueError):  # not Linux, or gone meanwhile
        return os.getppid() != parent


#: Linux's task flag of a thread in ``do_exit`` (``/proc/<pid>/stat``, field 9).
_PF_EXITING = 0x4


def _prctl(option: int, argument: int | bytes) -> bool:
    """Linux's ``prctl(option, argument)``; False where there is none."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, argument, 0, 0, 0) == 0  # type: ignore[no-any-return]
    except (OSError, AttributeError, ValueError):
        return False


def _max_fd() -> int:
    try:
        return max(int(os.sysconf("SC_OPEN_MAX")), 256)
    except (ValueError, OSError):
        return 1024
