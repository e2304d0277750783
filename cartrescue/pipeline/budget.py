"""A budgeted tier's top-k: the ``limit`` best sends of a tier, and a reserve of those it deferred.

Separate from the planner that fills it: it owns which send displaces which and keeps memory
bounded by the budget (heaps no larger than ``limit``, however many carts the tier has); it
knows nothing of eligibility, the calendar or the ledger.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime

from cartrescue.model import ACTION_DEFER, REASON_BUDGET, Decision


class Budget:
    """Keeps the ``limit`` best-scoring send decisions of a tier; displaces the rest.

    Of the sends it defers, the ``limit`` best wait in a reserve until the run's end: a kept
    send this run does not claim (deferred at its claim, failed to render) gives its slot to
    the best of them (:meth:`Executor._give_back`). More than ``limit`` are never needed, and
    memory stays bounded by the budget, not by the tier's carts."""

    def __init__(self, limit: int, per: str = "per run",
                 not_before: Callable[[Decision], datetime] | None = None) -> None:
        self.limit = limit
        self.per = per  # what the limit is of, for the deferred: "per run", "today (…)", "… in shard 1/2 (…)"
        # When a deferred one may go: a day's budget is the shop's again at its next midnight,
        # after its channel's quiet hours on the recipient's clock (None: a run's budget, which
        # the next run has whole).
        self.not_before = not_before
        self.heap: list[tuple[float, int, Decision]] = []
        self.reserve: list[tuple[float, int, Decision]] = []  # the best deferred ones, as tier_budget
        self.counter = itertools.count()
        # The addresses and numbers of the kept sends: one of them is not mailed instead (it is
        # the customer's message of the day, decided at the end of the run).
        self.held: Counter[str] = Counter()

    def offer(self, decision: Decision) -> Decision | None:
        """Keep ``decision`` if it is among the best so far; return the one that lost, if any:
        deferred, or sent by its ``instead`` channel now (``over_budget: email``). A deferred one
        that is among the reserve's best is held back too (returned at the end: :meth:`spares`)."""
        entry = (decision.score or 0.0, -next(self.counter), decision)
        out = _keep_best(self.heap, self.limit, entry)
        if out is not entry:
            self.held.update(counted_contacts(decision))
        if out is None:
            return None
        lost = out[2]
        if out is not entry:
            self.held.subtract(counted_contacts(lost))
        detail = f"tier {lost.tier} takes {self.limit} {self.per}"
        if lost.instead is not None and not any(self.held[contact] > 0 for contact in counted_contacts(lost)):
            return replace(lost, channel=lost.instead, instead=None,
                           detail=f"by {lost.instead}, not {lost.channel}: {detail}")
        deferred = replace(lost, action=ACTION_DEFER, reason=REASON_BUDGET, detail=detail, instead=None,
                           not_before=None if self.not_before is None else self.not_before(lost))
        spare = _keep_best(self.reserve, self.limit, (out[0], out[1], deferred))
        return None if spare is None else spare[2]

    def drain(self) -> Iterator[Decision]:
        """The kept sends, best first, each marked as taking a slot of the budget."""
        for _score, _order, decision in _best_first(self.heap):
            yield replace(decision, budgeted=True)
        self.held.clear()

    def spares(self) -> Iterator[Decision]:
        """The reserve's deferred sends, best first (unmarked: :meth:`Planner._reserve` marks them)."""
        for _score, _order, decision in _best_first(self.reserve):
            yield decision


def _keep_best(heap: list[tuple[float, int, Decision]], limit: int,
               entry: tuple[float, int, Decision]) -> tuple[float, int, Decision] | None:
    """Keep ``entry`` in ``heap`` if it is among the ``limit`` best; return the entry that lost
    (``entry`` itself, or the one it displaced), or None when there was room."""
    if len(heap) < limit:
        heapq.heappush(heap, entry)
        return None
    if limit and entry[:2] > heap[0][:2]:
        return heapq.heapreplace(heap, entry)
    return entry


def _best_first(heap: list[tuple[float, int, Decision]]) -> list[tuple[float, int, Decision]]:
    """``heap``'s entries, best first; the heap is emptied."""
    entries = sorted(heap, key=lambda e: e[:2], reverse=True)
    heap.clear()
    return entries


def counted_contacts(decision: Decision) -> list[str]:
    """The customer's address and number: what one message a day counts."""
    return [c for c in (decision.cart.customer.email, decision.phone) if c]
