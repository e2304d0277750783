"""Workers: ``run --workers N`` as N shard processes on one ledger, reported as one run.

Owns starting the shard processes (``run --shard K/N --json``: the same command line, in a worker
forked from this process or a fresh interpreter: :mod:`cartrescue.processes`), reading their
JSON documents as they stream, merging them into one result (decisions as they arrive, counts
summed, problems merged, one exit code), relaying their warnings and progress, and passing
SIGTERM or Ctrl-C on to them. It must not plan, render or deliver anything itself, and never
opens the ledger: each shard is a complete run with its own lock (cartrescue.shards,
cartrescue.job).

A worker that dies (SIGKILL, the OOM killer) closes its pipe: its shard is reported with exit
code ``128 + signal``, as a shell does, and the others go on; the parent never waits on it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from cartrescue import processes
from cartrescue.config import Config
from cartrescue.model import PROBLEMS_KEPT
from cartrescue.shards import Shard
from cartrescue.stops import held

if TYPE_CHECKING:  # not imported at run time: the parent of workers loads no source
    from cartrescue.sources.base import ProgressTotal

#: Workers chosen by default: at most this many, whatever the cores ...
MAX_AUTO_WORKERS = 8
#: ... and one per this many carts (workers cost ~0.4 s to start, and each reads the whole export:
#: below this it does not pay).
CARTS_PER_WORKER = 5_000
#: After SIGTERM, how long the workers get to close their documents before they are killed.
TERM_GRACE = 30.0
#: Set in a worker's environment when its parent shows a progress bar: the worker then tells it,
#: on stderr, how much its source has to read and how far it has got (:class:`ProgressToParent`).
PROGRESS_ENV = "CARTRESCUE_PROGRESS_TO_PARENT"
#: How such a line begins (an ASCII record separator: no warning of a worker starts so).
PROGRESS_MARK = "\x1ecartrescue-progress "
#: A worker says how far it has read at most this often (seconds).
PROGRESS_EVERY = 0.2

#: The order in which shards' exit codes win (README "Workers and shards"): a worker killed by a
#: signal (128 + n) first, then a bug, an interruption, config, source, stale (``doctor-all``'s
#: shops: reminders stopped, often because of a config or source that failed too), a lost lock,
#: failed carts, a held lock, and ok last. A held lock ranks below failed carts: it needs no action.
#: A code not listed ranks as a bug.
_RANK = {70: 8, 130: 7, 2: 6, 3: 5, 5: 4, 6: 3, 1: 2, 4: 1, 0: 0}


def worst_exit_code(codes: list[int]) -> int:
    """The exit code of a sharded run: the most serious of its shards' (see ``_RANK``)."""
    def rank(code: int) -> int:
        if code > 128 and code != 130:
            return 100 + code  # killed by a signal
        return _RANK.get(code, _RANK[70])

    return max(codes, key=rank, default=0)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def estimate_carts(config: Config) -> int | None:
    """About how many carts the source holds, cheaply; ``None`` when it cannot be told.

    A CSV export: its size divided by the mean length of its first lines. A database source is
    not asked (it would cost a query): ``None``.
    """
    if not config.source.is_csv or config.source.carts is None:
        return None
    path = config.path(config.source.carts)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            sample = handle.read(256 * 1024)
    except OSError:
        return 0  # one process: the run itself reports the missing file
    lines = sample.count(b"\n")
    if lines <= 1:
        return lines
    return int(size / (len(sample) / lines)) - 1


def auto_workers(config: Config) -> int:
    """``run``'s default: the cores (at most 8), but no more than one per 5,000 rows of a CSV
    export (:func:`estimate_carts` counts rows, a row per cart line)."""
    cores = min(usable_cores(), MAX_AUTO_WORKERS)
    carts = estimate_carts(config)
    if carts is None:
        return cores
    return max(1, min(cores, -(-carts // CARTS_PER_WORKER)))


def exit_code_of(returncode: int | None) -> int:
    """A child's exit code as a shell gives it: ``128 + n`` if killed by signal n; 70 if unknown."""
    code = returncode if returncode is not None else 70
    return 128 - code if code < 0 else code


def error_of(trailer: dict[str, Any] | None, code: int, who: str, stderr_tail: list[str],
             killed: str) -> dict[str, Any] | None:
    """The ``error`` object of a child run (a shard, a shop): its own, or one for a child that
    ended without one (``who`` names it; ``killed``: the code of one killed by a signal). A child
    killed after it wrote its document (a second Ctrl-C: SIGKILL once the grace is over) is a
    killed child: its exit code and its error agree."""
    own = trailer.get("error") if trailer is not None else None
    if isinstance(own, dict) and not (code > 128 and code != 130 and own.get("exit_code") != code):
        return dict(own)
    if code in (0, 1) and trailer is not None:
        return None
    if code > 128 and code != 130:
        name = signal.Signals(code - 128).name if code - 128 in signal.valid_signals() else f"signal {code - 128}"
        return {"code": killed, "exit_code": code,
                "message": f"{who} was killed by {name}; the claims it had in flight stay claimed "
                           "(see --resend-unconfirmed)"}
    tail = " / ".join(line.strip() for line in stderr_tail[-3:] if line.strip())
    return {"code": "internal", "exit_code": code if code else 70,
            "message": f"{who} ended without a report (exit {code})" + (f": {tail}" if tail else "")}


@dataclass(slots=True)
class ShardReport:
    """What one worker said: the header and trailer of its JSON document, and how it ended."""

    shard: Shard
    pid: int
    started: str = "spawn"  # how the worker started: "fork" (from the parent) or "spawn" (a fresh interpreter)
    header: dict[str, Any] = field(default_factory=dict)
    trailer: dict[str, Any] | None = None
    returncode: int | None = None
    decisions: int = 0
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The shard's exit code; ``128 + n`` for a worker killed by signal n."""
        return exit_code_of(self.returncode)

    def error(self) -> dict[str, Any] | None:
        """The shard's ``error`` object: its own, or one for a worker that died without one."""
        return error_of(self.trailer, self.exit_code, f"the worker of shard {self.shard} (pid {self.pid})",
                        self.stderr_tail, "worker_killed")

    def as_json(self) -> dict[str, Any]:
        trailer = self.trailer or {}
        row: dict[str, Any] = {"shard": str(self.shard), "pid": self.pid, "started": self.started,
                               "exit_code": self.exit_code, "run_id": trailer.get("run_id"),
                               "decisions": self.decisions}
        if "counts" in trailer:
            row["counts"] = trailer["counts"]
        error = self.error()
        if error is not None:
            row["error"] = error
        return row


@dataclass(slots=True)
class MergedRun:
    """The one result of N workers (what ``run`` prints for them)."""

    mode: str
    now: datetime
    shards: list[ShardReport]
    counts: dict[str, Any]
    problems: list[str]
    notes: list[str]
    unconfirmed: int
    released: int
    killed_left: int
    exit_code: int
    error: dict[str, Any] | None
    pruned: dict[str, int] = field(default_factory=dict)  # rows past ledger.retention, all shards together
    shop_switched_from: str | None = None  # the ledger's last run was another shop's (job.same_shop)
    # The shards' warnings (job.RunSummary.warnings: a call list not cleaned), then a dry-run's
    # findings in the templates it used (template_check.lint_cached), the last ``findings``.
    warnings: list[str] = field(default_factory=list)
    findings: int = 0
    unconfirmed_channels: list[str] = field(default_factory=list)  # all shards' (job.RunSummary's)
    released_not_resent: int = 0  # all shards' (job.RunSummary's)

    def trailer(self) -> dict[str, Any]:
        out: dict[str, Any] = {"counts": self.counts, "run_id": None,
                               "run_ids": [s.trailer.get("run_id") for s in self.shards if s.trailer],
                               "workers": len(self.shards), "shards": [s.as_json() for s in self.shards],
                               "unconfirmed": self.unconfirmed, "unconfirmed_channels": self.unconfirmed_channels,
                               "released": self.released, "released_not_resent": self.released_not_resent,
                               "killed_left": self.killed_left, "problems": self.problems,
                               "notes": self.notes, "pruned": self.pruned,
                               "shop_switched_from": self.shop_switched_from, "warnings": self.warnings}
        if self.error is not None:
            out["error"] = self.error
        return out


def merge_counts(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of several shards added up, key by key (nested ``reasons``/``deliveries`` too).

    Starts from every key of ``pipeline.Counts.as_dict`` at zero, so that a run whose shards all
    failed before counting still has the document's shape.
    """
    total: dict[str, Any] = {key: 0 for key in ("carts", "send", "skip", "defer", "holdout", "sent", "failed",
                                                "problems")}
    total.update(reasons={}, deliveries={}, failures={})
    for counts in documents:
        for key, value in counts.items():
            if isinstance(value, dict):
                inner = total.setdefault(key, {})
                for name, number in value.items():
                    inner[name] = inner.get(name, 0) + number
            elif isinstance(value, int):
                total[key] = total.get(key, 0) + value
    for key, value in total.items():
        if isinstance(value, dict):
            total[key] = dict(sorted(value.items()))
    return total


def shard_command(shard: Shard, *, config: Path, now: datetime, mode: str, outbox: Path | None, strict: bool,
                  quiet: bool, resend_unconfirmed: bool, limit: int | None, live_clock: bool = False) -> list[str]:
    """The arguments of one worker: this same CLI with ``run --shard K/N --json``, at the run's
    ``now``; ``live_clock``: that clock was not pinned, and the worker stamps its claims by the
    real clock as they are made (:mod:`cartrescue.clock`)."""
    command = ["run", "--shard", str(shard), "--json", "--config", str(config), "--now", now.isoformat()]
    if live_clock:
        command.append("--live-clock")
    if mode == "send":
        command.append("--send")
    elif mode == "outbox":
        command += ["--outbox", str(outbox)]
    elif outbox is not None:  # a dry-run's run --eml DIR
        command += ["--eml", str(outbox)]
    if strict:
        command.append("--strict")
    if quiet:
        command.append("--quiet")
    if resend_unconfirmed:
        command.append("--resend-unconfirmed")
    if limit is not None:
        command += ["--limit", str(limit)]  # global: each shard takes its share
    return command


class _Worker:
    """One shard process and the two threads reading its pipes."""

    def __init__(self, shard: Shard, arguments: list[str], events: "queue.Queue[tuple[int, str, Any]]",
                 warn: Callable[[str], None], method: Literal["fork", "spawn"], extra_env: dict[str, str]) -> None:
        env = {**extra_env, "PYTHONIOENCODING": "utf-8", processes.PARENT_ENV: str(os.getpid())}
        self.shard = shard
        self.process = processes.start(arguments, env, method, str(shard))
        self.report = ShardReport(shard, self.process.pid, method)
        self.events = events
        self.warn = warn
        self.threads = [threading.Thread(target=self._read_stdout, daemon=True, name=f"shard-{shard}-out"),
                        threading.Thread(target=self._read_stderr, daemon=True, name=f"shard-{shard}-err")]
        self.started = False

    def start(self) -> None:
        """Start the readers, once (:meth:`Workers.stop` may follow a run that began to)."""
        if self.started:
            return
        self.started = True
        for thread in self.threads:
            thread.start()

    def _read_stdout(self) -> None:
        """Whole lines, as many as the pipe has, handed over as one block of bytes (not one per line)."""
        stream: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        index = self.shard.index
        rest = b""
        try:
            while True:
                data = stream.read1(1 << 20)  # type: ignore[attr-defined]
                if not data:
                    break
                data = rest + data
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                rest = data[cut + 1:]
                self.events.put((index, "lines", data[:cut]))
            if rest:
                self.events.put((index, "lines", rest))
        finally:
            self.events.put((index, "eof", None))

    def _read_stderr(self) -> None:
        stream: IO[bytes] = self.process.stderr  # type: ignore[assignment]
        tail = self.report.stderr_tail
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line.startswith(PROGRESS_MARK):
                self.events.put((self.shard.index, "progress", line[len(PROGRESS_MARK):]))
                continue
            tail.append(line)
            del tail[:-20]
            self.warn(f"shard {self.shard}: {line}")

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass


class Reported(Protocol):
    """What a :class:`Document` fills in: a shard's report, or a shop's (:mod:`cartrescue.batch`)."""

    header: dict[str, Any]
    trailer: dict[str, Any] | None
    decisions: int


class Document:
    """Reads one worker's streamed ``--json`` document (output.JsonStream's shape) block by block.

    The decisions between the header line and the trailer line are handed on as whole blocks of
    bytes, never decoded, parsed nor split here: a worker's document is one decision a line, each
    but its last ending in a comma, and its trailer is its last line (the only one that starts
    with ``]``), so a block is counted by its newlines and relayed as it came. The parent then
    costs next to nothing per decision, however many the workers write (a 100,000-cart run relays
    ~43 MB: decoding and encoding it again, and searching it for each line's start, cost the
    parent ~0.2 s of CPU that the workers wanted).
    """

    def __init__(self, report: Reported) -> None:
        self.report = report
        self.started = False
        self.ended = False

    def feed(self, block: bytes, on_decisions: Callable[[bytes, int], None]) -> int:
        """Take a block of whole lines; returns how many decisions it held.

        ``on_decisions`` gets the block's decision lines as the worker wrote them (UTF-8, the
        last one without its comma) and how many there are.
        """
        if self.ended:
            return 0
        if not self.started:
            self.started = True
            head, _, block = block.partition(b"\n")
            text = head.decode("utf-8", errors="replace").rstrip()
            if not text.endswith('"decisions": ['):
                self.ended = True
                self._trailer(text)  # a document without decisions: an error before the run began
                return 0
            self.report.header = json.loads(text[:-len('"decisions": [')].rstrip(", ") + "}") \
                if text != '{"decisions": [' else {}
            if not block:
                return 0
        last = block.rfind(b"\n") + 1  # where the block's last line starts
        at = last if block.startswith(b"]", last) else -1  # the trailer, if this block ends the document
        region = block if at < 0 else block[:max(at - 1, 0)]
        count = region.count(b"\n") + 1 if region else 0
        if count:
            self.report.decisions += count
            on_decisions(region.rstrip(b","), count)
        if at >= 0:
            self.ended = True
            body = block[at + 1:].decode("utf-8", errors="replace").strip()
            self._trailer("{" + body[1:].strip() if body.startswith(",") else "{}")
        return count

    def _trailer(self, text: str) -> None:
        try:
            value = json.loads(text)
        except ValueError:
            return  # a broken document: the worker's exit code tells the rest
        self.report.trailer = value if isinstance(value, dict) else None


class ProgressToParent:
    """A worker's progress meter when its parent shows the bar (:data:`PROGRESS_ENV`): the
    source's total, then how far it has read, as lines on stderr that the parent takes out of
    the warnings it relays. Without them the parent's bar had no total: a 300,000-cart export
    showed a count and a rate, never the share done nor the time left (README)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.position: Callable[[], int] | None = None
        self.said = 0.0

    def total(self, total: ProgressTotal) -> None:
        self.position = total.position
        self._say(f"total {total.unit} {total.total}")

    def __call__(self, n: int) -> None:
        """``n`` carts done: a file's position, at most every :data:`PROGRESS_EVERY` seconds (a
        count of carts needs none: the parent counts the decisions it relays)."""
        if self.position is not None and time.monotonic() - self.said >= PROGRESS_EVERY:
            self._say(f"at {self.position()}")

    def _say(self, what: str) -> None:
        self.said = time.monotonic()
        try:
            self.stream.write(f"{PROGRESS_MARK}{what}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # the parent is gone: its stop reaches this worker anyway


class _ShardsRead:
    """The parent's view of its workers' reading: the first total a worker gives becomes the
    bar's; a file's position is the mean of the workers' (each reads the whole export), a count
    of carts is the window's (the bar then counts the decisions every shard sends)."""

    def __init__(self, workers: int, on_total: Callable[[ProgressTotal], None] | None) -> None:
        self.workers = workers
        self.on_total = on_total
        self.positions: dict[int, int] = {}
        self.known = False

    def heard(self, index: int, line: str) -> bool:
        """Take a worker's progress line; whether the bar should be drawn again."""
        kind, _, rest = line.partition(" ")
        try:
            if kind == "at":
                self.positions[index] = int(rest)
                return self.known
            unit, _, amount = rest.partition(" ")
            total = int(amount)
        except ValueError:
            return False
        if kind != "total" or self.known or self.on_total is None:
            return False
        from cartrescue.sources.base import ProgressTotal

        self.known = True
        self.on_total(ProgressTotal(total, unit, self.position if unit == "bytes" else None))
        return True

    def position(self) -> int:
        return sum(self.positions.values()) // self.workers


class Workers:
    """Shard workers that have started: :meth:`follow` reads them to the end."""

    def __init__(self, workers: list[_Worker], events: "queue.Queue[tuple[int, str, Any]]", mode: str,
                 now: datetime) -> None:
        self.workers = workers
        self.events = events
        self.mode = mode
        self.now = now
        self.stopped: MergedRun | None = None  # an interrupted run: what its workers reported

    def follow(self, on_decisions: Callable[[bytes, int], None],
               on_progress: Callable[[int], None] | None = None,
               on_total: Callable[[ProgressTotal], None] | None = None) -> MergedRun:
        """Read every worker to its end and merge what they report.

        ``on_decisions`` gets decisions as they arrive (any shard's, in arrival order), a block at
        a time: their JSON texts, one a line, each line indented by two spaces and all but the last
        ending in a comma, and how many there are. A ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM
        through the CLI's handler) is passed on to the workers as SIGTERM; they close their
        documents, and the interrupt is raised again once they have ended (after ``TERM_GRACE``
        seconds, they are killed), with what they reported kept in :attr:`stopped` for the
        caller's document. ``on_total`` gets what the workers' source has to read, once the first
        worker says (:class:`ProgressToParent`; started with :data:`PROGRESS_ENV`): a progress
        bar's total, so its share done and time left.
        """
        workers, events = self.workers, self.events
        read = _ShardsRead(len(workers), on_total)
        with held():  # every reader started, or none: a stop meanwhile comes once they are
            for worker in workers:
                worker.start()
        documents = {worker.shard.index: Document(worker.report) for worker in workers}
        open_pipes = len(workers)
        interrupted: BaseException | None = None
        deadline: float | None = None
        while open_pipes:
            try:
                try:
                    index, kind, payload = events.get(timeout=0.5)
                except queue.Empty:
                    if deadline is not None and time.monotonic() > deadline:
                        for worker in workers:
                            worker.terminate(signal.SIGKILL)
                        deadline = None
                    continue
                if kind == "eof":
                    open_pipes -= 1
                    continue
                if kind == "progress":
                    if read.heard(index, payload) and on_progress is not None:
                        on_progress(0)  # the bar moves with the bytes read, before the decisions come
                    continue
                count = documents[index].feed(payload, on_decisions)
                if on_progress is not None and count:
                    on_progress(count)
            except KeyboardInterrupt as stop:  # waiting or relaying: the workers end, then it is raised
                interrupted = interrupted or stop
                for worker in workers:
                    worker.terminate()
                deadline = time.monotonic() + TERM_GRACE
        for worker in workers:
            worker.report.returncode = worker.process.wait()
            for thread in worker.threads:
                thread.join(timeout=5)
        if interrupted is not None:
            self.stopped = merge([worker.report for worker in workers], self.mode, self.now)
            raise interrupted
        return merge([worker.report for worker in workers], self.mode, self.now)

    def stop(self, on_decisions: Callable[[bytes, int], None]) -> MergedRun:
        """A stop that came before :meth:`follow`: the workers get it (SIGTERM), and are read
        to their end as :meth:`follow` reads them; what they reported is kept in :attr:`stopped`."""
        for worker in self.workers:
            worker.terminate()
        while self.stopped is None:
            try:
                self.stopped = self.follow(on_decisions)
            except KeyboardInterrupt:  # one more stop: follow ends them all the same and keeps what they
                pass  # said, or, raised before it began to read, it is begun again
        return self.stopped


def start_workers(
    count: int,
    *,
    config: Path,
    now: datetime,
    mode: str,
    outbox: Path | None = None,
    strict: bool = False,
    quiet: bool = False,
    resend_unconfirmed: bool = False,
    limit: int | None = None,
    warn: Callable[[str], None],
    env: dict[str, str] | None = None,
    live_clock: bool = False,
    progress: bool = False,
) -> Workers:
    """Start ``count`` shard workers; nothing is read from them until :meth:`Workers.follow`.

    Call it before starting any thread of your own (a progress bar): the workers are forked
    only while this process has one thread (:mod:`cartrescue.processes`). ``warn`` gets each
    line a worker writes to stderr, prefixed with its shard. ``env``: more environment for the
    workers (where the run builds the indexes they share: cartrescue.sources.shared).
    ``progress``: the parent shows a bar, and the workers tell it how far they have read.
    """
    events: queue.Queue[tuple[int, str, Any]] = queue.Queue()
    lock = threading.Lock()

    def locked_warn(line: str) -> None:
        with lock:
            warn(line)

    method = processes.start_method()
    if method == "fork":
        processes.preload()
    workers: list[_Worker] = []
    try:
        for index in range(1, count + 1):  # every process started before any reading thread
            shard = Shard(index, count)
            workers.append(_Worker(shard, shard_command(
                shard, config=config, now=now, mode=mode, outbox=outbox, strict=strict, quiet=quiet,
                resend_unconfirmed=resend_unconfirmed, limit=limit, live_clock=live_clock), events, locked_warn,
                method, {**(env or {}), **({PROGRESS_ENV: "1"} if progress else {})}))
    except BaseException:
        for worker in workers:
            worker.terminate(signal.SIGKILL)
        raise
    return Workers(workers, events, mode, now)


_LINE = re.compile(r"(.*?):(\d+): ")


def _file_and_line(problem: str) -> tuple[int, str, int]:
    """Where a problem ("carts.csv:17: why") is: the shards' problems are sorted by it before
    the cut at :data:`PROBLEMS_KEPT`, so N workers list a file's first problems, in the order
    one worker does. A problem of no file line ("quote entity_id=42: why") comes after them."""
    found = _LINE.match(problem)
    return (0, found[1], int(found[2])) if found else (1, "", 0)


def merge(reports: list[ShardReport], mode: str, now: datetime) -> MergedRun:
    """One result from the shards' reports (see ``_RANK`` for the exit code)."""
    counts = merge_counts([r.trailer["counts"] for r in reports if r.trailer and isinstance(r.trailer.get("counts"), dict)])
    problems: list[str] = []
    for report in reports:
        problems.extend((report.trailer or {}).get("problems") or [])
    problems.sort(key=_file_and_line)  # stable: one row's problems keep their order
    notes: list[str] = []  # the same note from every shard (a plugin table missing) is said once
    for report in reports:
        notes.extend(note for note in (report.trailer or {}).get("notes") or [] if note not in notes)
    pruned: dict[str, int] = {}
    for report in reports:
        for table, rows in ((report.trailer or {}).get("pruned") or {}).items():
            pruned[table] = pruned.get(table, 0) + int(rows)
    unconfirmed = sum(int((r.trailer or {}).get("unconfirmed") or 0) for r in reports)
    unconfirmed_channels = sorted({channel for r in reports for channel in (r.trailer or {}).get("unconfirmed_channels") or []})
    released = sum(int((r.trailer or {}).get("released") or 0) for r in reports)
    killed_left = sum(int((r.trailer or {}).get("killed_left") or 0) for r in reports)
    not_resent = sum(int((r.trailer or {}).get("released_not_resent") or 0) for r in reports)
    codes = []
    for report in reports:
        code = report.exit_code
        if code == 0 and report.trailer is None:
            code = 70  # exited 0 without a document: not a run that can be trusted
        codes.append(code)
    worst = worst_exit_code(codes)
    error = None
    if worst != 0:
        failing = [(r, r.error()) for r, code in zip(reports, codes) if code == worst]
        first = next((e for _r, e in failing if e is not None), None)
        if first is None and worst != 1:  # exit 1 without an error object: failed carts, in the counts
            first = {"code": "failed", "exit_code": worst, "message": "a worker failed"}
        if first is not None:  # exit 1 with one: a shard stopped (its output could not be written)
            messages = {e["message"] for _r, e in failing if e is not None}
            error = dict(first, exit_code=worst)
            if len(messages) > 1:  # shards that disagree are named; one message shared by all stays as it is
                error["message"] = "; ".join(f"shard {r.shard}: {e['message']}" for r, e in failing if e is not None)
    switched = next((s for r in reports if (s := (r.trailer or {}).get("shop_switched_from"))), None)
    warnings: list[str] = []  # as notes: said once
    for report in reports:
        warnings.extend(line for line in (report.trailer or {}).get("warnings") or [] if line not in warnings)
    return MergedRun(mode, now, reports, counts, problems[:PROBLEMS_KEPT], notes, unconfirmed, released, killed_left, worst,
                     error, pruned, switched, warnings, unconfirmed_channels=unconfirmed_channels,
                     released_not_resent=not_resent)
