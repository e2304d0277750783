"""The report's questions to the ledger (docs/reporting.md) and the A/B promotions it records.

Apart because they read a period's rows in bulk (streamed, or straight from the SQLite file)
for ``report``, which also records the promotions a run's planning reads back once; nothing here
claims, records or locks. :class:`ReportQueries` is a part of :class:`cartrescue.ledger.Ledger`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, insert, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cartrescue.ledger.moments import aware, naive
from cartrescue.ledger.statements import chunks
from cartrescue.ledger.tables import CartDecision, Code, Message, Promotion, Run
from cartrescue.ledger.values import REPORTED, Promoted
from cartrescue.sqlite_url import sqlite_file


class ReportQueries:
    """The report's questions (docs/reporting.md): a part of :class:`~cartrescue.ledger.Ledger`, which sets
    ``engine`` and ``url``."""

    engine: Engine
    url: str

    def sqlite_path(self) -> str | None:
        """The file of a SQLite ledger (the report reads it directly), else ``None``."""
        path = sqlite_file(self.url)
        return None if path is None else str(path)

    def report_messages(self, start: datetime, end: datetime, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        """Sent and held-out rows claimed in ``[start, end]``, streamed: (id, cart_key, cart_id,
        email, customer_id, step, channel, variant, tier, sequence, locale, status, claimed_at,
        cart_value, phone)."""
        table = Message.__table__  # type: ignore[attr-defined]
        c = table.c
        query = select(c.id, c.cart_key, c.cart_id, c.email, c.customer_id, c.step, c.channel, c.variant, c.tier,
                       c.sequence, c.locale, c.status, c.claimed_at, c.cart_value, c.phone).where(
            c.status.in_(REPORTED), c.claimed_at >= naive(start), c.claimed_at <= naive(end))
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
            for row in result:
                yield (*row[:12], aware(row[12]), row[13], row[14])

    def report_first_claims(self, cart_keys: Sequence[str], before: datetime, batch: int = 500) -> dict[str, datetime]:
        """The first sent or held-out row of each of ``cart_keys`` claimed before ``before``, where
        it has one: when its stream began, for the report's streams whose first row it read is a
        later step (their customer came back to the cart, which re-timed those steps)."""
        c = Message.__table__.c  # type: ignore[attr-defined]
        found: dict[str, datetime] = {}
        with self.engine.connect() as conn:
            for offset in range(0, len(cart_keys), batch):
                chunk = list(cart_keys[offset:offset + batch])
                for key, first in conn.execute(
                        select(c.cart_key, func.min(c.claimed_at)).where(
                            c.cart_key.in_(chunk), c.status.in_(REPORTED), c.claimed_at < naive(before))
                        .group_by(c.cart_key)):
                    found[key] = aware(first)
        return found

    def report_keys(self, start: datetime, end: datetime, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        """(cart id, email, customer id, phone) of the sent and held-out rows claimed in ``[start, end]``,
        each combination once, streamed: what an order must carry to matter to the report. The
        phone number (E.164) only of a row without an address: an address is the key where there is one."""
        path = self.sqlite_path()
        if path is not None:  # a million rows: the driver's tuples, not SQLAlchemy's rows
            import sqlite3

            def stamp(moment: datetime) -> str:  # as SQLAlchemy stores a DateTime in SQLite
                return naive(moment).strftime("%Y-%m-%d %H:%M:%S.%f")

            db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)  # '#' or '?' quoted
            try:
                yield from db.execute(
                    "SELECT DISTINCT cart_id, email, customer_id, CASE WHEN email IS NULL OR email = '' THEN phone END"
                    " FROM cr_message WHERE status IN "
                    f"{REPORTED!r}"
                    " AND claimed_at >= ? AND claimed_at <= ?", (stamp(start), stamp(end)))
            finally:
                db.close()
            return
        c = Message.__table__.c  # type: ignore[attr-defined]
        no_address = or_(c.email.is_(None), c.email == "")
        query = select(c.cart_id, c.email, c.customer_id, case((no_address, c.phone))).where(
            c.status.in_(REPORTED), c.claimed_at >= naive(start), c.claimed_at <= naive(end)).distinct()
        with self.engine.connect() as conn:
            yield from conn.execution_options(stream_results=True, yield_per=batch).execute(query)

    def report_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Rows per status claimed in ``[start, end]`` (unconfirmed claims, failures)."""
        c = Message.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(
                select(c.status, func.count()).where(c.claimed_at >= naive(start), c.claimed_at <= naive(end))
                .group_by(c.status))}

    def report_decisions(self, start: datetime, end: datetime) -> list[tuple[str, str, int, int]]:
        """(action, reason, carts, carts with a sent or held-out row claimed in the period) of the
        latest decisions made in ``[start, end]`` (cr_decision keeps one row per cart: its latest).
        A row of an earlier period does not count: a cart messaged last month and skipped this
        month (``ordered``, ``too_old``) was this month's skip, not this month's eligible cart."""
        from sqlalchemy import case, exists

        c = CartDecision.__table__.c  # type: ignore[attr-defined]
        m = Message.__table__.c  # type: ignore[attr-defined]
        streamed = exists().where(m.cart_key == c.cart_key, m.status.in_(REPORTED),
                                  m.claimed_at >= naive(start), m.claimed_at <= naive(end))
        with self.engine.connect() as conn:
            return [(a, r, int(n), int(w or 0)) for a, r, n, w in conn.execute(
                select(c.action, c.reason, func.count(), func.sum(case((streamed, 1), else_=0)))
                .where(c.decided_at >= naive(start), c.decided_at <= naive(end)).group_by(c.action, c.reason))]

    def report_redecided(self, start: datetime, end: datetime) -> int:
        """Carts messaged or held out in ``[start, end]`` whose latest decision is not of that
        period: a later run decided them again (cr_decision keeps one row per cart), or retention
        pruned it. The funnel counts them as seen and eligible in the period, which they were."""
        c = CartDecision.__table__.c  # type: ignore[attr-defined]
        m = Message.__table__.c  # type: ignore[attr-defined]
        in_period = select(c.cart_key).where(c.decided_at >= naive(start), c.decided_at <= naive(end))
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count(func.distinct(m.cart_key))).where(
                    m.status.in_(REPORTED), m.claimed_at >= naive(start), m.claimed_at <= naive(end),
                    m.cart_key.not_in(in_period))).scalar() or 0)

    def report_runs(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Delivering runs of ``[start, end]`` (by the run's clock, ``--now`` included): how many,
        how they ended, what they counted."""
        c = Run.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.status, func.count(), func.sum(c.sent), func.sum(c.failed), func.sum(c.problems),
                       func.max(c.now))
                .where(c.now >= naive(start), c.now <= naive(end), c.mode != "dry-run")
                .group_by(c.status)).all()
        by_status = {status: int(n) for status, n, *_rest in rows}
        last_ok = max((aware(r[5]) for r in rows if r[0] == "ok" and r[5] is not None), default=None)
        return {"runs": sum(by_status.values()), "by_status": by_status,
                "sent": sum(int(r[2] or 0) for r in rows), "failed": sum(int(r[3] or 0) for r in rows),
                "problems": sum(int(r[4] or 0) for r in rows), "last_ok": last_ok}

    def report_codes(self, claim_ids: Sequence[int]) -> dict[int, set[str]]:
        """The incentive codes given to each of ``claim_ids`` (cr_code), for redemption: the one
        it holds and any held by no message that it was given with (``replaced_claim_id``: a
        retry replaced it, or ``forget`` kept it spent). The customer may hold the code of an
        earlier attempt that reached them, and an order using it was won by that message as much
        as one using the fresh code; a forgotten person's message keeps its codes, so the report
        says the same of it before and after ``forget``."""
        c = Code.__table__.c  # type: ignore[attr-defined]
        found: dict[int, set[str]] = {}
        wanted = set(claim_ids)
        with self.engine.connect() as conn:
            for chunk in chunks(list(wanted), 500):
                for claim, code in conn.execute(select(c.claim_id, c.code).where(c.claim_id.in_(chunk))):
                    found.setdefault(int(claim), set()).add(code)
            # A replaced code is held by no message (claim_id = -id): the few such rows are read
            # along the claim's unique index, not by scanning every code for replaced_claim_id.
            for claim, code in conn.execute(select(c.replaced_claim_id, c.code).where(
                    c.claim_id < 0, c.replaced_claim_id.is_not(None))):
                if claim in wanted:
                    found.setdefault(int(claim), set()).add(code)
        return found

    def promotions(self) -> dict[tuple[str, int], Promoted]:
        """``{(sequence, step): winner}`` of promoted A/B winners, each with when it was promoted."""
        c = Promotion.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return {(s, int(step)): Promoted(v, aware(at))
                    for s, step, v, at in conn.execute(select(c.sequence, c.step, c.variant, c.promoted_at))}

    def promote(self, sequence: str, step: int, variant: str, probability: float, recipients: int,
                now: datetime) -> bool:
        """Record a promotion; ``False`` when that step already has one (it stays)."""
        table = Promotion.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(sequence=sequence, step=step, variant=variant,
                                                  probability=probability, recipients=recipients,
                                                  promoted_at=naive(now)))
            return True
        except IntegrityError:
            return False

    def promotion_rows(self) -> list[dict[str, Any]]:
        c = Promotion.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [dict(row, promoted_at=aware(row["promoted_at"]))
                    for row in conn.execute(select(Promotion.__table__).order_by(c.id)).mappings()]  # type: ignore[attr-defined]
