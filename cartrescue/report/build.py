"""One report, wired: config -> ledger and source -> attribution -> the document.

Owns the order of work of ``cartrescue report`` (load the ledger's rows of the period, the
orders that can matter, attribute, analyse) and the one thing a report may write: promoting an
A/B winner when ``report.auto_promote`` is on. It prints nothing and formats nothing.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError

from cartrescue.config import Config
from cartrescue.currency import Basis
from cartrescue.decide.experiments import offered
from cartrescue.errors import SourceError
from cartrescue.ledger import Ledger, busy, one_line
from cartrescue.model import RowProblem
from cartrescue.report.analysis import Period, build
from cartrescue.report.attribution import UNITS, Attribution, OrderLoad
from cartrescue.sources import open_source
from cartrescue.sources.base import ProblemSink, ignore_problem
from cartrescue.sources.freshness import stale_orders_note
from cartrescue.survey import period_counts


def code_steps(config: Config) -> set[tuple[str, int]]:
    """(sequence, step) whose incentive hands out per-recipient codes (cr_code)."""
    found = set()
    for name, sequence in config.sequences.items():
        for number, step in enumerate(sequence.steps, 1):
            if any(i is not None and i.codes is not None for i in (step.incentive, *step.tier_incentives.values())):
                found.add((name, number))
    return found


def unread_orders_note(count: int) -> str:
    """The note of a report whose source had rows it could not read (a quote left open, a date
    in another format): the orders in them are not counted, which the problems alone (stderr,
    ``problems``) did not say to the owner reading the revenue, or the mailed digest."""
    return (f"{count} problem(s) reading the shop's orders (see the problems, with file and line): the orders in "
            "those rows are not counted, so the revenue won back may be more than shown")


def make_report(config: Config, period: Period, on_problem: ProblemSink = ignore_problem) -> dict[str, Any]:
    """The report document of ``period`` (see :mod:`cartrescue.report.analysis`); its
    ``warnings``: the source's (:meth:`~cartrescue.sources.base.CartSource.report_warnings`).

    The orders load in a second thread while this one works through the ledger's rows (see
    :class:`~cartrescue.report.attribution.OrderLoad`); both then meet in one scratch file.
    """
    from concurrent.futures import ThreadPoolExecutor

    window = config.report.attribution_window
    unread = 0  # the source's problems: order rows it could not read, left out

    def report_problem(problem: RowProblem) -> None:
        nonlocal unread
        unread += 1
        on_problem(problem)

    # Never made, given tables, nor upgraded: the report only reads. Where there is no ledger it
    # reads an empty one and says why in its notes (a weekly digest set up before the first run).
    ledger = config.open_ledger(create=False, reads_a_period=True)
    try:
        with Attribution(period.since, period.until, window, config.eligibility.max_age + window, period.now,
                         follow=config.eligibility.max_age) as att:
            basis = Basis(config.shop.currency, config.shop.exchange_rates)
            orders = OrderLoad()
            try:
                with open_source(config, report_problem) as source, ThreadPoolExecutor(1) as pool:
                    loading = pool.submit(orders.run, source, att.order_window(period.now),
                                          ledger.report_keys(att.start, period.until), basis)
                    try:
                        att.load_ledger(ledger)
                        att.prepare(ledger)
                    finally:
                        loading.result()  # waits; and raises what the loader raised (SourceError ...)
                    source_notes = source.report_notes()  # what its orders could not tell (no refunds table)
                    source_warnings = source.report_warnings()  # ... of which the shop is to mend (a GRANT)
                att.attach_orders(orders)
            finally:
                orders.close()
            att.attribute()
            codes = ledger.report_codes(att.attributed_messages(code_steps(config)))
            ledger_counts = ledger.report_counts(period.since, period.until)
            document = build(
                config, att, period, runs=ledger.report_runs(period.since, period.until),
                decisions=ledger.report_decisions(period.since, period.until), codes=codes,
                redecided=ledger.report_redecided(period.since, period.until),
                ledger_counts=ledger_counts, promotions=ledger.promotion_rows(),
                reply_lost_channels=ledger.unconfirmed_channels(("unconfirmed",), (period.since, period.until))
                if ledger_counts.get("unconfirmed") else set())
            document["survey"] = period_counts(ledger, period.since, period.until)
        document["notes"].extend(source_notes)
        document["warnings"] = source_warnings
        if config.source.type in ("csv", "shopify_csv") and config.source.orders is None:
            document["notes"].append(
                f"{config.where('source.orders')} is not set: no order is read, so nothing is attributed and no cart "
                "counts as converted (revenue 0.00 and the lift say nothing); point it at the shop's orders export")
        if unread:
            document["notes"].append(unread_orders_note(unread))
        stale = stale_orders_note(config, period.now)
        if stale is not None:
            document["notes"].append(stale)
        if ledger.absent is not None:
            document["notes"].insert(0, f"{config.where('ledger.url')}: {ledger.absent}: no run has recorded "
                                     "anything there yet (a typo in the path?): read as an empty ledger, left unchanged")
            return document  # nothing to promote, and nothing written
        if config.report.auto_promote:
            _promote(config, ledger, document, period.now)
        return document
    except sqlite3.OperationalError as exc:
        if "integer overflow" not in str(exc):
            raise
        # Sums are exact integers of 1/10,000 (attribution.UNITS): past 2**63 of them no shop's
        # period adds up; amounts written in cents, or a test order of a trillion, do.
        raise SourceError(f"the period's amounts add up past {2**63 // UNITS:,} in the shop's currency: an export "
                          "with amounts in cents, or a test order? (see the orders' totals)") from None
    finally:
        ledger.close()


def _promote(config: Config, ledger: Ledger, document: dict[str, Any], now: datetime) -> None:
    """Record each new winner, so that later runs give it at that step to every stream that starts
    after the promotion (one already in another arm finishes in it: see ``experiments``). A
    winner the config's step no longer offers (the arm, the test or the sequence taken out since)
    is not recorded: no run would give it, and the note would promise what none does."""
    for experiment in document["experiments"]:
        winner = experiment.get("winner")
        if winner is None or experiment.get("promoted") is not None or experiment.get("sequence") is None:
            continue
        sequence, step = experiment["sequence"], experiment["step"]
        if not offered(config, sequence, step, winner):
            key = f"sequences.{sequence}.steps[{step - 1}].variants"
            document["notes"].append(
                f"not promoted: variant {winner} of {sequence} step {step} (report.auto_promote): "
                f"{config.where(key)} no longer has it, so no run would give it{config.line(key)}")
            continue
        arm = next(v for v in experiment["variants"] if v["variant"] == winner)
        try:
            promoted = ledger.promote(experiment["sequence"], experiment["step"], winner, arm["p_best"] or 0.0,
                                      arm["recipients"], now)
        except DBAPIError as exc:  # a role that may only read (README): the report stands, the promotion waits
            if busy(exc):
                raise
            document["notes"].append(
                f"not promoted: variant {winner} of {experiment['sequence']} step {experiment['step']} "
                f"(report.auto_promote): the ledger refused the write ({one_line(exc)}); a report by a role that "
                "may write to the ledger promotes it")
            return  # the next winner's write would be refused alike
        if promoted:
            experiment["promoted"] = {"variant": winner, "at": now.isoformat().replace("+00:00", "Z"),
                                      "probability": arm["p_best"], "recipients": arm["recipients"], "now": True}
            document["notes"].append(
                f"promoted variant {winner} of {experiment['sequence']} step {experiment['step']} "
                "(report.auto_promote): every stream that starts from now on gets it at that step")
