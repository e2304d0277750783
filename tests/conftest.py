"""Shared fixtures: fixture carts written as real CSV files, real configs, the real CLI.

Tests describe carts compactly with :func:`cart` and run the real command line through
:func:`cli`; nothing of the pipeline is mocked.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import typer.testing
import yaml
from hypothesis import settings
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)  # a Friday; 11:00 in Stockholm

CART_COLUMNS = [
    "cart_id", "customer_id", "email", "phone", "first_name", "last_name", "locale", "marketing_consent",
    "is_guest", "currency", "total", "created_at", "updated_at", "recovery_url", "device", "store_id",
    "sku", "name", "quantity", "unit_price", "unit_cost", "stock_on_hand", "image_url", "product_url", "sms_consent",
]
# Hypothesis fails an example that takes over 200 ms by default: a timed assertion, which on a
# loaded 2-core CI machine failed a correct property test. Speed is the benchmarks' business.
settings.register_profile("cartrescue", deadline=None)
settings.load_profile("cartrescue")

ORDER_COLUMNS = ["order_id", "email", "customer_id", "cart_id", "total", "currency", "status", "created_at", "delivered"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the cores. Many tests wait rather than compute (on the
    CLI's subprocesses, on PostgreSQL and MariaDB, on a relay's delay, on a deadline that must
    pass), and with a worker per core a third of the cores' time went idle in those files (the
    kill, timeout and worker tests: 35 % idle at 2 workers, 15 % at 3, 22 % less wall time)."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (each keeps its order): pytest-xdist hands tests out in this order, so
    the minute-long ones start while the short ones can still fill the other cores around them,
    instead of one of them running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The wheel and venv of tests/test_installed.py start building now, in a process of their
    own, when a test to run needs them: see its ``start_building``."""
    if session.config.option.collectonly:
        return
    if any("installed" in getattr(item, "fixturenames", ()) for item in session.items):
        from test_installed import installed_base, start_building

        start_building(installed_base(session.config))


@pytest.fixture(scope="session", autouse=True)
def _template_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterable[Path]:
    """Compiled templates go to a folder of the session (and of each xdist process), never to the
    user's ~/.cache: the tests' templates live in temporary folders. Commands the tests start
    inherit it. tests/test_template_cache.py covers the cache itself."""
    folder = tmp_path_factory.mktemp("template-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CARTRESCUE_CACHE_DIR", str(folder))
        yield folder


def iso(moment: datetime) -> str:
    return moment.isoformat()


def besides_the_pinned_clock(stderr: str) -> list[str]:
    """stderr's lines but the warning that the config pins the clock (``now:``), which a run,
    ``carts``, ``preview`` and ``send-test`` of the bundled demo say first (commands.common.load)."""
    return [line for line in stderr.strip().splitlines()
            if not (line.startswith("warning: ") and ": now: pins the clock at " in line)]


def in_shard(k: int, count: int, many: int) -> list[str]:
    """The first ``many`` addresses ``h<n>@example.com`` that fall in shard ``k`` of ``count``
    (by the hash that assigns carts to shards)."""
    from cartrescue.shards import shard_of

    return [a for a in (f"h{n}@example.com" for n in range(10_000)) if shard_of(a, count) == k][:many]


def cart(
    cart_id: str,
    *,
    email: str | None = None,
    idle: timedelta = timedelta(hours=2),
    now: datetime = NOW,
    items: Iterable[tuple[Any, ...]] = (("SKU-1", "Blue mug", 1, "25.00"),),
    consent: str = "yes",
    customer_id: str = "",
    locale: str = "en",
    currency: str = "EUR",
    first_name: str = "Ann",
    phone: str = "",
    total: str = "",
    sms_consent: str = "",
    last_name: str = "Tester",
) -> list[dict[str, str]]:
    """Rows of one cart; items are (sku, name, qty, price[, cost[, stock]])."""
    updated = now - idle
    rows = []
    for index, item in enumerate(items):
        sku, name, quantity, price, *rest = item
        row = {
            "sku": sku, "name": name, "quantity": str(quantity), "unit_price": str(price),
            "unit_cost": str(rest[0]) if len(rest) > 0 and rest[0] is not None else "",
            "stock_on_hand": str(rest[1]) if len(rest) > 1 and rest[1] is not None else "",
        }
        if index == 0:
            row.update({
                "cart_id": cart_id, "customer_id": customer_id,
                "email": f"{cart_id}@example.com" if email is None else email,
                "phone": phone, "first_name": first_name, "last_name": last_name, "locale": locale,
                "sms_consent": sms_consent,
                "marketing_consent": consent, "currency": currency, "total": total,
                "created_at": iso(updated - timedelta(minutes=10)), "updated_at": iso(updated),
                "recovery_url": f"https://shop.example.com/cart/{cart_id}",
            })
        else:
            row["cart_id"] = cart_id
        rows.append(row)
    return rows


def order(order_id: str, *, email: str = "", cart_id: str = "", created: datetime, delivered: str = "yes",
          customer_id: str = "", status: str = "complete", total: str = "50.00") -> dict[str, str]:
    return {"order_id": order_id, "email": email, "customer_id": customer_id, "cart_id": cart_id, "total": total,
            "currency": "EUR", "status": status, "created_at": iso(created), "delivered": delivered}


def write_csv(path: Path, rows: Iterable[dict[str, str]], columns: list[str], delimiter: str = ",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=delimiter)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


BASE_CONFIG: dict[str, Any] = {
    "shop": {"name": "Test Shop", "timezone": "Europe/Stockholm", "from_email": "shop@example.com",
             "address": "Test Shop, Storgatan 1, Stockholm", "unsubscribe_secret": "test-secret-of-the-suite"},
    "source": {"type": "csv", "carts": "carts.csv", "orders": "orders.csv"},
    "ledger": {"url": "sqlite:///ledger.db"},
    "eligibility": {"consent": "required", "quiet_hours": None},
    "priority": {"tiers": [{"name": "standard", "min_score": 0}]},
}


def dump_yaml(value: Any) -> str:
    """``yaml.safe_dump(value, sort_keys=False)``, by libyaml where PyYAML has it: every command a
    test runs through :meth:`Shop.cli` writes its config first, and PyYAML's own writer took 2 ms."""
    return yaml.dump(value, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


class Shop:
    """A folder with carts.csv, orders.csv and cartrescue.yaml, and a CLI bound to it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config_path = folder / "cartrescue.yaml"
        self.carts: list[dict[str, str]] = []
        self.orders: list[dict[str, str]] = []
        self.config: dict[str, Any] = dict(BASE_CONFIG)

    def add(self, *carts: list[dict[str, str]]) -> "Shop":
        for rows in carts:
            self.carts.extend(rows)
        return self

    def add_orders(self, *orders: dict[str, str]) -> "Shop":
        self.orders.extend(orders)
        return self

    def configure(self, **extra: Any) -> "Shop":
        self.config = _merge(self.config, extra)
        return self

    def write(self) -> Path:
        write_csv(self.folder / "carts.csv", self.carts, CART_COLUMNS)
        write_csv(self.folder / "orders.csv", self.orders, ORDER_COLUMNS)
        self.config_path.write_text(dump_yaml(self.config), encoding="utf-8")
        return self.config_path

    def cli(self, *args: str, now: datetime | None = NOW) -> "Outcome":
        self.write()
        full = [*args, "--config", str(self.config_path)]
        if now is not None:
            full += ["--now", iso(now)]
        return cli(*full)

    def messages(self) -> list[dict[str, Any]]:
        """Every ``cr_message`` row of the shop's SQLite ledger, in claim order."""
        from cartrescue.ledger import Ledger

        ledger = Ledger(f"sqlite:///{self.folder / 'ledger.db'}")
        try:
            return ledger.messages()
        finally:
            ledger.close()

    def suppression(self, address: str) -> dict[str, Any] | None:
        """The suppression of ``address`` in the shop's SQLite ledger, or ``None``."""
        from cartrescue.contacts import email_hash
        from cartrescue.ledger import Ledger

        ledger = Ledger(f"sqlite:///{self.folder / 'ledger.db'}")
        try:
            return ledger.suppression(email_hash(address))
        finally:
            ledger.close()

    def decisions(self, now: datetime = NOW, command: str = "carts") -> dict[str, dict[str, Any]]:
        result = self.cli(command, "--json", now=now)
        assert result.exit_code in (0, 1), result.output
        return {row["cart_id"]: row for row in result.json["decisions"]}


def texting(shop: Shop) -> Shop:
    """``shop`` in Sweden with its tier going by text message (a dry-run or ``carts`` sends nothing)."""
    return shop.configure(shop={"country": "SE"},
                          priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                          sms={"sender": "+46700000001", "quiet_hours": None,
                               "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "t",
                                          "base_url": "https://api.example.com"}})


class Outcome:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.output = stdout + stderr

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def worker_pids(parent: int, prefix: str | None = None) -> list[int]:
    """The forked worker processes of ``run --workers`` process ``parent`` (Linux): the children
    a worker names itself (``cr-worker-K/N``), not the helpers that split and index its files.
    ``prefix``: another name they give themselves (``run-all``'s shops: ``cr-shop-<n>``)."""
    from cartrescue.processes import WORKER_PREFIX

    prefix = prefix or WORKER_PREFIX
    path = Path(f"/proc/{parent}/task/{parent}/children")
    pids = []
    for pid in (int(n) for n in path.read_text().split()) if path.exists() else ():
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith(prefix):
                pids.append(pid)
        except OSError:  # it has ended meanwhile
            continue
    return pids


def stopped_reading_fifo(process: Any, fifo: Path) -> tuple[Any, Any]:
    """SIGTERM to ``process`` (a ``subprocess.Popen``) once it waits on ``fifo`` for text that
    never comes: the moment pinned down from outside, never guessed with a sleep. Its stdout and
    stderr (its exit code is ``process.returncode``)."""
    import time

    deadline, writer = time.monotonic() + 60, None
    while writer is None and time.monotonic() < deadline:  # opens once the process waits on the FIFO
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.02)
    assert writer is not None and process.poll() is None
    try:
        time.sleep(0.1)  # the process now waits for the FIFO's text
        process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=60)
    finally:
        os.close(writer)


def stopped_with_shops_running(args: list[str], cwd: Path, shops: int, settle: float = 0.0) -> tuple[int, str, str]:
    """``cartrescue ARGS`` (``run-all``, ``report-all``, ``doctor-all`` with ``--jobs``) in its own
    process, sent SIGTERM once ``shops`` of its shops' processes run (and ``settle`` seconds more):
    its exit code, stdout and stderr."""
    import subprocess
    import sys
    import time

    from cartrescue.batch import SHOP_PREFIX

    process = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(worker_pids(process.pid, SHOP_PREFIX)) < shops and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(settle)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


# typer's runner built the app's click commands anew for every call (~40 ms of the suite's tens of
# thousands of in-process calls); the command line a process builds once (``app()``) and invokes
# many times is the same, so the runner builds it once a process too.
if hasattr(typer.testing, "_get_command"):  # a private helper: a typer without it builds them each call
    typer.testing._get_command = functools.cache(typer.testing._get_command)  # type: ignore[attr-defined]


def cli(*args: str) -> Outcome:
    """The real CLI in-process (typer's runner); stdout and stderr kept apart."""
    from cartrescue.cli import app

    runner = CliRunner()
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop(tmp_path)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the bundled demo (examples/: config, carts, orders; its clock pinned) in
    ``tmp_path``; the config file's path. Its ledger is written beside it."""
    for name in ("cartrescue.yaml", "carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    return tmp_path / "cartrescue.yaml"


@pytest.fixture
def stop_signal() -> Iterator[None]:
    """SIGTERM handled as ``cartrescue`` handles it (cli.main: :class:`cartrescue.stops.Stops`), for one test."""
    from cartrescue.stops import Stops

    previous = signal.signal(signal.SIGTERM, Stops())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def make_shop(tmp_path: Path) -> Callable[[str], Shop]:
    def factory(name: str) -> Shop:
        folder = tmp_path / name
        folder.mkdir()
        return Shop(folder)

    return factory


def services_required() -> bool:
    """`.ci/run` sets this: a service that does not answer fails the test instead of skipping it."""
    return os.environ.get("CARTRESCUE_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Headless Chromium for the screenshot and report-page tests; required in CI."""
    from cartrescue.screenshot import find_chromium

    binary = find_chromium()
    if binary is None:
        reason = "headless Chromium is not installed (Debian: apt-get install -y chromium)"
        if services_required():
            pytest.fail(f"CARTRESCUE_REQUIRE_SERVICES is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return binary
