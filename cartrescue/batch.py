"""Many shops in one cron job: ``run-all CONFIG...`` runs each shop's ``run`` in a process of its
own, a few at a time, and reports them as one (a table or one JSON document, one exit code).

Why: an agency runs cartrescue for hundreds of shops, one config and one ledger each. A cron
line per shop starts a fresh interpreter per shop and per run, and each spends ~0.8 s of CPU
importing SQLAlchemy, SQLModel, Jinja and Babel before its first cart -- more than a small shop's
whole run. Here the modules are imported once and every shop's run is forked from this process
(:mod:`cartrescue.processes`): one shop's crash, hang, bad config or held lock touches no other
shop, and each keeps its own lock, ledger and exit code.

It must not read a shop's config nor plan, render or deliver anything: each child is the plain
``run --config FILE --json --workers 1`` and reports exactly as that command does (for
``report-all --jobs N``, the plain ``report-all --json --jobs 1 FILE``: :func:`run_shops` runs
any command that writes one ``--json`` document). Its
decisions are read and dropped (the shop's ledger holds them); its counts, problems and error
are kept. Single-threaded on purpose: one ``select`` loop reads every child's pipes, so a new
shop can be forked whenever a slot frees up (a fork is safe only with one thread).
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import Any, Literal

from cartrescue import private, processes
from cartrescue.text import counted, path_text
from cartrescue.workers import TERM_GRACE, Document, error_of, exit_code_of, merge_counts, worst_exit_code

#: What ``ps`` calls a shop's process: ``cr-shop-<n>`` (n: its place in the list).
SHOP_PREFIX = "cr-shop-"
#: The round's exit codes a shop stopped by ``--timeout`` (130) outranks: failed carts, a held lock, ok.
_BELOW_A_TIMEOUT = (1, 4, 0)
#: The folder where the shops of one ``run-all`` round take their sources (:func:`take_in_round`).
ROUND_ENV = "CARTRESCUE_ROUND"


def take_in_round(identity: str, config: Path) -> str | None:
    """Take the source ``identity`` (:func:`cartrescue.sources.source_identity`) for ``config`` in
    this ``run-all`` round; the config that took it first, if another did (else None; None too
    outside ``run-all``).

    Two configs over the same carts (a copied shop folder caught by the cron glob) each have a
    ledger of their own, so neither ledger knew of the other's messages and every customer got
    each step twice. ``run-all`` reads no config; each shop's run takes its source here, in a
    folder of the round, before it claims anything: one file a source, created or found at once."""
    folder = os.environ.get(ROUND_ENV)
    if not folder:
        return None
    path = os.path.join(folder, identity)
    # Written whole under a name of this process's, then linked to the source's name (which fails
    # when it exists): a file made empty and then written let the other shop read it in between,
    # and its refusal named no shop ("reads the same carts as  in this run-all round").
    mine = f"{path}.{os.getpid()}"
    try:
        with open(mine, "w", encoding="utf-8", errors="backslashreplace", opener=private.opener) as written:
            written.write(str(config))
        os.link(mine, path)
    except FileExistsError:
        try:
            with open(path, encoding="utf-8", errors="backslashreplace") as taken:
                other = taken.read()
        except OSError:
            other = ""
        return other if other != str(config) else None
    except OSError:  # the round's folder is gone (run-all killed): nothing to compare with
        return None
    finally:
        with suppress(OSError):
            os.unlink(mine)
    return None


@dataclass(slots=True)
class ShopRun:
    """One shop's run: its config, how it ended and what its ``--json`` document said."""

    config: Path
    pid: int = 0
    started: str = ""  # "fork" or "spawn"; "" for a shop never started (run-all was interrupted)
    header: dict[str, Any] = field(default_factory=dict)
    trailer: dict[str, Any] | None = None
    returncode: int | None = None
    decisions: int = 0
    stderr_tail: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timed_out: float | None = None  # the --timeout (seconds) it ran past and was stopped for

    @property
    def exit_code(self) -> int:
        """The shop's exit code as ``run`` gives it; ``128 + n`` if killed by signal n, 130 if never started."""
        return exit_code_of(self.returncode) if self.started else 130

    def error(self) -> dict[str, Any] | None:
        """The shop's ``error`` object: its own, or one for a run that ended without a report."""
        if not self.started:
            return {"code": "interrupted", "exit_code": 130, "message": "not started: run-all was interrupted"}
        if self.timed_out is not None:
            return {"code": "timeout", "exit_code": self.exit_code,
                    "message": f"stopped after running {self.timed_out:g} s (--timeout), as an interrupted run stops: "
                               "what it delivered is recorded; a message the relay had not answered yet stays "
                               "claimed without outcome, listed unconfirmed, never resent (the next run counts "
                               "it and says so once, `doctor` shows it); the rest waits for the next run"}
        own = error_of(self.trailer, self.exit_code, f"the run (pid {self.pid})", self.stderr_tail, "killed")
        return None if own is None else dict(own, message=path_text(own["message"]))  # the config as its row writes it

    def counts(self) -> dict[str, Any]:
        return dict((self.trailer or {}).get("counts") or {})

    @property
    def stopped_by_timeout(self) -> bool:
        """Stopped by ``--timeout`` and ended as an interrupted run does (not killed after its grace)."""
        return self.timed_out is not None and self.exit_code == 130

    @property
    def said_error(self) -> bool:
        """Did the shop's run report its error itself (on its stderr, relayed, and in its document)?
        Not one stopped for --timeout: it only knows it was interrupted."""
        return self.timed_out is None and self.trailer is not None and isinstance(self.trailer.get("error"), dict)

    def attention(self) -> list[str]:
        """What ``run`` alone would have said of this shop even under ``--quiet`` (its summary):
        what a stopped run delivered and left in flight, why deliveries failed, claims a killed run
        left without outcome, a second shop on its ledger. A shop's run under ``run-all`` writes
        only its document, so ``run-all`` says it."""
        trailer = self.trailer or {}
        stopped = self._stopped()
        lines = [stopped] if stopped else []
        lines += [f"failed: {n} × {why}" for why, n in sorted((self.counts().get("failures") or {}).items(),
                                                              key=lambda item: -item[1])[:3]]
        killed_left = int(trailer.get("killed_left") or 0)
        if killed_left and not (trailer.get("released") or trailer.get("released_not_resent")):
            were = "was" if killed_left == 1 else "were"
            lines.append(f"{counted(killed_left, 'claim')} {were} left without outcome by a run killed (or stopped with messages in "
                         "flight: Ctrl-C, SIGTERM, a ledger error) since the last run, found "
                         "now: those customers may not have got their message; not resent (said once; `cartrescue "
                         "doctor` shows them, --resend-unconfirmed sends them again)")
        lines.extend(note for note in trailer.get("notes") or [] if _about_the_shop(note, trailer))
        return [named(self.config, line) for line in lines]

    def _stopped(self) -> str:
        """``run``'s own word for a delivering run that was stopped (Ctrl-C, SIGTERM, --timeout):
        what it delivered and what it left in flight without an answer, claimed, never resent."""
        if not (self.started and self.exit_code == 130 and self.trailer is not None
                and self.header.get("mode") in ("send", "outbox")):
            return ""
        from cartrescue.output import stopped_line

        return stopped_line(self.counts())

    def other_notes(self) -> list[str]:
        """The notes of the shop's run that :meth:`attention` leaves to a run-all without ``--quiet``."""
        trailer = self.trailer or {}
        return [named(self.config, f"note: {note}") for note in trailer.get("notes") or []
                if not _about_the_shop(note, trailer)]

    def as_json(self) -> dict[str, Any]:
        trailer = self.trailer or {}
        row: dict[str, Any] = {"config": path_text(self.config), "pid": self.pid or None, "started": self.started or None,
                               "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
                               "run_id": trailer.get("run_id"), "decisions": self.decisions,
                               "counts": merge_counts([self.counts()]), "problems": list(trailer.get("problems") or []),
                               "unconfirmed": trailer.get("unconfirmed", 0),
                               "released": trailer.get("released", 0),
                               "released_not_resent": trailer.get("released_not_resent", 0),
                               "killed_left": trailer.get("killed_left", 0),
                               "notes": list(trailer.get("notes") or []),
                               "shop_switched_from": trailer.get("shop_switched_from"),
                               "warnings": list(trailer.get("warnings") or [])}
        error = self.error()
        if error is not None:
            row["error"] = error
        return row


@dataclass(slots=True)
class Batch:
    """Every shop's run, and what they make together."""

    shops: list[ShopRun]
    interrupted: bool = False  # Ctrl-C or SIGTERM: the shops running were stopped, the rest never started

    @property
    def exit_code(self) -> int:
        """The most serious of the shops' exit codes (the order of ``run --workers``: README);
        130 for an interrupted run-all, unless a shop's was worse.

        A shop stopped by ``--timeout`` (130) ranks below config, source and a lost lock: 130 tells
        cron "nothing, the next run goes on", and ranked as an interruption it hid another shop's
        config typo or missing export, round after round, while a person was needed there."""
        codes = [shop.exit_code for shop in self.shops if not shop.stopped_by_timeout]
        worst = worst_exit_code(codes + ([130] if self.interrupted else []))
        if worst in _BELOW_A_TIMEOUT and any(shop.stopped_by_timeout for shop in self.shops):
            return 130
        return worst

    def counts(self) -> dict[str, Any]:
        return merge_counts([shop.counts() for shop in self.shops])

    def error(self) -> dict[str, Any] | None:
        """The error of the shop that sets the exit code, its message prefixed with its config."""
        code = self.exit_code
        if self.interrupted and code == 130:
            return {"code": "interrupted", "exit_code": 130, "message": "interrupted"}
        for shop in self.shops:
            error = shop.error()
            if error is not None and shop.exit_code == code:
                return dict(error, message=named(shop.config, error["message"]))
        return None

    def document(self, mode: str, now: datetime | None) -> dict[str, Any]:
        """The one ``--json`` document of ``run-all`` (README, "Many shops")."""
        out: dict[str, Any] = {
            "mode": mode, "now": None if now is None else now.isoformat().replace("+00:00", "Z"),
            "shops": [shop.as_json() for shop in self.shops], "counts": self.counts(),
            "exit_code": self.exit_code,
        }
        error = self.error()
        if error is not None:
            out["error"] = error
        return out


def shop_outboxes(configs: Sequence[Path], outbox: Path | None) -> dict[Path, Path | None]:
    """Where each shop's ``--outbox`` writes: a relative DIR is each shop's own, beside its
    config (as ``run`` has it); an absolute DIR shared by several shops gets a folder per shop,
    named after its config's folder (and the config's name where two folders are named alike).

    A message's file is named by its cart, step and claim id, all of one ledger: two shops with
    the same cart ids wrote one file over the other in one DIR, and both ledgers said sent. So
    every shop's folder differs from every other's (see :func:`_distinct`), and the same configs
    in the same order get the same folders on every run."""
    if outbox is None or not outbox.is_absolute() or len(configs) < 2:
        return {config: outbox for config in configs}
    names = [_folder_name(config) for config in configs]
    labels = [f"{name}-{config.stem}" if names.count(name) > 1 else name for name, config in zip(names, configs)]
    return {config: outbox / label for config, label in zip(configs, _distinct(labels))}


def _folder_name(config: Path) -> str:
    """The name of the folder ``config`` is in, as written (a symlink's, not its target's); ``.``
    and ``..`` are resolved first: ``x/../cartrescue.yaml`` was named ``..``, DIR's parent."""
    return Path(os.path.abspath(config)).parent.name or "shop"


def _distinct(labels: Sequence[str]) -> list[str]:
    """``labels`` with every one that several shops share numbered by its shop's place in the
    list (``a-3``), and no two alike, not even in case (a macOS disk or a mounted share folds
    it). The numbered ones were not checked against the others: ``p1/a`` and ``p2/a`` became
    ``a-cartrescue-1`` and ``a-cartrescue-2`` beside a shop in ``p3/a-cartrescue-1``. One that is
    taken gets the next number past the list's length, which no place numbers."""
    shared = Counter(label.casefold() for label in labels)
    taken = {label.casefold() for label in labels if shared[label.casefold()] == 1}
    spare = count(len(labels) + 1)
    folders: list[str] = []
    for number, label in enumerate(labels, start=1):
        folder = label
        if shared[label.casefold()] > 1:
            folder = f"{label}-{number}"
            while folder.casefold() in taken:
                folder = f"{label}-{next(spare)}"
            taken.add(folder.casefold())
        folders.append(folder)
    return folders


def shop_command(config: Path, *, mode: str, now: datetime | None, strict: bool, quiet: bool,
                 resend_unconfirmed: bool, limit: int | None, outbox: Path | None = None) -> list[str]:
    """One shop's arguments: this same CLI with ``run --config FILE --json --workers 1``.

    One process a shop: the shops, not one shop's carts, share the cores. ``--now`` is passed
    on only if given; otherwise each shop takes its own (its config's ``now`` or the clock).
    """
    command = ["run", "--config", str(config), "--json", "--workers", "1"]
    if now is not None:
        command += ["--now", now.isoformat()]
    if mode == "send":
        command.append("--send")
    elif mode == "outbox":
        command += ["--outbox", str(outbox)]  # relative: each shop's own, beside its config (as run has it)
    if strict:
        command.append("--strict")
    if quiet:
        command.append("--quiet")
    if resend_unconfirmed:
        command.append("--resend-unconfirmed")
    if limit is not None:
        command += ["--limit", str(limit)]
    return command


def shop_jobs(jobs: int | None) -> int:
    """How many shops at once: ``--jobs``, else the usable cores (at most ``MAX_AUTO_WORKERS``)."""
    from cartrescue.workers import MAX_AUTO_WORKERS, usable_cores

    return jobs or min(usable_cores(), MAX_AUTO_WORKERS)


def config_files(paths: Sequence[Path]) -> list[Path]:
    """The configs named on the command line: a folder stands for its ``cartrescue.yaml``; a
    file named twice runs once (two runs of one shop at once would only meet its lock).

    A path that cannot be looked at (a folder run-all may not search, a symlink loop) is taken
    as it is: its shop's run says why it cannot read it. ``Path.is_dir`` and ``Path.resolve``
    raised there, and one shop's path stopped every shop's run (exit 70, "a bug").
    """
    seen: set[str] = set()
    files: list[Path] = []
    for path in paths:
        try:
            folder = path.is_dir()
        except OSError:
            folder = False
        file = path / "cartrescue.yaml" if folder else path
        key = os.path.realpath(file)  # never raises where it cannot follow a link (Path.resolve does)
        if key not in seen:
            seen.add(key)
            files.append(file)
    return files


class _Child:
    """A shop's process and what is left to read of its pipes."""

    def __init__(self, shop: ShopRun, process: processes.WorkerProcess) -> None:
        self.shop = shop
        self.process = process
        self.document = Document(shop)
        self.rest = {"out": b"", "err": b""}
        self.open = 2
        self.began = time.monotonic()
        self.kill_at: float | None = None  # asked to stop (SIGTERM): killed if still running then

    def stop(self, grace: float) -> None:
        """SIGTERM now (the run ends as an interrupted run does), SIGKILL after ``grace`` seconds."""
        _signal(self, signal.SIGTERM)
        self.kill_at = time.monotonic() + grace


def run_shops(arguments: Callable[[Path], list[str]], configs: Sequence[Path], *, jobs: int,
              warn: Callable[[str], None], on_done: Callable[[ShopRun], None] | None = None,
              timeout: float | None = None,
              on_tick: Callable[[Sequence[tuple[ShopRun, float]]], None] | None = None,
              preload: Sequence[str] = processes.PRELOAD) -> Batch:
    """Run ``cartrescue <arguments(config)>`` for every config, at most ``jobs`` at once, in list order.

    The command is any that writes one ``--json`` document: ``run`` (``run-all``), or
    ``report-all`` of one config (``report-all --jobs N``); ``preload`` names the modules it
    needs, imported once here before the shops are forked.

    ``warn`` gets every line a shop's run writes to stderr, prefixed with its config; ``on_done``
    each shop as it ends; ``on_tick``, at least every half second, the shops running and for how
    many seconds (a bar on a terminal: a shop waiting on a slow relay sends no line). A shop still running after ``timeout`` seconds is stopped as an
    interrupted run is (SIGTERM, then SIGKILL after ``TERM_GRACE``), so one stuck relay cannot
    hold up a cron round. A ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM through the CLI's handler)
    starts no more shops and stops those running the same way, and the batch says it was
    interrupted; a second one kills them at once.
    """
    shops = [ShopRun(config) for config in configs]
    pending = deque(enumerate(shops, start=1))
    method = processes.start_method()
    import tempfile

    round_folder = tempfile.TemporaryDirectory(prefix="cartrescue-round-")
    env = {"PYTHONIOENCODING": "utf-8", processes.PARENT_ENV: str(os.getpid()), ROUND_ENV: round_folder.name}
    selector = selectors.DefaultSelector()
    running: list[_Child] = []
    interrupted: KeyboardInterrupt | None = None
    try:
        if method == "fork":
            processes.preload(preload)  # a second or more: a stop meanwhile starts no shop, and the batch says so
    except KeyboardInterrupt as stop:
        interrupted = stop
        pending.clear()
    try:
        while pending or running:
            try:
                while pending and len(running) < jobs and interrupted is None:
                    number, shop = pending.popleft()
                    _start(shop, number, arguments, env, method, running, selector)
                for key, _ in selector.select(timeout=0.5):
                    _read(key, selector, running, warn, on_done)
                now = time.monotonic()
                for child in running:
                    if child.kill_at is not None and now > child.kill_at:
                        _signal(child, signal.SIGKILL)
                        child.kill_at = None
                    elif timeout is not None and child.shop.timed_out is None and now - child.began > timeout:
                        child.shop.timed_out = timeout
                        child.stop(TERM_GRACE)
                if on_tick is not None:
                    on_tick([(child.shop, now - child.began) for child in running])
            except KeyboardInterrupt as stop:
                grace = TERM_GRACE if interrupted is None else 0.0
                interrupted = interrupted or stop
                pending.clear()
                for child in running:
                    child.stop(grace)
    finally:
        selector.close()
        round_folder.cleanup()
    return Batch(shops, interrupted=interrupted is not None)


def _start(shop: ShopRun, number: int, arguments: Callable[[Path], list[str]], env: dict[str, str],
           method: Literal["fork", "spawn"], running: list[_Child], selector: selectors.BaseSelector) -> None:
    """Start a shop's run and add it to ``running``, whose runs a stop ends and whose pipes are read.

    A stop (Ctrl-C, SIGTERM) that comes meanwhile is raised once the shop is in ``running``:
    raised in between, the shop's process was forked but never stopped nor waited for, and its
    row said "exit 70, ended without a report" while it went on alone.
    """
    from cartrescue import stops

    with stops.held():
        shop.started = method
        try:
            process = processes.start(arguments(shop.config), env, method, str(number), prefix=SHOP_PREFIX)
        except OSError as exc:  # no process left (a ulimit, the memory): this shop fails, not the rest
            shop.returncode = 70
            shop.trailer = {"error": {"code": "internal", "exit_code": 70,
                                      "message": f"could not start its run: {exc}"}}
            return
        shop.pid = process.pid
        child = _Child(shop, process)
        running.append(child)
        selector.register(process.stdout, selectors.EVENT_READ, (child, "out"))  # type: ignore[arg-type]
        selector.register(process.stderr, selectors.EVENT_READ, (child, "err"))  # type: ignore[arg-type]


def _read(key: selectors.SelectorKey, selector: selectors.BaseSelector, running: list[_Child],
          warn: Callable[[str], None], on_done: Callable[[ShopRun], None] | None) -> None:
    """Read what a shop's pipe has and take it; at its end, and the other pipe's, the shop is done.

    Whole, a stop (Ctrl-C, SIGTERM) waiting for its end: raised between the read and the take,
    it lost the block read (the shop's header, or its trailer: its row said "ended without a
    report" and counted nothing), and between closing a pipe and counting it closed, the
    shop was never waited for and run-all waited for it for ever.
    """
    from cartrescue import stops

    child, which = key.data
    with stops.held():
        data = os.read(key.fd, 1 << 20)
        if data:
            _take(child, which, data, warn)
            return
        selector.unregister(key.fileobj)
        if child.rest[which]:  # a last line without its newline
            _take(child, which, b"\n", warn)
        key.fileobj.close()  # type: ignore[union-attr]
        child.open -= 1
        if child.open == 0:
            child.shop.returncode = child.process.wait()
            child.shop.seconds = time.monotonic() - child.began
            running.remove(child)
            if on_done is not None:
                on_done(child.shop)


def _take(child: _Child, which: str, data: bytes, warn: Callable[[str], None]) -> None:
    """Whole lines of a shop's stdout to its document, of its stderr to ``warn``."""
    data = child.rest[which] + data
    cut = data.rfind(b"\n")
    if cut < 0:
        child.rest[which] = data
        return
    child.rest[which] = data[cut + 1:]
    block = data[:cut]
    if which == "out":
        child.document.feed(block, _drop)
        return
    tail = child.shop.stderr_tail
    for raw in block.split(b"\n"):
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line:
            continue
        tail.append(line)
        del tail[:-20]
        warn(said_by(child.shop.config, line))


def said_by(config: Path, line: str) -> str:
    """A line a shop said on stderr (its run's, relayed by ``run-all``; its report's, in
    ``report-all``), with the shop's config in front: among 200 shops, a bad order row's warning
    must say whose it is. Not where the line names the config already (:func:`_names_config`)."""
    name = path_text(config)
    line = path_text(line)
    return line if any(_names_config(line, form) for form in (name, _as_stderr_writes(config))) else f"{name}: {line}"


def _as_stderr_writes(config: Path) -> str:
    r"""``config`` as the shop's run writes it on its stderr: a name's bytes that are not UTF-8
    as ``\udce9`` (Python's stderr), where :func:`~cartrescue.text.path_text` writes ``\xe9``."""
    return str(config).encode("utf-8", "backslashreplace").decode("utf-8")


def _names_config(line: str, config: str) -> bool:
    """A line of the shop's run that names its config already (``error: shop.yaml: source: …``,
    as every config error does; ``error: sql source: shop.yaml: source.url: …`` after the labels
    of a database source's error): prefixed again, the path stood twice on the line."""
    return line.startswith(config + ":") or f": {config}:" in line


class ShopStderr:
    """stderr while a shop is worked on in this process (``report-all --jobs 1`` reads each shop's
    report here, not in a process of its own as ``run-all`` runs it): each whole line goes on to
    ``stream`` as :func:`said_by` names it, as ``run-all`` relays a shop's lines. The lines come
    from every module a report uses, each through a console made on ``sys.stderr`` when it speaks,
    so the shop's stderr is what is named: :func:`shop_stderr` puts this there for one shop."""

    def __init__(self, config: Path, stream: Any) -> None:
        self._config = config
        self._stream = stream
        self._rest = ""

    def write(self, text: str) -> int:
        *lines, self._rest = (self._rest + text).split("\n")
        for line in lines:
            self._stream.write((said_by(self._config, line) if line.strip() else line) + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        """Write a last line said without its newline; the stream itself stays open."""
        if self._rest:
            self.write("\n")
        self.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: a console asks the stream
        if name == "rich_proxied_file":  # rich would write to the stream behind, unnamed
            raise AttributeError(name)
        return getattr(self._stream, name)


@contextmanager
def shop_stderr(config: Path) -> Iterator[None]:
    """While in it, what is written to stderr names ``config``'s shop (:class:`ShopStderr`)."""
    import sys
    from contextlib import redirect_stderr

    named_stderr = ShopStderr(config, sys.stderr)
    try:
        with redirect_stderr(named_stderr):  # type: ignore[type-var]  # duck-typed: write, flush, the rest passed on
            yield
    finally:
        named_stderr.close()


def not_started(configs: Sequence[Path], command: str) -> str:
    """One line for the shops a stop left unstarted (the table and ``--json`` have a row each): a
    line each was a wall of 200 in an agency's round, and hid the lines of the shops it stopped.
    Shops start in the order given, so those left are its last ones."""
    from cartrescue.text import counted, printable

    first, last = (printable(path_text(config)) for config in (configs[0], configs[-1]))
    which = first if len(configs) == 1 else f"{first} to {last}, in the order given"
    return f"{counted(len(configs), 'shop')} not started: {command} was interrupted ({which})"


def unstarted_error(command: str) -> dict[str, Any]:
    """The ``error`` of a shop's row that a stop left unstarted (``report-all``, ``doctor-all``)."""
    return {"code": "interrupted", "exit_code": 130, "message": f"not started: {command} was interrupted"}


def own_row(run: ShopRun) -> dict[str, Any] | None:
    """The row of a shop worked on in a process of its own by the one-config form of a command
    (``report-all --json --jobs 1 FILE``, ``doctor-all``'s): its document's one row, taken as it
    is, when the process ran to its document and the row's exit code is the process's; else None."""
    rows = (run.trailer or {}).get("shops")
    if run.started and isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], dict) \
            and rows[0].get("exit_code") == run.exit_code:
        return rows[0]
    return None


def lost_row_error(run: ShopRun, command: str, who: str) -> tuple[dict[str, Any], bool]:
    """The error of a shop whose process gave no row (:func:`own_row`): never started (``command``
    was interrupted), killed, or ended without its document (``who``: what it ran, "the report");
    one line, naming its config. And whether a line said it on stderr already: the shop's own,
    or the one of the stop that left it unstarted."""
    from cartrescue.workers import error_of

    error = error_of(run.trailer, run.exit_code, f"{who} (pid {run.pid})", run.stderr_tail, "killed") \
        if run.started else unstarted_error(command)
    error = dict(error or {}, message=named(run.config, " ".join(str((error or {}).get("message")).split())))
    return error, isinstance((run.trailer or {}).get("error"), dict) or not run.started


def _about_the_shop(note: str, trailer: dict[str, Any]) -> bool:
    """The note of a run whose ledger's last run was another shop's (``job.same_shop``)."""
    return bool(trailer.get("shop_switched_from")) and note.startswith("this ledger's last run")


def named(config: Path, message: str) -> str:
    """``message`` of a shop's run, with the shop's config in front unless it names it already
    (a config error does: ``shops/b/cartrescue.yaml: eligibility.cutoff: …``; a database
    source's after its labels: ``sql source: shops/b/cartrescue.yaml: source.url: …``)."""
    name, message = path_text(config), path_text(message)
    return message if _names_config(message, name) else f"{name}: {message}"


def _drop(_lines: bytes, _count: int) -> None:
    """A shop's decisions: counted by its document, kept by its ledger, not relayed."""


def _signal(child: _Child, sig: int) -> None:
    try:
        child.process.send_signal(sig)
    except ProcessLookupError:
        pass
