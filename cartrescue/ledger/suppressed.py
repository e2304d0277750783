"""The suppression list and inbound messages (SMS replies, unsubscribe mails) in the ledger.

Apart because they concern contacts, not carts: nothing of a run's claims or locks is read or
written here. :class:`SuppressionRows` is a part of :class:`cartrescue.ledger.Ledger`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cartrescue.ledger.moments import aware, naive
from cartrescue.ledger.statements import chunks
from cartrescue.ledger.tables import Inbound, Suppression


class SuppressionRows:
    """Suppressions and inbound messages: a part of :class:`~cartrescue.ledger.Ledger`, which sets ``engine``."""

    engine: Engine

    def suppress(self, email_hash: str, reason: str, source: str, now: datetime | None = None) -> bool:
        """Add a suppression; return False when the address was already suppressed."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(
                    email_hash=email_hash, reason=reason, source=source[:191],
                    created_at=naive(now or datetime.now(timezone.utc))))
            return True
        except IntegrityError:
            return False

    def suppress_many(self, rows: Sequence[tuple[str, str, str]], now: datetime | None = None) -> int:
        """Add ``(email hash, reason, source)`` suppressions in bulk; return how many were new."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        at = naive(now or datetime.now(timezone.utc))
        unique = list({h: (h, reason, source) for h, reason, source in rows}.values())
        added = 0
        with self.engine.begin() as conn:
            for chunk in chunks(unique, 500):
                known = set(conn.execute(select(table.c.email_hash).where(
                    table.c.email_hash.in_([h for h, _r, _s in chunk]))).scalars())
                fresh = [dict(email_hash=h, reason=reason[:64], source=source[:191], created_at=at)
                         for h, reason, source in chunk if h not in known]
                if fresh:
                    conn.execute(insert(table), fresh)
                    added += len(fresh)
        return added

    def inbound(self, provider_id: str, phone_hash: str, action: str, suppress: str | None, source: str,
                now: datetime | None = None) -> bool:
        """Record an inbound message by its provider id and, with ``suppress`` (a reason), suppress
        ``phone_hash`` in the same transaction. ``False`` (and nothing changed) when the id was
        seen before: a replayed request, which the caller refuses."""
        inbound, suppression = Inbound.__table__, Suppression.__table__  # type: ignore[attr-defined]
        at = naive(now or datetime.now(timezone.utc))
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(inbound).values(provider_id=provider_id[:191], phone_hash=phone_hash, action=action,
                                                    received_at=at))
                if suppress and phone_hash and conn.execute(
                        select(suppression.c.id).where(suppression.c.email_hash == phone_hash)).first() is None:
                    conn.execute(insert(suppression).values(email_hash=phone_hash, reason=suppress[:64],
                                                            source=source[:191], created_at=at))
            return True
        except IntegrityError:
            return False

    def inbound_action(self, *provider_ids: str) -> str | None:
        """What was done with the inbound message kept under one of ``provider_ids`` (``None``:
        never received): a mail is kept under another key once its sender is forgotten."""
        table = Inbound.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return conn.execute(select(table.c.action).where(
                table.c.provider_id.in_([key[:191] for key in provider_ids])).limit(1)).scalar()

    def retake_inbound(self, provider_ids: Sequence[str], contact_hash: str, suppress: str, source: str,
                       now: datetime | None = None) -> bool:
        """An inbound message refused before, kept under one of ``provider_ids`` (a mail's
        Message-ID or its hash), that now names ``contact_hash`` (its check could not be made
        then: no secret, another secret): mark it ``suppressed`` and suppress the hash, in one
        transaction. ``False`` when another process took it meanwhile."""
        inbound, suppression = Inbound.__table__, Suppression.__table__  # type: ignore[attr-defined]
        at = naive(now or datetime.now(timezone.utc))
        with self.engine.begin() as conn:
            taken = conn.execute(update(inbound).where(inbound.c.provider_id.in_([key[:191] for key in provider_ids]),
                                                       inbound.c.action == "refused")
                                 .values(phone_hash=contact_hash, action="suppressed")).rowcount
            if taken and conn.execute(select(suppression.c.id).where(
                    suppression.c.email_hash == contact_hash)).first() is None:
                conn.execute(insert(suppression).values(email_hash=contact_hash, reason=suppress[:64],
                                                        source=source[:191], created_at=at))
        return bool(taken)

    def suppression_mark(self) -> int:
        """The id of the newest suppression (0: none yet): what a run has seen when it begins,
        so that its later looks (:meth:`suppressed_after`) ask for the new ones only."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(table.c.id))).scalar() or 0)

    def suppressed_after(self, mark: int) -> list[tuple[int, str]]:
        """``(id, hash)`` of the suppressions whose id is above ``mark``: those recorded since a
        run's look that saw ``mark``. A range of the primary key: its cost grows with the
        suppressions added since, never with the list's size or a run's carts."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [(int(row[0]), str(row[1])) for row in conn.execute(
                select(table.c.id, table.c.email_hash).where(table.c.id > mark))]

    def suppression(self, email_hash: str) -> dict[str, Any] | None:
        """The suppression of one address hash, or ``None``."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.email_hash == email_hash)).mappings().first()
        return None if row is None else dict(row, created_at=aware(row["created_at"]))

    def suppressions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Suppressions, newest first (hashes only: the ledger keeps no suppressed address)."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        query = select(table).order_by(table.c.created_at.desc(), table.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(row, created_at=aware(row["created_at"])) for row in conn.execute(query).mappings()]

    def unsuppress(self, email_hash: str) -> bool:
        """Remove a suppression; ``False`` when there was none."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(table).where(table.c.email_hash == email_hash)).rowcount)
