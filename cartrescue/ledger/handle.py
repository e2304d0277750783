"""The ledger's handle: :class:`Ledger`, one per process, with runs, the lock, history, claims,
outcomes, budgets, decisions, survey answers and test messages.

Apart from the tables, statements and helpers it runs; its schema upkeep, suppressions and
report queries are parts of it kept in :mod:`~cartrescue.ledger.schema`,
:mod:`~cartrescue.ledger.suppressed` and :mod:`~cartrescue.ledger.reports`.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from hashlib import blake2b
from typing import Any

from sqlalchemy import Integer, and_, bindparam, cast, delete, event, func, insert, literal, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import create_engine

from cartrescue.drivers import STATEMENT_WAIT, Silence, missing_driver, stopped_answering
from cartrescue.errors import LedgerError, LockHeld, LockLost
from cartrescue.ledger.engine import WRITE_LOCK_WAIT, driver_sql, sqlite_pragmas, sqlite_read_pragmas, write_lock
from cartrescue.ledger.errors import NO_SCHEMA, NO_SCHEMA_HINT, NOT_DONE, busy, one_line, why_no_file
from cartrescue.ledger.liveness import (OTHER_HOST_GONE, RunsOver, dead_runs, note_left_claims, process_gone,
                                        sent_by, process_identity)
from cartrescue.ledger.moments import aware, naive
from cartrescue.ledger.reports import ReportQueries
from cartrescue.ledger.schema import SchemaUpkeep
from cartrescue.ledger.statements import (RETURNING_UP_TO, answered_statement, chunks, delivered_nothing,
                                          finished_delivering, history_statements, latest_messaged, lock_is, one_of_chunk,
                                          HistoryJson, RawStatements)
from cartrescue.ledger.suppressed import SuppressionRows
from cartrescue.scratch import json_keys
from cartrescue.ledger.tables import (READ_TABLES, TABLES, BudgetHold, CartDecision, Code, Message, Run, RunLock,
                                      SendTest, SurveyAnswer)
from cartrescue.ledger.values import (ADDRESS_CHANNELS, DELIVERY_FAILED, MAYBE_DELIVERED, MESSAGED, NUMBER_CHANNELS,
                                      STEP_DONE, UNCONFIRMED, Claimed, ClaimRequest, History, Owner, Released, SentStep,
                                      StoppedChannel, TierUse)

#: PostgreSQL advisory locks of numbers being claimed are ``(NUMBER_LOCKS, hash of the number)``.
NUMBER_LOCKS = 0x63724E4F  # "crNO"
#: MariaDB's named lock around taking a run lock or reserving a budget (:meth:`Ledger._locking`),
#: one per database (a server may hold several shops' ledgers), and how long to wait for it (s).
_LOCKING = "LEFT(CONCAT('cartrescue.locking:', DATABASE()), 64)"
LOCKING_WAIT = 30


def shops_taking_turns(shops: Sequence[str]) -> list[str]:
    """The shops of ``shops`` (newest first) if they take turns: ``[]`` when one shop has the ledger.

    Two shops on one ledger share its lock, its claims and its "one message a day": a cart id or
    an address of one is taken for the other's, and their reminders are lost without a word.
    Their delivering runs then alternate; a shop that was renamed, or given another sender,
    switches once. So: the shops, if they switch twice or more.
    """
    switches = sum(1 for newer, older in zip(shops, shops[1:]) if newer != older)
    return sorted(set(shops)) if switches >= 2 else []


def _shard_words(lock_name: str) -> str:
    """``, shard 2/4`` for a shard's lock name, nothing for the unsharded ``run``."""
    return f", shard {lock_name.split(':', 1)[1]}" if ":" in lock_name else ""


def _layout_words(holder: str, own: str) -> str:
    """``: shards of 3 hold it, this run is one of 2 …`` where the lock's holder and this run
    (lock names) are shards of layouts of different N, else nothing: hosts whose ``--shard K/N``
    differ in N shut each other out every round, whichever locks first, and a bare "holds the
    lock" (exit 4, silent under ``--quiet``) did not say why."""
    from cartrescue.shards import lock_layout

    theirs, ours = lock_layout(holder), lock_layout(own)
    if not theirs or not ours or theirs == 1 or ours == 1 or theirs == ours:
        return ""
    return (f": it is a shard of {theirs}, this run one of {ours}; every host needs the same N, "
            "unless the layout is being changed (docs/workers.md)")


class Ledger(SchemaUpkeep, SuppressionRows, ReportQueries):
    """A handle on the ledger database; create one per process."""

    def __init__(self, url: str, where: str = "ledger", *, create: bool = True,
                 runs_over: RunsOver | None = None, statement_wait: float | None = STATEMENT_WAIT,
                 wait_key: str = "ledger.statement_wait", connect_limit: float | None = None) -> None:
        """``where``: what names the URL in an error that it cannot be opened (the config file
        and key, :meth:`cartrescue.config.Config.open_ledger`). ``runs_over``: this process's
        runs that are over (:class:`RunsOver`), shared with its other ledgers; None: its own.
        ``statement_wait``: seconds a statement on PostgreSQL or MySQL/MariaDB may go without an
        answer (``ledger.statement_wait``; None: no bound), see :class:`cartrescue.drivers.Silence`;
        ``wait_key``: what sets it, as the line of a statement that went unanswered names it.
        ``connect_limit``: ``doctor --timeout``, where it is shorter than connecting may take
        (:func:`cartrescue.drivers.connect_deadline`).

        ``create=False``: a command that only reads. It creates no table and upgrades nothing
        (no column added, no time rewritten): a read-only role cannot, and a ``doctor`` run
        against production must not change the schema under a running older cartrescue. What
        this version lacks there is in :attr:`behind` instead."""
        self.url = url
        self.runs_over = RunsOver() if runs_over is None else runs_over
        #: Why no ledger is there (an empty stand-in of :meth:`empty`), else None.
        self.absent: str | None = None
        #: The deadline of its statements, and whether its server stopped answering (None: SQLite).
        self.silence: Silence | None = None
        #: What an older ledger opened with ``create=False`` lacks (``cr_code``, ``cr_run.shard``).
        self.behind: list[str] = []
        #: Opened with ``create=False``: the error a run that records would stop with (exit 2),
        #: else None. Only on PostgreSQL: a search_path of no existing schema, or one the role may not
        #: create the missing tables in: it reads as an empty ledger, and a dry-run planned as a
        #: first run without a word (see :meth:`_cannot_create`).
        self.refused: str | None = None
        self._json_each: bool | None = None  # see _json_lists
        self._history_reader: HistoryJson | None = None  # see _history_json
        self._raw: RawStatements | None = None  # the per-message statements, compiled on first use
        self._writer: Any = None  # the connection of _message_transaction
        self._folder: Any = None  # the temporary folder of an empty stand-in (Ledger.empty)
        #: An empty stand-in (:meth:`empty`): a command that records nothing reads it, so it holds
        #: no history, and never will (the planner asks it for none: ``Planner._history``).
        self.blank = False
        try:
            if url.startswith("sqlite"):
                if create:
                    from cartrescue.sqlite_url import create_private

                    create_private(url)
                self.engine: Engine = create_engine(url, connect_args={"timeout": WRITE_LOCK_WAIT})
                # Switching to WAL rewrites the file's header: a reader leaves an older file's mode.
                event.listen(self.engine, "connect", sqlite_pragmas if create else sqlite_read_pragmas)
            else:
                # A row lock held by a paused process must not hang this one for ever (unless the
                # URL's own options set lock_timeout), and the URL's options stay (cartrescue.pg_options).
                from sqlalchemy.engine import make_url

                from cartrescue.drivers import connect_deadline, statement_deadline

                parsed = make_url(url)
                # A server that never greets: an error, not a hang.
                args: dict[str, Any] = connect_deadline(parsed, connect_limit)
                if url.startswith(("postgresql", "postgres")):
                    from cartrescue.pg_options import merged

                    args["options"] = merged(parsed, first="-c lock_timeout=15s")
                self.engine = create_engine(url, pool_pre_ping=True, connect_args=args)
                self.silence = statement_deadline(self.engine, parsed, statement_wait, f"{where} {self.safe_url()}",
                                                  wait_key, connect_limit)
            try:
                self.engine.connect().close()
            except (AttributeError, LookupError, TypeError, ValueError) as exc:
                # A driver that trips over an option of the URL before SQLAlchemy wraps anything
                # (PyMySQL's unknown charset is an AttributeError inside it): the URL's error.
                raise LedgerError(f"{where} {self.safe_url()}: cannot open: the URL's options: "
                                  f"{type(exc).__name__}: {exc}") from None
            if create and not self._up_to_date():
                complete = self._create_tables(TABLES)
                if self.engine.dialect.name != "sqlite":
                    self._add_missing_columns(TABLES)
                    self._add_missing_indexes(TABLES)
                    self._binary_text(TABLES)
                elif complete:  # with its columns and times: the next open reads one pragma
                    self._stamp()
            elif not create:
                self.behind = [] if self._up_to_date() else self._schema_gaps(READ_TABLES)
                cannot = self._cannot_create(self.has_no_tables())
                if cannot is not None:
                    self.refused = f"{where} {self.safe_url()}: cannot open: {cannot}"
        except (SQLAlchemyError, ModuleNotFoundError) as exc:
            silent = stopped_answering(exc)
            if silent is not None:  # connected, then no answer (the line names where and the URL)
                raise LedgerError(silent) from None
            driver = missing_driver(exc, "the ledger")
            if driver is not None:
                raise LedgerError(f"{where} {self.safe_url()}: cannot open: {driver}") from None
            reason = one_line(exc)
            if NO_SCHEMA in reason:  # PostgreSQL, a search_path of no existing schema
                reason += NO_SCHEMA_HINT
            if "unable to open database file" in reason:
                reason += why_no_file(self.url)
            if busy(exc):  # a file in another journal mode that another process holds (a backup, a sqlite3 shell)
                reason += f" (another process holds its lock; {NOT_DONE})"
            raise LedgerError(f"{where} {self.safe_url()}: cannot open: {reason}") from None

    def has_no_tables(self) -> bool:
        """Has the database none of the ledger's tables (opened with ``create=False``)?"""
        return all(model.__table__.name in self.behind for model in READ_TABLES)  # type: ignore[attr-defined]

    def _raw_statements(self) -> "RawStatements":
        if self._raw is None:
            self._raw = RawStatements(self.engine.dialect)
        return self._raw

    def safe_url(self) -> str:
        from cartrescue.text import masked_url

        return masked_url(self.url)

    @classmethod
    def empty(cls, where: str = "ledger", absent: str | None = None) -> "Ledger":
        """An empty SQLite ledger in a temporary folder, removed on :meth:`close`: what a command
        that records nothing reads when the shop's ledger file is not there yet. ``absent``: why
        (:attr:`absent`), for the commands that say so."""
        import tempfile
        from urllib.parse import quote

        folder = tempfile.TemporaryDirectory(prefix="cartrescue-ledger-")
        ledger = cls("sqlite:///" + quote(folder.name, safe="/") + "/empty.db", where=where)
        ledger._folder = folder
        ledger.absent = absent
        ledger.blank = True
        return ledger

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    @contextmanager
    def _message_transaction(self) -> Iterator[Any]:
        """A transaction on the connection that claims and records messages, kept for the run.

        A run commits once per message or two for as long as it sends; checking a connection
        out of the pool and back in (with its reset) each time cost more than the statements.
        Only the thread that delivers uses it (the heartbeat has its own connections).
        """
        sqlite = self.engine.dialect.name == "sqlite"
        if self._writer is None or self._writer.invalidated or self._writer.closed:
            self._writer = self.engine.connect()
            if sqlite:
                self._writer.detach()  # its busy_timeout is its own (see write_lock): never back to the pool
                self._writer.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")
        with self._writer.begin():
            if sqlite:
                write_lock(self._writer.connection.dbapi_connection)
            yield self._writer

    # -- runs and the lock -------------------------------------------------------------------

    def start_run(self, mode: str, now: datetime, shard: str = "", shop: str | None = None) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(Run.__table__).values(  # type: ignore[attr-defined]
                    mode=mode, now=naive(now), started_at=naive(datetime.now(timezone.utc)),
                    status="running", host=socket.gethostname(), pid=os.getpid(), process=process_identity(),
                    shard=shard, shop=None if shop is None else shop[:191],
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def recent_shops(self, last: int = 50) -> list[str]:
        """The shops of the ``last`` runs that recorded one, newest first (see :func:`shops_taking_turns`)."""
        run = Run.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [shop for (shop,) in conn.execute(
                select(run.c.shop).where(run.c.shop.is_not(None)).order_by(run.c.id.desc()).limit(last))]

    def shops_taking_turns(self, last: int = 50) -> list[str]:
        """The shops whose runs take turns in this ledger (for ``doctor``): ``[]`` when one shop
        has it, as it must (:func:`shops_taking_turns`)."""
        return shops_taking_turns(self.recent_shops(last))

    def finish_run(self, run_id: int, status: str, counts: dict[str, int]) -> int:
        """Record how the run ended; return how many of its messages were sent. ``sent`` is the
        ledger's own count: a run stopped mid-batch (Ctrl-C, SIGTERM) recorded deliveries in its
        stop grace that its caller had not counted yet."""
        self.runs_over.ended(str(self.engine.url), run_id)  # whether or not its row says so (process_gone)
        values = {key: counts.get(key, 0) for key in ("sent", "failed", "skipped", "deferred", "problems")}
        with self.engine.begin() as conn:
            values["sent"] = sent_by(conn, run_id)
            conn.execute(
                update(Run.__table__).where(Run.__table__.c.id == run_id).values(  # type: ignore[attr-defined]
                    status=status, finished_at=naive(datetime.now(timezone.utc)), **values
                )
            )
        return values["sent"]

    def shop_of_run(self, run_id: int) -> str | None:
        """The shop run ``run_id`` recorded (None: unknown, or a run of an older version)."""
        run = Run.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return conn.execute(select(run.c.shop).where(run.c.id == run_id)).scalar()

    def last_successful_runs(self) -> dict[str, datetime]:
        """When the last delivering run that got reminders out finished, per shard (``""``: an
        unsharded run; ``"K/N"``: shard K of N), for ``doctor`` (:func:`cartrescue.shards.coverage`).

        A run whose every delivery failed (the relay greylists or refuses all) ends ``ok``, as
        it did not crash, yet nothing went out: it is not a success, or the doctor stays green
        while no mail leaves. A run with nothing due (nothing sent, nothing failed) is one.
        Read from the run's own counts, which every ledger version has."""
        table = Run.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.shard, func.max(table.c.finished_at)).where(
                finished_delivering(table), ~delivered_nothing(table)).group_by(table.c.shard)).all()
        return {shard or "": at for shard, value in rows if (at := aware(value)) is not None}

    def latest_delivering_shard(self) -> str | None:
        """The shard (``""``: unsharded) of the delivering run that started last, whatever its
        end: the layout the shop runs now. None before any."""
        table = Run.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(select(table.c.shard).where(table.c.mode != "dry-run")
                               .order_by(table.c.started_at.desc(), table.c.id.desc()).limit(1)).first()
        return None if row is None else row[0] or ""

    def runs_delivering_nothing_since(self, since: datetime | None) -> int:
        """How many delivering runs finished after ``since`` (all, for None) that tried to
        deliver and delivered nothing: why the doctor finds no successful run, said in its words."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(*self._delivering_nothing_since(since))).scalar() or 0)

    def channels_delivering_nothing_since(self, since: datetime | None) -> set[str]:
        """The channels of the messages of those runs (:meth:`runs_delivering_nothing_since`):
        the doctor asks whether the relay, or the SMS gateway, is refusing them."""
        message, run = Message.__table__, Run.__table__  # type: ignore[attr-defined]
        runs = select(run.c.id).where(*self._delivering_nothing_since(since))
        with self.engine.connect() as conn:
            return set(conn.execute(select(message.c.channel).where(message.c.run_id.in_(runs)).distinct()).scalars())

    def stopped_channels(self, channels: Collection[str], cutoff: datetime) -> list[StoppedChannel]:
        """The channels of ``channels`` that delivered nothing since ``cutoff`` though tried, and
        failed before it too: per shard (its runs serve only their part of the addresses).

        A run that delivered on one channel (the call list's rows) counted as a success while
        the relay refused every e-mail for days. Here a channel has stopped when its attempts
        since ``cutoff`` all failed, it delivered nothing since, and a run of that shard failed
        deliveries between its last delivery (never: its first claim, so a channel new in the
        config gets ``cutoff``'s span too) and ``cutoff``: one refused address after quiet
        hours is no stopped channel. A channel not tried since ``cutoff`` (no cart due for it)
        is fine. Each message keeps only its last attempt (a retry moves it), so "failed since
        before ``cutoff``" is read from the runs' counts."""
        message, run = Message.__table__, Run.__table__  # type: ignore[attr-defined]
        joined = message.join(run, message.c.run_id == run.c.id)
        stopped: list[StoppedChannel] = []
        with self.engine.connect() as conn:
            tried = conn.execute(
                select(run.c.shard, message.c.channel, func.count()).select_from(joined)
                .where(message.c.status.in_(DELIVERY_FAILED), message.c.finished_at > naive(cutoff),
                       message.c.channel.in_(sorted(channels)))
                .group_by(run.c.shard, message.c.channel)).all()
            for shard, channel, failed in tried:
                mine = (run.c.shard == shard, message.c.channel == channel)
                # Delivered since: found by its run (``run_id`` is indexed; most channels do).
                runs = select(run.c.id).where(run.c.shard == shard, or_(run.c.finished_at > naive(cutoff),
                                                                          run.c.finished_at.is_(None)))
                if conn.execute(select(message.c.id).where(
                        message.c.run_id.in_(runs), message.c.channel == channel, message.c.status == "sent",
                        message.c.finished_at > naive(cutoff)).limit(1)).first() is not None:
                    continue
                last = aware(conn.execute(select(func.max(message.c.finished_at)).select_from(joined)
                                          .where(*mine, message.c.status == "sent")).scalar())
                if last is not None and last > cutoff:
                    continue
                since = last or aware(conn.execute(select(func.min(message.c.claimed_at)).select_from(joined)
                                                   .where(*mine)).scalar())
                if since is None:  # no row of the channel: cannot be, it was just counted
                    continue
                failing = conn.execute(select(run.c.id).where(
                    run.c.shard == shard, run.c.mode != "dry-run", func.coalesce(run.c.failed, 0) > 0,
                    run.c.finished_at > naive(since), run.c.finished_at <= naive(cutoff)).limit(1)).first()
                if failing is not None:
                    stopped.append(StoppedChannel(channel, shard or "", int(failed), last))
        return sorted(stopped, key=lambda found: (found.channel, found.shard))

    @staticmethod
    def _delivering_nothing_since(since: datetime | None) -> list[Any]:
        """The ``cr_run`` conditions of a delivering run finished after ``since`` that delivered nothing."""
        table = Run.__table__  # type: ignore[attr-defined]
        where = [finished_delivering(table), delivered_nothing(table)]
        if since is not None:
            where.append(table.c.finished_at > naive(since))
        return where

    @contextmanager
    def lock(self, run_id: int, stale_after: timedelta, name: str = "run") -> Iterator[None]:
        """Hold the lock ``name`` for the block; raise LockHeld if a live run holds it.

        ``name`` is ``run`` for an unsharded run and ``run:K/N`` for shard K of N: shards of one
        layout lock side by side, anything else excludes (see :func:`cartrescue.shards.compatible`).
        A holder is stale (crashed, killed) when its heartbeat is older than ``stale_after`` or
        when it ran on this host in a process that is gone (:func:`process_gone`: its pid
        unused, or used by another process); its lock is taken over.
        """
        self.runs_over.going(str(self.engine.url), run_id)
        self._acquire(run_id, stale_after, name)
        try:
            yield
        except BaseException:
            self._release(run_id, name)  # the block's error is the run's, whether or not this works
            raise
        finally:
            self.runs_over.ended(str(self.engine.url), run_id)  # a row of it left behind is no live run's (process_gone)
        failed = self._release(run_id, name)
        if failed is not None:
            raise LedgerError(
                f"run #{run_id} could not release its lock, the ledger being locked by another process ({failed}); "
                "the next run takes it over once this process has ended")

    def _release(self, run_id: int, name: str) -> str | None:
        """Delete the lock row of ``run_id``; why it could not (the ledger still locked by another
        process, a lost connection), or None.

        A failure here must not replace the error that ended the run: raised from the lock's
        ``finally``, "database is locked" took the place of "the ledger stayed locked while this
        run delivered" (exit 2), and the run reported a held lock (exit 4, silent under
        ``--quiet``). The row left behind is harmless: its process ends, and the next run finds
        its holder dead (:meth:`_is_stale`) and takes it over."""
        table = RunLock.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(table).where(table.c.name == name, table.c.run_id == run_id))
        except DBAPIError as exc:
            return one_line(exc)
        return None

    def heartbeat(self, run_id: int, name: str = "run") -> bool:
        """Refresh the run's heartbeat; ``False`` when the lock ``name`` is no longer this run's.

        The lock row's ``run_id`` is the fencing token: a run that was taken over (it was
        paused or stalled past ``ledger.lock_timeout``) finds another run's id there.
        """
        at = naive(datetime.now(timezone.utc))
        lock, run = RunLock.__table__, Run.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            held = conn.execute(
                update(lock).where(lock.c.name == name, lock.c.run_id == run_id).values(heartbeat_at=at)
            ).rowcount
            conn.execute(update(run).where(run.c.id == run_id).values(heartbeat_at=at))
        return bool(held)

    def _acquire(self, run_id: int, stale_after: timedelta, name: str) -> None:
        """Take lock ``name`` in one transaction that sees every other holder.

        The transaction is serialized against other acquisitions first (:meth:`_locking`), so
        two runs of incompatible layouts starting together cannot both see the table without the
        other and both go ahead.
        """
        from cartrescue.shards import compatible

        table = RunLock.__table__  # type: ignore[attr-defined]
        now = datetime.now(timezone.utc)
        row = dict(name=name, run_id=run_id, host=socket.gethostname(), pid=os.getpid(), process=process_identity(),
                   acquired_at=naive(now), heartbeat_at=naive(now))
        self.heartbeat(run_id, name)  # the run row's own heartbeat starts now
        for _attempt in range(3):
            try:
                with self._locking() as conn:
                    for holder in self._live_holders(conn, now, stale_after):
                        if not compatible(holder["name"], name):
                            raise LockHeld(
                                f"another run (#{holder['run_id']}{_shard_words(holder['name'])}, pid "
                                f"{holder['pid']} on {holder['host']}, since "
                                f"{aware(holder['acquired_at']):%Y-%m-%d %H:%M:%S} UTC) holds the lock"
                                f"{_layout_words(holder['name'], name)}",
                                holder=holder["run_id"])
                    conn.execute(insert(table).values(**row))
                return
            except IntegrityError:  # another run inserted the same name between our read and insert
                continue
            except OperationalError as exc:  # SQLite busy beyond the timeout, a PostgreSQL lock_timeout
                raise LockHeld(f"ledger is busy: {one_line(exc)}") from None
        raise LockHeld("could not take the run lock (contended)")

    @contextmanager
    def _locking(self) -> Iterator[Any]:
        """A transaction that is the only one taking a lock (or reserving a day's budget) until
        it ends (see :meth:`_acquire`): SQLite's write lock, a PostgreSQL table lock that only
        these and heartbeats wait for, a named lock on MariaDB and MySQL, taken before the
        transaction begins and released after it ended.

        There a locking read (``SELECT ... FOR UPDATE``) was no mutex: its gap locks do not
        exclude each other, and the inserts of workers starting together deadlocked; a third of
        ``--workers 4`` runs lost a shard for the round ("ledger is busy", exit 4).
        """
        dialect = self.engine.dialect.name
        named = dialect in ("mysql", "mariadb")
        with self.engine.connect() as conn:
            if named:
                if conn.exec_driver_sql(f"SELECT GET_LOCK({_LOCKING}, {LOCKING_WAIT})").scalar() != 1:
                    raise OperationalError("GET_LOCK", None, Exception("the lock table is busy (GET_LOCK timed out)"))
                conn.commit()  # the named lock is the session's: the transaction below starts afresh
            try:
                with conn.begin():
                    if dialect == "sqlite":  # any write takes the database's write lock
                        conn.exec_driver_sql("DELETE FROM cr_lock WHERE 0 = 1")
                    elif dialect == "postgresql":
                        conn.exec_driver_sql("LOCK TABLE cr_lock IN SHARE ROW EXCLUSIVE MODE")
                    yield conn
            finally:
                if named and not conn.invalidated:
                    try:
                        conn.exec_driver_sql(f"DO RELEASE_LOCK({_LOCKING})")
                        conn.commit()
                    except DBAPIError:  # a connection lost: the server released it as it closed
                        pass

    def _live_holders(self, conn: Any, now: datetime, stale_after: timedelta) -> list[Any]:
        """The lock rows of live runs; the rows of dead ones (:meth:`_is_stale`) are deleted, of
        whatever layout: in a transaction of :meth:`_locking`.

        Only an incompatible holder's row was taken over, so a killed shard's row stayed beside
        the shards of its layout: its run was never closed as killed (a lock holder), and its
        unspent reservation of a day's budget held back the shards still running until that
        shard ran again. Deleted, it also fences a shard of another host that was only paused:
        it claims nothing more and exits 6 when it wakes, as when its own shard took it over."""
        table = RunLock.__table__  # type: ignore[attr-defined]
        live = []
        for holder in conn.execute(select(table)).mappings().all():
            if self._is_stale(holder, now, stale_after, self._over(holder["run_id"])):
                conn.execute(delete(table).where(table.c.name == holder["name"], table.c.run_id == holder["run_id"]))
            else:
                live.append(holder)
        return live

    @staticmethod
    def _is_stale(holder: Any, now: datetime, stale_after: timedelta, ended: bool = False) -> bool:
        """Is the lock ``holder`` (a cr_lock row) crashed or killed? ``ended``: its run is one of
        this process's that is over (:meth:`_over`)."""
        if now - aware(holder["heartbeat_at"]) > stale_after:  # type: ignore[operator]
            return True
        if holder["host"] == socket.gethostname():
            return process_gone(int(holder["pid"]), holder.get("process"), ended)
        return False

    def _over(self, run_id: int) -> bool:
        """Is run ``run_id`` of this ledger one of this process's that is over (:class:`RunsOver`)?"""
        return self.runs_over.over(str(self.engine.url), run_id)

    # -- history -----------------------------------------------------------------------------

    def history(self, cart_keys: Sequence[str], emails: Sequence[str], email_hashes: Sequence[str],
                phones: Sequence[str] = ()) -> History:
        """Steps claimed per cart, the last message per address and per phone number (any
        channel), and which of the hashes (of addresses and numbers) are suppressed, with why."""
        if self._json_lists():
            found = self._history_json(cart_keys, emails, email_hashes, phones)
            if found is not None:
                return found
        result = History()
        as_json = self._json_lists()
        statements = history_statements(as_json)

        def query(which: int, name: str, chunk: list[str]) -> tuple[Any, dict[str, Any]]:
            return one_of_chunk(statements, history_statements, which, name, chunk, as_json)

        with self.engine.connect() as conn:
            for chunk in chunks(list(cart_keys), 500):
                for key, step, channel, status, claimed, variant, sequence in conn.execute(*query(0, "keys", chunk)):
                    result.by_cart.setdefault(key, []).append(
                        SentStep(step, channel, status, aware(claimed), variant, sequence))  # type: ignore[arg-type]
            for chunk in chunks(sorted(set(emails)), 500):
                latest_messaged(conn.execute(*query(1, "emails", chunk)), result.last_by_email)
            for chunk in chunks(sorted(set(email_hashes)), 500):
                rows = conn.execute(*query(2, "hashes", chunk))  # a Result has keys(): not for dict.update
                result.suppressed.update((hashed, reason) for hashed, reason in rows)
            for chunk in chunks(sorted(set(phones)), 500):
                latest_messaged(conn.execute(*query(3, "phones", chunk)), result.last_by_phone)
        return result

    def _history_json(self, cart_keys: Sequence[str], emails: Sequence[str], email_hashes: Sequence[str],
                      phones: Sequence[str]) -> History | None:
        """:meth:`history` on SQLite in one statement (:class:`HistoryJson`), each list one JSON
        parameter of its values once; None where a value holds a NUL (asked the other way then)."""
        lists = [json_keys(dict.fromkeys(values)) for values in (cart_keys, emails, email_hashes, phones)]
        if None in lists:
            return None
        if self._history_reader is None:
            self._history_reader = HistoryJson(self.engine.dialect)
        reader = self._history_reader
        with self.engine.connect() as conn:
            rows = driver_sql(conn, reader.sql, lists).fetchall()
        result = History()
        moment = reader.moments()
        by_cart, by_email, by_phone = result.by_cart, [], []
        for which, value, step, channel, status, claimed, variant, sequence in rows:
            if which == 0:
                steps = by_cart.get(value)
                if steps is None:
                    steps = by_cart[value] = []
                steps.append(SentStep(step, channel, status, moment(claimed), variant, sequence))  # type: ignore[arg-type]
            elif which == 1:
                by_email.append((value, status, claimed))
            elif which == 2:
                result.suppressed[value] = status  # the suppression's reason, in the status column
            else:
                by_phone.append((value, status, claimed))
        latest_messaged(((c, s, moment(at)) for c, s, at in by_email if s in MESSAGED), result.last_by_email)
        latest_messaged(((c, s, moment(at)) for c, s, at in by_phone if s in MESSAGED), result.last_by_phone)
        return result

    def _json_lists(self) -> bool:
        """Can this database read a list from one JSON parameter (SQLite's ``json_each``)?"""
        if self._json_each is None:
            self._json_each = False
            if self.engine.dialect.name == "sqlite":
                try:
                    with self.engine.connect() as conn:
                        self._json_each = conn.exec_driver_sql("SELECT count(*) FROM json_each('[1]')").scalar() == 1
                except SQLAlchemyError:
                    pass
        return self._json_each

    # -- claims and outcomes -----------------------------------------------------------------

    def claim(self, run_id: int, requests: Sequence[ClaimRequest], now: datetime,
              outcomes: Iterable[tuple[int, str, str, str]] = (), lock_name: str = "run",
              day: tuple[datetime, datetime] | None = None) -> Claimed:
        """Insert claims; return ``{(cart_key, step, channel): message id}`` for those this run won.

        A request whose key exists already (another run claimed it) is simply not returned, unless
        that row is ``failed_transient`` (a 4xx or an unreachable relay in an earlier run): such a
        row is claimed again for this run, its ``attempts`` counted up, keeping its id.

        ``day`` (the shop's local day of ``now``, from its midnight to the next; ``None`` without
        one message a day): a request on a :data:`NUMBER_CHANNELS` channel with a ``phone`` is
        not claimed when a message of any channel to that number was claimed that day, nor after
        another one of this call to the same number: its key is in the result's ``refused``. The
        planner checks this too, but only among its own shard's carts; here, in the claim's
        transaction, it holds across shards, workers and hosts. Only such requests cost a query.

        Fencing: every row is inserted only while the lock row ``lock_name`` (the run's own shard
        lock) names ``run_id`` -- checked in the
        claiming statement itself -- so a run that lost the lock (paused past
        ``ledger.lock_timeout`` and taken over) gets no claim at all and :class:`LockLost` is
        raised. ``outcomes`` (see :meth:`record`) are written in the same transaction: one
        commit per group of messages, not two.
        """
        if not requests:
            self.record(outcomes)
            return Claimed()
        # Everything the statements need is ready before the transaction: on SQLite it holds the
        # write lock, which the other workers of a run are waiting for.
        raw = self._raw_statements()
        done = self._outcome_rows(outcomes)
        rows = raw.claim_rows(requests, run_id, raw.moment(now), lock_name)
        named: list[str] = []  # MariaDB's locks of numbers: released once the transaction has ended
        try:
            with self._message_transaction() as conn:
                refused: set[tuple[str, int, str]] = set()
                if day is not None and any(r.channel in NUMBER_CHANNELS and r.phone for r in requests):
                    refused, named = self._messaged_numbers(conn, requests, day)  # locks first, reads after
                    kept = [n for n, r in enumerate(requests) if (r.cart_key, r.step, r.channel) not in refused]
                    requests, rows = [requests[n] for n in kept], [rows[n] for n in kept]
                if done:
                    driver_sql(conn, raw.record, done, many=True)
                won = self._claim_in(conn, run_id, requests, rows, now, lock_name) if requests else Claimed()
                won.refused = frozenset(refused)
                return won
        finally:
            if named:
                self._release_named(named)

    def _messaged_numbers(self, conn: Any, requests: Sequence[ClaimRequest], day: tuple[datetime, datetime]
                          ) -> tuple[set[tuple[str, int, str]], list[str]]:
        """The keys of ``requests`` that :meth:`claim` refuses for ``day`` (see there), and the
        names of the MariaDB locks taken.

        Two workers claiming texts to one number at once must not both find it free: its claims
        are serialized first -- SQLite's write lock already is, PostgreSQL takes an advisory lock
        per number until the transaction ends, MariaDB a named lock -- and the query that follows
        sees what the other committed. Numbers are locked in order, so two claims never wait for
        each other in a circle.
        """
        by_number = [r for r in requests if r.channel in NUMBER_CHANNELS and r.phone]
        numbers = sorted({r.phone for r in by_number if r.phone})
        named = self._lock_numbers(conn, numbers)
        message = Message.__table__  # type: ignore[attr-defined]
        start, end = day
        rows = conn.execute(select(message.c.phone, message.c.status).where(  # by the phone index; status below
            message.c.phone.in_(numbers), message.c.claimed_at >= naive(start), message.c.claimed_at < naive(end)))
        taken = {phone for phone, status in rows if status in MESSAGED}
        refused: set[tuple[str, int, str]] = set()
        for request in by_number:
            if request.phone in taken:
                refused.add((request.cart_key, request.step, request.channel))
            taken.add(request.phone)  # type: ignore[arg-type]
        return refused, named

    def _lock_numbers(self, conn: Any, numbers: list[str]) -> list[str]:
        """Serialize the claims of ``numbers`` against other processes' (see :meth:`_messaged_numbers`);
        the names of MariaDB's locks, which outlive the transaction and are released by the caller."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            for number in numbers:
                key = int.from_bytes(blake2b(number.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "big",
                                     signed=True)
                conn.execute(select(func.pg_advisory_xact_lock(cast(literal(NUMBER_LOCKS), Integer),
                                                               cast(literal(key), Integer))))
            return []
        if dialect in ("mysql", "mariadb"):
            names = [f"cartrescue.number:{number}"[:64] for number in numbers]
            for name in names:
                if conn.execute(select(func.get_lock(name, 15))).scalar() != 1:
                    self._release_named(names)
                    raise OperationalError("GET_LOCK", None, Exception(f"lock timeout: {name}"))
            return names
        return []  # SQLite: the transaction holds the database's write lock

    def _release_named(self, names: list[str]) -> None:
        """Release MariaDB's named locks of :meth:`_lock_numbers` on the writer connection (a
        connection that was lost released them as it closed)."""
        writer = self._writer
        if writer is None or writer.invalidated or writer.closed:
            return
        cursor = writer.connection.dbapi_connection.cursor()
        for name in names:
            cursor.execute("DO RELEASE_LOCK(%s)", (name,))
        cursor.close()

    def hold_out(self, run_id: int, requests: Sequence[ClaimRequest], details: Sequence[str], now: datetime,
                 lock_name: str = "run") -> dict[tuple[str, int, str], int]:
        """Claim held-out steps (the control group) and record them ``held_out``, ``details[i]``
        the reply of ``requests[i]``, in one transaction; return what :meth:`claim` returns.

        As two transactions, a stop or a crash between them left a control-group row ``claimed``:
        reported as a message that may have gone out, and missing from the holdout's side of the
        report's comparison. Nothing was sent either way.
        """
        if not requests:
            return {}
        raw = self._raw_statements()
        rows = raw.claim_rows(requests, run_id, raw.moment(now), lock_name)
        with self._message_transaction() as conn:
            won = self._claim_in(conn, run_id, requests, rows, now, lock_name)
            held = self._outcome_rows(
                (claim_id, "held_out", detail, "") for request, detail in zip(requests, details)
                if (claim_id := won.get((request.cart_key, request.step, request.channel))) is not None)
            if held:
                driver_sql(conn, raw.record, held, many=True)
        return won

    def _claim_in(self, conn: Any, run_id: int, requests: Sequence[ClaimRequest], rows: list[Any], now: datetime,
                  lock_name: str) -> Claimed:
        """The claiming statements of :meth:`claim`, in the caller's transaction (``rows`` from
        ``claim_rows``); raise :class:`LockLost` where the run's lock is gone."""
        raw = self._raw_statements()
        won = Claimed()
        group = raw.claim_group(rows)
        if group is not None:
            for claim_id, cart_key, step, channel in driver_sql(conn, *group):
                won[(cart_key, step, channel)] = claim_id
        elif raw.claim_returning is not None and len(rows) <= RETURNING_UP_TO:
            # A channel takes a message or two at a time: a statement per row that returns its
            # id costs less than one executemany and a query for the ids.
            for params in rows:
                row = driver_sql(conn, raw.claim_returning, params).fetchone()
                if row is not None:
                    won[(row[1], row[2], row[3])] = row[0]
        else:
            driver_sql(conn, raw.claim, rows, many=True)
            for chunk in chunks(list({r.cart_key: None for r in requests}), 500):
                sql, params = raw.claimed(chunk)
                for claim_id, cart_key, step, channel, owner, status in driver_sql(conn, sql, params):
                    if owner == run_id and status == "claimed":
                        won[(cart_key, step, channel)] = claim_id
        retry = [r for r in requests if (r.cart_key, r.step, r.channel) not in won]
        if retry:
            if not self._holds_lock(conn, run_id, lock_name):
                raise LockLost(f"run #{run_id} lost the run lock (it was paused or stalled longer than "
                               "ledger.lock_timeout and another run took over): stopped without delivering more")
            won.update(self._reclaim(conn, run_id, retry, now, lock_name))
        return won

    @staticmethod
    def _holds_lock(conn: Any, run_id: int, name: str = "run") -> bool:
        lock = RunLock.__table__  # type: ignore[attr-defined]
        return conn.execute(select(lock.c.run_id).where(lock.c.name == name)).scalar() == run_id

    @staticmethod
    def _reclaim(conn: Any, run_id: int, requests: Sequence[ClaimRequest], now: datetime,
                 lock_name: str = "run") -> dict[tuple[str, int, str], int]:
        """Claim the ``failed_transient`` rows among ``requests`` for ``run_id`` (a retry run)."""
        message = Message.__table__  # type: ignore[attr-defined]
        statement = (
            update(message)
            .where(message.c.cart_key == bindparam("b_key"), message.c.step == bindparam("b_step"),
                   message.c.channel == bindparam("b_channel"), message.c.status == "failed_transient",
                   lock_is(run_id, lock_name))
            .values(status="claimed", run_id=run_id, attempts=message.c.attempts + 1, claimed_at=naive(now),
                    finished_at=None, transport=bindparam("b_transport"), template=bindparam("b_template"),
                    message_id=bindparam("b_mid"),
                    variant=bindparam("b_variant"), tier=bindparam("b_tier"), score=bindparam("b_score"))
        )
        conn.execute(statement, [
            dict(b_key=r.cart_key, b_step=r.step, b_channel=r.channel, b_transport=r.transport, b_template=r.template,
                 b_variant=r.variant, b_tier=r.tier, b_score=r.score, b_mid=r.message_id)
            for r in requests
        ])
        wanted = {(r.cart_key, r.step, r.channel) for r in requests}
        won: dict[tuple[str, int, str], int] = {}
        for chunk in chunks(sorted({r.cart_key for r in requests}), 500):
            for row in conn.execute(  # by cart_key alone: see RawStatements.claimed
                select(message.c.id, message.c.cart_key, message.c.step, message.c.channel, message.c.run_id,
                       message.c.status).where(message.c.cart_key.in_(chunk))
            ):
                key = (row.cart_key, row.step, row.channel)
                if key in wanted and row.run_id == run_id and row.status == "claimed":
                    won[key] = row.id
        return won

    def record(self, outcomes: Iterable[tuple[int, str, str, str]]) -> None:
        """Store outcomes: ``(message id, status, reply, message_id header)``."""
        rows = self._outcome_rows(outcomes)
        if rows:
            with self._message_transaction() as conn:
                driver_sql(conn, self._raw_statements().record, rows, many=True)

    def _outcome_rows(self, outcomes: Iterable[tuple[int, str, str, str]]) -> list[Any]:
        """The parameters of one driver-level ``executemany`` for a group of outcomes
        (see :class:`RawStatements`), stamped now."""
        raw = self._raw_statements()
        return raw.record_rows(outcomes, raw.moment(datetime.now(timezone.utc)))

    def latest_message(self) -> tuple[str, datetime] | None:
        """The cart key and claim time of the last message claimed (by the primary key: one
        index lookup), or None for a ledger without messages."""
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(select(message.c.cart_key, message.c.claimed_at)
                               .order_by(message.c.id.desc()).limit(1)).first()
        return None if row is None else (row[0], aware(row[1]))

    def unconfirmed(self, before_run: int, owns: Owner | None = None) -> list[dict[str, Any]]:
        """Claims of earlier runs that never got an outcome (the run crashed or was killed).

        ``owns(email, cart_key, phone)``: only the rows of one shard (:meth:`cartrescue.shards.Shard.owns`).
        """
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(message.c.id, message.c.cart_key, message.c.email, message.c.step, message.c.channel,
                       message.c.claimed_at, message.c.phone).where(message.c.status.in_(UNCONFIRMED),
                                                                    message.c.run_id != before_run)
            ).mappings().all()
        return [dict(row) for row in rows if owns is None or owns(row["email"], row["cart_key"], row["phone"])]

    def release_unconfirmed(self, run_id: int, stale_after: timedelta, owns: Owner | None = None) -> Released:
        """``run --resend-unconfirmed``: turn dead runs' unconfirmed rows into ``failed_transient``.

        The planner then sees those steps as not done and this run claims them again. A message
        the relay did accept before the crash is sent a second time: that is the price, and why
        it is not the default. Only claims of runs that are provably gone are touched: the run
        finished, or it does not hold the lock and, on this host, its process no longer exists;
        on another host, its heartbeat is older than ``stale_after`` and than
        :data:`OTHER_HOST_GONE`. A paused run on another host (a frozen VM) cannot be told from a
        dead one but by time: its messages in flight when it stopped may have reached the relay,
        so its claims wait an hour, not the ``lock_timeout`` after which another run takes its
        lock. A live run that is merely paused on this host keeps its claims; so does every run
        holding a lock, of any shard. With ``owns`` (a shard's
        :meth:`~cartrescue.shards.Shard.owns`) only that shard's rows are released. Returns how
        many rows were released for resending; ``not_resent``, how many of them are not sent again
        because a later step of their sequence is done for the cart (the planner sends no step
        after a later one): their reply says so.
        """
        message, run = Message.__table__, Run.__table__  # type: ignore[attr-defined]
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            dead = dead_runs(conn, run.c.id.in_(select(message.c.run_id).where(
                message.c.status.in_(UNCONFIRMED), message.c.run_id != run_id).distinct()), now,
                max(stale_after, OTHER_HOST_GONE), self._over)
            ids: list[int] = []
            for chunk in chunks(dead, 500):
                ids.extend(row.id for row in conn.execute(
                    select(message.c.id, message.c.email, message.c.cart_key, message.c.phone).where(
                        message.c.status.in_(UNCONFIRMED), message.c.run_id.in_(chunk)))
                    if owns is None or owns(row.email, row.cart_key, row.phone))
            released = 0
            for chunk in chunks(ids, 500):
                released += int(conn.execute(
                    update(message).where(message.c.status.in_(UNCONFIRMED), message.c.id.in_(chunk)).values(
                        status="failed_transient", finished_at=naive(now),
                        reply=f"unconfirmed claim of dead run released for resending by run #{run_id} "
                              "(--resend-unconfirmed)")
                ).rowcount or 0)
            not_resent = self._followed_by_later_steps(conn, ids, run_id)
        done = Released(released - not_resent)
        done.not_resent = not_resent
        return done

    @staticmethod
    def _followed_by_later_steps(conn: Any, ids: list[int], run_id: int) -> int:
        """Mark the released rows ``ids`` whose cart has a later step of their sequence done (a
        run after the lost outcome went on to it): the planner never goes back to them, so their
        reply says they are not resent. Returns how many there were."""
        message = Message.__table__  # type: ignore[attr-defined]
        later = message.alias("later")
        followed = 0
        for chunk in chunks(ids, 500):
            rows = conn.execute(
                select(message.c.id, func.max(later.c.step)).join(later, and_(
                    later.c.cart_key == message.c.cart_key, later.c.step > message.c.step,
                    later.c.status.in_(sorted(STEP_DONE)),
                    or_(later.c.sequence == message.c.sequence, later.c.sequence.is_(None),
                        message.c.sequence.is_(None)))).where(message.c.id.in_(chunk)).group_by(message.c.id)).all()
            for row_id, step in rows:
                followed += int(conn.execute(update(message).where(message.c.id == row_id).values(
                    reply=f"unconfirmed claim of dead run released by run #{run_id} (--resend-unconfirmed); "
                          f"not resent: step {step} of this cart already went out")).rowcount or 0)
        return followed

    def close_dead_runs(self, run_id: int, stale_after: timedelta) -> dict[int, int]:
        """Record as ``killed`` the runs still ``running`` that are provably gone (kill -9, the
        out-of-memory killer, a lost host: see :func:`_run_is_dead`; no lock holder), with the
        messages they sent: their row would otherwise say ``running`` for good, and count nothing.
        Returns each closed run's claims without outcome (``claimed``): the one moment a run
        can tell cron of them, since they stay so for good. Not its ``unconfirmed`` messages: they
        have their outcome (the relay took the whole message and did not answer), and counted
        here they were said as claims a killed run left without outcome (``killed_left``).

        A run that ended otherwise (stopped by Ctrl-C or SIGTERM, a ledger error, a lost lock)
        with messages in flight left them ``claimed`` too: they are counted here as well, once
        (:func:`note_left_claims` marks them), so the next run tells cron of them as it does of
        a killed run's."""
        run, message = Run.__table__, Message.__table__  # type: ignore[attr-defined]
        now = datetime.now(timezone.utc)
        closed: dict[int, int] = {}
        with self.engine.begin() as conn:
            dead = dead_runs(conn, (run.c.status == "running") & (run.c.id != run_id), now, stale_after, self._over)
            for dead_id in dead:
                done = conn.execute(update(run).where(run.c.id == dead_id, run.c.status == "running").values(
                    status="killed", finished_at=naive(now), sent=sent_by(conn, dead_id)))
                if done.rowcount:
                    closed[dead_id] = int(conn.execute(select(func.count()).select_from(message).where(
                        message.c.run_id == dead_id, message.c.status == "claimed")).scalar() or 0)
        with self.engine.begin() as conn:  # its own transaction, which writes first (see note_left_claims)
            for ended_id, left in note_left_claims(conn, run_id, now).items():
                closed.setdefault(ended_id, left)
        return closed

    def sent_since(self, transport: str, since: datetime, owns: Owner | None = None) -> list[datetime]:
        """When messages of ``transport`` were accepted after ``since`` (wall clock), oldest first.

        Every message the relay may have (:data:`MAYBE_DELIVERED`) counts: a claim a killed run
        left without outcome may have gone out, so it takes its room in the hour too, from when
        its run was found ended (its own time is not known; later is the safe side), or from now
        while its run still runs (another shard's message in flight).

        ``owns``: only one shard's messages (each shard keeps its share of an hourly quota).
        """
        message, run = Message.__table__, Run.__table__  # type: ignore[attr-defined]
        now = datetime.now(timezone.utc)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(message.c.finished_at, message.c.email, message.c.cart_key, message.c.phone).where(
                    message.c.transport == transport, message.c.status.in_(MAYBE_DELIVERED),
                    message.c.finished_at >= naive(since))
            ).all()
            left = conn.execute(
                select(run.c.finished_at, message.c.email, message.c.cart_key, message.c.phone)
                .select_from(message.join(run, run.c.id == message.c.run_id)).where(
                    message.c.transport == transport, message.c.status == "claimed",
                    message.c.finished_at.is_(None), or_(run.c.finished_at.is_(None), run.c.finished_at >= naive(since)))
            ).all()
        return sorted(now if at is None else aware(at) for at, email, key, phone in [*rows, *left]  # type: ignore[misc]
                      if owns is None or owns(email, key, phone))

    def tier_used_since(self, tier: str, steps: list[tuple[int, str]], since: datetime, until: datetime,
                        owns: Owner | None = None) -> TierUse:
        """How many messages of ``tier`` were claimed from ``since`` to ``until`` (a tier's day's
        budget), each a ``(step, channel)`` of ``steps``: every claim that went out or may have
        (:data:`MAYBE_DELIVERED`). Not a held-out cart, a permanent failure, nor a transient
        one: that message did not go out, and its retry (the same row, claimed again) is what counts.

        ``owns``: also count the claims of one shard's customers (by the hash of the address each
        row keeps, else of its number, whichever shard or layout claimed it), which a shard's day share is charged
        with; without it every claim is the caller's. Looked up through the runs of the period
        (``cr_run`` is small, ``run_id`` indexed), not by scanning every message the ledger holds.
        """
        message = Message.__table__  # type: ignore[attr-defined]
        where = self._tier_claims(tier, steps, since, until)
        with self.engine.connect() as conn:
            if owns is None:
                total = int(conn.execute(select(func.count()).select_from(message).where(*where)).scalar_one())
                return TierUse(total, total)
            rows = conn.execute(select(message.c.email, message.c.cart_key, message.c.phone).where(*where)).all()
        return TierUse(len(rows), sum(1 for email, key, phone in rows if owns(email, key, phone)))

    @staticmethod
    def _tier_claims(tier: str, steps: list[tuple[int, str]], since: datetime, until: datetime) -> tuple[Any, ...]:
        """The WHERE clauses of :meth:`tier_used_since`'s claims."""
        message, run = Message.__table__, Run.__table__  # type: ignore[attr-defined]
        # A run that began before ``since`` and claimed after it (23:59, and sending past midnight:
        # its claims are stamped when made, cartrescue.clock) is still going, or ended after it.
        runs = select(run.c.id).where(or_(run.c.now >= naive(since), run.c.finished_at.is_(None),
                                          run.c.finished_at >= naive(since)))
        return (message.c.run_id.in_(runs), message.c.tier == tier,
                or_(*(and_(message.c.step == step, message.c.channel == channel) for step, channel in steps)),
                message.c.status.in_(MAYBE_DELIVERED),
                message.c.claimed_at >= naive(since), message.c.claimed_at <= naive(until))

    def reserve_day_budget(self, run_id: int, tier: str, steps: list[tuple[int, str]], since: datetime,
                           until: datetime, budget: int, share: int, owns: Owner,
                           stale_after: timedelta = timedelta(hours=2)) -> tuple[int, TierUse]:
        """Reserve what shard run ``run_id`` may claim of ``tier``'s day ``budget`` (from
        ``since``, the shop's midnight, to ``until``): its ``share`` less the day's claims of the
        addresses it owns, and no more than the day has left once the other running shards'
        reservations are kept. Return that amount and the day's use it was read from.

        The day's total alone did not do: after the layout changed during the day (4 shards in
        the morning, 3 later), one shard's addresses may have had more than their new share, and
        two shards that read the day's total before either claimed could each spend what was
        left of it. Reservations are made one at a time (the lock table's serialization, as
        lock acquisitions are), and each sees every earlier one of a run still holding its lock.
        A shard that died (``stale_after``: ``ledger.lock_timeout``; see :meth:`_live_holders`)
        holds nothing: what it reserved and did not claim goes back to the day at once.
        """
        message, hold = Message.__table__, BudgetHold.__table__  # type: ignore[attr-defined]
        day = naive(since)
        with self._locking() as conn:
            rows = conn.execute(select(message.c.email, message.c.cart_key, message.c.phone, message.c.run_id)
                                .where(*self._tier_claims(tier, steps, since, until))).all()
            running = {holder["run_id"] for holder in self._live_holders(conn, datetime.now(timezone.utc), stale_after)}
            conn.execute(delete(hold).where(or_(hold.c.run_id.not_in(running | {run_id}), hold.c.day < day,
                                                and_(hold.c.run_id == run_id, hold.c.tier == tier))))
            claimed = Counter(row.run_id for row in rows)
            pending = sum(max(amount - claimed[holder], 0) for holder, amount in conn.execute(
                select(hold.c.run_id, hold.c.amount).where(hold.c.tier == tier, hold.c.day == day,
                                                           hold.c.run_id != run_id)))
            use = TierUse(len(rows), sum(1 for email, key, phone, _ in rows if owns(email, key, phone)), pending)
            amount = max(min(share - use.own, budget - use.total - pending), 0)
            conn.execute(insert(hold).values(run_id=run_id, tier=tier, day=day, amount=amount))
        return amount, use

    def status_counts(self) -> dict[str, int]:
        """How many message rows are in each status (for ``doctor``)."""
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(
                select(message.c.status, func.count()).group_by(message.c.status))}

    def held_codes(self, keys: Collection[str]) -> set[str]:
        """Which of the codes ``keys`` (upper case: :func:`~cartrescue.compose.incentives.code_key`)
        a message holds, in any pool (for ``doctor``: a pool file's codes left to hand out)."""
        code = Code.__table__  # type: ignore[attr-defined]
        held: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(keys), 500):
                held.update(conn.execute(select(func.upper(code.c.code)).where(
                    func.upper(code.c.code).in_(chunk), code.c.claim_id.is_not(None))).scalars())
        return held

    def unconfirmed_channels(self, statuses: Sequence[str] = UNCONFIRMED,
                             claimed: tuple[datetime, datetime] | None = None) -> set[str]:
        """The channels of the messages without outcome (``claimed``, ``unconfirmed``; or only
        ``statuses``, claimed in ``claimed``, for ``report``): ``doctor`` names who did not
        answer by channel (a relay, an SMS gateway, a webhook's receiver)."""
        message = Message.__table__  # type: ignore[attr-defined]
        query = select(message.c.channel).where(message.c.status.in_(statuses))
        if claimed is not None:
            query = query.where(message.c.claimed_at >= naive(claimed[0]), message.c.claimed_at <= naive(claimed[1]))
        with self.engine.connect() as conn:
            return set(conn.execute(query.distinct()).scalars())

    def write_refused(self) -> str | None:
        """Why the ledger's database would refuse a run's writes, or None (for ``doctor``).

        A server can take reads and refuse every write: a PostgreSQL replica after a failover, a
        role without the grant, MariaDB's ``read_only``. An UPDATE of no row, rolled back, meets
        the same refusal a run meets, and touches nothing. Not on SQLite: a file this process
        cannot write fails as the tables are created, and the probe would wait on a running
        run's write lock.
        """
        if self.engine.dialect.name == "sqlite":
            return None
        lock = RunLock.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.connect() as conn, conn.begin() as transaction:
                conn.execute(update(lock).where(lock.c.name.is_(None)).values(run_id=lock.c.run_id))
                transaction.rollback()
        except DBAPIError as exc:
            return one_line(exc)
        return None

    def messages(self) -> list[dict[str, Any]]:
        """Every message row (for reports and tests); small ledgers only."""
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(select(message).order_by(message.c.id)).mappings()]

    def save_decisions(self, run_id: int, now: datetime, decisions: Sequence[dict[str, Any]]) -> None:
        """Upsert the latest decision per cart (delete + insert: portable and batchable)."""
        if not decisions:
            return
        table = CartDecision.__table__  # type: ignore[attr-defined]
        raw = self._raw_statements()
        at = raw.moment(now)
        # A cart key twice in one batch (an id repeated further down a CSV): the later one wins.
        latest = {d["cart_key"]: d for d in decisions}
        rows = [dict(d, decided_at=at, run_id=run_id) for d in latest.values()]
        with self._decisions_transaction() as conn:
            for chunk in chunks([row["cart_key"] for row in rows], 500):
                conn.execute(delete(table).where(table.c.cart_key.in_(chunk)))
            conn.exec_driver_sql(raw.decision, raw.rows(raw.decision_order, rows))  # one executemany

    @contextmanager
    def _decisions_transaction(self) -> Iterator[Any]:
        """The transaction of :meth:`save_decisions`: on MariaDB and MySQL at READ COMMITTED. At
        InnoDB's REPEATABLE READ the delete of carts the table does not hold yet locked the gap at
        its end, and two shards that saved new carts together each waited for the other's gap to
        insert: one was rolled back as a deadlock, its shard stopped mid-delivery (exit 2) and what
        it had sent kept no outcome. The rows deleted and inserted are the run's own carts, which
        no other shard writes: no gap needs a lock (PostgreSQL reads committed already)."""
        with self.engine.connect() as conn:
            if self.engine.dialect.name in ("mysql", "mariadb"):
                conn = conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn

    # -- survey answers ----------------------------------------------------------------------

    def recipients_of(self, message_ids: Sequence[str]) -> list[str]:
        """The addresses of the e-mails sent (or sent without a reply: :data:`MAYBE_DELIVERED`)
        under one of ``message_ids``: what a bounce report returning one of them may name. A
        message that failed, or one forgotten since (no address kept), names nobody."""
        if not message_ids:
            return []
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [str(address) for address in conn.execute(
                select(message.c.email).where(message.c.message_id.in_([key[:255] for key in message_ids]),
                                              message.c.channel == "email", message.c.status.in_(MAYBE_DELIVERED),
                                              message.c.email.is_not(None))).scalars()]

    def message_of(self, cart_key: str, step: int) -> dict[str, Any] | None:
        """The message of ``cart_key``'s ``step`` that went to the address (:data:`ADDRESS_CHANNELS`:
        an e-mail, or a webhook document, whose rendered parts carry the same survey links): its
        address, tier and variant (or None)."""
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(message.c.email, message.c.tier, message.c.variant).where(
                    message.c.cart_key == cart_key, message.c.step == step,
                    message.c.channel.in_(sorted(ADDRESS_CHANNELS))).order_by(message.c.channel)
            ).mappings().first()
        return None if row is None else dict(row)

    def save_survey_answer(self, cart_key: str, step: int, reason: str, text: str, locale: str, *,
                           tier: str | None, variant: str | None, email: str | None, now: datetime) -> bool:
        """Store a cart's answer; a later one replaces it. Returns True for the cart's first answer."""
        table = SurveyAnswer.__table__  # type: ignore[attr-defined]
        values = dict(step=step, reason=reason[:32], text=text[:500], locale=locale[:16], tier=tier,
                      variant=variant, email=email, answered_at=naive(now))
        for _attempt in range(3):
            with self.engine.begin() as conn:
                changed = conn.execute(update(table).where(table.c.cart_key == cart_key).values(
                    answers=table.c.answers + 1, **values)).rowcount
            if changed:
                return False
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(table).values(cart_key=cart_key, answers=1, first_answered_at=naive(now),
                                                      **values))
                return True
            except IntegrityError:  # the same cart answered twice at once: update the other's row
                continue
        raise LedgerError(f"could not store the survey answer of {cart_key}")

    def has_survey_answers(self) -> bool:
        """Is there any answer at all? (A run asks once: most shops have none to look up.)"""
        table = SurveyAnswer.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return conn.execute(select(table.c.id).limit(1)).first() is not None

    def survey_answered(self, cart_keys: Sequence[str]) -> set[str]:
        """Which of ``cart_keys`` have an answer."""
        as_json = self._json_lists()
        statements = (answered_statement(as_json),)
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(cart_keys)), 500):
                found.update(conn.execute(*one_of_chunk(
                    statements, lambda as_json: (answered_statement(as_json),), 0, "keys", chunk, as_json)).scalars())
        return found

    def survey_answers(self, since: datetime | None = None, until: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Answers given in ``[since, until)``, oldest first, streamed (for exports)."""
        table = SurveyAnswer.__table__  # type: ignore[attr-defined]
        query = select(table).order_by(table.c.answered_at, table.c.id)
        if since is not None:
            query = query.where(table.c.answered_at >= naive(since))
        if until is not None:
            query = query.where(table.c.answered_at < naive(until))
        with self.engine.connect() as conn:
            for row in conn.execution_options(stream_results=True, yield_per=1000).execute(query).mappings():
                yield dict(row, answered_at=aware(row["answered_at"]),
                           first_answered_at=aware(row["first_answered_at"]))

    def survey_counts(self, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
        """Answers counted per (reason, tier, locale) in ``[since, until)``: what a report shows."""
        table = SurveyAnswer.__table__  # type: ignore[attr-defined]
        query = select(table.c.reason, table.c.tier, table.c.locale, func.count().label("answers")).group_by(
            table.c.reason, table.c.tier, table.c.locale)
        if since is not None:
            query = query.where(table.c.answered_at >= naive(since))
        if until is not None:
            query = query.where(table.c.answered_at < naive(until))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    # -- test messages (send-test) -----------------------------------------------------------

    def start_send_test(self, row: dict[str, Any], now: datetime | None = None) -> int:
        """Record a test message before it is handed over (status ``sending``); its id."""
        table = SendTest.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            result = conn.execute(insert(table).values(
                **row, status="sending", created_at=naive(now or datetime.now(timezone.utc))))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_send_test(self, test_id: int, status: str, reply: str) -> None:
        table = SendTest.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == test_id).values(
                status=status, reply=reply[:1000], finished_at=naive(datetime.now(timezone.utc))))

    def send_tests(self) -> list[dict[str, Any]]:
        """Every test message, oldest first (a handful: one per `send-test`)."""
        table = SendTest.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(select(table).order_by(table.c.id)).mappings()]
