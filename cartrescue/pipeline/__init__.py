"""The pipeline core: carts -> decisions -> claims -> messages -> deliveries -> ledger.

Owns the order of operations of one run and nothing about where carts come from (a
:class:`~cartrescue.sources.base.CartSource`) or how messages leave (a
:class:`~cartrescue.channels.base.Channel`). It knows no CLI: it returns results and counts.

Planning streams in chunks: per chunk of carts it asks the source for the matching orders and
the ledger for the history, so memory stays flat however large the shop is. The only state kept
across chunks is the newest-cart index (on disk) and the top-k heaps of budgeted tiers.

One module a job: :mod:`.planner` decides (with :mod:`.budget`, a budgeted tier's top-k),
:mod:`.composer` renders, :mod:`.executor` claims, delivers and records, :mod:`.results` holds
what became of each decision and the run's counts, :mod:`.common` what several of them use. This
module only names what the rest of cartrescue imports; a test that patches a module's global
patches the module that owns it (``cartrescue.pipeline.executor.FLUSH_EVERY``), not this one.
"""

from __future__ import annotations

from cartrescue.pipeline.common import chunked
from cartrescue.pipeline.composer import DRY_RUN_SECRET, Composer, SmsText
from cartrescue.pipeline.executor import Executor
from cartrescue.pipeline.planner import PLAN_CHUNK, Planner
from cartrescue.pipeline.results import Counts, Result

__all__ = ["DRY_RUN_SECRET", "PLAN_CHUNK", "Composer", "Counts", "Executor", "Planner", "Result", "SmsText", "chunked"]
