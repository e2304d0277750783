"""What the ledger forgets: one person on request (``forget``), old records by age (retention).

Owns the two ways rows leave the ledger:

- :func:`forget` erases everything the ledger holds about one address -- every row of every
  ledger table with an ``email`` column (decisions, test messages, and tables added later, such
  as survey answers; messages keep their rows, anonymous: :data:`ANONYMOUS_MESSAGE`), the test
  messages ``send-test`` rendered from its carts, the
  address on incentive codes, its hash on the inbound mails and texts it sent (which stay
  received: a replay or the next read of the mailbox must not act on them again) -- and keeps
  only a suppression under the address's hash, so the person is never mailed again and the
  ledger never learns the address back (a suppressed cart's decision is stored without it).
- :func:`prune` deletes decisions and run records older than ``ledger.retention``, with one
  ``DELETE`` per table, in the delivering run that follows.

Files outside the ledger (the call-list CSV, the files of ``--outbox``) are the shop's:
:func:`forget` names the outbox files the ledger recorded (a run's and ``send-test``'s; for a number, the texts sent to it), and the caller may rewrite the call
list (:func:`cartrescue.channels.call_list.remove_address`). It must not plan or deliver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from cartrescue.channels.outbox import SUFFIXES as OUTBOX_SUFFIXES
from cartrescue.contacts import (
    email_forms,
    email_hash,
    email_hashes,
    is_valid_email,
    normalize_email,
    normalize_phone,
    phone_hash,
    without_address,
)
from cartrescue.ledger import NUMBER_CHANNELS, TABLES, UNCONFIRMED, Code, Inbound, Message, Run, RunLock, SendTest, Suppression, may_have_reached
from cartrescue.suppressions import FORGOTTEN  # the suppression reason of a forgotten address
from cartrescue.unsubscribe_mail import forgotten_key


#: What a forgotten address's ``cr_message`` rows are left with: each column that ties the row to
#: the person is emptied -- the address, the number texted with it (the person's too), and the
#: shop's customer id (it leads back to the shop's customer record). The cart's key and id (the
#: record of its steps, which must never go out twice), its value and locale (the report's totals
#: and breakdowns, shared by many customers) stay.
ANONYMOUS_MESSAGE: dict[str, None] = {"email": None, "phone": None, "customer_id": None}


@dataclass(slots=True)
class Forgotten:
    """What :func:`forget` erased."""

    email: str | None  # the address forgotten (None: a phone number was)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted (a number: rows it was removed from)
    codes_kept: int = 0  # codes the person may have received: kept spent, without the address
    codes_freed: int = 0  # codes of messages that never went out: back in their pool
    files: list[str] = field(default_factory=list)  # outbox files the ledger recorded for the address or its carts (a number: its texts)
    suppressed: bool = False  # a new suppression was added (False: the hash was suppressed already)
    phone: str | None = None  # the number forgotten (E.164), when it was one

    @property
    def contact(self) -> str:
        """What was forgotten: the address, or the number."""
        return self.email or self.phone or ""

    @property
    def erased(self) -> int:
        return sum(self.rows.values()) + self.codes_kept + self.codes_freed


def forgettable(address: str, region: str | None = None) -> tuple[str | None, str | None]:
    """``(email, phone)``, one of them ``None``: what :func:`forget` would erase for ``address``;
    raise ValueError for neither. Checked before the ledger is opened, so that a refused request
    (exit 2, "nothing was changed") makes no ledger file either."""
    if "@" not in address:
        phone = normalize_phone(address, region)
        if phone is None:
            raise ValueError(f"not an e-mail address nor a phone number (E.164, or of region {region or 'unknown'}): "
                             f"{address!r}")
        return None, phone
    email = normalize_email(address)
    if not email or not is_valid_email(email):
        raise ValueError(f"not an e-mail address: {address!r}")
    return email, None


def forget(ledger: Any, address: str, now: datetime | None = None, *, region: str | None = None,
           before: Callable[[list[str]], None] | None = None) -> Forgotten:
    """Erase ``address`` from the ledger (idempotent); raise ValueError for a non-address.

    A phone number (anything without ``@``, read in ``region`` unless it is in E.164) goes to
    :func:`forget_phone` instead.

    ``before`` is called with the outbox files the ledger records for the person, in the
    transaction and before anything is changed: it may raise to leave the ledger as it was
    (``forget`` without ``--files``: erased, those rows were the only link to the files).

    One transaction: a crash leaves the address either wholly there or wholly gone. Matching is
    on the normalized address (case and surrounding blanks do not matter) in either form of an
    international domain (:func:`~cartrescue.contacts.email_forms`: the request may name the
    form the shop's export did not), with a full scan of each table: a request that comes
    rarely, never per cart.
    """
    email, _phone = forgettable(address, region)
    if email is None:
        return forget_phone(ledger, address, now, region=region, before=before)
    at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    found = Forgotten(email)
    message, code, suppression, tests = (model.__table__ for model in (Message, Code, Suppression, SendTest))  # type: ignore[attr-defined,union-attr]
    digest, forms, hashes = email_hash(email), email_forms(email), email_hashes(email)
    with _erasing(ledger) as conn:
        messages = conn.execute(select(message.c.id, message.c.status, message.c.transport, message.c.reply)
                                .where(_is(message.c.email, forms))).all()
        # A test sent to the address names it; one rendered from its cart (to the owner) holds its
        # name and cart: both are the person's, and so are their --outbox files. Such a test
        # records the customer's hash: its cart may have no other row yet (never messaged).
        carts = _carts_of(conn, forms)
        its_tests = _is(tests.c.email, forms) | tests.c.customer_email_hash.in_(hashes) | (
            tests.c.cart_key.in_(carts) if carts else False)
        found.files = _outbox_files([*messages, *conn.execute(select(tests.c.transport, tests.c.reply).where(its_tests))])
        if before is not None:
            before(found.files)
        spent = {row.id for row in messages if may_have_reached(row.status, row.transport)}
        ids = [row.id for row in messages]
        held = (code.c.claim_id.in_(ids) | code.c.replaced_claim_id.in_(ids)) if ids else False
        codes = conn.execute(select(code.c.id, code.c.claim_id, code.c.replaced_claim_id).where(
            _is(code.c.email, forms) | held)).all()
        for row in codes:
            anonymous = dict(email=None, cart_key=None, step=None)
            # It may be in the customer's mailbox: spent for good, whose unknown. So may a code a
            # retry after its expiry replaced (an earlier attempt may have delivered it).
            if row.claim_id in spent or row.replaced_claim_id is not None:
                conn.execute(update(code).where(code.c.id == row.id).values(
                    claim_id=-row.id, replaced_claim_id=_given_with(row.claim_id, row.replaced_claim_id),
                    **anonymous))
                found.codes_kept += 1
            else:
                conn.execute(update(code).where(code.c.id == row.id).values(
                    claim_id=None, allocated_at=None, expires_at=None, replaced_claim_id=None, **anonymous))
                found.codes_freed += 1
        # The address leaves every message that recorded it, but the rows stay: they are the
        # record of the cart's steps, which must never go out twice (deleted, a cart whose
        # address the shop had since corrected got its step 1 again), and their ids must not be
        # handed out again (a webhook document's ``id`` is the row's id).
        if ids:
            conn.execute(update(message).where(message.c.id.in_(ids)).values(**ANONYMOUS_MESSAGE))
        for row in messages:
            scrubbed = without_address(row.reply or "", email)
            if scrubbed != (row.reply or ""):  # a relay's reply that quoted the address
                conn.execute(update(message).where(message.c.id == row.id).values(reply=scrubbed))
        found.rows[message.name] = len(messages)
        for model in TABLES:
            table = model.__table__  # type: ignore[attr-defined]
            if table is code or table is message or "email" not in table.c:
                continue
            its = its_tests if table is tests else _is(table.c.email, forms)
            found.rows[table.name] = int(conn.execute(delete(table).where(its)).rowcount or 0)
        found.rows[Inbound.__tablename__] = _unlink_inbound(conn, hashes)
        _hash_refused_mails(conn)
        # A suppression under either form covers the address (an unsubscribe keeps its reason).
        existing = conn.execute(select(suppression.c.id, suppression.c.source)
                                .where(suppression.c.email_hash.in_(hashes))).first()
        if existing is None:
            conn.execute(insert(suppression).values(email_hash=digest, reason=FORGOTTEN, source="forget",
                                                    created_at=at))
            found.suppressed = True
        elif without_address(existing.source or "", email) != (existing.source or ""):  # kept by older versions
            conn.execute(update(suppression).where(suppression.c.id == existing.id).values(source="forget"))
    return found


def _given_with(claim_id: int | None, replaced_claim_id: int | None) -> int | None:
    """The message a code ``forget`` keeps spent was given with: the one a retry took it off
    (``replaced_claim_id``), else the one holding it. It stays the code's (``replaced_claim_id``,
    as for a replaced code) because the message row stays too, anonymous: the report counts an
    order that used the code as that message's redemption before and after ``forget``
    (:meth:`cartrescue.ledger.Ledger.report_codes`); without it, the message's codes were
    unknown and any code counted, or an earlier step's code none."""
    return replaced_claim_id if replaced_claim_id is not None else claim_id


def forget_phone(ledger: Any, number: str, now: datetime | None = None, *, region: str | None = None,
                 before: Callable[[list[str]], None] | None = None) -> Forgotten:
    """Erase a phone number from the ledger (idempotent); raise ValueError for a non-number.

    The number leaves every message that recorded it (the ``phone`` column is emptied: the rows
    stay, because they are also the record of the carts' e-mail steps, which must never be sent
    twice) and is kept only as a suppression under its hash, so it never gets a text again. Its
    replies stay received (a replay is refused) without the hash. The person's e-mail address,
    if the shop has one, is a separate request (``forget ADDRESS``).

    ``files`` are the outbox files of the messages sent to the number (the channels of
    :data:`~cartrescue.ledger.values.NUMBER_CHANNELS`: an e-mail's file is the address's) and
    of the tests rendered from its carts (whose rows are deleted), found and given to ``before``
    in the transaction, before the rows lose the number that finds them.
    """
    phone = normalize_phone(number, region)
    if phone is None:
        raise ValueError(f"not an e-mail address nor a phone number (E.164, or of region {region or 'unknown'}): "
                         f"{number!r}")
    at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    found = Forgotten(None, phone=phone)
    message, suppression, tests = (model.__table__ for model in (Message, Suppression, SendTest))  # type: ignore[attr-defined,union-attr]
    digest = phone_hash(phone)
    with _erasing(ledger) as conn:
        # A test rendered from a cart with the number (to the owner) holds the person's name and
        # cart, as for an address: its row and its --outbox file are theirs.
        carts = sorted(key for key in conn.execute(select(message.c.cart_key).where(message.c.phone == phone))
                       .scalars() if key)
        its_tests = (tests.c.customer_phone_hash == digest) | (tests.c.cart_key.in_(carts) if carts else False)
        found.files = _outbox_files([*conn.execute(select(message.c.transport, message.c.reply).where(
            message.c.phone == phone, message.c.channel.in_(sorted(NUMBER_CHANNELS)))),
            *conn.execute(select(tests.c.transport, tests.c.reply).where(its_tests))])
        if before is not None:
            before(found.files)
        found.rows[tests.name] = int(conn.execute(delete(tests).where(its_tests)).rowcount or 0)
        found.rows[message.name] = int(conn.execute(
            update(message).where(message.c.phone == phone).values(phone=None)).rowcount or 0)
        found.rows[Inbound.__tablename__] = _unlink_inbound(conn, (digest,))
        if conn.execute(select(suppression.c.id).where(suppression.c.email_hash == digest)).first() is None:
            conn.execute(insert(suppression).values(email_hash=digest, reason=FORGOTTEN, source="forget",
                                                    created_at=at))
            found.suppressed = True
    return found


#: A message's ``reply`` once ``forget --files`` deleted the outbox file it named.
FILE_DELETED = "outbox file deleted by forget --files"


def files_deleted(ledger: Any, recorded: Sequence[str]) -> None:
    """The messages whose outbox files ``forget --files`` deleted (``recorded``: as their rows name
    them) no longer name them: a text's row keeps its cart's address after ``forget PHONE``, and
    a ``forget ADDRESS`` after it looked for the text again and, not finding it, called the
    erasure incomplete (exit 1)."""
    if not recorded:
        return
    message = Message.__table__  # type: ignore[attr-defined]
    with ledger.engine.begin() as conn:
        conn.execute(update(message).where(message.c.transport == "outbox", message.c.reply.in_(sorted(set(recorded))))
                     .values(reply=FILE_DELETED))


def _outbox_files(rows: Iterable[Any]) -> list[str]:
    """The files ``--outbox`` wrote for ``rows`` (messages or tests: ``transport`` and ``reply``,
    where the outbox records the file's path), sorted, each once."""
    return sorted({row.reply for row in rows if row.transport == "outbox" and row.reply.endswith(OUTBOX_SUFFIXES)})


@contextmanager
def _erasing(ledger: Any) -> Iterator[Any]:
    """One transaction whose deletes and updates leave no copy of the old values in the files.

    On SQLite the changed rows are overwritten (``secure_delete``: the values must not linger in
    free pages of the file) and, after the commit, the write-ahead log is checkpointed and
    truncated (it would hold older copies of those pages). Server ledgers purge on their own.
    """
    sqlite = ledger.engine.dialect.name == "sqlite"
    with ledger.engine.begin() as conn:
        if sqlite:
            conn.exec_driver_sql("PRAGMA secure_delete = ON")
        yield conn
        if sqlite:
            conn.exec_driver_sql("PRAGMA secure_delete = OFF")
    if sqlite:
        with ledger.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _unlink_inbound(conn: Any, hashes: Sequence[str]) -> int:
    """The inbound messages kept under one of ``hashes`` lose it, and a mail its Message-ID (see
    :func:`~cartrescue.unsubscribe_mail.forgotten_key`); their rows stay, so that a replayed text
    is refused and the next read of the mailbox skips the mail (acting on it again would record
    the hash again). How many there were."""
    inbound = Inbound.__table__  # type: ignore[attr-defined]
    rows = conn.execute(select(inbound.c.id, inbound.c.provider_id).where(inbound.c.phone_hash.in_(hashes))).all()
    for row in rows:
        conn.execute(update(inbound).where(inbound.c.id == row.id).values(
            phone_hash="", provider_id=forgotten_key(row.provider_id)))
    return len(rows)


def _hash_refused_mails(conn: Any) -> None:
    """Refused unsubscribe mails an older version kept under their raw Message-ID lose it for its
    hash (:func:`~cartrescue.unsubscribe_mail.forgotten_key`): a refused mail names no address the
    ledger knows, so whose it is cannot be told, and its Message-ID may name the sender's domain,
    even address. The mailbox's next read finds them under either key."""
    inbound = Inbound.__table__  # type: ignore[attr-defined]
    rows = conn.execute(select(inbound.c.id, inbound.c.provider_id).where(inbound.c.action == "refused")).all()
    for row in rows:
        hashed = forgotten_key(row.provider_id)
        if hashed != row.provider_id:
            conn.execute(update(inbound).where(inbound.c.id == row.id).values(provider_id=hashed))


def _carts_of(conn: Any, forms: Sequence[str]) -> list[str]:
    """The keys of the carts the ledger's rows give the address (``forms``: messages, decisions,
    codes, survey answers). A test's own ``email`` is its recipient's, not its cart's customer's."""
    keys: set[str] = set()
    for model in TABLES:
        table = model.__table__  # type: ignore[attr-defined]
        if model is not SendTest and "email" in table.c and "cart_key" in table.c:
            keys.update(conn.execute(select(table.c.cart_key).where(_is(table.c.email, forms))).scalars())
    return sorted(key for key in keys if key)


def _is(column: Any, forms: Sequence[str]) -> Any:
    """``column`` holds one of the address's ``forms`` (normalized), whatever case and blanks it
    was stored with."""
    return func.lower(func.trim(column)).in_(forms)


@dataclass(frozen=True, slots=True)
class Pruned:
    decisions: int = 0
    runs: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"decisions": self.decisions, "runs": self.runs}


def prune(ledger: Any, now: datetime, *, decisions: timedelta | None, runs: timedelta | None,
          current_run: int | None = None) -> Pruned:
    """Delete decisions decided, and runs run, more than ``decisions`` / ``runs`` before ``now``.

    One ``DELETE`` per table, not per cart. Kept whatever their age: the run holding the lock
    (``current_run``), and runs whose claims have no outcome yet (``--resend-unconfirmed`` needs
    them to tell a dead run from a live one). ``cr_message`` is never pruned here: the sequence
    (which steps a cart had), one message a day, the hourly quota and the report read it.
    """
    from cartrescue.ledger import CartDecision

    decision, run, message, lock = (model.__table__ for model in (CartDecision, Run, Message, RunLock))  # type: ignore[attr-defined,union-attr]
    deleted_decisions = deleted_runs = 0
    with ledger.engine.begin() as conn:
        if decisions is not None:
            deleted_decisions = int(conn.execute(
                delete(decision).where(decision.c.decided_at < now - decisions)).rowcount or 0)
        if runs is not None:
            waiting = select(message.c.run_id).where(message.c.status.in_(UNCONFIRMED), message.c.run_id.is_not(None))
            holder = select(lock.c.run_id)
            statement = delete(run).where(run.c.now < now - runs, run.c.id.not_in(waiting), run.c.id.not_in(holder))
            if current_run is not None:
                statement = statement.where(run.c.id != current_run)
            deleted_runs = int(conn.execute(statement).rowcount or 0)
    return Pruned(deleted_decisions, deleted_runs)
