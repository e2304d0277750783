"""The shop's newsletter sends from a CSV export of its newsletter tool (Mailchimp, Klaviyo, ...).

Owns reading the export (``email``, ``sent_at``, optional ``campaign``; other headers through
``source.newsletters.columns``, as for carts) into a scratch index on disk of the sends that
fall within the asked window (today, in a run), and answering per chunk of addresses. Rows
outside the window are read and dropped, so a year of weekly sends costs no memory. Bad rows
are reported as ``file:line: reason``: one without a readable time always, one with a bad
address only when it falls in the window. It must not decide anything.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from cartrescue.contacts import is_valid_email, normalize_email
from cartrescue.errors import SourceError
from cartrescue.model import MarketingSend, RowProblem
from cartrescue.scratch import ScratchDb
from cartrescue.sources.base import ProblemSink, Window, ignore_problem
from cartrescue.sources.csv import _columns, _open_csv, _undecodable, numbered_rows, parse_time
from cartrescue.sources.values import RowError, campaign_name

SEND_FIELDS = ("email", "sent_at", "campaign")
REQUIRED = ("email", "sent_at")
_BATCH = 5000
_PARAMETERS = 500


class CsvSends:
    """A :class:`~cartrescue.sources.base.SendSource` over one CSV export of sends."""

    def __init__(self, path: Path, *, shop_tz: ZoneInfo = ZoneInfo("UTC"), columns: dict[str, str] | None = None,
                 delimiter: str | None = None, encoding: str = "utf-8-sig",
                 on_problem: ProblemSink = ignore_problem) -> None:
        self.path = path
        self.shop_tz = shop_tz
        self.columns = columns or {}
        self.delimiter = delimiter
        self.encoding = encoding
        self.on_problem = on_problem
        self._scratch: ScratchDb | None = None
        self._window: Window | None = None

    def sends_for(self, emails: Sequence[str], window: Window) -> Iterator[MarketingSend]:
        if self._window != window:
            self._index(window)
        assert self._scratch is not None
        db = self._scratch.connection
        unique = sorted(set(emails))
        for start in range(0, len(unique), _PARAMETERS):
            chunk = unique[start:start + _PARAMETERS]
            for email, at, campaign in db.execute(
                f"SELECT email, at, campaign FROM sends WHERE email IN ({','.join('?' * len(chunk))})", chunk):
                yield MarketingSend(email, datetime.fromisoformat(at), campaign)

    def sends_notes(self) -> list[str]:
        return []

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None

    def _index(self, window: Window) -> None:
        self.close()
        scratch = ScratchDb("sends", "CREATE TABLE sends(email TEXT NOT NULL, at TEXT NOT NULL, campaign TEXT);")
        try:
            self._read(scratch, window)
            scratch.connection.execute("CREATE INDEX sends_email ON sends(email)")
            scratch.connection.commit()
        except BaseException:
            scratch.close()
            raise
        self._scratch, self._window = scratch, window

    def _read(self, scratch: ScratchDb, window: Window) -> None:
        path = self.path
        handle, reader = _open_csv(path, self.encoding, self.delimiter)
        batch: list[tuple[str, str, str | None]] = []
        with handle:
            try:
                header = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise _undecodable(path, self.encoding) from None
            except csv.Error as exc:
                raise SourceError(f"{path}:1: cannot read the header: {exc}") from None
            at = _columns(path, header, SEND_FIELDS, self.columns, REQUIRED).index
            for start, row in numbered_rows(reader, path, self.encoding, self.on_problem):
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
                    scratch.connection.executemany("INSERT INTO sends VALUES (?, ?, ?)", batch)
                    batch.clear()
        if batch:
            scratch.connection.executemany("INSERT INTO sends VALUES (?, ?, ?)", batch)
