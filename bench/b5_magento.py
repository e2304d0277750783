"""B5: due carts in a big shop database — one ``carts`` run over a 1,000,000-row Magento 2
``quote`` table in MariaDB, with the index docs/databases.md recommends.

    python bench/b5_magento.py                 # 1,000,000 quotes (builds the database once)
    python bench/b5_magento.py --quotes 200000 --rebuild

Builds ``cr_bench_b5`` on the MariaDB server (``--url``) from the test fixture schema
(tests/fixtures/shops/magento2.mariadb.sql) with MariaDB's sequence engine: quotes spread over
two years (about 1% in the default 7-day window), 1-3 lines each, a third of them converted into
``sales_order`` rows, configurable products with child rows, guests whose email is only in
``quote_address``. Then it times, in the same run:

* the reference: the source's ``carts`` pass without the index (a scan of the whole table);
* the source's ``carts`` pass with the index (median of 3);
* ``cartrescue carts --json`` end to end (config, source, orders, eligibility, priority), when
  the CLI is installed.

The last line is the figure B5 tracks. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from cartrescue.sources.base import Window  # noqa: E402
from cartrescue.sources.magento import MagentoSource  # noqa: E402

DATABASE = "cr_bench_b5"
INDEX = "CARTRESCUE_QUOTE_IS_ACTIVE_UPDATED_AT"
DAYS = 730


def admin(url: str, database: str | None = None) -> sa.engine.Engine:
    return sa.create_engine(sa.engine.make_url(url).set(database=database), isolation_level="AUTOCOMMIT",
                            poolclass=sa.pool.NullPool)


def build(url: str, quotes: int, now: datetime) -> None:
    server = admin(url)
    with server.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
        connection.exec_driver_sql(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
    engine = admin(url, DATABASE)
    ddl = (ROOT / "tests" / "fixtures" / "shops" / "magento2.mariadb.sql").read_text().replace("{prefix}", "")
    ddl = "\n".join(line for line in ddl.splitlines() if not line.lstrip().startswith("--"))
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    seconds = DAYS * 86400
    steps = [
        *[statement for statement in ddl.split(";") if statement.strip()],
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION foreign_key_checks = 0",
        "SET SESSION unique_checks = 0",
        # quotes: ~70% active, the rest converted; every 4th a guest without an email on the quote
        f"""INSERT INTO quote (entity_id, store_id, created_at, updated_at, is_active, items_count, items_qty,
              base_currency_code, store_currency_code, quote_currency_code, grand_total, base_grand_total,
              customer_id, customer_email, customer_firstname, customer_lastname, customer_is_guest,
              base_to_quote_rate, subtotal)
            SELECT seq, 1,
              TIMESTAMP('{stamp}') - INTERVAL ((seq * 7919) % {seconds}) SECOND - INTERVAL 2 HOUR,
              TIMESTAMP('{stamp}') - INTERVAL ((seq * 7919) % {seconds}) SECOND,
              IF(seq % 10 < 7, 1, 0), 1 + seq % 3, 1 + seq % 3, 'EUR', 'EUR', 'EUR',
              (1 + seq % 3) * 19.9, (1 + seq % 3) * 19.9,
              IF(seq % 4 = 0, NULL, seq % 50000 + 1),
              IF(seq % 4 = 0, NULL, CONCAT('customer', seq % 50000 + 1, '@example.com')),
              IF(seq % 4 = 0, NULL, 'Kim'), IF(seq % 4 = 0, NULL, 'Lee'), IF(seq % 4 = 0, 1, 0),
              1, (1 + seq % 3) * 19.9
            FROM seq_1_to_{quotes}""",
        """INSERT INTO quote_address (quote_id, address_type, email, telephone, firstname, lastname)
            SELECT entity_id, 'billing', CONCAT('guest', entity_id, '@example.net'), '+46700000000', 'Sam', 'Guest'
            FROM quote WHERE customer_is_guest = 1""",
        """INSERT INTO quote_address (quote_id, address_type)
            SELECT entity_id, 'shipping' FROM quote WHERE customer_is_guest = 1""",
        # lines: simple products; every 5th quote's first line is a configurable with a child row
        """INSERT INTO quote_item (item_id, quote_id, product_id, parent_item_id, sku, name, qty, price, base_price,
              row_total, base_row_total, product_type, base_cost)
            SELECT q.entity_id * 4 + s.seq, q.entity_id, 1 + (q.entity_id * 31 + s.seq) % 1000, NULL,
              CONCAT('SKU-', 1 + (q.entity_id * 31 + s.seq) % 1000), 'Product', 1, 19.9, 19.9, 19.9, 19.9,
              IF(s.seq = 1 AND q.entity_id % 5 = 0, 'configurable', 'simple'), 8.5
            FROM quote q JOIN seq_1_to_3 s ON s.seq <= q.items_count""",
        """INSERT INTO quote_item (item_id, quote_id, product_id, parent_item_id, sku, name, qty, price, base_price,
              row_total, base_row_total, product_type)
            SELECT entity_id * 4, entity_id, 1001 + entity_id % 100, entity_id * 4 + 1,
              CONCAT('SKU-', 1 + (entity_id * 31 + 1) % 1000), 'Product child', 1, 0, 0, 0, 0, 'simple'
            FROM quote WHERE entity_id % 5 = 0""",
        # orders: the converted quotes
        """INSERT INTO sales_order (entity_id, state, status, store_id, customer_id, grand_total, base_grand_total,
              customer_is_guest, quote_id, increment_id, customer_email, order_currency_code, created_at)
            SELECT entity_id, IF(entity_id % 3 = 0, 'processing', 'complete'),
              IF(entity_id % 3 = 0, 'processing', 'complete'), 1, customer_id, grand_total, grand_total,
              customer_is_guest, entity_id, LPAD(entity_id, 9, '0'),
              COALESCE(customer_email, CONCAT('guest', entity_id, '@example.net')), 'EUR',
              updated_at + INTERVAL 5 MINUTE
            FROM quote WHERE is_active = 0""",
        """INSERT INTO cataloginventory_stock_item (product_id, stock_id, qty, is_in_stock, manage_stock)
            SELECT seq, 1, (seq * 37) % 400, 1, 1 FROM seq_1_to_1100""",
        "ANALYZE TABLE quote, quote_item, quote_address, sales_order",
    ]
    with engine.connect() as connection:
        for statement in steps:
            started = time.perf_counter()
            connection.exec_driver_sql(statement.replace("%", "%%"))  # PyMySQL's format paramstyle
            print(f"  {' '.join(statement.split())[:70]}... {time.perf_counter() - started:.1f}s", file=sys.stderr)
    engine.dispose()
    server.dispose()


def count(engine: sa.engine.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT COUNT(*) FROM quote").scalar_one())


def set_index(engine: sa.engine.Engine, present: bool) -> None:
    with engine.connect() as connection:
        names = {row[2] for row in connection.exec_driver_sql("SHOW INDEX FROM quote")}
        if present and INDEX not in names:
            connection.exec_driver_sql(f"CREATE INDEX {INDEX} ON quote (is_active, updated_at)")
        elif not present and INDEX in names:
            connection.exec_driver_sql(f"DROP INDEX {INDEX} ON quote")


def carts_pass(url: str, window: Window) -> tuple[float, int, int]:
    """Seconds for one full ``carts`` pass, with the carts and lines it yielded."""
    source = MagentoSource(url)
    try:
        started = time.perf_counter()
        carts = lines = 0
        for cart in source.carts(window):
            carts += 1
            lines += len(cart.items)
        return time.perf_counter() - started, carts, lines
    finally:
        source.close()


def cli_pass(url: str, now: datetime) -> float | None:
    """Seconds for ``cartrescue carts --json`` end to end, or None when the CLI is not there."""
    probe = subprocess.run([sys.executable, "-m", "cartrescue.cli", "carts", "--help"], capture_output=True,
                           cwd=ROOT, text=True)
    if probe.returncode != 0:
        print("  cartrescue CLI not available: end-to-end figure skipped", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "cartrescue.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "shop": {"timezone": "UTC"},
            "source": {"type": "magento2", "url": url},
            "ledger": {"url": f"sqlite:///{folder}/ledger.db"},
        }))
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "cartrescue.cli", "carts", "--config", str(config), "--now",
             now.strftime("%Y-%m-%dT%H:%M:%SZ"), "--json", "--all"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        print(f"  cartrescue carts failed ({result.returncode}): {result.stderr.strip()[:300]}", file=sys.stderr)
        return None
    decisions = len(json.loads(result.stdout).get("decisions", []))
    print(f"  cartrescue carts --json: {decisions} decisions in {elapsed:.2f}s", file=sys.stderr)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CARTRESCUE_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306"))
    parser.add_argument("--quotes", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the database even if it has the rows")
    args = parser.parse_args()

    # The data is laid out relative to midnight UTC of the day it was built; later runs keep
    # using that instant, so the window always holds the same carts.
    shop_url = sa.engine.make_url(args.url).set(database=DATABASE).render_as_string(hide_password=False)
    engine = admin(args.url, DATABASE)
    built_at = None
    try:
        if not args.rebuild and count(engine) == args.quotes:
            with engine.connect() as connection:
                built_at = connection.exec_driver_sql("SELECT MAX(updated_at) FROM quote").scalar_one()
    except sa.exc.SQLAlchemyError:
        pass
    if built_at is None:
        now = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        print(f"building {args.quotes:,} quotes in {DATABASE} ...", file=sys.stderr)
        started = time.perf_counter()
        build(args.url, args.quotes, now)
        print(f"  built in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    else:
        now = built_at.replace(tzinfo=timezone.utc)
    engine.dispose()
    engine = admin(args.url, DATABASE)
    window = Window(now - timedelta(days=7), now - timedelta(minutes=45))

    set_index(engine, False)
    reference, carts, lines = carts_pass(shop_url, window)
    print(f"  without the index: {carts} carts, {lines} lines in {reference:.2f}s", file=sys.stderr)
    set_index(engine, True)
    carts_pass(shop_url, window)  # warm the buffer pool the same way the reference run did
    timings = [carts_pass(shop_url, window)[0] for _ in range(3)]
    with_index = statistics.median(timings)
    print(f"  with the index: {carts} carts in {with_index:.3f}s (runs: "
          f"{', '.join(f'{t:.3f}' for t in timings)}); {reference / with_index:.1f}x faster than without",
          file=sys.stderr)
    end_to_end = cli_pass(shop_url, now)
    engine.dispose()
    cli = f"; cartrescue carts --json {end_to_end:.2f}s" if end_to_end is not None else ""
    print(f"B5 magento2 carts: {with_index:.3f}s for {carts:,} due carts among {args.quotes:,} quotes "
          f"(target < 2 s; without index {reference:.2f}s, {reference / with_index:.1f}x){cli}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
