"""Benchmark B9: how B1 (send) and B2 (dry-run) grow with 1, 2 and 4 workers on one ledger.

    python bench/workers.py [--carts 20000] [--workers 1,2,4] [--ledgers sqlite,postgres] [--modes send,dry-run]

For each ledger (a SQLite file; a fresh PostgreSQL database on 127.0.0.1:5432, user postgres,
dropped at the end) and each worker count, all on loopback:

- ``dry-run``: ``run --json --workers N > out.json`` on ``--carts`` carts (the B2 config of
  bench/plan.py), timed as a subprocess, start-up included: carts per second;
- ``send``: ``run --send --quiet --workers N`` to Postfix's ``smtp-sink`` (the B1 config of
  bench/send.py, ``smtp.pool_size`` 16 shared by the workers), on a fresh ledger: messages per
  second, and the exactly-once check: every sent row has its own address and (cart, step), and
  the number of sent rows equals the run's send decisions.

Runs are interleaved (1, 2, 4, 1, 2, 4, ... with ``--rounds``) so that load drifts hit every
worker count alike; the load average is printed with each figure. The last line is the table's
summary: the speed-up of the largest worker count over one worker, per mode and ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import plan  # noqa: E402 - bench/plan.py: the B2 config
import send  # noqa: E402 - bench/send.py: smtp-sink and the B1 config
from installed import like_an_install

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_ledger(name: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_postgres(name: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


def check_exactly_once(url: str, sends: int) -> tuple[int, str]:
    """Sent rows, and "" when every address and every (cart, step, channel) has at most one."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        sent = conn.exec_driver_sql("SELECT count(*) FROM cr_message WHERE status = 'sent'").scalar()
        addresses = conn.exec_driver_sql(
            "SELECT count(DISTINCT email) FROM cr_message WHERE status = 'sent'").scalar()
        keys = conn.exec_driver_sql("SELECT count(*) FROM (SELECT DISTINCT cart_key, step, channel FROM cr_message "
                                    "WHERE status = 'sent') t").scalar()
        open_claims = conn.exec_driver_sql("SELECT count(*) FROM cr_message WHERE status = 'claimed'").scalar()
    engine.dispose()
    problems = []
    if addresses != sent:
        problems.append(f"{sent - addresses} addresses got two messages")
    if keys != sent:
        problems.append(f"{sent - keys} steps sent twice")
    if sent != sends:
        problems.append(f"{sends} send decisions but {sent} sent")
    if open_claims:
        problems.append(f"{open_claims} claims without outcome")
    return int(sent), "; ".join(problems)


def timed(command: list[str], cwd: Path, stdout: Path | None = None) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the run and all its workers.

    The CPU time is the load-independent figure: on a machine whose cores are busy with other
    work, more workers cannot show in the wall time, but the CPU a message costs still shows.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(stdout or os.devnull, "wb") as out:
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr.decode()[-2000:]}")
    return elapsed, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carts", type=int, default=20000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--ledgers", default="sqlite,postgres")
    parser.add_argument("--modes", default="send,dry-run")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pool", type=int, default=16)
    args = parser.parse_args()
    like_an_install()
    counts = [int(n) for n in args.workers.split(",")]
    ledgers = args.ledgers.split(",")
    modes = args.modes.split(",")

    folder = Path(tempfile.mkdtemp(prefix="cartrescue-b9-"))
    sink = None
    results: dict[tuple[str, str, int], list[float]] = {}
    try:
        subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", str(args.carts),
                        "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
        port = 0
        if "send" in modes:
            sink, port = send.start_sink(send.find_sink())
        command = [sys.executable, "-m", "cartrescue.cli", "run"]
        for round_ in range(args.rounds):
            for ledger in ledgers:
                for mode in modes:
                    for workers in counts:
                        database = f"cr_bench_b9_{os.getpid()}"
                        url = postgres_ledger(database) if ledger == "postgres" else f"sqlite:///{folder / 'ledger.db'}"
                        (folder / "ledger.db").unlink(missing_ok=True)
                        config = folder / "cartrescue.yaml"
                        if mode == "send":
                            text = send.CONFIG.format(now=send.NOW, port=port, pool=args.pool, pipelining="true")
                        else:
                            text = plan.CONFIG.format(budget=1000)
                        config.write_text(text.replace('"sqlite:///ledger.db"', json.dumps(url)), encoding="utf-8")
                        load = os.getloadavg()[0]
                        try:
                            if mode == "send":
                                took, cpu = timed(command + ["--send", "--json", "--workers", str(workers), "--config",
                                                             str(config)], folder, folder / "out.json")
                                document = json.loads((folder / "out.json").read_text())
                                sent, problem = check_exactly_once(url, document["counts"]["send"])
                                rate = sent / took
                                what = f"{sent:,} sent in {took:.2f} s = {rate:,.0f} msg/s, CPU {cpu / sent * 1e6:.0f} us/msg"
                                what += f"; exactly once: {problem or 'yes'}"
                            else:
                                took, cpu = timed(command + ["--json", "--workers", str(workers), "--config",
                                                             str(config)], folder, folder / "out.json")
                                rate = args.carts / took
                                what = (f"{args.carts:,} carts in {took:.2f} s = {rate:,.0f} carts/s, "
                                        f"CPU {cpu / args.carts * 1e6:.0f} us/cart")
                        finally:
                            if ledger == "postgres":
                                drop_postgres(database)
                        results.setdefault((ledger, mode, workers), []).append(rate)
                        print(f"round {round_ + 1} {ledger:8} {mode:7} {workers} worker(s): {what} "
                              f"(load before {load:.2f})", flush=True)
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        print(f"machine: {machine}", flush=True)
        summary = []
        for ledger in ledgers:
            for mode in modes:
                best = {n: max(results[(ledger, mode, n)]) for n in counts}
                unit = "msg/s" if mode == "send" else "carts/s"
                summary.append(f"{ledger} {mode}: " + ", ".join(f"{n}w {best[n]:,.0f}" for n in counts)
                               + f" {unit} ({best[counts[-1]] / best[counts[0]]:.2f}x)")
        print("B9: " + "; ".join(summary))
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
