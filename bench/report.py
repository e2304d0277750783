"""B7: `report --json` over 1,000,000 ledger messages and 1,000,000 orders (target < 10 s, < 300 MB).

    python bench/report.py                          # 1,000,000 messages and orders
    python bench/report.py --messages 100000 --orders 100000

Builds a SQLite ledger (the schema from cartrescue's own Ledger, rows inserted in bulk) and an
orders CSV in a temporary folder: a week of streams of one to three steps, 10 % of carts held
out, two A/B variants, three tiers, six locales; orders from messaged and held-out carts (by
cart id or by address) and from everyone else. Then runs the real CLI in a subprocess and reads
its peak RSS from the kernel (``wait4``). Prints the figure as the last line. Never part of the
test suite.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from installed import like_an_install

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)
CONFIG = """\
shop: {name: Bench Shop, timezone: Europe/Stockholm, currency: EUR, exchange_rates: {SEK: 0.087}}
source: {type: csv, carts: carts.csv, orders: orders.csv}
ledger: {url: "sqlite:///ledger.db"}
priority:
  tiers:
    - {name: vip, min_score: 60, sequence: call, channel: call-list}
    - {name: high, min_score: 35}
    - {name: standard, min_score: 0}
sequences:
  default:
    holdout: 0.1
    steps:
      - {delay: 1h, template: reminder-1, variants: {a: 1, b: 1}}
      - {delay: 24h, template: reminder-2}
      - {delay: 72h, template: reminder-3, incentive: {kind: percent, value: 10, code: COMEBACK10}}
  call:
    steps:
      - {delay: 1h, template: reminder-1}
report: {costs: {email: 0.001, call-list: 2.5}, margin: 0.4, min_sample: 1000}
"""


def build(folder: Path, messages: int, orders: int, seed: int = 7) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cartrescue.ledger import Ledger

    Ledger(f"sqlite:///{folder / 'ledger.db'}").close()  # the real schema
    (folder / "cartrescue.yaml").write_text(CONFIG, encoding="utf-8")
    (folder / "carts.csv").write_text("cart_id,currency,created_at,sku,name,quantity,unit_price\n", encoding="utf-8")
    rng = random.Random(seed)
    start = NOW - timedelta(days=7)
    db = sqlite3.connect(folder / "ledger.db")
    db.execute("PRAGMA synchronous=OFF")
    carts: list[tuple[int, float, bool]] = []  # (cart number, first moment in seconds from start, held)
    rows = []
    n = 0
    cart = 0
    locales = ["en", "sv", "de", "hu", "kk", "ru"]
    while n < messages:
        cart += 1
        first = rng.uniform(0, 6.5 * 86400)
        held = rng.random() < 0.1
        tier = rng.choices(["vip", "high", "standard"], [1, 30, 69])[0]
        steps = 1 if tier == "vip" else rng.choices([1, 2, 3], [5, 3, 2])[0]
        carts.append((cart, first, held))
        for step in range(1, steps + 1):
            if n >= messages:
                break
            at = start + timedelta(seconds=first + (step - 1) * 86400 * (1 if step == 2 else 3))
            if at > NOW:
                break
            channel = "call-list" if tier == "vip" else "email"
            rows.append((f"csv:c{cart}", f"c{cart}", f"p{cart}@example.com", step, channel,
                         "holdout" if held else "smtp", f"reminder-{step}",
                         None if held or step != 1 or tier == "vip" else "ab"[cart % 2], tier, 50.0,
                         "held_out" if held else "sent", "", "", 1, 1,
                         at.strftime("%Y-%m-%d %H:%M:%S.%f"), None, "call" if tier == "vip" else "default",
                         locales[cart % 6], None, "80.00"))
            n += 1
            if len(rows) >= 50_000:
                _insert(db, rows)
        if len(rows) >= 50_000:
            _insert(db, rows)
    _insert(db, rows)
    db.commit()
    db.close()
    with (folder / "orders.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order_id", "email", "customer_id", "cart_id", "total", "currency", "status", "created_at",
                         "delivered"])
        written = 0
        for cart, first, held in carts:
            if written >= orders:
                break
            if rng.random() < (0.10 if held else 0.15):
                at = start + timedelta(seconds=first + rng.uniform(60, 4 * 86400))
                by_cart = rng.random() < 0.5
                writer.writerow([f"o{written}", "" if by_cart else f"p{cart}@example.com", "",
                                 f"c{cart}" if by_cart else "", f"{rng.randrange(1000, 30000) / 100:.2f}",
                                 "SEK" if cart % 10 == 0 else "EUR", "paid", at.isoformat(), "no"])
                written += 1
        while written < orders:  # everyone else's orders
            at = start + timedelta(seconds=rng.uniform(0, 11 * 86400))
            writer.writerow([f"o{written}", f"x{written}@example.net", "", "", f"{rng.randrange(500, 20000) / 100:.2f}",
                             "EUR", "paid", at.isoformat(), "yes"])
            written += 1


def _insert(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    db.executemany(
        "INSERT INTO cr_message (cart_key, cart_id, email, step, channel, transport, template, variant, tier, score,"
        " status, reply, message_id, attempts, run_id, claimed_at, finished_at, sequence, locale, customer_id,"
        " cart_value) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    rows.clear()


def measure(folder: Path) -> tuple[float, int, float, dict[str, object]]:
    command = [sys.executable, "-m", "cartrescue.cli", "report", "--json", "--config", str(folder / "cartrescue.yaml"),
               "--now", NOW.isoformat(), "--since", (NOW - timedelta(days=7)).isoformat()]
    started = time.perf_counter()
    with open(folder / "report.json", "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, cwd=folder)
        _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"report failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, json.loads((folder / "report.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    args = parser.parse_args()
    like_an_install()
    with tempfile.TemporaryDirectory(prefix="cartrescue-b7-") as name:
        folder = Path(name)
        started = time.perf_counter()
        build(folder, args.messages, args.orders)
        print(f"built {args.messages:,} messages and {args.orders:,} orders in {time.perf_counter() - started:.1f} s")
        elapsed, rss, cpu, document = measure(folder)
        summary, lift = document["summary"], document["incrementality"]
        print(f"read {document['ledger']['messages_read']:,} messages, {document['ledger']['orders_read']:,} orders; "
              f"attributed {summary['orders']:,} orders, {summary['revenue']} EUR; lift "
              f"{lift['absolute']['estimate'] * 100:+.2f} points")
        print(f"B7 report --json: {elapsed:.2f} s ({cpu:.2f} s of CPU on two threads), peak RSS {rss / 1024:.1f} MiB "
              f"({args.messages:,} messages, {args.orders:,} orders)")


if __name__ == "__main__":
    main()
