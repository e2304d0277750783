"""Which cart is each address's newest? (One address, one reminder stream.)

An address is the customer's e-mail address or, for a cart without one, their phone number
(:func:`customer_key`): a customer reached only by text or on the call list, with two carts, got
the older cart's stream as well as the newer one's.

Owns the first pass over a source's activity, and the addresses this run has messaged already
(one message per address per day, also within a run). Both live in a scratch SQLite file, not
in a dict or a set, so that a million carts cost the same memory as a thousand; it is deleted
on close.

Only a cart that can be reminded competes for newest: one with nothing in it (no line item, or
nothing to pay) is skipped for its contents whatever else it is, and taken as the newest it left
the address's real cart without a reminder too. Shops make such carts without the customer
meaning anything by them (a session that added a product and removed it, an empty quote made by
an API call, CartFlows' ``a:0:{}`` rows); the Magento and PrestaShop presets never read an empty
one at all. A customer who empties the abandoned cart itself still gets no reminder of it.

But such a cart still says what its customer said to marketing last: one whose consent says no
withdraws the consent an older cart of the address gave (GDPR: the latest word wins), so the
pass keeps each address's latest "no" to e-mail marketing and to texts said on a cart that does
not compete (a cart that competes and says no is the newest, and the older carts get no reminder
anyway). Only those "no"s are kept (a few rows, not one an address); a later "yes" grants
nothing to an older "no" cart, and a "no" older than the cart is no withdrawal of it (the
customer opted back in).

Nor does a cart that cannot be read: the carts pass reports and skips it, and taken as the newest
it cost the customer's older cart, which reads, its reminder too. A source whose first pass reads
no line of a cart (the CSV export) is asked about the newest of each customer with two or more
carts once the pass is done (:meth:`NewestCarts.readable`); the pass counts each customer's
carts and keeps those of the few with two or more, so the customer's next newest is at hand.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cartrescue.contacts import normalize_phone
from cartrescue.scratch import ManyRows, ScratchDb, json_keys, reads_json
from cartrescue.sources.base import Activity

_NEWER = "(excluded.ts > newest.ts OR (excluded.ts = newest.ts AND excluded.cart_key > newest.cart_key))"
#: Each cart that competes: its customer's newest if it is newer; every cart after a customer's
#: first counted (``n``) and kept in ``rivals`` (trigger ``contested``) with the first.
_UPSERT = ManyRows(
    "INSERT INTO newest(email, ts, cart_key) VALUES {values} "
    f"ON CONFLICT(email) DO UPDATE SET n = newest.n + 1, ts = iif({_NEWER}, excluded.ts, newest.ts), "
    f"cart_key = iif({_NEWER}, excluded.cart_key, newest.cart_key), came_ts = excluded.ts, came_key = excluded.cart_key",
    "(?, ?, ?)",
)
#: A customer's carts that compete, once they are two or more (few customers): where their next
#: newest is found when the newest cannot be read (:meth:`NewestCarts.readable`).
_RIVALS = (
    "CREATE TABLE rivals(email TEXT NOT NULL, ts REAL NOT NULL, cart_key TEXT NOT NULL);"  # a cart listed twice: twice
    "CREATE INDEX rivals_email ON rivals(email);"
    "CREATE TABLE unreadable(cart_key TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TRIGGER contested AFTER UPDATE OF n ON newest BEGIN"
    " INSERT INTO rivals SELECT OLD.email, OLD.ts, OLD.cart_key WHERE OLD.n = 1;"
    " INSERT INTO rivals VALUES (NEW.email, NEW.came_ts, NEW.came_key);"
    " END;"
)
_WITHDRAW = (
    "INSERT INTO withdrawn(email, consent, ts, cart_key) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(email, consent) DO UPDATE SET ts = excluded.ts, cart_key = excluded.cart_key "
    "WHERE excluded.ts > withdrawn.ts OR (excluded.ts = withdrawn.ts AND excluded.cart_key > withdrawn.cart_key)"
)
#: The consent a withdrawal is of: e-mail (and other) marketing, and text messages (kept apart,
#: as :class:`~cartrescue.model.Customer` keeps them).
MARKETING, SMS = "marketing", "sms"


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """An address's latest "no" to one consent: its cart's last activity (a POSIX timestamp,
    compared with the carts') and the cart that said it (for the decision's detail)."""

    ts: float
    cart_key: str


#: An address none of whose carts said no (read-only: a shared default).
NO_WITHDRAWAL: Mapping[str, Withdrawal] = MappingProxyType({})


def customer_key(email: str | None, phone: str | None, region: str | None) -> str | None:
    """Whose carts compete for one reminder stream: the normalized ``email``, else (a cart without
    an address) ``phone`` in E.164 (read in ``region``, as every number: ``070-123 45 67`` and
    ``+46701234567`` are one customer), else None (the cart competes with none). Any valid
    number, a landline too: the call list reaches it. A number has no ``@``, so it is never
    taken for an address. The first pass and the planner both key by it."""
    return email or normalize_phone(phone, region)


class NewestCarts:
    """Customer (:func:`customer_key`) -> key of the cart with the latest activity (ties: the
    larger key) among those that can be reminded. ``region``: the shop's, which a number without
    ``+`` is read in (``Config.phone_region``)."""

    def __init__(self, region: str | None = None) -> None:
        self._region = region
        self._scratch = ScratchDb("newest", (
            "CREATE TABLE newest(email TEXT PRIMARY KEY, ts REAL NOT NULL, cart_key TEXT NOT NULL,"
            " n INTEGER NOT NULL DEFAULT 1, came_ts REAL, came_key TEXT) WITHOUT ROWID;"
            "CREATE TABLE messaged(email TEXT PRIMARY KEY) WITHOUT ROWID;"
            "CREATE TABLE seen(cart_key TEXT PRIMARY KEY) WITHOUT ROWID;"
            "CREATE TABLE withdrawn(email TEXT NOT NULL, consent TEXT NOT NULL, ts REAL NOT NULL,"
            " cart_key TEXT NOT NULL, PRIMARY KEY(email, consent)) WITHOUT ROWID;" + _RIVALS
        ))
        self._db = self._scratch.connection
        self._json = reads_json(self._db)  # a chunk's keys as one JSON list (see _found)
        self._withdrawals = False  # any recorded: else a chunk asks for none

    def add(self, activity: Iterable[Activity], batch: int = 5000, *, free_reminded: bool = False) -> int:
        """Feed the first pass; returns how many carts compete for newest. A cart with no line
        item never does; one with nothing to pay does only when ``free_reminded`` (an
        ``eligibility.min_total`` of 0 or less lets such a cart be reminded). Every cart's "no"
        to a consent is kept (:meth:`withdrawn`) when the cart does not compete: a cart that competes
        is its address's newest, and then the older carts are not reminded anyway, or it is not,
        and a newer one said the customer's latest word."""
        count = 0
        rows: list[tuple[str, float, str]] = []
        refusals: list[tuple[str, str, float, str]] = []
        region = self._region
        for item in activity:
            who = item.email or customer_key(None, item.phone, region)  # a number only without an address
            if not who:
                continue
            if item.empty or (item.free and not free_reminded):
                if item.no_marketing or item.no_sms:
                    refusals.extend(_refusals(item, who))
                    if len(refusals) >= batch:  # in batches too: a shop whose customers mostly say no
                        self._withdraw(refusals)
                continue
            rows.append((who, item.updated_at.timestamp(), item.cart_key))
            if len(rows) >= batch:
                count += len(rows)
                _UPSERT.run(self._db, rows)
                rows.clear()
        if rows:
            count += len(rows)
            _UPSERT.run(self._db, rows)
        self._withdraw(refusals)
        self._db.commit()
        return count

    def readable(self, unreadable: Callable[[Sequence[str]], Collection[str]]) -> None:
        """Leave out of the newest the carts that cannot be read, once :meth:`add` is done:
        ``unreadable(keys)`` says which of ``keys`` the carts pass will report and skip
        (:meth:`CartSource.unreadable <cartrescue.sources.base.CartSource.unreadable>`). Only
        the newest of a customer with two or more carts is asked about (few: most have one);
        one that cannot be read gives way to the customer's next newest, itself asked about in
        turn. A newer cart that is skipped must not cost the older one, which reads, its reminder."""
        keys = [key for (key,) in self._db.execute(  # by rivals: a few rows, where newest holds every customer
            "SELECT cart_key FROM newest WHERE email IN (SELECT email FROM rivals)")]
        while keys:
            left_out = unreadable(keys)
            if not left_out:
                break
            keys = self._next_newest(left_out)
        self._db.commit()

    def _next_newest(self, left_out: Iterable[str]) -> list[str]:
        """Put each customer whose newest is one of ``left_out`` on their next newest among their
        other carts that were not left out (none: no newest); the keys of those next newest."""
        db = self._db
        db.executemany("INSERT OR IGNORE INTO unreadable VALUES (?)", ((key,) for key in left_out))
        emails = [email for (email,) in db.execute(
            "SELECT email FROM newest WHERE cart_key IN (SELECT cart_key FROM unreadable)")]
        keys: list[str] = []
        for email in emails:
            row = db.execute("SELECT ts, cart_key FROM rivals WHERE email = ? AND cart_key NOT IN "
                             "(SELECT cart_key FROM unreadable) ORDER BY ts DESC, cart_key DESC LIMIT 1",
                             (email,)).fetchone()
            if row is None:
                db.execute("DELETE FROM newest WHERE email = ?", (email,))
            else:
                db.execute("UPDATE newest SET ts = ?, cart_key = ? WHERE email = ?", (*row, email))
                keys.append(row[1])
        return keys

    def _withdraw(self, refusals: list[tuple[str, str, float, str]]) -> None:
        """Keep a batch of withdrawals (each address's latest per consent), and empty it."""
        if refusals:
            self._withdrawals = True
            self._db.executemany(_WITHDRAW, refusals)
            refusals.clear()

    def lookup(self, emails: Sequence[str]) -> dict[str, str]:
        """The newest cart of each of ``emails`` (customer keys: addresses, and the numbers of
        customers without one) that has one: ``{key: cart key}``."""
        return dict(self._found("email, cart_key", "newest", emails))

    def withdrawn(self, emails: Sequence[str]) -> dict[str, dict[str, Withdrawal]]:
        """The latest "no" of each of ``emails`` (customer keys, as :meth:`lookup`'s) that said
        one: ``{email: {MARKETING | SMS: withdrawal}}`` (a run whose carts said none asks nothing)."""
        found: dict[str, dict[str, Withdrawal]] = {}
        if not self._withdrawals:
            return found
        unique = list(set(emails))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for email, consent, ts, cart_key in self._db.execute(
                    f"SELECT email, consent, ts, cart_key FROM withdrawn WHERE email IN ({marks})", chunk):
                found.setdefault(email, {})[consent] = Withdrawal(ts, cart_key)
        return found

    def messaged(self, emails: Sequence[str]) -> set[str]:
        """Which of ``emails`` this run has marked as messaged."""
        return {row[0] for row in self._found("email", "messaged", emails)}

    def _found(self, columns: str, table: str, emails: Sequence[str]) -> Iterable[tuple[Any, ...]]:
        """``columns`` of the rows of ``table`` whose ``email`` is one of ``emails``: once a
        chunk for the lookups of every chunk, so as one JSON list read by ``json_each`` and a
        probe of the table's key each (:func:`~cartrescue.scratch.json_keys`: one statement,
        prepared once), or, where this SQLite has no ``json_each`` or a key holds a NUL, ``IN``
        lists of 500."""
        unique = list(set(emails))
        if not unique:
            return ()
        wanted = json_keys(unique) if self._json else None
        if wanted is not None:
            return self._db.execute(f"SELECT {columns} FROM json_each(?) AS wanted CROSS JOIN {table}"
                                    f" WHERE {table}.email = wanted.value", (wanted,))
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows += self._db.execute(f"SELECT {columns} FROM {table} WHERE email IN ({','.join('?' * len(chunk))})",
                                     chunk)
        return rows

    def mark_messaged(self, emails: Iterable[str]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO messaged(email) VALUES (?)", ((email,) for email in emails))

    def repeated(self, cart_keys: Sequence[str]) -> dict[str, int]:
        """Keys of this chunk that were seen before in the run, or twice in it: ``{key: times seen
        before this chunk}`` (0 for a key repeated only inside the chunk); then marks them all seen."""
        found: dict[str, int] = {}
        unique = list(dict.fromkeys(cart_keys))
        if len(unique) < len(cart_keys):
            found.update((key, 0) for key in {k for k in cart_keys if cart_keys.count(k) > 1})
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update((row[0], 1) for row in self._db.execute(f"SELECT cart_key FROM seen WHERE cart_key IN ({marks})", chunk))
        self._db.executemany("INSERT OR IGNORE INTO seen(cart_key) VALUES (?)", ((key,) for key in unique))
        return found

    def close(self) -> None:
        self._scratch.close()

    def __enter__(self) -> "NewestCarts":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refusals(item: Activity, who: str) -> list[tuple[str, str, float, str]]:
    """The withdrawals one cart's activity makes: a row of ``withdrawn`` per consent it said no
    to, under its customer's key ``who``."""
    ts = item.updated_at.timestamp()
    rows = []
    if item.no_marketing:
        rows.append((who, MARKETING, ts, item.cart_key))
    if item.no_sms:
        rows.append((who, SMS, ts, item.cart_key))
    return rows
