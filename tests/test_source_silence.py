"""A shop's PostgreSQL or MariaDB database that stops answering once connected ends the command
within ``source.statement_wait``, not never.

Before, only the connection had a deadline: a shop database (or a pgbouncer or cloud SQL proxy
whose backend went away while it keeps the TCP connection open and acknowledged) that stopped
answering mid-read held ``run`` for good, its lock too, so every later cron round exited 4 and no
customer was reminded again. Here a loopback proxy (``tcpproxy.FreezingProxy``) stands in front
of the real server and stops forwarding as the run looks up the second chunk's orders: the run
stops with one line naming the shop database (exit 3, one ``--json`` document), what it
delivered before is recorded, nothing after was claimed, and a run once the proxy forwards again
delivers the rest, no step twice.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url
from tcpproxy import FreezingProxy

import shopdb
from cartrescue.ledger import Ledger
from conftest import NOW, REPO, Shop, iso

#: The tests' deadline (source.statement_wait), and how long a process may take to end after the freeze.
WAIT = 2
BOUND = 30
#: One more cart than a run plans at a time (pipeline.PLAN_CHUNK): the second chunk's orders are looked up mid-read.
CARTS = 510
DDL = [
    "CREATE TABLE carts (id integer PRIMARY KEY, email varchar(100), currency varchar(3), created timestamp NULL, "
    "updated timestamp NULL, consent smallint, sku varchar(20), name varchar(50), qty integer, price decimal(10,2))",
    "CREATE TABLE orders (id integer, email varchar(100), created timestamp NULL, delivered smallint, "
    "total decimal(10,2))",
]
QUERIES = {
    "carts": "SELECT id AS cart_id, email, currency, created AS created_at, updated AS updated_at, "
             "consent AS marketing_consent, sku, name, qty AS quantity, price AS unit_price FROM carts "
             "WHERE updated >= :start AND updated <= :end ORDER BY id",
    "orders": "SELECT id AS order_id, email, created AS created_at, delivered, total FROM orders "
              "WHERE email IN :emails",
}


@pytest.fixture(scope="module", params=shopdb.KINDS)
def shop_db(request: pytest.FixtureRequest) -> Iterator[shopdb.ShopDb]:
    """A shop of :data:`CARTS` carts, each idle two hours and more at ``NOW``."""
    with shopdb.shop_database(request.param, "shopwait") as db:
        for statement in DDL:
            db.execute(statement)
        idle = (NOW - timedelta(hours=2)).replace(tzinfo=None)
        db.insert("carts", [{"id": n, "email": f"c{n}@example.com", "currency": "EUR",
                             "created": idle - timedelta(minutes=n), "updated": idle - timedelta(seconds=n),
                             "consent": 1, "sku": "MUG", "name": "Blue mug", "qty": 1, "price": "25.00"}
                            for n in range(1, CARTS + 1)])
        db.insert("orders", [{"id": 1, "email": "nobody@example.com", "created": idle, "delivered": 0,
                              "total": "5.00"}])
        yield db


@pytest.fixture
def proxy(shop_db: shopdb.ShopDb) -> Iterator[FreezingProxy]:
    with FreezingProxy(make_url(shop_db.url).port) as started:
        yield started


def proxied(db: shopdb.ShopDb, proxy: FreezingProxy) -> str:
    """``db``'s URL through ``proxy``."""
    return make_url(db.url).set(port=proxy.port).render_as_string(hide_password=False)


def shop_on(folder: Path, url: str, **source: object) -> Shop:
    """A shop whose source is the ``sql`` source of :data:`QUERIES` at ``url``."""
    shop = Shop(folder)
    config = yaml.safe_load(yaml.safe_dump(shop.config))
    config["source"] = {"type": "sql", "url": url, "queries": QUERIES, **source}
    shop.config = config
    return shop


def start(shop: Shop, *command: str) -> subprocess.Popen[bytes]:
    """``cartrescue COMMAND --json`` in its own process, its output to files (``out-N``, ``err-N``)."""
    shop.write()
    runs = len(list(shop.folder.glob("out-*")))
    now = ["--now", iso(NOW)] if command[0] in ("run", "carts") else []
    return subprocess.Popen([sys.executable, "-m", "cartrescue.cli", *command, "--json", "--config",
                             str(shop.config_path), *now], cwd=REPO,
                            stdout=(shop.folder / f"out-{runs}").open("wb"),
                            stderr=(shop.folder / f"err-{runs}").open("wb"))


def ended(shop: Shop, process: subprocess.Popen[bytes], within: float) -> tuple[int, str, str]:
    """The exit code, stdout and stderr of ``process``, which must end ``within`` seconds."""
    try:
        code = process.wait(within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"still waiting for the shop's database {within} s after it stopped answering")
    number = len(list(shop.folder.glob("out-*"))) - 1
    return code, (shop.folder / f"out-{number}").read_text(), (shop.folder / f"err-{number}").read_text()


def delivered(shop: Shop) -> Counter[str]:
    """The carts of the messages in the outbox, each with its number of messages."""
    return Counter(path.name.split("-step")[0] for path in (shop.folder / "out").glob("*.eml"))


def said(db: shopdb.ShopDb, proxy: FreezingProxy) -> str:
    """The line of a shop database that stopped answering (the URL as messages show it)."""
    safe = make_url(proxied(db, proxy)).render_as_string(hide_password=True)
    return f"source.url {safe} stopped answering for {WAIT} s (source.statement_wait)"


@pytest.mark.slow
def test_a_shop_database_that_stops_answering_mid_read_stops_the_run_and_a_rerun_sends_no_step_twice(
        shop_db: shopdb.ShopDb, proxy: FreezingProxy, tmp_path: Path) -> None:
    shop = shop_on(tmp_path, proxied(shop_db, proxy), statement_wait=f"{WAIT}s")
    proxy.freeze_on(b"FROM orders", after=1)  # the first chunk's lookup is answered, the second's not
    process = start(shop, "run", "--outbox", "out", "--workers", "1")  # one reader: the second lookup is its own
    frozen = time.monotonic()
    code, out, err = ended(shop, process, BOUND)
    assert code == 3, err
    document = json.loads(out)  # exactly one document
    assert document["error"]["exit_code"] == 3
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert said(shop_db, proxy) in lines[0]
    assert str(shop.config_path) in lines[0]
    assert time.monotonic() - frozen < WAIT + 15  # the run itself, then one deadline: not one per statement
    before = delivered(shop)
    assert len(before) == 500 and max(before.values()) == 1  # the first chunk, planned before the freeze

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        rows = {r["cart_key"]: r["status"] for r in ledger.messages()}
    finally:
        ledger.close()
    assert {key.replace(":", "_") for key in rows} == set(before)  # nothing claimed past what was read
    assert set(rows.values()) == {"sent"}  # each message delivered has its outcome: no claim left without one

    proxy.thaw()
    again = start(shop, "run", "--outbox", "out")
    code, out, err = ended(shop, again, 120)
    assert code == 0, err
    assert json.loads(out)["killed_left"] == 0
    total = delivered(shop)
    assert len(total) == CARTS and max(total.values()) == 1  # the rest, and no step twice


@pytest.mark.slow
def test_doctor_against_a_shop_database_that_stopped_answering_fails_its_source_check(
        shop_db: shopdb.ShopDb, proxy: FreezingProxy, tmp_path: Path) -> None:
    shop = shop_on(tmp_path, proxied(shop_db, proxy), statement_wait=f"{WAIT}s")
    proxy.freeze_on(b"FROM carts")  # connected, its read of the carts goes unanswered
    code, out, err = ended(shop, start(shop, "doctor"), BOUND)
    assert code == 3, err
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert checks["source"]["status"] == "fail"
    assert checks["source"]["detail"].endswith(said(shop_db, proxy)), checks["source"]


@pytest.mark.slow
def test_doctors_timeout_bounds_the_source_check_below_the_statement_wait(
        shop_db: shopdb.ShopDb, proxy: FreezingProxy, tmp_path: Path) -> None:
    """``source.statement_wait`` (10 min by default: a run's first read on a big table) held an
    agency's loop of ``doctor`` that long; the doctor waits at most its ``--timeout``, and says so."""
    shop = shop_on(tmp_path, proxied(shop_db, proxy))
    proxy.freeze_on(b"FROM carts")
    code, out, err = ended(shop, start(shop, "doctor", "--timeout", f"{WAIT}s"), BOUND)
    assert code == 3, err
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert checks["source"]["status"] == "fail" and checks["source"]["exit_code"] == 3
    safe = make_url(proxied(shop_db, proxy)).render_as_string(hide_password=True)
    assert checks["source"]["detail"].endswith(f"source.url {safe} stopped answering for {WAIT} s (doctor --timeout; "
                                               "source.statement_wait allows 600 s)"), checks["source"]


@pytest.mark.slow
def test_a_read_through_the_deadline_is_unaffected_while_the_server_answers(
        shop_db: shopdb.ShopDb, proxy: FreezingProxy, tmp_path: Path) -> None:
    shop = shop_on(tmp_path, proxied(shop_db, proxy), statement_wait=f"{WAIT}s")
    code, out, err = ended(shop, start(shop, "run", "--outbox", "out"), 120)
    assert code == 0, err
    assert len(delivered(shop)) == CARTS


def test_a_streamed_read_whose_reader_takes_longer_than_the_wait_is_not_cut_short(
        shop_db: shopdb.ShopDb, proxy: FreezingProxy) -> None:
    """The deadline is the server's answer, not the reader's pace: a run delivering one chunk
    for longer than ``source.statement_wait`` while the carts stream waits is no silence."""
    from cartrescue.sources.sql import ShopDatabase

    database = ShopDatabase(proxied(shop_db, proxy), source="sql")
    database.wait_for(1, "source.url")
    try:
        rows = database.stream("SELECT id FROM carts ORDER BY id", batch=100)
        first = next(rows)
        time.sleep(1.5)
        assert [first["id"], *(row["id"] for row in rows)] == list(range(1, CARTS + 1))
    finally:
        database.close()


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_stream_the_server_stops_feeding_fails_within_the_wait_and_closes_at_once(
        shop_db: shopdb.ShopDb, proxy: FreezingProxy, capfd: pytest.CaptureFixture[str]) -> None:
    """A freeze mid-stream (the rows of a result larger than every buffer on the way): the next
    read fails after one deadline, and closing the result (a MariaDB result not read to its end,
    a PostgreSQL cursor) does not wait a second deadline: the run's stop is one wait long."""
    from cartrescue.errors import SourceError
    from cartrescue.sources.sql import ShopDatabase

    database = ShopDatabase(proxied(shop_db, proxy), source="sql")
    database.wait_for(WAIT, "source.url")
    try:
        rows = database.stream("SELECT a.id, b.email, REPEAT('x', 200) AS pad FROM carts a CROSS JOIN carts b",
                               batch=1000)
        next(rows)
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"stopped answering for 2 s \(source\.statement_wait\)"):
            for _row in rows:
                pass
        assert time.monotonic() - started < WAIT + 3
    finally:
        started = time.monotonic()
        database.close()
        assert time.monotonic() - started < 1
    gc.collect()  # a streamed result left unread, collected: nothing more to read, nothing on stderr
    assert capfd.readouterr().err == ""


def test_a_statement_wait_under_a_second_is_refused_naming_the_key_and_line(tmp_path: Path) -> None:
    from cartrescue.config import load_config
    from cartrescue.errors import ConfigError

    shop = shop_on(tmp_path, "postgresql+psycopg://shop@127.0.0.1/shop", statement_wait="0s")
    with pytest.raises(ConfigError, match=r"source\.statement_wait: must be at least 1s .*\(line \d+\)"):
        load_config(shop.write())


def test_the_default_wait_is_ten_minutes(tmp_path: Path) -> None:
    from cartrescue.config import load_config

    shop = shop_on(tmp_path, "postgresql+psycopg://shop@127.0.0.1/shop")
    assert load_config(shop.write()).source.statement_wait == timedelta(minutes=10)


def test_a_statement_wait_on_a_csv_source_is_said_to_be_ignored(tmp_path: Path) -> None:
    from cartrescue.config import load_config

    shop = Shop(tmp_path)
    shop.configure(source={"statement_wait": "5m"})
    warnings = load_config(shop.write()).ignored_keys()
    assert any("source.statement_wait: ignored: a csv source reads exported files" in line for line in warnings)
