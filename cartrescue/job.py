"""One run, wired: config -> source, ledger, lock, planner, executor, channels.

Owns the lifecycle of a run (open, lock, record the run, close everything even on error) and the
mode switch (dry-run / outbox / send). The CLI calls :func:`run_job`; tests may too. It prints
nothing: results go to a callback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from sqlalchemy.exc import DBAPIError

from cartrescue.channels.base import Channel
from cartrescue.clock import RunClock
from cartrescue.config import Config, SmsConfig, SmtpConfig, WebhookConfig, resolve_now  # resolve_now: re-exported, callers import it here
from cartrescue.errors import ConfigError, LedgerError, LockHeld, LockLost, SourceError
from cartrescue.drivers import stopped_answering
from cartrescue.ledger import Ledger, RunsOver, busy, failed_while_delivering, one_line
from cartrescue.model import PROBLEMS_KEPT, RowProblem
from cartrescue.newsletters import Newsletters, today
from cartrescue.pipeline import DRY_RUN_SECRET, PLAN_CHUNK, Composer, Counts, Executor, Planner, Result, chunked
from cartrescue.compose.render import Renderer, require_step_templates
from cartrescue.scratch import sweep_stale
from cartrescue.shards import Shard
from cartrescue.sources import open_sends, open_source
from cartrescue.sources.base import CartSource, ProgressTotal, Window, ignore_problem
from cartrescue.sources.freshness import hold_back_if_stale, stale_exports
from cartrescue.text import masked_url
from cartrescue import stops

if TYPE_CHECKING:
    from cartrescue.template_check import Report

Mode = Literal["dry-run", "outbox", "send"]


@dataclass(slots=True)
class RunRequest:
    mode: Mode = "dry-run"
    now: datetime | None = None
    # Not pinned (no --now, no config now:): ``now`` is when the run started, and its claims are
    # stamped by the real clock as they are made (cartrescue.clock).
    live_clock: bool = False
    outbox: Path | None = None
    strict: bool = False
    deliver: bool = True  # False: plan only (the ``carts`` command)
    resend_unconfirmed: bool = False  # resend dead runs' claims that have no outcome (docs/sending.md)
    limit: int | None = None  # at most this many deliveries in this run (the rest deferred: run_limit)
    shard: Shard | None = None  # run --shard K/N: only the carts of this shard (cartrescue.shards)
    shared_orders: Path | None = None  # a worker of run --workers: its run's orders index (sources.shared)
    shared_sends: Path | None = None  # ... and its index of the newsletter export's sends of today
    shared_carts: Path | None = None  # ... and where it splits the carts file into one spool per shard
    eml: Path | None = None  # run --eml DIR: a dry-run writes each message it would send there
    # The process's runs that are over, shared by its runs' ledgers (cartrescue.ledger.RunsOver;
    # the command line's: cartrescue.cli.runs_over); None: the run's ledger keeps its own.
    runs_over: RunsOver | None = None
    # A dry-run checks the templates it rendered (template_check.lint_used) at its end; False: a
    # worker of run --workers, whose parent checks what all its workers rendered, once.
    lint: bool = True
    # A delivering run takes opted-out people's rows out of the call list (unlist_opted_out);
    # False: a worker of run --workers but the first, whose shards all write the one list.
    unlist: bool = True


@dataclass(slots=True)
class RunSummary:
    mode: str
    now: datetime
    run_id: int | None
    counts: Counts
    problems: list[RowProblem] = field(default_factory=list)
    unconfirmed: int = 0
    released: int = 0  # unconfirmed claims of dead runs released for resending (--resend-unconfirmed)
    notes: list[str] = field(default_factory=list)  # things to know that are not errors (a reader saw nothing)
    pruned: dict[str, int] = field(default_factory=dict)  # rows past ledger.retention deleted by this run
    killed_left: int = 0  # claims without outcome of the killed runs this run found and closed (said once)
    shop_switched_from: str | None = None  # the ledger's last run was another shop's (said by every run of this one)
    # A dry-run's: the files of the messages it rendered (Renderer.used_files), the check of
    # them (template_check.lint_used; None when not checked) and its findings, a line each.
    used_files: list[tuple[str, ...]] = field(default_factory=list)
    lint: Report | None = None
    # What a person must mend, a ``warning:`` line each on stderr (under ``--quiet`` too) and in
    # ``--json``'s ``warnings``: a call list the run could not take opted-out people out of, and a
    # dry-run's findings of ``templates check`` (the last ``findings`` of them: ``--strict``'s).
    warnings: list[str] = field(default_factory=list)
    findings: int = 0
    # The channels of the ``unconfirmed`` earlier claims: the summary names who did not answer
    # (the relay, the SMS gateway: cartrescue.channels.silent_parties), in --json as a sorted list.
    unconfirmed_channels: list[str] = field(default_factory=list)
    # Claims it released that are not resent: a later step of their cart was done (Ledger.release_unconfirmed).
    released_not_resent: int = 0


_Paced = TypeVar("_Paced", SmtpConfig, SmsConfig, WebhookConfig)


def run_shard(config: Config, request: RunRequest) -> Shard:
    """The shard a run serves (the whole: ``Shard(1, 1)``), its customers' numbers read in the
    shop's region: the carts, the ledger's rows and the quotas of a customer without an address
    are its by their number, as the planner knows them."""
    return (request.shard or Shard(1, 1)).in_region(config.phone_region)


def shard_config(config: Config, shard: Shard) -> Config:
    """``config`` with the relay's and the HTTP endpoints' limits shared among the shards
    (README, "Workers and shards").

    ``rate_per_second`` is divided by N; ``rate_per_hour`` is split like a budget
    (:meth:`Shard.share`); ``smtp.pool_size`` and an HTTP channel's ``concurrency`` become
    the shard's share (:meth:`Shard.share`, at least one). A relay, an SMS gateway and a webhook
    endpoint see the same totals whatever the number of workers (the SMS and webhook limits were
    each worker's whole: a gateway paced to one text a second got two under ``--workers 2``), as
    long as there are at least as many connections as shards: a shard needs one to send.
    ``ceil(x / N)`` each gave more than ``x`` in all (``pool_size`` 16 over 3 shards: 18).
    """
    if shard.whole:
        return config
    smtp = _shared_rates(config, config.smtp, "smtp", shard, pool_size=_connections(shard, config.smtp.pool_size))
    sms = _shared_rates(config, config.sms, "sms", shard, concurrency=_connections(shard, config.sms.concurrency))
    webhook = _shared_rates(config, config.webhook, "webhook", shard,
                            concurrency=_connections(shard, config.webhook.concurrency))
    return config.model_copy(update={"smtp": smtp, "sms": sms, "webhook": webhook})


def _connections(shard: Shard, total: int) -> int:
    """This shard's part of ``total`` connections: the shares add up to ``total``; a shard gets
    one at least, since it cannot send with none."""
    return max(1, shard.share(total))


def _shared_rates(config: Config, section: _Paced, name: str, shard: Shard, **update: int) -> _Paced:
    """``section`` (``name`` of ``config``: smtp, sms, webhook) with the shard's part of its rates, and ``update``."""
    per_hour = section.rate_per_hour
    if per_hour is not None:
        if per_hour < shard.count:
            raise config.refusal(f"{name}.rate_per_hour", f"{per_hour} is fewer than the {shard.count} shards: each "
                                 "shard takes a share of the hour and needs at least one")
        per_hour = shard.share(per_hour)
    return section.model_copy(update={
        "rate_per_second": section.rate_per_second / shard.count if section.rate_per_second else None,
        "rate_per_hour": per_hour, **update})


#: Characters an unsubscribe secret needs before a message signed with it goes out.
MIN_SECRET_LENGTH = 16


def delivery_secret(config: Config) -> str:
    """The unsubscribe secret of a message that goes out; ConfigError when there is none.

    A message that goes out (or into an .eml a person may forward) must carry a link the shop
    can honour; a link signed with a public constant can never be.
    """
    secret = config.shop.unsubscribe_secret
    if not secret or secret == DRY_RUN_SECRET:
        raise config.refusal("shop.unsubscribe_secret", "empty; export CARTRESCUE_SECRET with a long random value (the "
                             "config of `cartrescue init` reads it as ${CARTRESCUE_SECRET:-}; run --send, --outbox and "
                             "send-test need it, a dry-run does not)")
    if len(secret) < MIN_SECRET_LENGTH:  # one link in hand, a short key is found offline: every token forged
        raise config.refusal("shop.unsubscribe_secret", f"{len(secret)} characters, at least {MIN_SECRET_LENGTH} "
                             "needed (it signs every unsubscribe and survey link, and a short one can be guessed from "
                             "one link); export a long random value, e.g. "
                             "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return secret


def _channels(config: Config, request: RunRequest, stack: ExitStack, ledger: Ledger | None = None,
              clock: RunClock | None = None) -> dict[str, Channel]:
    """``clock``: the run's, which stamps its claims; the call list's ``added_at`` is read from it."""
    from cartrescue.channels.call_list import CallListChannel

    channels: dict[str, Channel] = {"call-list": stack.enter_context(CallListChannel(
        config.path(config.call_list.path), config.shop.tz, config.phone_region, config.shop.url,
        None if clock is None else clock.now))}
    shard = run_shard(config, request)
    whole = config
    config = shard_config(config, shard)
    recent: list[datetime] = []
    if request.mode == "send" and ledger is not None and whole.smtp.rate_per_hour:  # the quota spans runs and shards
        recent = hour_charged(ledger, "smtp", whole.smtp.rate_per_hour, shard)
    channels["email"] = stack.enter_context(email_channel(config, request.mode, request.outbox, recent,
                                                          whole.smtp.rate_per_hour))
    used = config.channels_used()
    for name in ("sms", "webhook"):
        if name in used:
            total = (whole.sms if name == "sms" else whole.webhook).rate_per_hour
            channels[name] = stack.enter_context(_http_channel(name, config, request, ledger, shard, total))
    return channels


def hour_charged(ledger: Ledger, transport: str, total: int, shard: Shard) -> list[datetime]:
    """The past hour's sends of ``transport`` that a shard's share of an hourly quota of
    ``total`` is charged with (README, "Workers and shards"), oldest first.

    Its own customers' sends (by the hash of the current layout), and, where the hour's sends of
    every run leave less than its share, as many of the newest as make up the difference: a
    layout that changed within the hour (an unsharded run, then ``--shard 2/2``; ``--workers``
    growing with the export) sends no more than ``total`` in the hour, as a day's budget does.
    (Until 2026-12-07 only its own were counted: a shard whose customers the last hour's runs
    had not messaged sent its whole share into an hour the relay had already spent.) Pairing the
    i-th newest of the two keeps, at every moment of the hour ahead, the larger of the two counts.
    Within one layout the others' sends never leave less than the share: nothing changes there.
    """
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    every = ledger.sent_since(transport, since)
    if shard.whole:
        return every
    others = total - shard.share(total)  # what the rest of the hour's quota belongs to
    beyond = sorted(every, reverse=True)[:max(0, len(every) - others)]
    own = sorted(ledger.sent_since(transport, since, shard.owns), reverse=True)
    return sorted(max(a, b) for a, b in zip_longest(own, beyond, fillvalue=since))


def check_channels(config: Config, request: RunRequest) -> None:
    """Build the run's channels as it will once it holds the lock, and close them unused: a
    channel section a run cannot deliver with (an empty ``sms.sender`` or ``webhook.url``, an
    ``smtp.ca_file`` that does not load, a ``rate_per_hour`` below the shards) is refused (exit 2)
    before the lock is taken or a cart claimed. Building one connects nowhere."""
    with ExitStack() as stack:
        _channels(config, request, stack)


def email_channel(config: Config, mode: Mode, outbox: Path | None = None, recent: list[datetime] | None = None,
                  whole_per_hour: int | None = None) -> Channel:
    """Where an email goes: ``.eml`` files in ``outbox`` (or ``outbox.path``), or the SMTP relay;
    ``recent``: when earlier runs sent over SMTP (the rolling hourly quota); ``whole_per_hour``:
    that quota as configured, where ``config`` has a shard's share of it."""
    if mode == "outbox":
        from cartrescue.channels.outbox import OutboxChannel

        return OutboxChannel(config.outbox_folder(outbox))
    try:
        from cartrescue.channels.smtp import SmtpChannel
    except ImportError:
        raise ConfigError("--send: the SMTP channel is not available in this build") from None
    return SmtpChannel.from_config(config, recent or [], whole_per_hour)


def _http_channel(name: str, config: Config, request: RunRequest, ledger: Ledger | None, shard: Shard,
                  total: int | None) -> Channel:
    """The SMS or webhook channel of a run: the real one with ``--send``, else the outbox.
    ``config``: the shard's (:func:`shard_config`); ``total``: the whole hourly quota (:func:`hour_charged`)."""
    if request.mode == "outbox":
        from cartrescue.channels.outbox import OutboxChannel

        return OutboxChannel(config.outbox_folder(request.outbox))
    from cartrescue.channels.sms import SmsChannel
    from cartrescue.channels.webhook import WebhookChannel

    kind: type[SmsChannel] | type[WebhookChannel] = SmsChannel if name == "sms" else WebhookChannel
    recent: list[datetime] = []
    if ledger is not None and total:  # the hourly quota spans runs and shards
        recent = hour_charged(ledger, kind.transport, total, shard)
    return kind.from_config(config, recent, total)


def run_job(
    config: Config,
    request: RunRequest,
    on_result: Callable[[Result], None],
    on_problem: Callable[[RowProblem], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[ProgressTotal], None] | None = None,
    counts: Counts | None = None,
) -> RunSummary:
    """Plan (and unless dry-run, deliver) every cart of the configured source.

    ``on_progress(n)`` hears of every ``n`` carts done; ``on_total`` (given only when a person
    watches: it may cost the source a query) gets how much there is to read, when the source
    can tell (:meth:`~cartrescue.sources.base.CartSource.progress_total`). ``counts``: where the
    run adds up its results, for a caller that reports them when the run ends early (Ctrl-C).
    """
    try:
        return _run_job(config, request, on_result, on_problem, on_progress, on_total,
                        counts if counts is not None else Counts())
    except ConfigError as error:
        raise config.locate(error) from None
    except DBAPIError as error:  # the ledger's database (the shop's are SourceErrors already)
        from cartrescue.ledger import ledger_error

        raise ledger_error(error, _named_ledger(config)) from None


def _named_ledger(config: Config) -> str:
    """The ledger as a run's error names it, by its config key and URL (exit 2 names the file and
    the key): "the ledger: database or disk is full" left the owner to find which file."""
    return f"{config.where('ledger.url')} {masked_url(config.ledger_url)}"


def _run_job(
    config: Config,
    request: RunRequest,
    on_result: Callable[[Result], None],
    on_problem: Callable[[RowProblem], None] | None,
    on_progress: Callable[[int], None] | None,
    on_total: Callable[[ProgressTotal], None] | None,
    counts: Counts,
) -> RunSummary:
    now = resolve_now(config, request.now)
    sweep_stale()  # the scratch folders of killed runs (cartrescue.scratch)
    problems: list[RowProblem] = []

    def report(row: RowProblem) -> None:
        """A cart that could not be used (unreadable row, repeated id, render error): counted and
        shown; the run goes on with the others."""
        counts.problems += 1
        if len(problems) < PROBLEMS_KEPT:
            problems.append(row)
        if on_problem is not None:
            on_problem(row)

    stopped = _strict_stop(request)

    def problem(row: RowProblem) -> None:
        if request.strict:
            raise SourceError(f"{row} ({stopped})")
        report(row)

    delivering = request.deliver and request.mode != "dry-run"
    warnings: list[str] = []  # what a person must mend, said under --quiet too (RunSummary.warnings)
    secret = delivery_secret(config) if delivering else config.shop.unsubscribe_secret or DRY_RUN_SECRET
    # A step's missing template: refused now, not as every cart's render error, and by `carts`
    # too (it would list carts as due for a step no run takes).
    require_step_templates(config)
    if request.mode == "send":  # the channels' secrets, before anything is read or claimed
        config.require_env("smtp", *config.channels_used())
    if delivering:
        check_channels(config, request)
    if delivering:
        hold_back_if_stale(config, now)  # before anything is read or claimed
        notes = []
    else:
        notes = [f"a sending run would hold back (exit 3): {line}" for line in stale_exports(config, now)]
    copied = copied_shop(config)
    if copied is not None:
        if delivering:
            raise ConfigError(copied)
        notes.append(f"a sending run would stop (exit 2): {copied}")
    if request.deliver:
        notes += call_list_notes(config, delivering)
    with ExitStack() as stack:
        source = stack.enter_context(open_source(config, problem, request.shared_orders, request.shared_carts))
        if request.strict:
            # Read everything once before anything is delivered: a bad row stops the run clean.
            _read_all(source, Window(now - config.eligibility.max_age, now), stopped)
        # A run that records nothing (carts, a dry-run) does not make the ledger's file: at a
        # mistyped ledger.url an empty one then fooled doctor and the next sending run. It plans
        # as a first run does (doctor names the missing file).
        ledger = config.open_ledger(create=delivering, upgrade=True, runs_over=request.runs_over)
        stack.callback(ledger.close)
        if ledger.refused is not None:  # it read no history: say so, as --send does (exit 2)
            notes.append(f"a sending run would stop (exit 2): {ledger.refused}")
        try:
            same_source(config, source.name, ledger, now)  # before anything is claimed
        except ConfigError as exc:
            if delivering:
                raise
            notes.append(f"a sending run would stop (exit 2): {exc}")  # the dry-run still plans
        try:
            switched_from = same_shop(config, ledger)
        except ConfigError as exc:
            if delivering:  # recorded, so that doctor (and every later run) still sees the shops take turns
                shard_name = "" if request.shard is None or request.shard.whole else str(request.shard)
                ledger.finish_run(ledger.start_run(request.mode, now, shard_name, config.shop_identity), "refused", {})
                raise
            notes.append(f"a sending run would stop (exit 2): {exc}")
            switched_from = None
        if switched_from is not None:
            notes.append(f"this ledger's last run was for shop {switched_from}, this one is for {config.shop_identity}: "
                         "fine for a renamed shop or a new sender, but two shops must not share a ledger (each one's "
                         "cart ids and addresses are taken for the other's, and reminders are lost): if another shop "
                         "uses this ledger.url, give each its own: that shop's next run stops here (exit 2), and "
                         "every run of either after it")
        shard = run_shard(config, request)
        owns = None if shard.whole else shard.owns
        run_id = None
        pruned: dict[str, int] = {}
        unconfirmed = 0
        unconfirmed_channels: list[str] = []
        released, released_not_resent = 0, 0
        killed_left = 0
        watch = None
        if delivering:
            run_id = counts.run_id = ledger.start_run(request.mode, now, "" if shard.whole else str(shard),
                                                      config.shop_identity)
            try:
                stack.enter_context(ledger.lock(run_id, config.ledger.lock_timeout, shard.lock_name))
            except LockHeld as held:
                ledger.finish_run(run_id, "locked", {})
                other = None if held.holder is None else ledger.shop_of_run(held.holder)
                if other is not None and other != config.shop_identity:  # not this shop's earlier run: a config error
                    raise ConfigError(
                        f"{config.where('ledger.url')}: a run of shop {other} holds this ledger's lock, and this run "
                        f"is for {config.shop_identity}: two shops must not share a ledger (each one's cart ids and "
                        "addresses are taken for the other's, and reminders are lost). Nothing was claimed. Give each "
                        "shop its own ledger.url (README, \"Many shops, one cron job\"); a shop renamed while its "
                        "last run still goes passes once that run has ended") from None
                raise
            watch = stack.enter_context(LockWatch(ledger, run_id, config.ledger.lock_timeout, shard.lock_name))
            pruned = _prune(config, ledger, now, run_id)
            killed_left = sum(ledger.close_dead_runs(run_id, config.ledger.lock_timeout).values())
            if request.resend_unconfirmed:
                freed = ledger.release_unconfirmed(run_id, config.ledger.lock_timeout, owns)
                released, released_not_resent = int(freed), freed.not_resent
            left = ledger.unconfirmed(run_id, owns)
            unconfirmed, unconfirmed_channels = len(left), sorted({row["channel"] for row in left})
        # Every shard reads the whole newsletter export: its bad rows are shard 1's to report.
        newsletters = newsletters_of(config, source, now, problem if shard.index == 1 else ignore_problem, stack,
                                     request.shared_sends)
        planner = Planner(config, now, ledger, problem, shard, newsletters=newsletters,  # a repeated id: a row problem
                          run_id=run_id)
        if on_total is not None:
            total = source.progress_total(planner.window)
            if total is not None:
                on_total(total)
        renderer = Renderer(config)
        composer = Composer(config, renderer, now, secret, dated_now=delivering)
        clock = RunClock(now, live=request.live_clock)
        channels = _channels(config, request, stack, ledger, clock) if delivering else {}
        limit = request.limit if request.limit is None else shard.share(request.limit)
        executor = Executor(composer, channels, ledger if delivering else None, run_id, on_progress, report,
                            limit, watch, shard.lock_name, eml=None if delivering else request.eml,
                            clock=clock)
        decisions = planner.decide(source)
        status = "failed"
        try:
            if request.deliver:
                for result in executor.execute(decisions):
                    counts.add(result)
                    on_result(result)
                if delivering and request.unlist:  # after its own rows: one who opted out while it ran goes too
                    said, failed = unlist_opted_out(config, ledger)
                    notes += said
                    warnings += failed
            else:
                done = 0
                for decision in decisions:
                    result = Result(decision)
                    counts.add(result)
                    on_result(result)
                    done += 1
                    if on_progress is not None and done == PLAN_CHUNK:
                        on_progress(done)
                        done = 0
                if on_progress is not None and done:
                    on_progress(done)
            status = "ok"
        except LockLost:
            status = "lock_lost"
            raise
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, run-all --timeout: stopped, not failed
            status = "interrupted"
            with stops.held():
                _report_cut_short(executor, counts, on_result)
            raise
        except DBAPIError as error:
            _report_cut_short(executor, counts, on_result)  # the ledger failed: what the run knows it claimed
            if run_id is not None and busy(error):  # not "another run holds the lock" (exit 4): this run did work
                raise LedgerError(
                    f"the ledger stayed locked by another process while this run delivered ({one_line(error)}): it "
                    "stopped; the messages it could not record have no outcome and are not resent (doctor shows "
                    "them)") from None
            if run_id is not None and stopped_answering(error) is None:  # which says it in its own words
                raise LedgerError(failed_while_delivering(error, _named_ledger(config),
                                                          _stopped_after(counts, shard))) from None
            raise
        finally:
            if run_id is not None:
                totals = {"sent": counts.deliveries["sent"], "failed": counts.failed,
                          "skipped": counts.actions["skip"], "deferred": counts.actions["defer"],
                          "problems": counts.problems}
                try:
                    recorded = ledger.finish_run(run_id, status, totals)
                except DBAPIError as error:  # a later run closes this one as killed
                    if status == "ok" and not busy(error):  # else the error that stopped it is the one to say
                        raise
                    recorded = 0
                if status != "ok":  # stopped early: messages its stop grace recorded, not yet counted
                    counts.deliveries["sent"] = max(counts.deliveries["sent"], recorded)
    notes += newsletters.notes() if newsletters is not None else []
    notes += planner.prioritizer.notes()
    summary = RunSummary(request.mode, now, run_id, counts, problems, unconfirmed, released, notes, pruned,
                         killed_left=killed_left, shop_switched_from=switched_from, warnings=warnings,
                         unconfirmed_channels=unconfirmed_channels, released_not_resent=released_not_resent)
    if request.deliver and request.mode == "dry-run":
        summary.used_files = sorted(renderer.used_files())
        if request.lint and summary.used_files:
            from cartrescue.template_check import lint_cached

            summary.lint, findings = lint_cached(config, summary.used_files)
            summary.warnings += findings
            summary.findings = len(findings)
    return summary


def _stopped_after(counts: Counts, shard: Shard) -> str:
    """What a run stopped by its ledger had delivered, for its error line: ``it stopped after 28
    delivered, 0 failed, 1 in flight without an answer``. A shard's are its own: the parent of
    ``run --workers`` relays a worker's line beside a document that counts every worker's."""
    in_flight = counts.deliveries.get("unconfirmed", 0)
    return (f"{'it' if shard.whole else f'shard {shard}'} stopped after {counts.deliveries['sent']} delivered, "
            f"{counts.failed} failed" + (f", {in_flight} in flight without an answer" if in_flight else ""))


def _report_cut_short(executor: Executor, counts: Counts, on_result: Callable[[Result], None]) -> None:
    """Count and report the results of the chunk a stop or a ledger error cut short
    (:attr:`Executor.cut_short`): every message the run claimed is listed, those in flight too,
    and the counts of its document add up (README, exit 130)."""
    results, executor.cut_short = executor.cut_short, []
    for result in results:
        counts.add(result)
        on_result(result)


def call_list_notes(config: Config, delivering: bool) -> list[str]:
    """The run's note on a call list whose header takes no row (:func:`list_problem`), said once
    at start: its calls fail one batch at a time, and a run with no call due would say nothing
    while the file waits to fail the next ones. The summary shows it once (the failures it
    explains are not listed again: ``commands.run``)."""
    if "call-list" not in config.channels_used():
        return []
    from cartrescue.channels.call_list import list_problem

    problem = list_problem(config.path(config.call_list.path))
    if problem is None:
        return []
    said = f"{config.where('call_list.path')}: {problem}"
    if not delivering:
        return [f"a sending run would add no call to the call list: {said}"]
    return [f"{said}; each call fails (retried by the next run) until the header is fixed or the file moved away "
            "(the next call then begins a new list)"]


def unlist_opted_out(config: Config, ledger: Ledger) -> tuple[list[str], list[str]]:
    """A delivering run of a shop that calls takes the rows of people suppressed since they were
    listed (unsubscribed by the link or the command, a STOP, an imported list, a mailbox, a
    bounce, ``forget``) out of the call list, once it has appended its own: staff work through
    the list later, and must not phone someone who opted out. Suppressions come from the
    webhook in the shop's web server too, which is not the user the list is written as; the run
    is. Its notes say how many; its warnings why it could not (a list it may not rewrite, not
    UTF-8): cron's mail must say so, while a note is not printed under ``--quiet``. Of
    ``run --workers``, shard 1 alone does it (:attr:`RunRequest.unlist`)."""
    if "call-list" not in config.channels_used():
        return [], []
    from cartrescue.channels.call_list import suppressed_rows
    from cartrescue.text import counted

    path = config.path(config.call_list.path)
    try:
        removed = suppressed_rows(path, lambda hashes: set(ledger.history([], [], hashes).suppressed), config.phone_region)
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{config.where('call_list.path')}: {path}: the rows of people who opted out since they were "
                    f"listed could not be removed ({getattr(exc, 'strerror', None) or exc}): staff must not call them"]
    if not removed:
        return [], []
    return [f"{config.where('call_list.path')}: {path}: removed {counted(removed, 'row')} of people who opted out "
            "since they were listed (unsubscribed, STOP, bounced or forgotten): staff must not call them"], []


def newsletters_of(config: Config, source: CartSource, now: datetime, on_problem: Callable[[RowProblem], None],
                   stack: ExitStack, shared: Path | None = None) -> Newsletters | None:
    """The shop's other sends of today up to ``now`` (``newsletter_today``), or None when none are
    read. ``shared``: a worker's run's index of the export (:mod:`cartrescue.sources.shared`)."""
    readers = open_sends(config, source, on_problem, shared)
    for reader in readers:
        if reader is not source:
            stack.callback(reader.close)
    if not readers:
        return None
    return Newsletters(readers, today(config, now))


def copied_shop(config: Config) -> str | None:
    """Under ``run-all``: why this shop must not deliver, when another config of the round reads
    the same carts (:func:`cartrescue.sources.source_identity`) and took them first; else None.

    Each config has its own ledger, so neither knew of the other's messages: an agency's copied
    shop folder reminded every customer of every step twice. Refused before anything is read
    or claimed, exit 2: the first shop delivers, and the round's exit code calls a person."""
    from cartrescue.batch import ROUND_ENV, take_in_round

    if not os.environ.get(ROUND_ENV):
        return None
    from cartrescue.sources import source_identity

    me = config.config_file or Path("cartrescue.yaml")
    first = take_in_round(source_identity(config), me)
    if first is None:
        return None
    return (f"{me}: reads the same carts as {first} in this run-all round (a copied shop folder? "
            f"source {source_identity(config)}): each has its own ledger, so every customer would get each step "
            "twice. Nothing was claimed here. Give each shop its own export or database (a prefix or schema of "
            "its own), or leave the copy out of run-all's list")


def same_source(config: Config, name: str, ledger: Ledger, now: datetime) -> None:
    """A delivering run whose source names its carts otherwise (``name:id``) than the ledger's
    latest message did stops (exit 2) before claiming anything.

    A cart's steps are claimed under its key. After a switch of ``source.type`` (the Shopify
    preset for the generic CSV with the same columns, an export for the shop's database) every
    cart would start its sequence again under a new key, and every customer be reminded twice.
    One ledger belongs to one shop, so its latest message tells the name in use; once it is older
    than ``eligibility.max_age`` no cart of it can still be reminded, and the new name is free.
    """
    latest = ledger.latest_message()
    if latest is None:
        return
    key, at = latest
    before = key.partition(":")[0]
    if before == name or now - at > config.eligibility.max_age:
        return
    raise ConfigError(
        f"{config.config_file or 'the config'}: source.type {config.source.type} names its carts '{name}:…', but the "
        f"ledger's latest message ({at:%Y-%m-%d %H:%M} UTC) is of cart '{key}': with new keys every cart would start "
        f"its sequence again and its customer be reminded twice. Nothing was claimed. Keep the source it had, or set "
        f"source.key_prefix: {before} (the same cart ids under the old name); a new shop needs a ledger of its own")


def same_shop(config: Config, ledger: Ledger) -> str | None:
    """The shop of the ledger's last run when it is not this config's (a rename, or a second shop
    on one ledger); a run of shops taking turns in the ledger stops (exit 2) before claiming.

    The ledger's runs record their shop (:attr:`Config.shop_identity`). A shop renamed, or given
    another sender, switches once and is then the only one; two shops alternate, and their second
    switch is the first moment the two can be told apart: every run of either stops there, before
    more of their customers' reminders are lost.
    """
    from cartrescue.ledger import shops_taking_turns

    shops = ledger.recent_shops()
    identity = config.shop_identity
    if not shops or shops[0] == identity:
        return None
    taking_turns = shops_taking_turns([identity, *shops])
    if taking_turns:
        raise ConfigError(
            f"{config.where('ledger.url')}: the runs of {len(taking_turns)} shops take turns in this ledger "
            f"({'; '.join(taking_turns)}): each shop's cart ids, addresses and lock collide with the other's, and "
            "reminders are lost. Nothing was claimed. Give each shop its own ledger.url (a database, or a "
            "PostgreSQL schema each: README, \"Many shops, one cron job\")")
    return shops[0]


def _prune(config: Config, ledger: Ledger, now: datetime, run_id: int) -> dict[str, int]:
    """``ledger.retention``: the delivering run deletes decisions and run records past their age."""
    retention = config.ledger.retention
    if retention.decisions is None and retention.runs is None:
        return {}
    from cartrescue.lifecycle import prune

    return prune(ledger, now, decisions=retention.decisions, runs=retention.runs, current_run=run_id).as_dict()


def _strict_stop(request: RunRequest) -> str:
    """What a ``--strict`` stop on a bad row ends with: a run says nothing was delivered; ``carts``
    never delivers, and says what it did not do instead."""
    return "--strict: nothing was delivered" if request.deliver else "--strict: no cart was listed"


def _read_all(source: CartSource, window: Window, stopped: str) -> None:
    """``--strict``'s first pass: every row read (a bad one raises) and no cart id twice;
    ``stopped``: the error's last words (:func:`_strict_stop`)."""
    from cartrescue.decide.newest import NewestCarts

    with NewestCarts() as seen:
        for chunk in chunked(source.carts(window), 500):
            repeated = seen.repeated([cart.key for cart in chunk])
            for cart in chunk:
                count = repeated.get(cart.key)
                if count is not None:
                    repeated[cart.key] = count + 1
                    if count:
                        advice = f"{source.repeat_advice}; " if source.repeat_advice else ""
                        raise SourceError(f"{cart.origin or cart.key}: cart {cart.id}: the same cart id again "
                                          f"({advice}{stopped})")


class LockWatch:
    """Keeps the run lock's heartbeat fresh from a background thread, and notices losing it.

    The heartbeat comes every ``lock_timeout / 4`` whatever the main thread is doing (a long
    query, a slow relay), so a live run is never taken for a dead one; a stopped process
    (SIGSTOP, a suspended VM) stops its thread too, and is rightly taken over. When the
    heartbeat finds another run's id on the lock, ``lost`` is set and the pipeline stops
    claiming; the claims themselves are fenced in SQL as well (:meth:`Ledger.claim`).
    """

    def __init__(self, ledger: Ledger, run_id: int, lock_timeout: timedelta, name: str = "run") -> None:
        import threading

        self.ledger = ledger
        self.run_id = run_id
        self.name = name
        self.every = max(lock_timeout.total_seconds() / 4, 0.5)
        self.lost: LockLost | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="cartrescue-heartbeat", daemon=True)

    def __enter__(self) -> "LockWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                held = self.ledger.heartbeat(self.run_id, self.name)
            except Exception:  # noqa: BLE001 - a busy database: the next beat tries again
                continue
            if not held:
                self.lost = LockLost(f"run #{self.run_id} lost the run lock (it was paused or stalled longer than "
                                     "ledger.lock_timeout and another run took over): stopped without delivering more")
                return
