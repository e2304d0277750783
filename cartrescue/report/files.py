"""The report as files: ``--csv DIR`` (one file per table) and the plain-text digest.

Owns the CSV layout (one file per breakdown, plus summary, lift, experiments, money, funnel and
survey; a header row; numbers as the JSON has them) and the short text version that ``--email``
puts in the message body. It must not compute anything: it lays out the document of
:mod:`cartrescue.report.analysis`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from cartrescue.compose.money import format_money
from cartrescue.errors import ConfigError


def percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def points(value: float) -> str:
    return f"{value * 100:+.1f}"


def shown(value: str | None, currency: str | None, locale: str) -> str | None:
    """An amount of the document as a person reads it: in ``currency`` as ``locale`` writes it,
    through the messages' own formatter (``¥5,000``, ``€1,234.50``, ``KWD 12.345``, ``1.234,50 €``),
    not the JSON's ``5000`` beside a code. Without a currency (no ``shop.currency``: amounts as
    the shop gives them) the figure as it is; ``None`` stays ``None`` (no amount)."""
    if value is None or not currency:
        return value
    return format_money(Decimal(value), currency, locale)


def in_its_currency(value: str | None, code: str, locale: str) -> str | None:
    """An amount of ``by_currency`` as a person reads it: in ``code`` as ``locale`` writes it, or
    beside the name of what is no currency's code (``"30.00 (platform base)"``)."""
    from cartrescue.report.analysis import UNIT_LABELS

    if value is not None and code in UNIT_LABELS.values():
        return f"{value} {code}"
    return shown(value, code, locale)


def each_currency(document: dict[str, Any], key: str, locale: str) -> str | None:
    """``key`` of ``by_currency`` (a report whose orders are in several currencies, with no
    ``shop.currency`` to convert them to) in each currency, as ``locale`` writes it: "€33.90 and
    SEK 1,499.00", never their sum; ``None`` for a report without ``by_currency``."""
    block = document.get("by_currency")
    if block is None:
        return None
    parts = [str(in_its_currency(entry[key], code, locale)) for code, entry in block.items() if entry[key] is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def headline(document: dict[str, Any], key: str, locale: str) -> str | None:
    """``summary[key]`` (``revenue``, ``revenue_per_recipient``) as a person reads it: in the
    report's currency, or in each currency of ``by_currency`` (:func:`each_currency`)."""
    if "by_currency" in document:
        return each_currency(document, key, locale)
    return shown(document["summary"][key], document["currency"], locale)


#: What a report in several currencies says where one amount would stand (``by_currency``).
NOT_ONE_CURRENCY = "not given: the orders are in several currencies (set shop.currency)"


def revenue_interval(revenue: dict[str, Any], currency: str | None, locale: str) -> str:
    """The incremental revenue's interval in words: without one (no spread of revenue per cart
    in either group, :func:`cartrescue.report.stats.mean_difference`) it says so, not "0 to 0"."""
    interval = revenue.get("interval")
    if not interval:
        return "no interval: revenue per cart does not vary in either group (one cart each, or no order)"
    return f"95 % interval {shown(interval[0], currency, locale)} to {shown(interval[1], currency, locale)}"


def _write(path: Path, rows: Iterable[dict[str, Any]], columns: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in columns})
    return path


def write_csv(document: dict[str, Any], folder: Path) -> list[Path]:
    """One CSV per table of the report into ``folder`` (created); returns the files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--csv {folder}: cannot create the folder: {exc.strerror or exc}") from None
    written = []
    breakdown_columns = ["recipients", "conversions", "orders", "revenue", "conversion_rate", "revenue_per_recipient",
                         "cart_value"]
    keys = {"step": ["sequence", "step"], "variant": ["sequence", "step", "variant"], "tier": ["tier"],
            "locale": ["locale"], "channel": ["channel"]}
    for name, rows in document["breakdowns"].items():
        columns = ["day", "messages", "held_out", "orders", "revenue"] if name == "day" else keys[name] + breakdown_columns
        written.append(_write(folder / f"by_{name}.csv", rows, columns))
    summary = dict(document["summary"], since=document["period"]["since"], until=document["period"]["until"],
                   currency=document["currency"])
    written.append(_write(folder / "summary.csv", [summary], list(summary)))
    if "by_currency" in document:  # only a report in several currencies has it: others' files stay as they were
        written.append(_write(folder / "by_currency.csv", [dict(entry, currency=code) for code, entry in
                                                            document["by_currency"].items()],
                              ["currency", "orders", "revenue", "revenue_per_recipient", "incentive_cost"]))
    lift = document["incrementality"]
    rows = []
    for label, source in [("all", lift)] + [(entry.get("tier") or "", entry) for entry in lift.get("by_tier", [])]:
        absolute = source.get("absolute") or {}
        revenue = source.get("incremental_revenue") or {}
        rows.append({
            "group": label, "treated_carts": source["treated"]["carts"], "treated_converted": source["treated"]["converted"],
            "holdout_carts": source["holdout"]["carts"], "holdout_converted": source["holdout"]["converted"],
            "lift": absolute.get("estimate"), "lift_low": (absolute.get("interval") or [None, None])[0],
            "lift_high": (absolute.get("interval") or [None, None])[1],
            "incremental_revenue": revenue.get("estimate"),
            "incremental_revenue_low": (revenue.get("interval") or [None, None])[0],
            "incremental_revenue_high": (revenue.get("interval") or [None, None])[1],
            "measured": bool(source.get("measured")), "note": source.get("sentence") or source.get("reason", ""),
        })
    written.append(_write(folder / "lift.csv", rows, list(rows[0])))
    experiment_rows = [dict(variant, sequence=e["sequence"], step=e["step"], control=e["control"], winner=e["winner"],
                            promoted=(e.get("promoted") or {}).get("variant"))
                       for e in document["experiments"] for variant in e["variants"]]
    written.append(_write(folder / "experiments.csv", experiment_rows,
                          ["sequence", "step", "variant", "control", "recipients", "conversions", "conversion_rate",
                           "revenue", "revenue_per_recipient", "p_beats_control", "p_best", "winner", "promoted"]))
    written.append(_write(folder / "money.csv", document["money"]["by_tier"],
                          ["tier", "messages", "orders", "revenue", "channel_cost", "incentive_cost",
                           "orders_with_incentive", "codes_redeemed", "gross", "net", "roi"]))
    funnel = document["funnel"]
    stages = [{"stage": stage, "carts": funnel[stage]} for stage in ("seen", "eligible", "messaged", "ordered")]
    stages += [{"stage": f"skip: {skip['reason']}", "carts": skip["carts"]} for skip in funnel["skips"]]
    written.append(_write(folder / "funnel.csv", stages, ["stage", "carts"]))
    written.append(_write(folder / "survey.csv", _survey_rows(document.get("survey") or {}),
                          ["group", "value", "reason", "count", "share"]))
    return written


def _survey_rows(survey: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """"Why carts were left" as rows: every answer (group ``all``), then per tier and per locale,
    the same figures as ``survey`` in ``--json``; a header alone when the period has none (the
    file is there whatever the period, as a script that reads it expects)."""
    groups = [("all", "", survey.get("reasons") or {})]
    for group in ("tier", "locale"):
        groups += [(group, value, reasons) for value, reasons in (survey.get(f"by_{group}") or {}).items()]
    for group, value, reasons in groups:
        for reason, figures in reasons.items():
            yield {"group": group, "value": value, "reason": reason, "count": figures["count"],
                   "share": figures["share"]}


def digest(document: dict[str, Any], shop: str, locale: str) -> str:
    """The report in a few lines of plain text: the body of ``--email``; amounts as ``locale``
    (``shop.default_locale``) writes the report's currency."""
    period, summary, lift = document["period"], document["summary"], document["incrementality"]
    currency = document["currency"]

    def money(value: str) -> str | None:
        return shown(value, currency, locale)

    lines = [
        f"{shop}: abandoned-cart reminders, {period['first_day']} to {period['last_day']}",
        "",
        f"Recovered (attributed): {headline(document, 'revenue', locale)} from {summary['orders']:,} orders; "
        f"{summary['converted_carts']:,} of {summary['recipients']:,} messaged carts ordered "
        f"({percent(summary['conversion_rate'])}).",
    ]
    if "by_currency" in document:
        lines.append(f"Incentive cost: {each_currency(document, 'incentive_cost', locale)}.")
    if lift["measured"]:
        revenue = lift["incremental_revenue"]
        caused = (NOT_ONE_CURRENCY if revenue["estimate"] is None
                  else f"{money(revenue['estimate'])} ({revenue_interval(revenue, currency, locale)})")
        lines.append(f"Caused by the reminders (incremental, against {lift['holdout']['carts']:,} held-out carts): "
                     f"{caused}.")
        lines.append(lift["sentence"])
    else:
        lines.append(lift["sentence"])
    for experiment in document["experiments"]:
        lines.append(f"A/B {experiment['sequence']} step {experiment['step']}: {experiment['verdict']}.")
    funnel = document["funnel"]
    lines.append(f"Funnel: {funnel['seen']:,} carts seen, {funnel['eligible']:,} eligible, {funnel['messaged']:,} "
                 f"messaged, {funnel['ordered']:,} ordered.")
    lines += [f"Note: {note}." for note in document["notes"]]
    lines += ["", "The full report is attached (open it in a browser). What each number means: docs/reporting.md."]
    return "\n".join(lines) + "\n"
