"""The report as one document: totals, lift against the holdout, A/B results, money, funnel.

Owns turning the sums of :mod:`cartrescue.report.attribution` (and the ledger's run and
decision summaries) into the numbers a shop owner reads, with their intervals and the plain
sentences that say what they mean (docs/reporting.md). The document is plain data (str, int,
float, list, dict), the same for the terminal, ``--json``, ``--csv``, ``--html`` and ``--email``.
It must not read sources, write files or print.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from cartrescue.channels import answering
from cartrescue.config import Config, Incentive
from cartrescue.currency import Basis, minor_units
from cartrescue.decide.experiments import step_variants
from cartrescue.report import stats
from cartrescue.report.attribution import PLATFORM_BASE, UNITS, Attribution, from_epoch, money
from cartrescue.text import counted

#: Decision reasons that mean "passed the eligibility gates" (waiting for a step, a quiet hour,
#: tomorrow or a budget is still eligible).
#: The latest decisions of carts that passed the eligibility gates (the funnel's "eligible"): due,
#: held out, or due and waiting: for a later step, the next day (messaged, or the shop's newsletter
#: reached the address today), the end of quiet hours, a tier's budget, the run's ``--limit`` or
#: room in the channel's hourly quota.
#: A cart waiting for ``--limit`` or for the day after a newsletter was counted in no stage after
#: "seen": neither eligible nor among the skips.
PASSED = frozenset({"due", "holdout", "step_not_due", "messaged_today", "newsletter_today", "quiet_hours",
                    "tier_budget", "run_limit", "hourly_quota", "sequence_done"})


def rounded(value: Decimal, places: int) -> str:
    """An amount as the document gives it: to the minor unit of the report's currency
    (:func:`cartrescue.currency.minor_units`: ``"5000"`` yen, ``"1234.50"`` euros, ``"12.345"``
    dinars), rounded as :func:`cartrescue.compose.money.format_money` rounds, so the text a person reads
    and the figure ``--json`` gives are one amount (cents once gave yen a ``.00``, dinars one
    digit too few, and a converted sum's ``129.339`` stood beside the table's ``129.34``)."""
    return f"{value.quantize(Decimal(1).scaleb(-places))}"


def amount(value: int | float | None, places: int | None) -> str | None:
    """Units of 1/10,000 as text, to the currency's minor unit (:func:`rounded`); ``None`` when
    ``places`` is (:func:`_places`: a sum of several currencies, which is no amount)."""
    return None if places is None else rounded(money(int(value or 0)), places)


def per(total: int | None, count: int, places: int | None) -> str | None:
    """An average amount (per recipient, per cart), to the currency's minor unit."""
    if not count or places is None:
        return None
    return rounded(money(int(total or 0)) / count, places)


def in_currency(value: Decimal, currency: str | None) -> str:
    """``value`` rounded to ``currency``'s minor unit: how a sum per currency is given (the
    report's :data:`UNIT_LABELS` are no currency's code: two decimals, as without one)."""
    return rounded(value, minor_units(None if currency in UNIT_LABELS.values() else currency))


#: The names ``by_currency`` gives amounts in no currency's code: an order that names none, and a
#: source's own base amounts (:data:`~cartrescue.report.attribution.PLATFORM_BASE`).
UNIT_LABELS = {"": "(none)", PLATFORM_BASE: "(platform base)"}


def _places(config: Config, att: Attribution) -> int | None:
    """The decimals of the report's amounts, or ``None`` when its orders are in several currencies
    and no ``shop.currency`` converts them: 1,499.00 SEK and 33.90 EUR added up are 1,532.90 of
    nothing, yet the headline a shop owner reads first. Such a report gives no amount summed over
    its orders, only ``by_currency`` (:func:`_by_currency`), as ``report-all`` never adds
    different currencies."""
    if config.shop.currency is None and len(att.loaded.currencies) > 1:
        return None
    return minor_units(config.shop.currency)


def _by_currency(att: Attribution, recipients: int, incentives: dict[str, Decimal]) -> dict[str, dict[str, Any]]:
    """Per currency of the attributed orders' amounts (a report whose :func:`_places` is ``None``):
    their orders, revenue, revenue per messaged cart and the incentives redeemed on them."""
    out: dict[str, dict[str, Any]] = {}
    for unit, (orders, revenue) in sorted(att.revenue_by_unit().items()):
        name = UNIT_LABELS.get(unit, unit)
        out[name] = {"orders": orders, "revenue": in_currency(money(revenue), name),
                     "revenue_per_recipient": in_currency(money(revenue) / recipients, name) if recipients else None,
                     "incentive_cost": in_currency(incentives.get(unit, Decimal(0)), name)}
    return out


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True)
class Period:
    since: datetime
    until: datetime
    now: datetime


def build(config: Config, att: Attribution, period: Period, *, runs: dict[str, Any],
          decisions: list[tuple[str, str, int, int]], codes: dict[int, set[str]], ledger_counts: dict[str, int],
          promotions: list[dict[str, Any]], redecided: int = 0,
          reply_lost_channels: Collection[str] = ()) -> dict[str, Any]:
    """The whole report document. ``reply_lost_channels``: the channels of the period's
    ``unconfirmed`` messages, whose note names who took them (the relay, the SMS gateway)."""
    totals = att.totals()
    # Without shop.currency nothing is converted and the ledger keeps no cart's currency: one
    # order's currency named a sum of carts in eight (the demo's "GBP").
    currency = config.shop.currency
    places = _places(config, att)
    notes: list[str] = []
    document: dict[str, Any] = {
        "period": {"since": _iso(period.since), "until": _iso(period.until), "now": _iso(period.now),
                   "timezone": config.shop.timezone, "first_day": period.since.astimezone(config.shop.tz).date().isoformat(),
                   "last_day": period.until.astimezone(config.shop.tz).date().isoformat(),
                   "attribution_window_days": config.report.attribution_window.total_seconds() / 86400},
        "currency": currency,
        "summary": _summary(totals, places),
        "incrementality": _incrementality(config, att, places),
    }
    breakdowns = {name: _breakdown(name, att.breakdown(name), places)
                  for name in ("step", "tier", "variant", "locale", "channel")}
    breakdowns["day"] = _days(config, att, places)
    document["experiments"] = _experiments(config, att.breakdown("variant"), promotions, places)
    incentives: dict[str, Decimal] = defaultdict(Decimal)
    document["money"] = _money(config, att, codes, notes, places, incentives)
    if places is None:
        document["by_currency"] = _by_currency(att, totals["carts"], incentives)
    document["funnel"] = _funnel(decisions, totals, runs, redecided)
    document["breakdowns"] = breakdowns
    document["ledger"] = {"unconfirmed": ledger_counts.get("claimed", 0),
                          "reply_lost": ledger_counts.get("unconfirmed", 0),
                          "failed": ledger_counts.get("failed_transient", 0) + ledger_counts.get("failed_permanent", 0),
                          "messages_read": att.loaded.messages, "orders_read": att.loaded.orders}
    unconverted = att.unconverted()
    document["unconverted"] = [{"currency": code or "(none)", "orders": n} for code, n in sorted(unconverted.items())]
    if unconverted:
        listed = ", ".join(f"{n} in {code or 'no currency'}" for code, n in sorted(unconverted.items()))
        notes.append(f"orders that cannot be converted to {config.shop.currency} ({listed}; add shop.exchange_rates): "
                     "they count as conversions, their amounts are left out of revenue")
    if document["incrementality"]["measured"]:
        left_out = document["incrementality"]["left_out"]
        _lift_unconverted_note(att.lift_unconverted(frozenset(entry["tier"] or "" for entry in left_out)), currency,
                               notes)
        if left_out:
            notes.append(_left_out_note(left_out))
        if document["incrementality"]["stratified"]:
            notes.append(_stratified_note(config, document["incrementality"]))
    if totals["unvalued"]:
        count = totals["unvalued"]
        notes.append(f"{count:,} message{'s' if count != 1 else ''} of the period ha{'ve' if count != 1 else 's'} no "
                     f"cart value in {currency or 'the shop currency'} (a currency without a rate in "
                     "shop.exchange_rates when it was sent): left out of cart value, not guessed")
    if places is None:
        notes.append(f"orders in {_currencies_text(att.loaded.currencies)} are not added together (no shop.currency "
                     "to convert them to): revenue, revenue per recipient and incentive cost are given per currency, "
                     "and the amounts of the tables (per tier, step, variant, day; the lift's revenue) are left out: "
                     "set shop.currency and shop.exchange_rates for one currency")
    if totals["maturing"]:
        notes.append(f"{totals['maturing']:,} messaged carts got their latest message less than "
                     f"{_days_text(config)} ago: their orders may still come")
    if att.loaded.duplicate_orders:
        notes.append(f"{att.loaded.duplicate_orders:,} order rows repeat an order id; the first of each was used")
    if document["ledger"]["unconfirmed"]:
        waiting = document["ledger"]["unconfirmed"]
        notes.append(f"{counted(waiting, 'claim')} {'has' if waiting == 1 else 'have'} no outcome yet (a run still "
                     "sending, or one that was killed): not counted as sent")
    lost = document["ledger"]["reply_lost"]
    if lost:
        notes.append(f"{lost:,} message{'s' if lost != 1 else ''} reached {answering(reply_lost_channels) or 'the relay'} without its reply (unconfirmed): "
                     "counted as sent, as a run counts them")
    document["notes"] = notes
    return document


def _left_out_note(left_out: list[dict[str, Any]]) -> str:
    """Which tiers the lift does not compare (:func:`_compared`), and why."""
    listed = ", ".join(f"{entry['tier'] or '(no tier)'} ({entry['treated_carts']:,} messaged, "
                       f"{entry['holdout_carts']:,} held-out carts)" for entry in left_out)
    one = len(left_out) == 1
    return (f"the lift compares the tiers with both messaged and held-out carts; {listed} "
            f"{'has' if one else 'have'} no control group of {'its' if one else 'their'} own in this period (a "
            f"sequence without holdout, or too few carts) and {'is' if one else 'are'} left out of it: "
            "other tiers' held-out carts say nothing of what their reminders caused")


def _stratified_note(config: Config, lift: dict[str, Any]) -> str:
    """Why the lift is not the difference of the two arms' rates printed beside it."""
    shares = ", ".join(f"{entry['tier'] or '(no tier)'} "
                       f"{'unknown' if (share := _holdout_share(config, entry['tier'] or '')) is None else f'{share:g}'}"
                       for entry in lift["by_tier"] if entry["measured"])
    pooled = (lift["treated"]["rate"] - lift["holdout"]["rate"]) * 100
    return (f"the tiers compared hold out different shares of their carts ({shares}), so the messaged and the "
            "held-out carts mix the tiers differently: the lift is the difference in conversion within each tier, "
            "weighted by its messaged carts; the difference of the two groups' rates shown beside it "
            f"({pooled:+.1f} points) is not the lift")


def _lift_unconverted_note(rows: list[tuple[int, str, int]], currency: str | None, notes: list[str]) -> None:
    """Orders of the lift's carts (held-out ones too) that have no rate: the incremental revenue
    left their amounts out with no word, as the currency note counts only the messages' orders."""
    count = sum(n for _held, _code, n in rows)
    if not count:
        return
    by_currency: dict[str, int] = defaultdict(int)
    for _held, code, n in rows:
        by_currency[code] += n
    held = sum(n for is_held, _code, n in rows if is_held)
    listed = ", ".join(f"{n} in {code or 'no currency'}" for code, n in sorted(by_currency.items()))
    one = count == 1
    notes.append(f"{count:,} order{'' if one else 's'} of the carts compared for the lift ({listed}, {held:,} of "
                 f"{'a held-out cart' if held == 1 else 'held-out carts'}) cannot be converted to {currency} (add "
                 f"shop.exchange_rates): the incremental revenue leaves {'its amount' if one else 'their amounts'} "
                 f"out, so it is not exact; {'its conversion counts' if one else 'their conversions count'}")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _currencies_text(currencies: set[str]) -> str:
    """The currencies of the amounts summed, for the note: the codes, then the platform's base
    currency last (``SEK and in the shop platform's base currency``)."""
    codes = sorted(code for code in currencies if code != PLATFORM_BASE)
    if PLATFORM_BASE not in currencies:
        return ", ".join(codes)
    return f"{', '.join(codes)} and in {PLATFORM_BASE}"


def _days_text(config: Config) -> str:
    days = config.report.attribution_window.total_seconds() / 86400
    return f"{days:g} days" if days != 1 else "1 day"


def _summary(totals: dict[str, Any], places: int | None) -> dict[str, Any]:
    carts = totals["carts"]
    return {
        "messages": totals["messages"], "recipients": carts, "cart_value": _cart_value(totals["value"], places),
        "messages_without_value": totals["unvalued"],
        "orders": totals["orders"], "converted_carts": totals["converted_carts"],
        "revenue": amount(totals["revenue"], places), "conversion_rate": rate(totals["converted_carts"], carts),
        "revenue_per_recipient": per(totals["revenue"], carts, places),
        "held_out_carts": totals["held_carts"], "maturing_carts": totals["maturing"],
        "unconverted_orders": totals["unconverted_orders"],
    }


def _breakdown(name: str, rows: list[tuple[Any, ...]], places: int | None) -> list[dict[str, Any]]:
    width = {"step": 2, "variant": 3}.get(name, 1)
    out = []
    for row in rows:
        key, (messages, converted, orders, revenue, value) = row[:width], row[width:]
        entry: dict[str, Any] = {}
        if name == "step":
            entry.update(sequence=key[0], step=key[1])
        elif name == "variant":
            entry.update(sequence=key[0], step=key[1], variant=key[2])
        else:
            entry[name] = key[0]
        entry.update(recipients=messages, conversions=converted, orders=orders, revenue=amount(revenue, places),
                     conversion_rate=rate(converted, messages),
                     revenue_per_recipient=per(revenue, messages, places),
                     cart_value=_cart_value(value, places))
        out.append(entry)
    return out


def _cart_value(value: int, places: int | None) -> str:
    """The value of messaged carts: the ledger keeps it without its currency, so it is summed as
    it always was (two decimals without ``shop.currency``)."""
    return rounded(money(value), 2 if places is None else places)


def _days(config: Config, att: Attribution, places: int | None) -> list[dict[str, Any]]:
    """Per day in the shop's timezone: messages and held-out rows sent that day, attributed
    orders placed that day and their revenue."""
    tz = config.shop.tz
    days: dict[str, dict[str, int]] = defaultdict(lambda: {"messages": 0, "held_out": 0, "orders": 0, "revenue": 0})
    sent, orders = att.by_quarter_hour()
    for bucket, messages, held in sent:
        day = days[from_epoch(bucket * 900).astimezone(tz).date().isoformat()]
        day["messages"] += messages
        day["held_out"] += held
    for bucket, count, revenue in orders:
        day = days[from_epoch(bucket * 900).astimezone(tz).date().isoformat()]
        day["orders"] += count
        day["revenue"] += revenue
    first, last = att.since.astimezone(tz).date(), att.until.astimezone(tz).date()
    if (last - first).days <= 400:  # every day of the period, also those without a message or an order
        for offset in range((last - first).days + 1):
            days[(first + timedelta(days=offset)).isoformat()]  # noqa: B018 - creates the empty day
    return [{"day": key, "messages": v["messages"], "held_out": v["held_out"], "orders": v["orders"],
             "revenue": amount(v["revenue"], places)} for key, v in sorted(days.items())]


# -- incrementality -----------------------------------------------------------------------------

def _compared(groups: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]], bool]:
    """The groups the lift compares, the tiers it leaves out, and whether any tier has both
    messaged and held-out streams in the period (the lift compares those tiers alone; known
    here once, where the caller had counted it again over every pair of groups). A tier without
    held-out carts (its sequence has no holdout: the phone calls of the VIP carts) has nothing to
    compare its conversion with; in the messaged arm beside the held-out carts of the other
    tiers, its higher conversion passed for a lift the reminders caused. When no tier has both,
    all groups and ``False`` (the lift is not measured)."""
    tiers: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for held, tier, carts, *_sums in groups:
        tiers[tier or ""][1 if held else 0] += carts
    both = {tier for tier, (treated, held) in tiers.items() if treated and held}
    if not both:
        return groups, [], False
    left_out = [{"tier": tier or None, "treated_carts": treated, "holdout_carts": held}
                for tier, (treated, held) in sorted(tiers.items()) if tier not in both]
    return [g for g in groups if (g[1] or "") in both], left_out, True


POOLED_METHOD = ("Newcombe hybrid score interval (difference of two Wilson intervals), 95 %; relative lift: "
                 "Katz log interval; revenue: Welch normal interval on revenue per cart")
STRATIFIED_METHOD = ("stratified by tier (the tiers hold out different shares): the difference in conversion rate "
                     "per tier, weighted by the tier's messaged carts; 95 % interval by MOVER (Zou & Donner 2008) "
                     "from each tier's Wilson intervals, Newcombe's hybrid score interval generalized to a weighted "
                     "sum; relative lift: the messaged carts' rate over the weighted held-out rate, log interval "
                     "from the per-tier binomial variances; revenue: the same weights on the per-tier difference in "
                     "revenue per cart, normal interval from the per-tier variances")


@dataclass(frozen=True, slots=True)
class Strata:
    """The compared tiers' (treated, held-out) groups, when the lift is stratified by tier."""

    groups: list[tuple[dict[str, Any], dict[str, Any]]]


def _holdout_share(config: Config, tier: str) -> float | None:
    """The holdout share of the sequence ``tier`` uses, as configured; ``None`` when the tier is
    not (any more) configured or its sequence does not exist."""
    for configured in config.priority.tiers:
        if configured.name == tier:
            sequence = config.sequences.get(configured.sequence)
            return None if sequence is None else sequence.holdout
    return None


def _strata(config: Config, compared: list[tuple[Any, ...]]) -> Strata | None:
    """The lift's strata when the compared tiers may hold out different shares, else ``None``.

    Holdout shares are per sequence, and tiers use different sequences: at 0.1 in one tier and
    0.5 in another, the held-out arm is mostly the second tier, the messaged arm mostly the
    first, and the difference of the pooled rates measures their base rates as much as the
    reminders (Simpson's paradox). Compared within each tier, the arms are alike. With the same
    share in every compared tier the two arms mix the tiers alike, and the pooled difference,
    as it always was, stays (``None``); a tier whose share is unknown is stratified, which is
    right whatever the shares are."""
    tiers = sorted({g[1] or "" for g in compared})
    shares = {tier: _holdout_share(config, tier) for tier in tiers}
    if len(tiers) < 2 or (None not in shares.values() and len(set(shares.values())) == 1):
        return None
    groups = [(_group([g for g in compared if not g[0] and (g[1] or "") == tier]),
               _group([g for g in compared if g[0] and (g[1] or "") == tier])) for tier in tiers]
    return Strata(groups)


def _incrementality(config: Config, att: Attribution, places: int | None) -> dict[str, Any]:
    groups = att.groups()
    compared, left_out, paired = _compared(groups)
    treated = _group([g for g in compared if not g[0]])
    held = _group([g for g in compared if g[0]])
    configured = any(sequence.holdout > 0 for sequence in config.sequences.values())
    result: dict[str, Any] = {
        "method": POOLED_METHOD,
        "treated": _arm(treated, places), "holdout": _arm(held, places), "contaminated": held["messaged"],
        "left_out": left_out, "stratified": False,
    }
    reason = None
    if configured and not held["carts"] and not treated["carts"]:
        reason = ("no stream began in this period (the lift follows the carts whose first message or held-out row "
                  "is in it; a later step counts in the period of its stream's first)")
    elif not held["carts"]:
        reason = ("no sequence has a holdout (set sequences.NAME.holdout, e.g. 0.1, so that a share of carts gets no "
                  "message)" if not configured else "no held-out stream began in this period")
    elif not treated["carts"]:
        reason = "no messaged stream began in this period"
    elif not paired:
        reason = "no tier has both messaged and held-out streams that began in this period"
    result["measured"] = reason is None
    if reason is not None:
        result["reason"] = reason
        result["sentence"] = f"Lift not measured: {reason}."
        return result
    strata = _strata(config, compared)
    if strata is not None:
        result.update(method=STRATIFIED_METHOD, stratified=True)
    result.update(_lift(config, treated, held, places, strata))
    by_tier = []
    tiers = sorted({g[1] or "" for g in groups})
    for tier in tiers:
        t = _group([g for g in groups if not g[0] and (g[1] or "") == tier])
        h = _group([g for g in groups if g[0] and (g[1] or "") == tier])
        entry: dict[str, Any] = {"tier": tier or None, "treated": _arm(t, places), "holdout": _arm(h, places),
                                 "measured": bool(t["carts"] and h["carts"])}
        if entry["measured"]:
            entry.update(_lift(config, t, h, places))
        else:  # as the whole lift says why it is not measured, so does each tier
            entry["reason"] = f"no {'held-out' if t['carts'] else 'messaged'} stream of this tier began in this period"
        by_tier.append(entry)
    result["by_tier"] = by_tier
    if held["messaged"]:
        result["contamination_note"] = (f"{held['messaged']:,} held-out carts were later messaged by another sequence or "
                                        "channel; they stay in the control group (intention to treat), which makes "
                                        "the lift estimate conservative")
    return result


def _group(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    return {"carts": sum(r[2] for r in rows), "converted": sum(r[3] for r in rows),
            "revenue": sum(r[4] for r in rows), "squares": sum(r[5] for r in rows), "messaged": sum(r[6] or 0 for r in rows),
            "unconverted": sum(r[7] for r in rows)}


def _arm(group: dict[str, Any], places: int | None) -> dict[str, Any]:
    low, high = stats.wilson(group["converted"], group["carts"])
    return {"carts": group["carts"], "converted": group["converted"], "rate": rate(group["converted"], group["carts"]),
            "interval": [low, high] if group["carts"] else None, "revenue": amount(group["revenue"], places),
            "revenue_per_cart": per(group["revenue"], group["carts"], places),
            "unconverted_orders": group["unconverted"]}


def _sums(group: dict[str, Any]) -> tuple[float, float, int]:
    """A group's revenue, revenue² (in the currency) and carts, as the statistics take them."""
    return group["revenue"] / UNITS, group["squares"] / UNITS / UNITS, group["carts"]


def _lift(config: Config, treated: dict[str, Any], held: dict[str, Any], places: int | None,
          strata: Strata | None = None) -> dict[str, Any]:
    """The lift of ``treated`` over ``held``: of the pooled groups, or with ``strata`` the
    per-tier differences weighted by each tier's messaged carts (:func:`_strata`); the
    incremental orders and revenue are the lift per messaged cart times the messaged carts."""
    nt, nc = treated["carts"], held["carts"]
    if strata is None:
        difference, low, high = stats.newcombe(treated["converted"], nt, held["converted"], nc)
        ratio = stats.ratio_interval(treated["converted"], nt, held["converted"], nc)
        per_cart, rev_low, rev_high = stats.mean_difference(*_sums(treated), *_sums(held))
    else:
        counts = [(t["converted"], t["carts"], h["converted"], h["carts"]) for t, h in strata.groups]
        difference, low, high = stats.stratified_difference(counts)
        ratio = stats.stratified_ratio(counts)
        per_cart, rev_low, rev_high = stats.stratified_mean_difference(
            [(*_sums(t), *_sums(h)) for t, h in strata.groups])
    half = (high - low) / 2
    precision = config.report.precision
    lift: dict[str, Any] = {
        "absolute": {"estimate": difference, "interval": [low, high], "half_width": half},
        "relative": None if ratio is None else {"estimate": ratio[0] - 1, "interval": [ratio[1] - 1, ratio[2] - 1]},
        "incremental_orders": {"estimate": difference * nt, "interval": [low * nt, high * nt]},
        "incremental_revenue": {"estimate": _money_text(per_cart * nt, places),
                                "interval": None if rev_low is None or rev_high is None or places is None else
                                [_money_text(rev_low * nt, places), _money_text(rev_high * nt, places)]},
    }
    needed = stats.holdout_needed(nc, half, precision)
    points = f"{precision * 100:g} point" + ("" if precision * 100 == 1 else "s")
    if low > 0:
        verdict = (f"The reminders added {difference * 100:.1f} points of conversion (95 % interval "
                   f"{low * 100:.1f} to {high * 100:.1f}): about {difference * nt:,.0f} orders that would not have "
                   "come anyway.")
    elif high < 0:
        verdict = (f"Messaged carts converted {-difference * 100:.1f} points less than held-out ones (95 % interval "
                   f"{low * 100:.1f} to {high * 100:.1f}).")
    else:
        verdict = (f"Too few carts to tell whether the reminders add orders: the lift is {difference * 100:+.1f} points, "
                   f"95 % interval {low * 100:.1f} to {high * 100:.1f}.")
    if half > precision:
        verdict += (f" With {nc:,} held-out cart{'' if nc == 1 else 's'} the interval is ±{half * 100:.1f} points; about {needed:,} are needed "
                    f"for ±{points}.")
    lift["sentence"] = verdict
    lift["holdout_needed"] = needed
    return lift


def _money_text(value: float, places: int | None) -> str | None:
    return None if places is None else rounded(Decimal(repr(value)), places)


# -- A/B ------------------------------------------------------------------------------------------

def _control(names: list[str]) -> str:
    for candidate in ("control", "a"):
        if candidate in names:
            return candidate
    return sorted(names)[0]


def _below(chance: float, bound: float) -> str:
    """``chance`` (under ``bound``) as a percentage that reads below it: rounded to whole points
    0.798 is "80%", and the verdict said "P(best) = 80%, below 80%"; there it keeps a decimal,
    cut down, not rounded up."""
    if round(chance * 100) < bound * 100:
        return f"{chance:.0%}"
    return f"{math.floor(chance * 1000) / 10:.1f}%"


def _share(value: float) -> str:
    """A configured share as written: 0.95 is "95%", 0.955 "95.5%" (never rounded to 96%)."""
    return f"{value * 100:.10g}%"


def _absent(config: Config, sequence: str | None, step: int, arms: Collection[str]) -> list[str]:
    """The variants the config's step offers that no message of the period went out in (an arm
    added since): the test has not tried them, so it names no winner, and none is promoted over
    them."""
    return sorted(set(step_variants(config, sequence, step)) - set(arms))


def _experiments(config: Config, rows: list[tuple[Any, ...]], promotions: list[dict[str, Any]],
                 places: int | None) -> list[dict[str, Any]]:
    by_step: dict[tuple[str | None, int], list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        by_step[(row[0], row[1])].append(row)
    promoted = {(p["sequence"], p["step"]): p for p in promotions}
    out = []
    for (sequence, step), arms_rows in sorted(by_step.items(), key=lambda item: (item[0][0] or "", item[0][1])):
        arms = {r[2]: (r[4], r[3]) for r in arms_rows}  # variant -> (converted messages, messages)
        control = _control(list(arms))
        entry: dict[str, Any] = {"sequence": sequence, "step": step, "control": control}
        beats, best = stats.beta_probabilities(arms, control) if len(arms) > 1 else ({}, {control: 1.0})
        variants = []
        for r in arms_rows:
            name, messages, converted, revenue = r[2], r[3], r[4], r[6]
            variants.append({"variant": name, "recipients": messages, "conversions": converted,
                             "conversion_rate": rate(converted, messages),
                             "interval": list(stats.wilson(converted, messages)),
                             "revenue": amount(revenue, places), "revenue_per_recipient": per(revenue, messages, places),
                             "p_beats_control": beats.get(name), "p_best": best.get(name)})
        entry["variants"] = variants
        minimum = config.report.min_sample
        smallest = min(messages for _c, messages in arms.values())
        leader = max(best, key=best.__getitem__)
        absent = [] if (sequence, step) in promoted else _absent(config, sequence, step, arms)
        winner = None
        if len(arms) < 2:
            verdict = "only one variant has recipients in this period"
        elif absent:
            verdict = (f"no winner yet: variant{'s' if len(absent) > 1 else ''} {', '.join(absent)} "
                       f"{'has' if len(absent) == 1 else 'have'} no recipients in this period (every variant needs "
                       f"{minimum:,}, report.min_sample). {leader} leads with P(best) = {best[leader]:.0%}")
        elif smallest < minimum:
            verdict = (f"no winner yet: every variant needs {minimum:,} recipients (report.min_sample); the smallest has "
                       f"{smallest:,}. {leader} leads with P(best) = {best[leader]:.0%}")
        elif best[leader] >= config.report.win_probability:
            winner = leader
            verdict = f"{leader} wins: P(best) = {best[leader]:.0%} with at least {minimum:,} recipients per variant"
        else:
            verdict = (f"no clear winner: {leader} leads with P(best) = "
                       f"{_below(best[leader], config.report.win_probability)}, below "
                       f"{_share(config.report.win_probability)} (report.win_probability)")
        entry.update(winner=winner, verdict=verdict, promoted=_promotion(promoted.get((sequence, step))))
        out.append(entry)
    for key, promotion in promoted.items():  # a promoted step without variant traffic in the period
        if key not in by_step:
            winner = promotion["variant"]
            out.append({"sequence": key[0], "step": key[1], "control": None, "variants": [], "winner": winner,
                        "verdict": f"promoted {winner} on {_iso(promotion['promoted_at'])[:10]}: every stream that "
                                   "starts after that gets it at this step (one already in another arm finishes in it)",
                        "promoted": _promotion(promotion)})
    return out


def _promotion(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"variant": row["variant"], "at": _iso(row["promoted_at"]), "probability": row["probability"],
            "recipients": row["recipients"]}


# -- money in, money out -----------------------------------------------------------------------

def _incentive(config: Config, sequence: str | None, step: int, tier: str | None) -> Incentive | None:
    found = config.sequences.get(sequence or "")
    if found is None or not 0 < step <= len(found.steps):
        return None
    return found.steps[step - 1].incentive_for(tier)


def _discount(incentive: Incentive, paid: int, report_free_shipping: Decimal, currency: str | None,
              basis: Basis, rate: str | None = None) -> Decimal | None:
    """What the incentive cost on an order that paid ``paid`` units after the discount, in the
    shop's currency. A ``fixed`` amount is in the cart's currency (the message shows "15 kr"), so
    it is converted as the order's amount is: at the order's own ``rate`` where the source gave
    one (PrestaShop's conversion_rate, Magento's base_* columns), else with ``shop.exchange_rates``;
    None when no rate is known (not guessed)."""
    if incentive.kind == "percent":
        share = incentive.value / 100
        return (Decimal(paid) / UNITS) * share / (1 - share) if share < 1 else Decimal(0)
    if incentive.kind == "fixed":
        if currency is None:
            return incentive.value
        return basis.base(incentive.value, currency, None if rate is None else incentive.value * Decimal(rate))
    return report_free_shipping


def _redeemed(used: Collection[str], given: set[str]) -> bool:
    """Whether an order that used the discount codes ``used`` redeemed its message's incentive,
    whose codes are ``given``: the recipient's own (with any a retry replaced, which an earlier
    attempt may have delivered) or the step's shared one. One of the order's codes being one of
    them is enough (a shop that lets coupons stack: the reminder's code beside the shop's own
    BLACKFRIDAY). Codes are matched without case, as shops take them (WooCommerce keeps them in
    lower case); with no code known for the message, any code counts."""
    if not used:
        return False
    wanted = {code.upper() for code in given}
    return not wanted or any(code.upper() in wanted for code in used)


def _given(incentive: Incentive, message_id: int, codes: dict[int, set[str]]) -> set[str]:
    """The codes ``message_id`` gave with ``incentive``: its own (``codes``), else the step's
    shared one; empty when unknown (a step without a code, such as free shipping at checkout)."""
    return codes.get(message_id) or ({incentive.code} if incentive.code else set())


def _earlier_incentive(config: Config, used: Collection[str],
                       messages: Iterable[tuple[int, str | None, int, str | None]], codes: dict[int, set[str]]) -> Incentive | None:
    """The incentive of the newest of the cart's earlier ``messages`` whose code the order used:
    the customer kept step 1's code and ordered after step 2, so step 1's discount was given
    (and costs what step 1's incentive does). Only a code known to be that message's counts: a
    step whose codes are unknown could claim any."""
    for message_id, sequence, step, tier in messages:
        incentive = _incentive(config, sequence, step, tier)
        if incentive is None:
            continue
        given = _given(incentive, message_id, codes)
        if given and _redeemed(used, given):
            return incentive
    return None


def _redeemed_incentive(config: Config, own: Incentive | None, message_id: int, used: Collection[str],
                        earlier: Iterable[tuple[int, str | None, int, str | None]],
                        codes: dict[int, set[str]]) -> Incentive | None:
    """The incentive an order that used the codes ``used`` redeemed, its message being
    ``message_id`` (whose incentive is ``own``), when orders carry codes. A code known to be a
    message's decides: the message's own, else an earlier message's of the cart (step 1's code
    used after step 2). Only then does "any code counts" of a message whose codes are unknown
    apply: step 2's free shipping without a code took step 1's 10 % code for its own, costing
    the shipping and never the discount the customer got. One incentive an order: of an order
    that used two messages' codes, its own message's counts."""
    if not used:
        return None
    given = _given(own, message_id, codes) if own is not None else set()
    if given and _redeemed(used, given):
        return own
    found = _earlier_incentive(config, used, earlier, codes)
    if found is None and own is not None and not given:
        return own  # its codes unknown: any code counts
    return found


def _money(config: Config, att: Attribution, codes: dict[int, set[str]], notes: list[str], places: int | None,
           incentives: dict[str, Decimal]) -> dict[str, Any]:
    """Money in and out per tier. With ``places`` ``None`` (several currencies, :func:`_places`) a
    tier's amounts are left out and the incentives' cost is added up in ``incentives``, per
    currency of the order it was redeemed on (its ``by_currency``)."""
    costs = config.report.costs
    margin = config.report.margin
    tiers: dict[str, dict[str, Any]] = defaultdict(lambda: {"messages": 0, "channel_cost": Decimal(0), "orders": 0,
                                                           "revenue": 0, "incentive_cost": Decimal(0), "redeemed": 0,
                                                           "with_incentive": 0})
    uncosted: set[str] = set()
    for tier, channel, messages in att.channel_messages():
        row = tiers[tier or ""]
        row["messages"] += messages
        if channel in costs:
            row["channel_cost"] += costs[channel] * messages
        else:
            uncosted.add(channel or "?")
    codes_known = att.loaded.codes_known  # the source tells each order's codes: none is none used
    basis = Basis(config.shop.currency, config.shop.exchange_rates)
    unpriced: set[str] = set()  # currencies without a rate of orders whose incentive has a cost there
    earlier = att.earlier_messages() if codes_known else {}
    for message_id, sequence, step, tier, _channel, paid, code, currency, own_rate, unit in att.attributed_orders():
        row = tiers[tier or ""]
        row["orders"] += 1
        row["revenue"] += paid or 0
        own = _incentive(config, sequence, step, tier)
        # the incentive the order redeemed (None: none); without codes, assumed its message's own
        incentive = (_redeemed_incentive(config, own, message_id, code, earlier.get(message_id, ()), codes)
                     if codes_known else own)
        if own is not None or incentive is not None:
            row["with_incentive"] += 1
        if incentive is not None:
            row["redeemed"] += 1
            if paid is None and incentive.kind == "percent":  # a share of an amount with no rate: unknown
                unpriced.add(currency or "?")
                continue
            cost = _discount(incentive, paid or 0, config.report.free_shipping_cost, currency, basis, own_rate)
            if cost is None:
                unpriced.add(currency or "?")
            else:
                row["incentive_cost"] += cost
                incentives[unit] += cost
    if unpriced:
        notes.append(f"incentives redeemed on orders in {', '.join(sorted(unpriced))} have no exchange rate to "
                     f"{config.shop.currency} (add shop.exchange_rates): their cost is left out")
    if uncosted and costs:
        notes.append(f"no cost set for channel(s) {', '.join(sorted(uncosted))} (report.costs): counted as free")
    if any(row["with_incentive"] for row in tiers.values()) and not codes_known:
        notes.append("the orders carry no discount code (the source does not say which code an order used): every "
                     "attributed order after an incentive is assumed to have used it (an upper bound of its cost)")
    summed = places  # None: no amount summed over the orders (they are in several currencies)
    places = minor_units(config.shop.currency)
    out = []
    for tier, row in sorted(tiers.items()):
        revenue = Decimal(row["revenue"]) / UNITS
        gross = revenue * margin if margin is not None else revenue
        cost = row["channel_cost"] + row["incentive_cost"]
        net = gross - cost
        out.append({
            "tier": tier or None, "messages": row["messages"], "orders": row["orders"],
            "revenue": _tier_amount(revenue, summed), "channel_cost": rounded(row["channel_cost"], places),
            "incentive_cost": _tier_amount(row["incentive_cost"], summed),
            "orders_with_incentive": row["with_incentive"], "codes_redeemed": row["redeemed"],
            "gross": _tier_amount(gross, summed), "net": _tier_amount(net, summed),
            "roi": float(net / cost) if cost and summed is not None else None,
        })
    return {"basis": "margin" if margin is not None else "revenue", "margin": None if margin is None else float(margin),
            # a unit cost as configured: 0.001 a message is no "0.00" (the totals are rounded to the
            # currency's minor unit)
            "costs": {channel: str(cost) if cost.as_tuple().exponent < -places  # type: ignore[operator]
                      else rounded(cost, places) for channel, cost in costs.items()}, "by_tier": out,
            "codes_in_orders": codes_known}


def _tier_amount(value: Decimal, places: int | None) -> str | None:
    """A tier's amount, or ``None`` where the orders' currencies cannot be added (:func:`_places`)."""
    return None if places is None else rounded(value, places)


# -- funnel --------------------------------------------------------------------------------------

def _funnel(decisions: list[tuple[str, str, int, int]], totals: dict[str, Any], runs: dict[str, Any],
            redecided: int = 0) -> dict[str, Any]:
    """``redecided``: carts messaged or held out in the period whose latest decision came later:
    seen and eligible in the period all the same (else the funnel would narrow upwards).

    ``skips``: every cart seen and not eligible, by its latest decision's reason: a skip, or a
    wait that passed no gate (``idle_below_cutoff``: still being shopped; ``unreadable_order``:
    held back by an order row that could not be read). Counting skips alone left those in no
    stage after "seen", and the skips short of seen minus eligible."""
    seen = sum(n for _a, _r, n, _w in decisions) + redecided
    eligible = sum(n if reason in PASSED else streamed for _a, reason, n, streamed in decisions) + redecided
    skips: dict[str, int] = defaultdict(int)
    for _action, reason, n, streamed in decisions:
        if reason not in PASSED and n - streamed > 0:
            skips[reason] += n - streamed
    last_ok = runs.get("last_ok")
    return {
        "seen": seen, "eligible": eligible, "messaged": totals["carts"], "ordered": totals["converted_carts"],
        "held_out": totals["held_carts"],
        "skips": [{"reason": reason, "carts": n} for reason, n in sorted(skips.items(), key=lambda kv: (-kv[1], kv[0]))],
        "runs": {"runs": runs.get("runs", 0), "by_status": runs.get("by_status", {}), "sent": runs.get("sent", 0),
                 "failed": runs.get("failed", 0), "problems": runs.get("problems", 0),
                 "last_ok": _iso(last_ok) if last_ok else None},
    }
