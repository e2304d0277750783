"""``cartrescue doctor``: is everything a cron run needs in place, and are reminders still going out?

Owns the checks and their verdicts, in this order: the config, the ledger, the source, the SMTP
relay (connect, TLS and AUTH, MAIL FROM the run's sender and RSET, then QUIT: nothing is sent),
each other channel a tier or step uses (the webhook URL answers a HEAD; the SMS provider accepts
the credentials in a read-only call: Twilio's account resource; nothing is sent) and staleness
(no successful delivering run for ``doctor.stale_after``, or a channel the config uses whose every delivery
failed for that long while the runs delivered on another -> :attr:`~cartrescue.errors.ExitCode.STALE`,
so the mail cron sends on a non-zero exit tells the owner that reminders have silently stopped).
The exit code is the one of the first failed check. It prints nothing; the CLI shows the result.

Each check that talks to a server waits for it at most ``--timeout`` (:data:`TIMEOUT` by
default), or its own bound where that is shorter (:func:`cartrescue.drivers.within`): an
agency's hourly loop of ``doctor`` over its shops was held for half an hour by one relay that
took the connection and never greeted (three times ``smtp.timeout: 10m``), and the shops after
it went unchecked. A blocking database call is bounded by the deadlines the drivers keep
(``drivers.statement_deadline``), never by a thread left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cartrescue.channels import answering, silent_parties
from cartrescue.errors import CartrescueError, ConfigError, ExitCode, SourceError
from cartrescue.shards import Coverage, coverage, recorded_shard
from cartrescue.sources.freshness import ago
from cartrescue.text import counted

if TYPE_CHECKING:
    import ssl

    from sqlalchemy.exc import DBAPIError

    from cartrescue.ledger import StoppedChannel

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"

#: Seconds ``doctor`` waits at most for a server (``--timeout``), each statement or request.
TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    exit_code: int = 0  # for a failure: the code this check maps to

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Report:
    checks: list[Check]
    shop: str | None = None  # ``shop.name`` of a config that loaded: ``doctor-all``'s row names the shop

    @property
    def exit_code(self) -> int:
        """The first failed check's code; a generic 1 (the relay refused, a template failed)
        gives way to a specific one of a later check, so that "reminders stopped" (5) reaches
        cron when the relay being down is why."""
        codes = [c.exit_code for c in self.checks if c.status == FAIL]
        return next((code for code in codes if code != ExitCode.SOME_FAILED), codes[0] if codes else int(ExitCode.OK))

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK


def staleness(last: datetime | None, stale_after: timedelta, now: datetime, delivered_nothing: int = 0,
              covered: Coverage | None = None, channels: Collection[str] = (),
              stopped: Sequence[StoppedChannel] = ()) -> Check:
    """The staleness verdict for the last successful delivering run (of every shard: ``covered``
    says which lags, :func:`cartrescue.shards.coverage`). ``delivered_nothing``: the runs after it
    that ran to their end but whose every delivery failed, named so that the owner does not look
    for a cron that stopped (it runs; the relay takes nothing). ``channels``: those runs'
    messages' (none known: email's relay is asked about). ``stopped``: the channels that
    delivered nothing for ``stale_after`` though tried (:meth:`Ledger.stopped_channels`): their
    reminders stopped while the runs succeeded on another channel, so the shop is stale."""
    note = _delivered_nothing(delivered_nothing, channels)
    if stopped:
        words = "; ".join(_stopped(found, stale_after, now) for found in stopped)
        if last is not None and now - last <= stale_after:
            return Check("staleness", FAIL, f"{words}{note}: those reminders have stopped, though the runs still "
                         "deliver", int(ExitCode.STALE))
        note += f"; {words}"
    if covered is not None and covered.missing:
        shards = ", ".join(covered.missing)
        note += (f"; shard{'s' if len(covered.missing) > 1 else ''} {shards} never ran to a success: "
                 "their customers get no reminders")
    if last is None:
        return Check("staleness", FAIL, f"no successful run with --send or --outbox recorded in the ledger yet{note}",
                     int(ExitCode.STALE))
    age = now - last
    which = f"of shard {covered.lagging} (the other shards' are newer)" if covered and covered.lagging else ""
    detail = (f"last successful run {which}{' ' if which else ''}finished {ago(age)} ago ({last:%Y-%m-%d %H:%M} UTC); "
              f"stale after {ago(stale_after)}")
    if age > stale_after:
        why = "" if note else " (is cron running `run --send`?)"
        return Check("staleness", FAIL, f"{detail}{note}: reminders have stopped{why}", int(ExitCode.STALE))
    return Check("staleness", WARN if note else OK, detail + note)


def _stopped(found: StoppedChannel, stale_after: timedelta, now: datetime) -> str:
    """The words for a channel that delivered nothing for ``stale_after``: which, of which
    shard, since when, and who to ask (a call list's rows nobody answers)."""
    shard = f" of shard {found.shard}" if found.shard else ""
    last = ("never delivered" if found.last_delivered is None else
            f"last delivered {ago(now - found.last_delivered)} ago, {found.last_delivered:%Y-%m-%d %H:%M} UTC")
    who = answering({found.channel})
    what = "mail" if found.channel == "email" else "messages"
    question = f"is {who} refusing or deferring {what}? " if who else ""
    return (f"{found.channel}{shard} delivered nothing for over {ago(stale_after)}: its {found.failed} "
            f"attempt{'s' if found.failed != 1 else ''} in that time failed ({last}; {question}see `cartrescue report`)")


def _delivered_nothing(runs: int, channels: Collection[str] = ()) -> str:
    """The words for ``runs`` runs that delivered nothing, or ``""``: who is asked about is
    who answers their messages' ``channels`` (an SMS gateway is no relay)."""
    if not runs:
        return ""
    which = "the last run" if runs == 1 else f"the last {runs} runs"
    channels = set(channels) or {"email"}
    who = answering(channels)
    what = "mail" if channels == {"email"} else "messages"
    question = f"is {who} refusing or deferring {what}? " if who else ""
    return f"; {which} delivered nothing (every delivery failed: {question}see `cartrescue report`)"


def _refused_secret(config: Any) -> str | None:
    """Why a sending run would refuse the config's unsubscribe secret (too short to keep its links
    from being forged), as :func:`cartrescue.job.delivery_secret` says it; None when it would not."""
    from cartrescue.job import delivery_secret

    try:
        delivery_secret(config)
    except ConfigError as refused:
        return str(refused)
    return None


def _zero_budgets(config: Any) -> list[str]:
    """A warning for each tier whose ``budget: 0`` (``over_budget: defer``) leaves no room for a
    send on its channel: every run defers those carts (``tier_budget``) until they leave
    ``eligibility.backfill``, and the runs succeed sending nothing to them, so staleness never
    fails. A budget its tier's steps do not count is named among the ignored keys instead."""
    return [f"{config.where(config.priority.key(tier.name) + '.budget')}: 0: tier {tier.name!r} never sends by "
            f"{tier.channel} (each run defers its carts, tier_budget, until they leave eligibility.backfill): null "
            "for no cap" + ("" if tier.channel == "email" else ", or over_budget: email to mail them instead")
            for tier in config.priority.listed()
            if tier.budget == 0 and tier.over_budget == "defer" and config.own_channel_steps(tier)]


def _unreachable_tiers(config: Any) -> list[str]:
    """A warning for each tier no cart can get: its ``min_score`` is above every sum of the rules'
    weights (or between two of them, taken by the tier above). A ``vip`` tier at 110 under the
    default weights (100 at most) never called anyone, and every check said all was well."""
    from cartrescue.decide.priority import Prioritizer
    from cartrescue.model import score_text

    prioritizer = Prioritizer(config.priority)
    unreachable = {tier.name for tier in prioritizer.unreachable()}
    if not unreachable:
        return []
    scores = ", ".join(score_text(score) for score in prioritizer.scores())
    return [f"{config.where(config.priority.key(tier.name) + '.min_score')}: {score_text(tier.min_score)}: no cart can "
            f"get tier {tier.name!r}: the rules' weights give scores of {scores} only (priority.rules)"
            f"{config.line(config.priority.key(tier.name) + '.min_score')}"
            for tier in config.priority.listed() if tier.name in unreachable]


def _no_one_click(config: Any) -> list[str]:
    """A warning when the unsubscribe link is ``http://``: RFC 8058 one-click unsubscribing
    (``List-Unsubscribe-Post``) is for an https link only, so every message went without it, which
    Gmail and Yahoo ask of bulk senders, while the config check said all was well."""
    if config.shop.one_click:
        return []
    return [f"{config.where('shop.unsubscribe_url')}: an http:// link, so messages carry no one-click unsubscribe "
            "(List-Unsubscribe-Post, RFC 8058, is for https only; Gmail and Yahoo ask it of bulk senders, and the "
            "token crosses the network readable): serve it over https:// and write that link"]


def run_checks(config_path: str | Path | None, *, smtp: bool = True, now: datetime | None = None,
               limit: float | None = None) -> Report:
    """Every check; a failed config skips the rest (nothing else can be known without it).
    ``limit``: ``--timeout``, seconds each check waits for a server at most (None: its own bound)."""
    from cartrescue.config import load_config, resolve_now

    checks: list[Check] = []
    try:
        config = load_config(config_path)
        now = resolve_now(config, now)  # the config's pinned clock (``now:``), as a run reads it
    except ConfigError as exc:
        return Report([Check("config", FAIL, str(exc), int(exc.exit_code)),
                       *(Check(name, SKIP, "needs a valid config") for name in ("ledger", "source", "templates", "smtp", "staleness"))])
    unrenderable = _step_templates(config)
    # Keys nothing reads (the shop believes they take effect): a warning, or said after a failure.
    ignored = "; ".join([*config.ignored_keys(), *config.pinned_clock(), *_zero_budgets(config),
                         *_unreachable_tiers(config),
                         *_no_one_click(config)])
    also = f"; also: {ignored}" if ignored else ""
    if unrenderable is not None:  # every run refuses it (exit 2); the other checks still say what else is wrong
        checks.append(Check("config", FAIL, unrenderable + also, int(ExitCode.CONFIG)))
    elif not config.shop.unsubscribe_secret:
        checks.append(Check("config", FAIL, f"{config_path or 'cartrescue.yaml'}: shop.unsubscribe_secret is empty; "
                            "run --send refuses to start (export CARTRESCUE_SECRET with a long random value: the config of "
                            "`cartrescue init` reads it as ${CARTRESCUE_SECRET:-})" + also, int(ExitCode.CONFIG)))
    elif (refused := _refused_secret(config)) is not None:  # too short: every sending run stops on it
        checks.append(Check("config", FAIL, refused + also, int(ExitCode.CONFIG)))
    elif ignored:
        checks.append(Check("config", WARN, f"{config_path or 'cartrescue.yaml'} is valid, but: {ignored}"))
    else:
        checks.append(Check("config", OK, f"{config_path or 'cartrescue.yaml'} is valid"))

    ledger, missing, behind = None, False, False
    foreign = config.not_a_ledger_file()  # opened, it would get cartrescue's tables
    if foreign is not None and foreign[1]:
        checks.append(Check("ledger", FAIL, _not_a_ledger(config, *foreign), int(ExitCode.CONFIG)))
    else:
        try:
            # Read as it is, on every database: doctor makes no file, no table, adds no column,
            # even where it could (a developer's doctor against production, an older run going on).
            ledger = config.open_ledger(create=False, older=True, limit=limit)
        except CartrescueError as exc:
            checks.append(Check("ledger", FAIL, str(exc), int(exc.exit_code)))
    if ledger is not None and ledger.absent is not None:
        from cartrescue.ledger import why_no_file

        # A file the first run cannot create (a folder cron's user may not write) stops every run
        # (exit 2): said "the first run creates it", the check run before it passed.
        # So does a folder no one has made yet (state/): runs make no folders.
        cannot = why_no_file(config.ledger_url)
        if cannot:
            until = "the user that runs cartrescue may write there" if "no permission" in cannot else "that is mended"
            checks.append(Check("ledger", FAIL, f"{ledger.absent} ({config.where('ledger.url')}), and the first run "
                                f"cannot create it{cannot}: every run stops there until {until}",
                                int(ExitCode.CONFIG)))
        elif ledger.refused is not None:
            # A PostgreSQL search_path of no schema, or a schema the role may not create in: no run
            # with --send or --outbox can make the tables (exit 2), and "the first run creates it"
            # would be a pass before a stop.
            checks.append(Check("ledger", FAIL, f"{ledger.refused}: every run with --send or --outbox stops there "
                                "(exit 2) until that is mended", int(ExitCode.CONFIG)))
        else:
            checks.append(Check("ledger", WARN, f"{ledger.absent} ({config.where('ledger.url')}): no run has "
                                "used this ledger yet; the first run with --send or --outbox creates it (a dry-run "
                                "records nothing). If the shop has run before, "
                                "ledger.url names the wrong file (its history, and what it sent, are elsewhere)"))
        ledger.close()
        ledger, missing = None, True  # staleness: as a ledger without runs
    elif ledger is not None and ledger.behind:
        from cartrescue.ledger import older_ledger

        checks.append(Check("ledger", WARN, older_ledger(config.where("ledger.url"), ledger.behind)))
        ledger.close()
        ledger, behind = None, True
    elif ledger is not None:
        from sqlalchemy.exc import DBAPIError

        try:
            checks.append(_ledger(config, ledger, now))
        except DBAPIError as exc:  # it opened, then a read failed: a file SQLite finds malformed
            checks.append(_unreadable(config, exc))
            ledger.close()
            ledger = None  # staleness and codes need it

    checks.append(_source(config, now, limit))
    checks.append(_templates(config, now))
    checks.append(_smtp(config, limit) if smtp else Check("smtp", SKIP, "skipped (--no-smtp)"))
    checks.extend(_http_channels(config, limit))
    if "call-list" in config.channels_used():
        checks.append(_call_list(config))
    if any(offer.codes.file is not None for _key, offer in config.code_offers() if offer.codes is not None):
        checks.append(_code_pools(config, ledger, missing))
    if missing:  # nothing was ever recorded there: as a ledger without runs
        checks.append(staleness(None, config.doctor.stale_after, now))
    elif ledger is None:
        checks.append(Check("staleness", SKIP, "needs a ledger of this version" if behind else "needs the ledger"))
    else:
        try:
            # A run's end is recorded by the real clock: a clock pinned in the past (``now:`` in a
            # demo's config) made every run end in the future ("-1112030s ago"), never stale.
            latest = recorded_shard(ledger.latest_delivering_shard() or "")
            covered = coverage(ledger.last_successful_runs(), latest.count if latest else None)
            nothing = ledger.runs_delivering_nothing_since(covered.at)
            channels = ledger.channels_delivering_nothing_since(covered.at) if nothing else set()
            clock = max(now, datetime.now(timezone.utc))
            stopped = ledger.stopped_channels(config.channels_used(), clock - config.doctor.stale_after)
            checks.append(staleness(covered.at, config.doctor.stale_after, clock, nothing, covered, channels, stopped))
        finally:
            ledger.close()
    return Report(checks, config.shop.name)


def _unreadable(config: Any, exc: DBAPIError) -> Check:
    """The ledger check of a ledger that opened and then failed a read, named by its key and
    URL as a run names it (the file and the key: "the ledger: database disk image is malformed"
    said neither, and ended the doctor before its other checks)."""
    from cartrescue.ledger import ledger_error
    from cartrescue.text import masked_url

    error = ledger_error(exc, f"{config.where('ledger.url')} {masked_url(config.ledger_url)}")
    return Check("ledger", FAIL, str(error), int(getattr(error, "exit_code", ExitCode.CONFIG)))


def _ledger(config: Any, ledger: Any, now: datetime) -> Check:
    """The ledger check of a ledger of this version: its messages, and what would stop a run."""
    from cartrescue.ledger import UNCONFIRMED

    try:
        counts = ledger.status_counts()
        unconfirmed = sum(counts.get(status, 0) for status in UNCONFIRMED)
        silent = silent_parties(ledger.unconfirmed_channels()) if unconfirmed else ""
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no messages yet"
        refused = ledger.write_refused()
        shops = ledger.shops_taking_turns()
        switched = _switched_source(config, ledger, now)
    except CartrescueError as exc:
        return Check("ledger", FAIL, str(exc), int(exc.exit_code))
    if shops:
        return Check("ledger", FAIL, f"{summary}; but the runs of {len(shops)} shops take turns in it ("
                     + "; ".join(shops) + "): each shop's cart ids, addresses and lock collide with the "
                     "other's, and reminders are lost. Give each shop its own ledger.url", int(ExitCode.CONFIG))
    if switched is not None:
        return Check("ledger", FAIL, f"{summary}; but {switched}", int(ExitCode.CONFIG))
    if refused is not None:
        return Check("ledger", FAIL, f"{summary}; but it refuses to write: {refused} (every run would stop there: "
                     "point ledger.url at the primary, or grant the writes; `report` only reads it)",
                     int(ExitCode.CONFIG))
    room = _no_room(config) or _no_write(config)
    if room is not None:
        return Check("ledger", FAIL, f"{summary}; but {room}", int(ExitCode.CONFIG))
    if unconfirmed:
        return Check("ledger", WARN, _without_outcome(counts, silent))
    return Check("ledger", OK, summary)


#: The free space below which a SQLite ledger's check fails: a run writes each cart's decision
#: there besides its claims and outcomes, and stops (exit 2) at the first write that finds no room.
LEDGER_ROOM = 1 << 20


def _no_room(config: Any) -> str | None:
    """Why a SQLite ledger's disk cannot take a run's writes (full, or all but), or None.

    A disk that filled while a run wrote leaves the ledger's write-ahead log with what it could
    not copy into the file: the ledger reads fine (so the check passed) and every run stops at
    its first write. The space free to this process is the cron user's (not root's reserve)."""
    import shutil

    from cartrescue.sqlite_url import sqlite_file

    path = sqlite_file(config.ledger_url)
    if path is None:
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return None
    if free >= LEDGER_ROOM:
        return None
    return (f"the disk holding {path} has {free:,} bytes free ({config.where('ledger.url')}): every run would stop "
            "at its first write that finds no room (exit 2); free space there")


def _no_write(config: Any) -> str | None:
    """Why a run could not write the SQLite ledger's file as the user running ``doctor``, or None.

    A file a first run as root left 0644, with cron running as another user, reads fine (so the
    check passed) and every run stopped at its first write (exit 2, "attempt to write a readonly
    database"). Run ``doctor`` as the user cron runs the shop as."""
    import os

    from cartrescue.sqlite_url import sqlite_file

    path = sqlite_file(config.ledger_url)
    if path is None or not path.is_file() or os.access(path, os.R_OK | os.W_OK):
        return None
    return (f"no permission to read and write {path} ({config.where('ledger.url')}): every run stops at its first "
            "write (exit 2) until the user that runs cartrescue may write it")


def _without_outcome(counts: dict[str, int], silent: str) -> str:
    """The ledger line of a ledger with claims without outcome: each message counted once (the
    statuses without outcome are named in the warning, not listed before it as well)."""
    from cartrescue.ledger import UNCONFIRMED

    others = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if status not in UNCONFIRMED)
    kinds = [(status, counts[status]) for status in UNCONFIRMED if counts.get(status)]
    number = sum(n for _status, n in kinds)
    which = kinds[0][0] if len(kinds) == 1 else ", ".join(f"{n} {status}" for status, n in kinds)
    return (f"{others}; " if others else "") + (
        f"{counted(number, 'claim')} ({which}) {'has' if number == 1 else 'have'} no outcome (a run was "
        f"killed{silent}): not resent unless `run --send --resend-unconfirmed`")


def _step_templates(config: Any) -> str | None:
    """Why every run would refuse this config for a step's missing template, or None."""
    from cartrescue.compose.render import require_step_templates

    try:
        require_step_templates(config)
    except ConfigError as exc:
        return str(exc)
    return None


def _not_a_ledger(config: Any, path: str, tables: list[str]) -> str:
    """Why the SQLite file ``ledger.url`` names is not a ledger: it has tables, none cartrescue's."""
    shown = ", ".join(sorted(tables)[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    return (f"{path} is not a cartrescue ledger ({config.where('ledger.url')}): it has none of cartrescue's "
            f"cr_* tables but {len(tables)} others ({shown}): the shop's own database? Point ledger.url at the "
            "ledger's file (the doctor left this one unchanged)")


def _switched_source(config: Any, ledger: Any, now: datetime) -> str | None:
    """Why a sending run would stop on this ledger because the source names its carts otherwise
    (``job.same_source``), or None."""
    from cartrescue.job import same_source
    from cartrescue.sources import key_name

    try:
        same_source(config, key_name(config), ledger, now)
    except ConfigError as exc:
        return str(exc)
    return None


def _source(config: Any, now: datetime, limit: float | None = None) -> Check:
    from cartrescue.sources import DATABASE_TYPES, open_source
    from cartrescue.sources.base import Window

    problems: list[Any] = []
    try:
        with open_source(config, problems.append, limit=limit) as source:
            window = Window(now - config.eligibility.max_age, now)
            seen = 0
            sample: list[Any] = []  # whose orders are read below, as a run's first chunk would
            keys: set[str] = set()
            for cart in source.carts(window):
                if cart.updated_at >= window.start:  # a CSV source gives every cart of its file
                    if cart.key in keys:  # a query without ORDER BY cart_id: a run would send half a cart
                        return Check("source", FAIL, f"{cart.origin or cart.key}: cart {cart.id}: the same cart "
                                     f"id again{f' ({source.repeat_advice})' if source.repeat_advice else ''}",
                                     int(ExitCode.SOURCE))
                    keys.add(cart.key)
                    seen += 1
                    if len(sample) < 100:
                        sample.append(cart)
                    if seen >= 1000:
                        break
            # The orders query (or file) too: a column it needs and the shop lacks fails every
            # run at its first chunk, though the carts read fine.
            for _order in source.orders_for(sample):
                pass
            if config.source.type in DATABASE_TYPES:
                _report_orders(source, now)
            advice = source.check() + _newsletters(config, source, now, problems.append)
    except CartrescueError as exc:
        return Check("source", FAIL, str(exc), int(exc.exit_code))
    except Exception as exc:  # noqa: BLE001 - a doctor reports, whatever broke
        return Check("source", FAIL, f"{type(exc).__name__}: {exc}", int(ExitCode.SOURCE))
    detail = f"{config.source.type}: {'1000+' if seen >= 1000 else seen} carts in the last {ago(config.eligibility.max_age)}"
    written, stale = _exports(config, now)
    if written:
        detail += "; " + written
    if advice:
        detail += "; " + "; ".join(line.rstrip(";") for line in advice)  # an index's CREATE ends in one
    if stale:
        return Check("source", FAIL, f"{detail}; but {stale}", int(ExitCode.STALE))
    if problems:
        return Check("source", WARN, f"{detail}; {counted(len(problems), 'unreadable row')}, first: {problems[0]}")
    return Check("source", WARN if advice else OK, detail)


def _report_orders(source: Any, now: datetime) -> None:
    """Read the orders placed in an empty window, as ``cartrescue report`` reads them: a column
    only its query needs (Magento's ``sales_order.coupon_code``) failed every weekly digest
    (exit 3) while this check said all was well. A ``sql`` source without
    ``queries.orders_placed`` is left to ``report`` to name."""
    from cartrescue.sources.base import Window

    try:
        for _order in source.orders(Window(now, now)):
            pass
    except ConfigError:
        return
    except SourceError as exc:
        raise SourceError(f"{exc} (cartrescue report reads it)") from None


def _exports(config: Any, now: datetime) -> tuple[str, str]:
    """When each CSV export was last written, and what is stale (``source.export_stale_after``).

    ``run`` holds back on a stale export (exit 3) but a dry-run or a cron that only mails on
    failure may not show it; the doctor, run by monitoring, fails for it (exit 5).
    """
    from cartrescue.sources.freshness import exports, stale_exports

    found = list(exports(config, now))
    limit = config.source.export_stale_after
    # A stale file's age is said once, by its stale sentence: "carts.csv written 3d 0h ago; but
    # carts.csv was last written 3d 0h ago" read as two findings.
    written = ", ".join(f"{export.path.name} written {ago(export.age)} ago" for export in found
                        if not export.stale(limit))
    return written, "; ".join(stale_exports(config, now, found))


def _newsletters(config: Any, source: Any, now: datetime, on_problem: Any) -> list[str]:
    """Read the newsletter sends once, as a run would (the export, the preset's tables): what
    cannot be read raises or comes back as a note."""
    from cartrescue.newsletters import Newsletters
    from cartrescue.sources import open_sends
    from cartrescue.sources.base import Window

    readers = open_sends(config, source, on_problem)
    try:
        newsletters = Newsletters(readers, Window(now - timedelta(days=1), now))
        newsletters.latest(["doctor@example.invalid"])
        return newsletters.notes()
    finally:
        for reader in readers:
            if reader is not source:
                reader.close()


def _templates(config: Any, now: datetime) -> Check:
    """Every template of the config rendered once and one message of each step built, as a run
    would build it: a broken template or an unbuildable message fails here, not at 3 a.m."""
    from dataclasses import replace

    from cartrescue.compose.mime import build_message
    from cartrescue.compose.render import Renderer
    from cartrescue.model import Action, Decision, Reason
    from cartrescue.pipeline import DRY_RUN_SECRET, Composer
    from cartrescue.template_check import TemplateChecker, edge_carts

    try:
        fixture = edge_carts()[:1]
        report = TemplateChecker(config, carts=fixture).run()
        if not report.ok:
            first = report.failed[0]
            problem = first.problems[0]
            return Check("templates", FAIL, f"{len(report.failed)} of {len(report.cases)} template combinations fail; "
                         f"first: {first.name}: {problem.kind}: {problem.message} (see `cartrescue templates check`)",
                         int(ExitCode.SOME_FAILED))
        composer = Composer(config, Renderer(config, none_shown=True), now, config.shop.unsubscribe_secret or DRY_RUN_SECRET)
        cart = fixture[0][0]
        built = 0
        for tier in config.priority.tiers:
            for number, step in enumerate(config.sequences[tier.sequence].steps, 1):
                channel = step.channel_for(tier)
                if channel == "call-list":
                    continue
                decision = Decision(cart=cart, action=Action.SEND, reason=Reason.DUE, tier=tier.name, step=number,
                                    channel=channel, template=step.template, phone="+46701234567")
                if channel == "sms":
                    composer.compose_sms(decision)
                else:
                    build_message(composer.compose(replace(decision)))
                built += 1
    except CartrescueError as exc:
        return Check("templates", FAIL, str(exc), int(ExitCode.SOME_FAILED))
    except ValueError as exc:
        return Check("templates", FAIL, f"a message cannot be built: {exc}", int(ExitCode.SOME_FAILED))
    return Check("templates", OK, f"{len(report.cases)} template combinations render; {built} messages built")


def _smtp(config: Any, limit: float | None = None) -> Check:
    """Connect, TLS and AUTH, each bounded by ``smtp.timeout`` as a run's, all three by
    ``limit`` (``--timeout``) too."""
    from cartrescue.channels.smtp import ConnectFailure, SmtpSettings, check_connection
    from cartrescue.drivers import within

    settings = SmtpSettings.from_config(config)
    bound, key = within(settings.timeout * 3, "3 times smtp.timeout", limit)
    try:
        config.require_env("smtp")  # a relay's password that is not set: the run would stop on it
        info = asyncio.run(asyncio.wait_for(check_connection(settings), bound))
    except ConnectFailure as exc:
        return Check("smtp", FAIL, exc.reply, int(ExitCode.SOME_FAILED))
    except ConfigError as exc:
        return Check("smtp", FAIL, str(exc), int(exc.exit_code))
    except asyncio.TimeoutError:
        return Check("smtp", FAIL, f"{settings.describe()}: no answer within {bound:g} s ({key})",
                     int(ExitCode.SOME_FAILED))
    except OSError as exc:
        return Check("smtp", FAIL, f"{settings.describe()}: {type(exc).__name__}: {exc}", int(ExitCode.SOME_FAILED))
    auth = f", AUTH as {settings.username}" if settings.username else ", no AUTH"
    return Check("smtp", OK, f"{info['server']}: {info['banner']}; TLS {info['tls']}{auth}, MAIL FROM accepted "
                 f"for {info['sender']} (nothing sent)")


def _http_channels(config: Any, limit: float | None = None) -> list[Check]:
    """A check per HTTP channel the config sends on: sends nothing, reads only."""
    from cartrescue.channels.http import trusted

    used = config.channels_used()
    checks = []
    for name, check in (("webhook", _webhook), ("sms", _sms)):
        if name in used:
            try:
                config.require_env(name)
                tls = trusted(config, name)  # a ca_file that does not load: run --send refuses to start
            except ConfigError as exc:
                checks.append(Check(name, FAIL, str(exc), int(exc.exit_code)))
                continue
            checks.append(check(config, tls, limit))
    return checks


def _call_list(config: Any) -> Check:
    """The call list a run appends to: a file whose header takes no row (names no ``cart_id``
    or ``phone``) fails each call's claim, every run, while the e-mails go on (a run is not
    refused for it, and notes it: :func:`cartrescue.job.call_list_notes`)."""
    from cartrescue.channels.call_list import append_problem, list_problem

    path = config.path(config.call_list.path)
    problem = list_problem(path)
    if problem is not None:
        return Check("call-list", FAIL, f"{config.where('call_list.path')}: {problem}; every call is retried and "
                     "fails until the file is a call list again (move it away: the next call begins a new one)",
                     int(ExitCode.SOME_FAILED))
    problem = append_problem(path)
    if problem is not None:  # as the user the doctor runs as: run it as the one cron runs the shop as
        return Check("call-list", FAIL, f"{config.where('call_list.path')}: {problem}; every call is retried and "
                     "fails until the user that runs cartrescue may write there", int(ExitCode.SOME_FAILED))
    try:
        mode = path.stat().st_mode
    except OSError:  # not there yet (or unreadable: list_problem said so above)
        return Check("call-list", OK, f"{path}: not there yet: the first call begins it")
    if mode & 0o004:  # an older version's list (made under the umask), or one chmod-ed so
        return Check("call-list", WARN, f"{config.where('call_list.path')}: {path} is readable by every user of "
                     f"this machine (mode {mode & 0o777:o}) and holds customers' names and numbers: "
                     f"chmod o-r {path} (a list cartrescue begins is its owner's alone; a group the staff are in "
                     "may keep reading it)")
    return Check("call-list", OK, f"{path}: calls are appended under its header")


def _code_pools(config: Any, ledger: Any, missing: bool) -> Check:
    """The unused codes of each pool file (those of its file no message holds): a pool with none
    left fails each message offering it, every run (``code pool … has no unused code left``),
    while the runs deliver the rest. Read only: the file is not imported into the ledger."""
    from cartrescue.compose.incentives import code_key
    from cartrescue.pool_file import read_pool_file

    if ledger is None and not missing:
        return Check("codes", SKIP, "needs the ledger")
    found: list[str] = []  # "pool: free of total codes unused in file"
    empty: list[str] = []
    seen: set[str] = set()
    for key, offer in config.code_offers():
        source = offer.codes
        if source is None or source.file is None or source.pool in seen:
            continue
        seen.add(source.pool)
        file = config.path(source.file)
        try:
            listed = {code_key(code) for code in read_pool_file(file)}
            held = set() if ledger is None else ledger.held_codes(listed)
        except CartrescueError as exc:
            return Check("codes", FAIL, str(exc), int(exc.exit_code))
        except Exception as exc:  # noqa: BLE001 - a doctor reports, whatever broke
            return Check("codes", FAIL, f"the ledger: {type(exc).__name__}: {exc}", int(ExitCode.CONFIG))
        found.append(f"{source.pool}: {len(listed - held)} of {len(listed)} codes unused in {file}")
        if listed <= held:
            empty.append(f"{config.where(key)}: code pool {source.pool!r} has no unused code left in {file} (its "
                         f"{len(listed)} code{'s were' if len(listed) != 1 else ' was'} handed out): every message "
                         "offering it fails until codes are added to the file")
    if empty:
        return Check("codes", FAIL, "; ".join(empty), int(ExitCode.SOME_FAILED))
    return Check("codes", OK, "; ".join(found))


def _probe(tls: ssl.SSLContext | None, key: str, method: str, url: str, timeout: float, secrets: list[str],
           limit: float | None, **kwargs: Any) -> tuple[int, bytes] | str:
    """``(status, body)`` of one request without following redirects, or what went wrong.
    It trusts what the channel trusts (``tls``, from ``key.ca_file``; None: certifi's CAs): a
    private receiver's certificate failed here while the run delivered.

    The whole request is bounded by ``timeout`` (``key.timeout``), as the channels bound each
    attempt (:meth:`cartrescue.channels.http.HttpChannel._attempt`): httpx's timeout bounds each
    read, and a receiver that trickled its answer held ``doctor`` for as long as it liked.
    ``limit`` (``--timeout``) bounds it too, where it is the shorter."""
    import asyncio

    import httpx

    from cartrescue.config import redacted
    from cartrescue.drivers import within

    timeout, why = within(timeout, f"{key}.timeout", limit)

    async def ask() -> tuple[int, bytes]:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False,
                                     verify=True if tls is None else tls) as client:
            response = await client.request(method, url, **kwargs)
            return response.status_code, response.content[:2000]

    try:
        return asyncio.run(asyncio.wait_for(ask(), timeout))
    except asyncio.TimeoutError:
        text = (f"{redacted(url)}: no complete answer within {key}.timeout ({timeout:g} s)" if why == f"{key}.timeout"
                else f"{redacted(url)}: no complete answer within {timeout:g} s ({why})")
    except httpx.HTTPError as exc:
        text = f"{redacted(url)}: {type(exc).__name__}: {exc}"
    for secret in secrets:
        text = text.replace(secret, "***") if secret else text
    return text


def _webhook(config: Any, tls: ssl.SSLContext | None, limit: float | None) -> Check:
    from cartrescue.config import redacted

    section = config.webhook
    if not section.url:
        return Check("webhook", FAIL, f"{config.where('webhook.url')}: empty, but a tier or step sends on the webhook "
                     "channel", int(ExitCode.CONFIG))
    if not section.secret:
        return Check("webhook", FAIL, f"{config.where('webhook.secret')}: empty; run --send refuses to start (set it "
                     "to ${CARTRESCUE_WEBHOOK_SECRET})", int(ExitCode.CONFIG))
    answer = _probe(tls, "webhook", "HEAD", section.url, section.timeout.total_seconds(), [section.secret], limit)
    if isinstance(answer, str):
        return Check("webhook", FAIL, answer, int(ExitCode.SOME_FAILED))
    status, _body = answer
    detail = f"{redacted(section.url)} answers HEAD with {status} (nothing sent)"
    if 300 <= status < 400:
        return Check("webhook", FAIL, f"{detail}: a redirect, which the channel does not follow to another host; "
                     "give the final URL", int(ExitCode.SOME_FAILED))
    return Check("webhook", WARN if status >= 500 else OK, detail)


def _sms(config: Any, tls: ssl.SSLContext | None, limit: float | None) -> Check:
    from cartrescue.config import redacted

    section = config.sms
    timeout = section.timeout.total_seconds()
    if not section.sender:
        return Check("sms", FAIL, f"{config.where('sms.sender')}: empty", int(ExitCode.CONFIG))
    if section.provider == "http":
        if not section.http.url:
            return Check("sms", FAIL, f"{config.where('sms.http.url')}: empty", int(ExitCode.CONFIG))
        answer = _probe(tls, "sms", "HEAD", section.http.url, timeout, [section.http.password or "", section.http.token or ""],
                        limit)
        if isinstance(answer, str):
            return Check("sms", FAIL, answer, int(ExitCode.SOME_FAILED))
        return Check("sms", OK, f"gateway {redacted(section.http.url)} answers HEAD with {answer[0]} (nothing sent)")
    twilio = section.twilio
    if not twilio.account_sid or not twilio.auth_token:
        key = "account_sid" if not twilio.account_sid else "auth_token"
        return Check("sms", FAIL, f"{config.where('sms.twilio.' + key)}: empty", int(ExitCode.CONFIG))
    url = f"{twilio.base_url.rstrip('/')}/2010-04-01/Accounts/{twilio.account_sid}.json"
    answer = _probe(tls, "sms", "GET", url, timeout, [twilio.auth_token], limit,
                    auth=(twilio.account_sid, twilio.auth_token))
    if isinstance(answer, str):
        return Check("sms", FAIL, answer, int(ExitCode.SOME_FAILED))
    status, body = answer
    if status in (401, 403, 404):
        return Check("sms", FAIL, f"Twilio refuses the credentials ({status}): check sms.twilio.account_sid and "
                     "auth_token", int(ExitCode.SOME_FAILED))
    if status != 200:
        return Check("sms", FAIL, f"Twilio's account resource answered {status}", int(ExitCode.SOME_FAILED))
    import json

    try:
        account = json.loads(body)
    except ValueError:
        account = {}
    state = account.get("status", "?") if isinstance(account, dict) else "?"
    return Check("sms", OK if state == "active" else WARN,
                 f"Twilio account {twilio.account_sid[:6]}… is {state}; sender {section.sender} (nothing sent)")
