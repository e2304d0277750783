"""The shop's newsletter sends from a CSV export of its newsletter tool (Mailchimp, Klaviyo, ...).

Owns reading the export (``email``, ``sent_at``, optional ``campaign``; other headers through
``source.newsletters.columns``, as for carts) into a scratch index on disk of the sends that
fall within the asked window (today, in a run), and answering per chunk of addresses. Rows
outside the window are read and dropped, so a year of weekly sends costs no memory. Bad rows
are reported as ``file:line: reason``: one without a readable time always, one with a bad
address only when it falls in the window. It must not decide anything.

The workers of one run share one such index (:mod:`cartrescue.sources.shared`): the run builds
it into a file of its own (:meth:`CsvSends.publish`), with its window and the problems its rows
had, and each worker reads that file instead of the whole export.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from cartrescue.contacts import is_valid_email, normalize_email
from cartrescue.model import MarketingSend, RowProblem
from cartrescue.scratch import ScratchDb
from cartrescue.sources.base import ProblemSink, Window, ignore_problem
from cartrescue.sources.csvfile import open_csv, empty_export, numbered_rows, stamp, unchanged
from cartrescue.sources.csvheader import header_columns, read_header
from cartrescue.sources.values import RowError, campaign_name, parse_time

if TYPE_CHECKING:
    from cartrescue.config import Config

SEND_FIELDS = ("email", "sent_at", "campaign")
REQUIRED = ("email", "sent_at")
SETTING = "source.newsletters.encoding"  # what an error that the export is in another encoding names
_BATCH = 5000
_PARAMETERS = 500
_SCHEMA = "CREATE TABLE sends(email TEXT NOT NULL, at TEXT NOT NULL, campaign TEXT);"
# A shared index also keeps its window: a worker checks it is the one it asks for.
_WINDOW_TABLE = "CREATE TABLE window(start TEXT NOT NULL, end TEXT NOT NULL);"


def open_export(config: Config, on_problem: ProblemSink = ignore_problem, shared: Path | None = None) -> CsvSends:
    """The reader of ``source.newsletters.file`` (which must be set)."""
    newsletters = config.source.newsletters
    assert newsletters.file is not None
    return CsvSends(config.path(newsletters.file), shop_tz=config.shop.tz, columns=dict(newsletters.columns),
                    delimiter=newsletters.delimiter, encoding=newsletters.encoding, on_problem=on_problem,
                    shared=shared, key=config.where("source.newsletters.file"))


class CsvSends:
    """A :class:`~cartrescue.sources.base.SendSource` over one CSV export of sends."""

    def __init__(self, path: Path, *, shop_tz: ZoneInfo = ZoneInfo("UTC"), columns: dict[str, str] | None = None,
                 delimiter: str | None = None, encoding: str = "utf-8-sig",
                 on_problem: ProblemSink = ignore_problem, shared: Path | None = None, key: str = "") -> None:
        """``shared``: where the run of this worker builds the index of the export that all its
        workers read (:mod:`cartrescue.sources.shared`); None: this reader indexes it. ``key``:
        what named the file (``cartrescue.yaml: source.newsletters.file``), for an error that it
        cannot be opened."""
        self.path = path
        self.key = key
        self.shop_tz = shop_tz
        self.columns = columns or {}
        self.delimiter = delimiter
        self.encoding = encoding
        self.on_problem = on_problem
        self.shared = shared
        self._db: sqlite3.Connection | None = None
        self._close: Callable[[], None] | None = None
        self._window: Window | None = None

    def sends_for(self, emails: Sequence[str], window: Window) -> Iterator[MarketingSend]:
        if self._window != window:
            self._index(window)
        db = self._db
        assert db is not None
        unique = sorted(set(emails))
        for start in range(0, len(unique), _PARAMETERS):
            chunk = unique[start:start + _PARAMETERS]
            for email, at, campaign in db.execute(
                f"SELECT email, at, campaign FROM sends WHERE email IN ({','.join('?' * len(chunk))})", chunk):
                yield MarketingSend(email, datetime.fromisoformat(at), campaign)

    def sends_notes(self) -> list[str]:
        return []

    def close(self) -> None:
        if self._close is not None:
            self._close()
        self._db = self._close = None

    def _index(self, window: Window) -> None:
        self.close()
        if self._open_shared(window):
            return
        scratch = ScratchDb("sends", _SCHEMA)
        try:
            self._fill(scratch.connection, window)
        except BaseException:
            scratch.close()
            raise
        self._db, self._close, self._window = scratch.connection, scratch.close, window

    def _fill(self, db: sqlite3.Connection, window: Window) -> None:
        """The sends of ``window`` into ``db``, indexed by address."""
        self._read(db, window)
        db.execute("CREATE INDEX sends_email ON sends(email)")
        db.commit()

    def _open_shared(self, window: Window) -> bool:
        """Read the run's index of the export, once it is complete, if it is ``window``'s (its
        rows' problems reported as :meth:`_read` reports them); False: none to wait for, or the
        run could not build it, or it is another window's (this reader then reads the file)."""
        from cartrescue.sources.shared import open_index

        def fits(db: sqlite3.Connection) -> bool:
            kept = [(datetime.fromisoformat(start), datetime.fromisoformat(end))
                    for start, end in db.execute("SELECT start, end FROM window")]
            return kept == [(window.start, window.end)]  # compared as instants

        db = open_index(self.shared, self.on_problem, fits)
        if db is None:
            return False
        self._db, self._close, self._window = db, db.close, window
        return True

    def publish(self, path: Path, window: Window) -> None:
        """Index the sends of ``window`` into ``path`` for the workers that share it, with its
        window and the problems its rows have (for shard 1 to report: :mod:`cartrescue.sources.shared`)."""
        from cartrescue.sources.shared import create_index, keep_problem

        db = create_index(path, _SCHEMA + _WINDOW_TABLE)
        saved = self.on_problem
        try:
            db.execute("INSERT INTO window VALUES (?, ?)", (window.start.isoformat(), window.end.isoformat()))
            self.on_problem = lambda problem: keep_problem(db, problem)
            self._fill(db, window)
        finally:
            self.on_problem = saved
            db.close()

    def _read(self, db: sqlite3.Connection, window: Window) -> None:
        path = self.path
        handle, reader = open_csv(path, self.encoding, self.delimiter, self.key, SETTING)
        batch: list[tuple[str, str, str | None]] = []
        with handle:
            opened = stamp(handle)
            header = read_header(reader, path, self.encoding, SETTING)
            if header is None:
                raise empty_export(path, "send reminders on the day of a newsletter", self.key)
            at = header_columns(path, header, SEND_FIELDS, self.columns, REQUIRED, reader.line_num,
                          "source.newsletters.columns", reader).index
            for start, row in numbered_rows(reader, path, self.encoding, self.on_problem, SETTING):
                if not any(cell.strip() for cell in row):
                    continue
                cells = {name: row[index].strip() if 0 <= index < len(row) else "" for name, index in at.items()}
                try:
                    if not cells["sent_at"]:
                        raise RowError("sent_at: missing")
                    sent = parse_time(cells["sent_at"], "sent_at", self.shop_tz)
                    if sent not in window:
                        continue
                    email = normalize_email(cells["email"])
                    if not email or not is_valid_email(email):
                        raise RowError(f"email: not a valid address: {cells['email']!r}")
                except RowError as exc:
                    self.on_problem(RowProblem(f"{path}:{start}", f"newsletter send: {exc}"))
                    continue
                batch.append((email, sent.isoformat(), campaign_name(cells["campaign"])))
                if len(batch) >= _BATCH:
                    db.executemany("INSERT INTO sends VALUES (?, ?, ?)", batch)
                    batch.clear()
            unchanged(handle, path, opened)
        if batch:
            db.executemany("INSERT INTO sends VALUES (?, ?, ?)", batch)
