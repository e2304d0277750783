"""Typed errors, one per seam, each mapped to the exit code cron acts on.

Owns the exit-code contract (documented in the README). The CLI turns any of these into one
clear line on stderr and the code below; nothing else in the package calls ``sys.exit``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    SOME_FAILED = 1  # the run completed but some carts failed (bad rows, failed deliveries)
    CONFIG = 2  # config or usage error
    SOURCE = 3  # the cart source could not be read
    LOCKED = 4  # another run holds the lock
    STALE = 5  # doctor: no successful run for too long
    LOCK_LOST = 6  # this run lost its lock (paused or stalled past ledger.lock_timeout) and stopped
    INTERNAL = 70  # a bug in cartrescue (sysexits EX_SOFTWARE): nothing else explains it


class CartrescueError(Exception):
    """Base class: a message meant for a person, and an exit code."""

    exit_code: ExitCode = ExitCode.SOME_FAILED


class ConfigError(CartrescueError):
    exit_code = ExitCode.CONFIG


class SourceError(CartrescueError):
    exit_code = ExitCode.SOURCE


class LedgerError(CartrescueError):
    exit_code = ExitCode.CONFIG


class LockHeld(CartrescueError):
    exit_code = ExitCode.LOCKED

    def __init__(self, message: str, holder: int | None = None) -> None:
        super().__init__(message)
        self.holder = holder  # the run holding the lock, where known (whose shop it is: job.py)


class LockLost(CartrescueError):
    """Another run took the lock over while this one was paused or stalled: stop at once."""

    exit_code = ExitCode.LOCK_LOST


class TemplateError(CartrescueError):
    exit_code = ExitCode.SOME_FAILED


class OutputError(CartrescueError):
    """What a command prints cannot be written: stdout on a full disk, over a quota, or a file
    grown too large. Not a bug, and not the shop's data: only the report of the work is lost (what a run
    delivered is in the ledger)."""

    exit_code = ExitCode.SOME_FAILED
