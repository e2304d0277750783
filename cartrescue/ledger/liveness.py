"""Which runs are over or dead: process identity on this host, heartbeats of others, and the
closing of what dead runs left behind.

Apart because judging a run gone (its pid, its boot, its start time, its heartbeat) is its own
question, asked by the lock, by ``--resend-unconfirmed`` and by the closing of killed runs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from cartrescue.ledger.moments import aware, naive
from cartrescue.ledger.tables import Message, Run, RunLock


class RunsOver:
    """The runs of one process that are over (finished, or their lock's block ended), even where
    their rows could not say so (the ledger locked by another process), by ledger and run id: a
    row of this process's pid and identity is a live run's unless its run is one of these
    (:func:`process_gone`).

    Each :class:`Ledger` is given one, else keeps its own. A process that runs more than once
    hands the same to the ledger of each run (the command line's, :func:`cartrescue.cli.runs_over`,
    serves all its commands), so that a later run takes over the lock row an earlier one could
    not remove, and does not wait ``lock_timeout`` for its heartbeat to go stale."""

    def __init__(self) -> None:
        self._over: set[tuple[str, int]] = set()

    def ended(self, ledger: str, run_id: int) -> None:
        """Run ``run_id`` of ``ledger`` (its engine's URL) is over, whatever its rows say."""
        self._over.add((ledger, int(run_id)))

    def going(self, ledger: str, run_id: int) -> None:
        """Run ``run_id`` of ``ledger`` goes (again: a caller may lock twice with one run)."""
        self._over.discard((ledger, int(run_id)))

    def over(self, ledger: str, run_id: int) -> bool:
        return (ledger, int(run_id)) in self._over


#: How long a run on another host must have been silent before ``--resend-unconfirmed`` takes
#: its claims for gone: one paused longer than that (a VM frozen for an hour) is not told apart.
OTHER_HOST_GONE = timedelta(hours=1)


def dead_runs(conn: Any, which: Any, now: datetime, stale_after: timedelta, over: Callable[[int], bool]) -> list[int]:
    """The ids of the runs matching ``which`` (a condition on cr_run) that are provably gone
    (:func:`_run_is_dead`) and hold no lock; ``over``: is a run one of this process's that is
    over (:meth:`Ledger._over`)?"""
    run = Run.__table__  # type: ignore[attr-defined]
    holders = set(conn.execute(select(RunLock.__table__.c.run_id)).scalars())  # type: ignore[attr-defined]
    rows = conn.execute(select(run.c.id, run.c.status, run.c.heartbeat_at, run.c.started_at, run.c.host, run.c.pid,
                               run.c.process).where(which)).mappings().all()
    return [row["id"] for row in rows
            if row["id"] not in holders and _run_is_dead(row, now, stale_after, over(row["id"]))]


def note_left_claims(conn: Any, run_id: int, now: datetime) -> dict[int, int]:
    """The claims without outcome of runs that ended (not ``running``) other than ``run_id``, not
    noted yet, by run; noted now: their ``finished_at`` is set and their ``reply`` says which run
    found them, the status stays ``claimed`` (no outcome, not resent: at most once). An outcome
    written later (a run of another host closed as killed that wakes) replaces the note.

    A run stopped by Ctrl-C or SIGTERM, a ledger error or a lost lock ends with its ``cr_run`` row
    finished (``interrupted``, ``failed``, ``lock_lost``), so :meth:`Ledger.close_dead_runs`
    never took it for a killed one, and no later run said its claims in flight were left without
    outcome. The note makes it said once, by the one run (or shard) whose update took the rows. A
    killed run's rows are said when it is closed: its status, ``killed``, is not looked at here.

    The update comes first in its transaction: a SQLite (WAL) transaction that reads before it
    writes fails at once (``database is locked``, no busy wait) when another shard of the run
    wrote meanwhile; one that begins with its write waits for the lock."""
    run, message = Run.__table__, Message.__table__  # type: ignore[attr-defined]
    ended = select(run.c.id).where(run.c.status.not_in(("running", "killed")), run.c.id != run_id)
    note = (f"no outcome: its run ended with this message in flight; found by run #{run_id} (not resent unless "
            "--resend-unconfirmed)")
    done = conn.execute(update(message).where(
        message.c.status == "claimed", message.c.finished_at.is_(None), message.c.run_id.in_(ended)).values(
        finished_at=naive(now), reply=note))
    if not done.rowcount:
        return {}
    return {int(ended_id): int(n) for ended_id, n in conn.execute(
        select(message.c.run_id, func.count()).where(message.c.status == "claimed", message.c.reply == note)
        .group_by(message.c.run_id))}


def sent_by(conn: Any, run_id: int) -> int:
    """How many messages run ``run_id`` recorded as sent: the ledger's count, whatever its caller counted."""
    message = Message.__table__  # type: ignore[attr-defined]
    return int(conn.execute(select(func.count()).select_from(message).where(
        message.c.run_id == run_id, message.c.status == "sent")).scalar() or 0)


def _run_is_dead(row: Any, now: datetime, stale_after: timedelta, ended: bool = False) -> bool:
    """Is the run of ``row`` (a cr_run row, not the lock holder) certainly not delivering any more?

    Finished runs are. On this host a run is dead when its process is gone (a stopped process
    still exists: it may wake and deliver); on another host, when its heartbeat is older than
    ``stale_after`` (the heartbeat comes every ``lock_timeout / 4`` while it lives).
    """
    here = row["host"] == socket.gethostname()
    # A run of another host closed as killed by a later run (after lock_timeout of silence):
    # for its claims the time since its last heartbeat still decides (release_unconfirmed's hour).
    if row["status"] != "running" and (here or row["status"] != "killed"):
        return True
    if here:
        try:
            pid = int(row["pid"])
        except (TypeError, ValueError):
            return False
        return process_gone(pid, row["process"], ended)
    last = aware(row["heartbeat_at"] or row["started_at"])
    return last is None or now - last > stale_after


def process_identity(pid: int | None = None) -> str | None:
    """Which process has ``pid`` (default: this one) on this host: ``<boot id>:<start time>``,
    the kernel's boot id and the process's start in clock ticks since boot (field 22 of
    ``/proc/PID/stat``); None where ``/proc`` does not tell (not Linux, the process gone or hidden,
    a ``/proc`` of another pid namespace: a container's run sees the host's unless it mounts its own).

    A pid alone names no process for long: a container restarted under the same host name gives
    its run the same pid (2, every time), and a killed run's lock was taken for a live one's until
    ``lock_timeout`` (2 h). A pid, the same boot and the same start are the same process."""
    fields = _stat(os.getpid() if pid is None else pid)
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    if fields is None or len(fields) < 20 or not boot:
        return None
    return f"{boot}:{fields[19]}"  # field 22; fields[0] is field 3


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` from its third (the state) on; None where ``/proc`` does
    not tell (not Linux, the process gone, a ``/proc`` of another pid namespace)."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):  # another pid namespace's /proc: its pids are not ours
            return None
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()  # the name, in parentheses, may hold spaces and ")"


def process_gone(pid: int, recorded: str | None, ended: bool) -> bool:
    """Is the process of this host that recorded ``pid`` (and ``recorded``, its
    :func:`process_identity`) for a run certainly gone? ``ended``: the run is one of this
    process's that is over (:class:`RunsOver`).

    Gone when no process has the pid; when the host booted again since (another boot id); when
    the process with that pid now started at another time (the pid was reused); and when the pid
    is this process's own and the row is not of a run this process has going: another process
    of that pid wrote it (its identity differs or was not recorded, by an older cartrescue), or
    this process did for a run that ended without removing it (the ledger was locked). A process
    ``/proc`` does not show (another system, ``hidepid``) is judged by its pid alone, as when no
    identity was recorded: a stopped process still exists, and may wake and deliver."""
    here = process_identity()
    if pid == os.getpid():
        return ended or (here is not None and recorded != here)
    if recorded is not None and here is not None and recorded.split(":")[0] != here.split(":")[0]:
        return True  # another boot: every process of that one is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        pass
    if _zombie(pid):
        return True  # killed, not yet reaped by its parent: it holds no socket and claims nothing
    if recorded is None:
        return False
    now_there = process_identity(pid)
    return now_there is not None and now_there != recorded


def _zombie(pid: int) -> bool:
    """Has process ``pid`` of this host ended without being reaped yet (state ``Z`` or ``X``)?

    A killed worker of ``run --workers`` is reparented to PID 1, which reaps it when it gets to
    it: a second and more here, never in a container whose PID 1 (a shell script) reaps nothing.
    Meanwhile ``kill(pid, 0)`` finds it and ``/proc`` still gives its start time, so its lock
    was taken for a live run's and a new run exited 4 until ``lock_timeout``. False where
    ``/proc`` does not tell."""
    fields = _stat(pid)
    return fields is not None and fields[:1] in (["Z"], ["X"])
