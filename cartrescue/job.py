"""One run, wired: config -> source, ledger, lock, planner, executor, channels.

Owns the lifecycle of a run (open, lock, record the run, close everything even on error) and the
mode switch (dry-run / outbox / send). The CLI calls :func:`run_job`; tests may too. It prints
nothing: results go to a callback.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from cartrescue.channels.base import Channel
from cartrescue.config import Config
from cartrescue.errors import ConfigError, LockHeld, SourceError
from cartrescue.ledger import Ledger
from cartrescue.model import RowProblem
from cartrescue.pipeline import DRY_RUN_SECRET, Composer, Counts, Executor, Planner, Result
from cartrescue.render import Renderer
from cartrescue.sources import open_source
from cartrescue.sources.base import Window

Mode = Literal["dry-run", "outbox", "send"]


@dataclass(slots=True)
class RunRequest:
    mode: Mode = "dry-run"
    now: datetime | None = None
    outbox: Path | None = None
    strict: bool = False
    deliver: bool = True  # False: plan only (the ``carts`` command)
    resend_unconfirmed: bool = False  # resend earlier runs' claims that have no outcome (docs/sending.md)


@dataclass(slots=True)
class RunSummary:
    mode: str
    now: datetime
    run_id: int | None
    counts: Counts
    problems: list[RowProblem] = field(default_factory=list)
    unconfirmed: int = 0
    released: int = 0  # unconfirmed claims released for resending (--resend-unconfirmed)


def resolve_now(config: Config, now: datetime | None) -> datetime:
    """``--now`` wins, then the config's pinned clock, then the wall clock; always aware UTC."""
    if now is None and config.now:
        try:
            now = datetime.fromisoformat(config.now)
        except ValueError:
            raise ConfigError(f"{config.where('now')}: expected an ISO 8601 time, got {config.now!r}") from None
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=config.shop.tz)
    return now.astimezone(timezone.utc)


def _channels(config: Config, request: RunRequest, stack: ExitStack, ledger: Ledger | None = None) -> dict[str, Channel]:
    from cartrescue.channels.call_list import CallListChannel

    channels: dict[str, Channel] = {"call-list": stack.enter_context(CallListChannel(config.path(config.call_list.path)))}
    if request.mode == "outbox":
        from cartrescue.channels.outbox import OutboxChannel

        folder = config.path(request.outbox or config.outbox.path or "outbox")
        channels["email"] = stack.enter_context(OutboxChannel(folder))
    elif request.mode == "send":
        try:
            from cartrescue.channels.smtp import SmtpChannel
        except ImportError:
            raise ConfigError("--send: the SMTP channel is not available in this build") from None
        recent: list[datetime] = []
        if ledger is not None and config.smtp.rate_per_hour:  # the hourly quota spans runs
            recent = ledger.sent_since(SmtpChannel.transport, datetime.now(timezone.utc) - timedelta(hours=1))
        channels["email"] = stack.enter_context(SmtpChannel.from_config(config, recent))
    return channels


def run_job(
    config: Config,
    request: RunRequest,
    on_result: Callable[[Result], None],
    on_problem: Callable[[RowProblem], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Plan (and unless dry-run, deliver) every cart of the configured source."""
    try:
        return _run_job(config, request, on_result, on_problem, on_progress)
    except ConfigError as error:
        raise config.locate(error) from None


def _run_job(
    config: Config,
    request: RunRequest,
    on_result: Callable[[Result], None],
    on_problem: Callable[[RowProblem], None] | None,
    on_progress: Callable[[int], None] | None,
) -> RunSummary:
    now = resolve_now(config, request.now)
    problems: list[RowProblem] = []
    counts = Counts()

    def problem(row: RowProblem) -> None:
        if request.strict:
            raise SourceError(f"{row} (--strict: nothing was delivered)")
        counts.problems += 1
        if len(problems) < 1000:
            problems.append(row)
        if on_problem is not None:
            on_problem(row)

    delivering = request.deliver and request.mode != "dry-run"
    secret = config.shop.unsubscribe_secret
    if delivering and (not secret or secret == DRY_RUN_SECRET):
        # A message that goes out (or into an .eml a person may forward) must carry a link the
        # shop can honour; a link signed with a public constant can never be.
        raise ConfigError(f"{config.where('shop.unsubscribe_secret')}: empty; "
                          "set it to ${CARTRESCUE_SECRET} and export a long random value (run --send and --outbox "
                          "need it; a dry-run does not)")
    secret = secret or DRY_RUN_SECRET
    with ExitStack() as stack:
        source = stack.enter_context(open_source(config, problem))
        if request.strict:
            # Read everything once before anything is delivered: a bad row stops the run clean.
            for _cart in source.carts(Window(now - config.eligibility.max_age, now)):
                pass
        ledger = Ledger(config.ledger_url)
        stack.callback(ledger.close)
        run_id = None
        unconfirmed = 0
        released = 0
        if delivering:
            run_id = ledger.start_run(request.mode, now)
            try:
                stack.enter_context(ledger.lock(run_id, config.ledger.lock_timeout))
            except LockHeld:
                ledger.finish_run(run_id, "locked", {})
                raise
            unconfirmed = len(ledger.unconfirmed(run_id))
            if request.resend_unconfirmed and unconfirmed:
                released = ledger.release_unconfirmed(run_id)
        planner = Planner(config, now, ledger)
        composer = Composer(config, Renderer(config), now, secret)
        channels = _channels(config, request, stack, ledger) if delivering else {}
        progress = on_progress
        if run_id is not None:
            progress = _with_heartbeat(ledger, run_id, on_progress)
        executor = Executor(composer, channels, ledger if delivering else None, run_id, progress)
        decisions = planner.decide(source)
        status = "failed"
        try:
            if request.deliver:
                for result in executor.execute(decisions):
                    counts.add(result)
                    on_result(result)
            else:
                for decision in decisions:
                    result = Result(decision)
                    counts.add(result)
                    on_result(result)
            status = "ok"
        finally:
            if run_id is not None:
                totals = {"sent": counts.deliveries["sent"], "failed": counts.failed,
                          "skipped": counts.actions["skip"], "deferred": counts.actions["defer"],
                          "problems": counts.problems}
                ledger.finish_run(run_id, status, totals)
    return RunSummary(request.mode, now, run_id, counts, problems, unconfirmed, released)


HEARTBEAT_EVERY = 60.0  # seconds; far below ledger.lock_timeout, so a live run is never "stale"


def _with_heartbeat(ledger: Ledger, run_id: int, on_progress: Callable[[int], None] | None) -> Callable[[int], None]:
    """Progress callback that also refreshes the lock's heartbeat now and then (long runs)."""
    import time

    last = time.monotonic()

    def progress(count: int) -> None:
        nonlocal last
        if on_progress is not None:
            on_progress(count)
        if time.monotonic() - last >= HEARTBEAT_EVERY:
            ledger.heartbeat(run_id)
            last = time.monotonic()

    return progress
