"""What a ledger's database errors mean, said in one line: busy, silent, an older ledger, a
SQLite file that cannot be opened, a PostgreSQL search_path of no schema.

Apart because commands and the job word ledger errors without opening a ledger.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cartrescue.drivers import stopped_answering
from cartrescue.errors import LedgerError, LockHeld


def older_ledger(where: str, behind: Sequence[str]) -> str:
    """Why a command that only reads does not read the older ledger of ``where`` (see
    :attr:`Ledger.behind`), and what brings it up to date."""
    shown = ", ".join(behind[:6]) + (f" and {len(behind) - 6} more" if len(behind) > 6 else "")
    return (f"{where}: the ledger is of an older cartrescue (it lacks {shown}) and this command only reads, so it "
            "left it unchanged: the next `cartrescue run` (a dry-run too) brings it up to date (it only adds "
            "tables and columns)")


#: PostgreSQL's words when a search_path names no schema that exists, and what to do about it.
NO_SCHEMA = "no schema has been selected to create in"
NO_SCHEMA_HINT = " (the URL's search_path names no schema that exists: CREATE SCHEMA it first)"


def why_no_file(url: str) -> str:
    """What SQLite's "unable to open database file" means for this ledger's path (it never says)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:  # noqa: BLE001 - only for the message
        return ""
    if not database or database == ":memory:":
        return ""
    path = Path(database)
    folder = path.parent
    if path.is_dir():
        return f" ({path} is a folder: give a file name, e.g. {path / 'ledger.db'})"
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                return f" ({above} is a file, not a folder)"
            if above != folder:
                return f" (no folder {folder}: create it)"
            break
    if not os.access(folder, os.W_OK | os.X_OK):
        return f" (no permission to write in {folder})"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f" (no permission to read and write {path})"
    return ""


def busy(exc: BaseException) -> bool:
    """Is this database error "another process holds the lock" (SQLite busy, a lock timeout)?"""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(word in text for word in ("database is locked", "lock timeout", "lock_timeout",
                                         "lock wait timeout", "canceling statement due to lock"))


#: What a command other than a run did when the ledger was busy: it must be run again (an
#: opt-out, an erasure, an import was not recorded), where a run's work is done by a later run.
NOT_DONE = "this command did nothing: run it again once the other process lets go"


def ledger_error(exc: BaseException, where: str, *, redo: bool = False) -> Exception:
    """The error a run reports for a database error of the ledger: busy is "locked" (exit 4); a
    ledger that stopped answering is said in its own words (:class:`cartrescue.drivers.Silence`).
    ``redo``: a command other than a run (``unsubscribe``, ``forget``, ``suppress import``), whose
    work no later run does: it says :data:`NOT_DONE`, not "a later run goes on"."""
    silent = stopped_answering(exc)
    if silent is not None:
        return LedgerError(f"{silent}: nothing more was claimed; a message whose outcome could not be "
                           "recorded keeps its claim and is not sent again (doctor lists it)")
    if busy(exc):
        then = NOT_DONE if redo else "a later run goes on"
        return LockHeld(f"{where} is busy: another process holds its lock ({one_line(exc)}); {then} "
                        "(a stopped cartrescue process keeps it locked: resume or end it)")
    return LedgerError(f"{where}: {one_line(exc)}")


def failed_while_delivering(exc: BaseException, where: str, stopped: str) -> str:
    """What a run says when its ledger failed while it delivered (the server ended its
    connection or refused a new one, the disk filled): ``where`` names the ledger (its config
    key and URL), ``stopped`` what went out before the stop (``it stopped after 28 delivered,
    0 failed``). Cron mails this line alone (``--quiet``), and "the ledger: server closed the
    connection unexpectedly" said neither which ledger nor what became of the messages in flight."""
    lost = "its connection was lost: " if getattr(exc, "connection_invalidated", False) else ""
    return (f"{where}: the ledger failed while this run delivered ({lost}{one_line(exc)}): {stopped}; the "
            "messages it could not record have no outcome and are not resent (doctor shows them); the next "
            "run goes on once the ledger takes writes again")


def one_line(exc: BaseException) -> str:
    """A database error as one line: the driver's message, its first line. PyMySQL's errors are
    a tuple of code and message (``(2003, "Can't connect to MySQL server on …")``, its ``str``):
    said as the message and its code, as PostgreSQL's driver says its own."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[object, ...] = getattr(orig, "args", ())
    if type(orig).__module__.startswith("pymysql") and len(args) == 2 and isinstance(args[0], int) \
            and isinstance(args[1], str) and args[1].strip():
        text = f"{args[1].strip()} (MySQL error {args[0]})"
    else:
        text = str(orig)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
