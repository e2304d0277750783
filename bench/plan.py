"""B2 and B3: dry-run planning and rendering throughput, and peak memory, from CSV.

    python bench/plan.py                      # B2: 100,000 carts, `run --json > /dev/null`, all cores
    python bench/plan.py --workers 1          # B2 in one process
    python bench/plan.py --carts 1000000 --memory   # B3: peak RSS at 1M vs 100k carts, per process

Generates the carts with examples/make_sample.py (same pinned clock as the demo) into a
temporary folder, runs the real CLI in a subprocess and reads its peak RSS from the kernel
(``wait4``: with workers, the largest of the processes, since each worker has its own memory).
``--workers`` is passed to ``run`` (default: run's own default, the cores). Prints the figure as
the last line. Never part of the test suite.
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
from pathlib import Path

from installed import like_an_install

REPO = Path(__file__).resolve().parent.parent
CONFIG = """\
now: "2026-11-20T10:00:00Z"
shop: {{name: Bench Shop, timezone: Europe/Stockholm, from_email: shop@example.com,
       unsubscribe_secret: bench-secret}}
source: {{type: csv, carts: carts.csv, orders: orders.csv}}
ledger: {{url: "sqlite:///ledger.db"}}
eligibility: {{disposable_domains: [throwaway.example.net]}}
priority:
  tiers:
    - {{name: vip, min_score: 60, sequence: call, channel: call-list, budget: {budget}}}
    - {{name: high, min_score: 35}}
    - {{name: standard, min_score: 0}}
sequences:
  default:
    steps:
      - {{delay: 1h, template: reminder-1}}
      - {{delay: 24h, template: reminder-2}}
      - {{delay: 72h, template: reminder-3, incentive: {{kind: percent, value: 10, code: COMEBACK10}}}}
  call:
    steps:
      - {{delay: 1h, template: reminder-1}}
"""


def prepare(folder: Path, carts: int) -> None:
    subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", str(carts),
                    "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
    (folder / "cartrescue.yaml").write_text(CONFIG.format(budget=1000), encoding="utf-8")


def measure(folder: Path, workers: int | None = None) -> tuple[float, int, str, float]:
    """Seconds, peak RSS in KiB (the largest process), the counts line of one `run --json > /dev/null`,
    and the CPU seconds (user + system) of all its processes: on a busy machine the wall time
    says little about how the run scales, its CPU time does."""
    command = [sys.executable, "-m", "cartrescue.cli", "run", "--json", "--config", str(folder / "cartrescue.yaml")]
    if workers is not None:
        command += ["--workers", str(workers)]
    started = time.perf_counter()
    with open(folder / "out.json", "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, cwd=folder)
        _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"run failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss, counts_line(folder / "out.json"), usage.ru_utime + usage.ru_stime


def counts_line(path: Path) -> str:
    """``carts 100000: send 26911, skip 31514, ...`` from the ``counts`` trailer of a ``--json`` file.

    Only the end of the file is read (it is hundreds of MB at a million carts); the trailer
    follows the decisions array, whose closing ``\n]`` cannot occur inside a JSON string.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        tail = b""
        for span in (4096, 65536, 1 << 20, size):
            handle.seek(max(0, size - span))
            tail = handle.read()
            if b'\n], "counts": ' in tail:
                break
    text = tail.decode("utf-8", errors="replace")
    at = text.rfind('\n], "counts": ')
    if at < 0:
        return "no counts in the output"
    counts, _end = json.JSONDecoder().raw_decode(text, at + len('\n], "counts": '))
    actions = ", ".join(f"{name} {counts[name]}" for name in ("send", "skip", "defer", "holdout") if name in counts)
    return f"carts {counts.get('carts')}: {actions}; problems {counts.get('problems')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--carts", type=int, default=100_000)
    parser.add_argument("--memory", action="store_true", help="B3: also run 100,000 carts and compare peak RSS")
    parser.add_argument("--workers", type=int, default=None, help="run --workers N (default: run's default)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="B2: time the run this many times; the last line gives the median (and the range)")
    args = parser.parse_args()
    like_an_install()
    with tempfile.TemporaryDirectory(prefix="cartrescue-bench-") as tmp:
        runs = [args.carts] if not args.memory else [100_000, args.carts]
        results = {}
        for count in runs:
            folder = Path(tmp) / str(count)
            folder.mkdir()
            prepare(folder, count)
            times: list[float] = []
            for _round in range(1 if args.memory else args.rounds):
                (folder / "ledger.db").unlink(missing_ok=True)
                load = os.getloadavg()[0]
                seconds, rss, counts, cpu = measure(folder, args.workers)
                times.append(seconds)
                results[count] = (statistics.median(times), max(rss, results.get(count, (0, 0))[1]))
                print(f"{count:>9,} carts: {seconds:6.2f} s, {count / seconds:9,.0f} carts/s, peak RSS {rss / 1024:6.1f} "
                      f"MiB, CPU {cpu:.1f} s = {cpu / count * 1e6:.0f} us/cart (load before {load:.2f})  ({counts})",
                      flush=True)
            for item in folder.iterdir():
                item.unlink()
    if args.memory:
        small, big = results[100_000][1], results[args.carts][1]
        print(f"B3 peak RSS: {big / 1024:.1f} MiB at {args.carts:,} carts, {small / 1024:.1f} MiB at 100,000 "
              f"({(big / small - 1) * 100:+.1f} %)")
    else:
        seconds, rss = results[args.carts]
        median = f"median of {args.rounds} runs, " if args.rounds > 1 else ""
        print(f"B2 dry-run plan+render: {args.carts / seconds:,.0f} carts/s ({median}{args.carts:,} carts in "
              f"{seconds:.2f} s)")


if __name__ == "__main__":
    main()
