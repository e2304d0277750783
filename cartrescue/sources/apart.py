"""Cart ids that stand in more than one place of a carts export, found before any cart is built.

The generic format lists a cart's rows one after another. An export that does not (rows ordered
by product, a job that appends a second batch) gives the same cart id in two places; the carts
pass builds one group at a time, so the first place alone would make a reminder with half the
cart. The first pass therefore notes here every group's id, its first line and a digest of its
rows (its items and last change). When that pass ends, :meth:`ApartIds.finish` names the ids met
more than once, and whether their groups were all alike (a cart listed twice: its first
appearance is the whole cart) or not (a cart cut in pieces: no piece is the cart, so it is
skipped whole). The carts pass then decides on a cart's first group already, with nothing held
in memory.

A group the first pass could not take whole (a row of it cut short, too wide, unreadable, or
taken in by a quote left open) is noted too, as broken (:meth:`ApartIds.add_broken`): its cart is
skipped whole, so any other group of its id elsewhere in the file must not go out as the cart.

The ids live in a scratch SQLite file (:class:`~cartrescue.scratch.ScratchDb`), not in a set, so
a million carts cost no more memory than a thousand; what comes back is only the repeated ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cartrescue.scratch import ManyRows, ScratchDb

_SCHEMA = ("CREATE TABLE ids(id TEXT PRIMARY KEY, lines TEXT NOT NULL, digest INTEGER NOT NULL, "
           "n INTEGER NOT NULL, alike INTEGER NOT NULL, broken TEXT NOT NULL DEFAULT '') WITHOUT ROWID;")
_ADD = ManyRows("INSERT INTO ids(id, lines, digest, n, alike) VALUES {values} ON CONFLICT(id) DO UPDATE SET "
                "lines = lines || ',' || excluded.lines, n = n + 1, alike = alike AND digest = excluded.digest",
                "(?, ?, ?, 1, 1)")
#: A broken group: never alike (no group of its id is the cart); its line noted among the broken.
_ADD_BROKEN = ("INSERT INTO ids VALUES (?, ?, 0, 1, 0, ?) ON CONFLICT(id) DO UPDATE SET "
               "lines = lines || ',' || excluded.lines, n = n + 1, alike = 0, broken = broken || excluded.broken")
#: Another piece's ids (:meth:`ApartIds.merge`): an id in both keeps its first digest, adds its
#: lines after these and is alike only if both pieces' groups all were, alike each other.
_MERGE = ("INSERT INTO ids(id, lines, digest, n, alike, broken) SELECT id, lines, digest, n, alike, broken "
          "FROM piece.ids WHERE true ON CONFLICT(id) DO UPDATE SET lines = lines || ',' || excluded.lines, "
          "n = n + excluded.n, alike = alike AND excluded.alike AND digest = excluded.digest, "
          "broken = broken || excluded.broken")
_BATCH = 5000
#: A problem names at most this many of a cart's lines.
_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Apart:
    """A cart id met in more than one place: the first line of each of its groups, and whether
    every group holds the same rows."""

    lines: tuple[int, ...]
    alike: bool
    #: The lines of its broken groups (see :meth:`ApartIds.add_broken`): the carts pass never
    #: meets them, and each was reported where it was read.
    broken: tuple[int, ...] = ()

    def problem(self, cart_id: str, line: int) -> str | None:
        """What the carts pass reports for the group of ``cart_id`` starting at ``line`` (None:
        nothing). A cart listed twice alike: each later appearance, as before; a cart in pieces:
        once, at the first piece the carts pass meets, and no piece is built."""
        if self.alike:
            return None if line == self.lines[0] else f"cart {cart_id}: the same cart id again (only its first " \
                                                      "appearance is used)"
        if line != next((at for at in self.lines if at not in self.broken), None):
            return None
        shown = ", ".join(map(str, self.lines[:_SHOWN])) + (", …" if len(self.lines) > _SHOWN else "")
        return (f"cart {cart_id}: its rows are not together (groups at lines {shown}): skipped whole, never half "
                "a cart (the export must list a cart's rows one after another)")

    def built(self, line: int) -> bool:
        """Whether the group starting at ``line`` is built as the cart."""
        return self.alike and line == self.lines[0]


class ApartIds:
    """Fed every group of the first pass (:meth:`add`), in file order; :meth:`finish` once."""

    def __init__(self) -> None:
        self._scratch: ScratchDb | None = None
        self._batch: list[tuple[str, int, int]] = []
        self._broken: list[tuple[str, str, str]] = []

    def add(self, cart_id: str, line: int, digest: int) -> None:
        """A group of ``cart_id`` starting at ``line``; ``digest``: what its rows hold (groups
        with equal digests are one cart listed twice, see ``CsvSource._digest``)."""
        self._batch.append((cart_id, line, digest))
        if len(self._batch) >= _BATCH:
            self._flush()

    def add_broken(self, cart_id: str, line: int) -> None:
        """A group of ``cart_id`` starting at ``line`` that is skipped (a row of it could not be
        read): no other group of that id is the cart either, wherever it stands."""
        self._broken.append((cart_id, str(line), f"{line},"))
        if len(self._broken) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._scratch is None:
            self._scratch = ScratchDb("apart", _SCHEMA)
        _ADD.run(self._scratch.connection, self._batch)
        self._batch.clear()
        if self._broken:
            self._scratch.connection.executemany(_ADD_BROKEN, self._broken)
            self._broken.clear()

    def save(self, path: Path) -> None:
        """Write every id met so far to a new SQLite file at ``path``, for :meth:`merge`, and close."""
        try:
            self._flush()
            assert self._scratch is not None
            self._scratch.connection.commit()  # neither VACUUM nor ATTACH runs inside a transaction
            self._scratch.connection.execute("VACUUM INTO ?", (str(path),))
        finally:
            self.close()

    def merge(self, path: Path) -> None:
        """Add the ids :meth:`save` wrote at ``path``, met after every id met here (a later piece
        of a file split by several helpers): what :meth:`add` and :meth:`add_broken` would have
        made of them one by one."""
        self._flush()
        assert self._scratch is not None
        connection = self._scratch.connection
        connection.commit()
        connection.execute("ATTACH DATABASE ? AS piece", (str(path),))
        try:
            connection.execute(_MERGE)
            connection.commit()
        finally:
            connection.execute("DETACH DATABASE piece")

    def finish(self) -> dict[str, Apart]:
        """The ids met more than once; throws the scratch file away."""
        try:
            self._flush()
            assert self._scratch is not None
            rows = self._scratch.connection.execute("SELECT id, lines, alike, broken FROM ids WHERE n > 1")
            return {cart_id: _apart(lines, alike, broken) for cart_id, lines, alike, broken in rows}
        finally:
            self.close()

    def close(self) -> None:
        self._batch.clear()
        self._broken.clear()
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None


def _apart(lines: str, alike: int, broken: str) -> Apart:
    """An :class:`Apart` from its row; broken groups are added after the others (sorted here)."""
    if not broken:
        return Apart(tuple(map(int, lines.split(","))), bool(alike))
    return Apart(tuple(sorted(map(int, lines.split(",")))), False, tuple(sorted(map(int, broken[:-1].split(",")))))
