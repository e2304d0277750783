"""The report as one self-contained HTML file: inline CSS, inline SVG charts, no network.

Owns the page of ``--html`` and of the ``--email`` attachment: the headline numbers, revenue by
day, the funnel, the lift with its interval as error bars, conversion per step and variant (with
Wilson intervals), money per tier and the breakdown tables. Everything is in the one file: no
script, no font, no image or style sheet is fetched, and a Content-Security-Policy of
``default-src 'none'`` tells the browser so, so the page looks the same offline, in a browser
and opened from a mail. Every value from data is HTML-escaped. It must not compute anything.
"""

from __future__ import annotations

from html import escape
from typing import Any

from cartrescue.report.files import NOT_ONE_CURRENCY, headline, in_its_currency, percent, revenue_interval, shown

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: GREY draws the held-out group and an undecided lift: #6b7280 reads at 4.8:1 on white, as text
#: must (WCAG 1.4.3); the lighter #9ca3af it was read at 2.5:1.
BLUE, GREY, GREEN, RED, INK = "#1d4ed8", "#6b7280", "#15803d", "#b91c1c", "#111827"

STYLE = """
body{margin:0;background:#f4f4f5;color:#111827;font:15px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:960px;margin:0 auto;padding:24px 16px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}
.sub{color:#4b5563;margin:0 0 20px}
section{background:#fff;border-radius:8px;padding:20px 24px;margin:0 0 16px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 200px;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px}
.card .label{color:#4b5563;font-size:13px}.card .value{font-size:26px;font-weight:700}
.card .detail{color:#4b5563;font-size:13px}
.measured .value{color:#15803d}.unmeasured .value{color:#6b7280}
table{border-collapse:collapse;width:100%;font-size:14px;margin:8px 0}
th,td{padding:6px 8px;border-bottom:1px solid #e5e7eb;text-align:right}
th:first-child,td:first-child{text-align:left}th{color:#374151;font-weight:600}tbody th{color:#111827;font-weight:400}
caption{text-align:left;font-weight:600;padding:4px 0}
.note{color:#92400e;background:#fffbeb;border-radius:6px;padding:8px 12px;margin:6px 0}
.sentence{font-weight:600;margin:8px 0}
svg{max-width:100%;height:auto;display:block}
svg text{font:12px -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;fill:#374151}
@media print{body{background:#fff}section{box-shadow:none;border:1px solid #e5e7eb}}
"""


def _e(value: Any) -> str:
    return escape("–" if value is None else str(value))


def _table(columns: list[str], rows: list[list[Any]], caption: str | None = None) -> str:
    """A table a screen reader can walk: each header cell scoped to its column, each row's first
    cell (its tier, step, currency) a header of that row; ``caption`` for a table no heading of
    its own names."""
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in columns)
    body = "".join(f'<tr><th scope="row">{_e(row[0])}</th>' + "".join(f"<td>{_e(v)}</td>" for v in row[1:]) + "</tr>"
                   for row in rows)
    title = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _svg(width: int, height: int, body: str, label: str, description: str) -> str:
    """A chart as one image with its name (<title>) and its numbers in words (<desc>): role="img"
    hides the figures and bar titles drawn in it from a screen reader, which reads these two."""
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
            f"<title>{_e(label)}</title><desc>{_e(description)}</desc>{body}</svg>")


def revenue_chart(days: list[dict[str, Any]], currency: str | None, locale: str) -> str:
    """Vertical bars: attributed revenue per day (each bar's amount, and the axis's top, in
    ``currency`` as ``locale`` writes it)."""
    if not days:
        return "<p>No messages in this period.</p>"
    width, height, left, bottom, top = 900, 240, 100, 40, 16
    values = [float(day["revenue"]) for day in days]
    peak = max(values) or 1.0
    slot = (width - left - 10) / len(days)
    bar = max(2.0, slot * 0.7)
    # The axis's top as the bars' titles write it ("24.690,00 €"): "24,690" read as 24,69 in de.
    top_label = shown(max((day["revenue"] for day in days), key=float), currency, locale) if currency else f"{peak:,.0f}"
    parts = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="{GREY}"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{_e(top_label)}</text>',
             f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>']
    every = max(1, len(days) // 12)
    said = "; ".join(f'{day["day"]}: {shown(day["revenue"], currency, locale)} ({day["orders"]} orders)' for day in days)
    for index, (day, value) in enumerate(zip(days, values)):
        x = left + index * slot + (slot - bar) / 2
        h = (height - bottom - top) * value / peak
        parts.append(f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{BLUE}">'
                     f'<title>{_e(day["day"])}: {_e(shown(day["revenue"], currency, locale))} ({day["orders"]} orders)'
                     '</title></rect>')
        if index % every == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                         f'{_e(day["day"][5:])}</text>')
    return _svg(width, height, "".join(parts), "Attributed revenue by day", said)


def funnel_chart(funnel: dict[str, Any]) -> str:
    """Horizontal bars: carts seen, eligible, messaged, ordered."""
    stages = [("seen", funnel["seen"]), ("eligible", funnel["eligible"]), ("messaged", funnel["messaged"]),
              ("ordered", funnel["ordered"])]
    width, row, left = 900, 34, 110
    peak = max(value for _name, value in stages) or 1
    parts = []
    for index, (name, value) in enumerate(stages):
        y = 8 + index * row
        w = (width - left - 120) * value / peak
        parts.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{_e(name)}</text>'
                     f'<rect x="{left}" y="{y}" width="{max(w, 1):.1f}" height="24" rx="3" '
                     f'fill="{GREEN if name == "ordered" else BLUE}"/>'
                     f'<text x="{left + w + 8:.1f}" y="{y + 17}">{value:,}</text>')
    return _svg(width, 8 + row * len(stages), "".join(parts), "Funnel",
                ", ".join(f"{name} {value:,}" for name, value in stages))


def _interval_rows(rows: list[tuple[str, float, float, float, str]], axis_label: str, zero_line: bool) -> str:
    """Dots with whiskers on a shared axis: (label, estimate, low, high, colour)."""
    width, row, left, right = 900, 36, 200, 40
    low_all = min([0.0] + [r[2] for r in rows])
    high_all = max([0.0] + [r[3] for r in rows]) or 0.01
    span = (high_all - low_all) or 0.01

    def x(value: float) -> float:
        return left + (width - left - right) * (value - low_all) / span

    height = 30 + row * len(rows)
    parts = [f'<line x1="{x(low_all):.1f}" y1="{height - 22}" x2="{x(high_all):.1f}" y2="{height - 22}" stroke="{GREY}"/>',
             f'<text x="{x(low_all):.1f}" y="{height - 6}" text-anchor="middle">{low_all * 100:.1f}</text>',
             f'<text x="{x(high_all):.1f}" y="{height - 6}" text-anchor="middle">{high_all * 100:.1f}</text>',
             f'<text x="{(x(low_all) + x(high_all)) / 2:.1f}" y="{height - 6}" text-anchor="middle">'
             f'{_e(axis_label)}</text>']
    if zero_line:
        parts.append(f'<line x1="{x(0):.1f}" y1="4" x2="{x(0):.1f}" y2="{height - 22}" stroke="{INK}" '
                     'stroke-dasharray="4 3"/>')
    for index, (label, estimate, low, high, colour) in enumerate(rows):
        y = 14 + index * row
        parts.append(
            f'<text x="{left - 10}" y="{y + 4}" text-anchor="end">{_e(label)}</text>'
            f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
            f'<line x1="{x(low):.1f}" y1="{y - 7}" x2="{x(low):.1f}" y2="{y + 7}" stroke="{colour}" stroke-width="2"/>'
            f'<line x1="{x(high):.1f}" y1="{y - 7}" x2="{x(high):.1f}" y2="{y + 7}" stroke="{colour}" stroke-width="2"/>'
            f'<circle cx="{x(estimate):.1f}" cy="{y}" r="5" fill="{colour}">'
            f'<title>{_e(label)}: {estimate * 100:.2f} ({low * 100:.2f} to {high * 100:.2f})</title></circle>')
    said = "; ".join(f"{label.strip()}: {estimate * 100:.2f} ({low * 100:.2f} to {high * 100:.2f})"
                     for label, estimate, low, high, _colour in rows)
    return _svg(width, height, "".join(parts), axis_label, said)


def lift_chart(lift: dict[str, Any]) -> str:
    treated, held, absolute = lift["treated"], lift["holdout"], lift["absolute"]
    groups = _interval_rows([
        (f"messaged ({treated['carts']:,} carts)", treated["rate"], *treated["interval"], BLUE),
        (f"held out ({held['carts']:,} carts)", held["rate"], *held["interval"], GREY),
    ], "conversion, %", zero_line=False)
    colour = GREEN if absolute["interval"][0] > 0 else RED if absolute["interval"][1] < 0 else GREY
    difference = _interval_rows([("lift (messaged − held out)", absolute["estimate"], *absolute["interval"], colour)],
                                "percentage points (95 % interval)", zero_line=True)
    return groups + difference


def step_chart(document: dict[str, Any]) -> str:
    """Conversion per step and, where a step has variants, per variant."""
    rows: list[tuple[str, float, float, float, str]] = []
    from cartrescue.report.stats import wilson

    for row in document["breakdowns"]["step"]:
        low, high = wilson(row["conversions"], row["recipients"])
        rows.append((f"{row['sequence'] or '?'} step {row['step']}", row["conversion_rate"] or 0.0, low, high, BLUE))
        for experiment in document["experiments"]:
            if (experiment["sequence"], experiment["step"]) == (row["sequence"], row["step"]):
                for arm in experiment["variants"]:
                    won = experiment["winner"] == arm["variant"]  # said in words, not by its green alone
                    rows.append((f"  variant {arm['variant']}" + (" (winner)" if won else ""),
                                 arm["conversion_rate"] or 0.0, *arm["interval"], GREEN if won else GREY))
    if not rows:
        return "<p>No messages in this period.</p>"
    return _interval_rows(rows, "conversion, % (95 % Wilson interval)", zero_line=False)


def _by_currency_table(document: dict[str, Any], locale: str) -> str:
    """The amounts of a report whose orders are in several currencies, a row per currency
    (``by_currency``): where the cards and tables would have added them up."""
    return _table(["currency", "orders", "revenue", "per recipient", "incentive cost"],
                  [[code, f"{entry['orders']:,}", in_its_currency(entry["revenue"], code, locale),
                    in_its_currency(entry["revenue_per_recipient"], code, locale),
                    in_its_currency(entry["incentive_cost"], code, locale)]
                   for code, entry in document["by_currency"].items()], caption="Amounts per currency")


def render_html(document: dict[str, Any], shop: str, locale: str) -> str:
    """The page; amounts in the report's currency as ``locale`` (``shop.default_locale``) writes it."""
    period, summary, lift = document["period"], document["summary"], document["incrementality"]
    currency = document["currency"]
    several = "by_currency" in document  # orders in several currencies: an amount in each, never their sum

    def money(value: str | None) -> str | None:
        return shown(value, currency, locale)

    if lift["measured"] and lift["incremental_revenue"]["estimate"] is None:
        incremental = ('<div class="card unmeasured"><div class="label">Incremental revenue (caused)</div>'
                       f'<div class="value">not given</div><div class="detail">{_e(NOT_ONE_CURRENCY)}</div></div>')
    elif lift["measured"]:
        revenue = lift["incremental_revenue"]
        clear = "measured" if lift["absolute"]["interval"][0] > 0 else ""
        incremental = (f'<div class="card {clear}"><div class="label">Incremental revenue (caused)</div>'
                       f'<div class="value">{_e(money(revenue["estimate"]))}</div><div class="detail">'
                       f'{_e(revenue_interval(revenue, currency, locale))}</div></div>')
    else:
        incremental = ('<div class="card unmeasured"><div class="label">Incremental revenue (caused)</div>'
                       f'<div class="value">not measured</div><div class="detail">{_e(lift["reason"])}</div></div>')
    cards = (
        f'<div class="cards"><div class="card"><div class="label">Attributed revenue (any order after a message)</div>'
        f'<div class="value">{_e(headline(document, "revenue", locale))}</div><div class="detail">{summary["orders"]:,} '
        f'orders from {summary["recipients"]:,} messaged carts</div></div>{incremental}'
        f'<div class="card"><div class="label">Conversion of messaged carts</div><div class="value">'
        f'{_e(percent(summary["conversion_rate"]))}</div><div class="detail">'
        f'{_e(headline(document, "revenue_per_recipient", locale))}'
        ' per recipient</div></div></div>')
    sections = [
        f'<section><h1>{_e(shop)}: abandoned-cart reminders</h1><p class="sub">{_e(period["first_day"])} to '
        f'{_e(period["last_day"])} ({_e(period["timezone"])}) · attribution window {period["attribution_window_days"]:g} days · '
        f'{_e(currency or ("amounts per currency" if several else "amounts as the shop gives them"))}</p>{cards}'
        + (_by_currency_table(document, locale) if several else "") + '</section>',
        f'<section><h2>Lift against the holdout</h2><p class="sentence">{_e(lift["sentence"])}</p>'
        + (lift_chart(lift) if lift["measured"] else "")
        + (f'<p class="note">{_e(lift["contamination_note"])}</p>' if lift.get("contamination_note") else "")
        + "</section>",
        '<section><h2>Attributed revenue by day</h2>'
        + (f'<p class="note">{_e(NOT_ONE_CURRENCY)}</p>' if several
           else revenue_chart(document["breakdowns"]["day"], currency, locale)) + '</section>',
        f'<section><h2>Funnel</h2>{funnel_chart(document["funnel"])}'
        + (_table(["skipped because", "carts"], [[s["reason"], f"{s['carts']:,}"] for s in document["funnel"]["skips"][:8]])
           if document["funnel"]["skips"] else "")
        + "</section>",
        f'<section><h2>Conversion per step and variant</h2>{step_chart(document)}'
        + "".join(f'<p>{_e(e["sequence"])} step {e["step"]}: {_e(e["verdict"])}</p>' for e in document["experiments"])
        + "</section>",
    ]
    tiers = document["money"]["by_tier"]
    if tiers:
        sections.append("<section><h2>Money in, money out</h2>" + _table(
            ["tier", "messages", "orders", "margin" if document["money"]["basis"] == "margin" else "revenue",
             "sending cost", "incentive cost", "net", "ROI"],
            [[r["tier"] or "(none)", f"{r['messages']:,}", f"{r['orders']:,}", money(r["gross"]),
              money(r["channel_cost"]), money(r["incentive_cost"]), money(r["net"]),
              None if r["roi"] is None else f"{r['roi']:.1f}×"] for r in tiers])
            + "</section>")
    for name, label in (("step", "step"), ("tier", "tier"), ("variant", "variant"), ("locale", "locale"),
                        ("channel", "channel")):
        rows = document["breakdowns"][name]
        if not rows:
            continue
        keys = {"step": lambda r: f"{r['sequence'] or '?'} {r['step']}",
                "variant": lambda r: f"{r['sequence'] or '?'} {r['step']} {r['variant']}"}
        key = keys.get(name, lambda r, name=name: r[name] or "(unknown)")
        sections.append(f"<section><h2>By {label}</h2>" + _table(
            [label, "recipients", "conversions", "rate", "orders", "revenue", "per recipient"],
            [[key(r), f"{r['recipients']:,}", f"{r['conversions']:,}", percent(r["conversion_rate"]), f"{r['orders']:,}",
              money(r["revenue"]), money(r["revenue_per_recipient"])] for r in rows]) + "</section>")
    survey = document.get("survey") or {}
    if survey.get("answers"):
        sections.append(f"<section><h2>Why carts were left ({survey['answers']:,} survey answers)</h2>" + _table(
            ["reason", "answers", "share"],
            [[reason, f"{f['count']:,}", percent(f["share"], 0)] for reason, f in survey["reasons"].items()])
            + "</section>")
    if document["notes"]:
        sections.append("<section><h2>Notes</h2>" + "".join(f'<p class="note">{_e(n)}</p>' for n in document["notes"])
                        + "</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(shop)}: cartrescue report {_e(period['first_day'])} to {_e(period['last_day'])}</title>"
        f"<style>{STYLE}</style></head><body><main>\n" + "\n".join(sections) + "\n</main></body></html>\n"
    )
