"""Many shops: `run-all` over N small shops against one `cartrescue run` per shop (as N cron lines).

    python bench/shops.py [--shops 50] [--carts 300] [--jobs 2] [--rounds 1]

Writes ``--shops`` shops of ``--carts`` carts each (examples/make_sample.py, the same pinned
clock as the demo; one config, CSV export and SQLite ledger per shop), then times, on the same
shops, a dry-run of every shop:

1. one fresh ``cartrescue run --config FILE --json`` per shop, one after the other (what a cron
   line per shop costs: each pays the interpreter's start and its imports);
2. one ``cartrescue run-all --json --jobs J`` over all of them (each shop's run forked from it).

Prints wall time and CPU time (user + system, of the process and every process it waited for)
of each, the CPU per shop, and the ratio. CPU is the figure that matters: an agency's cron runs
the shops side by side anyway, on cores its other work needs. The last line is the figure.
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from installed import like_an_install
from plan import CONFIG

REPO = Path(__file__).resolve().parent.parent


def prepare(root: Path, shops: int, carts: int) -> list[Path]:
    """``shops`` folders with a config, carts.csv and orders.csv; the sample is written once and copied."""
    sample = root / "sample"
    subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", str(carts),
                    "--out", str(sample)], check=True, stdout=subprocess.DEVNULL)
    configs = []
    for index in range(shops):
        folder = root / f"shop{index:03d}"
        folder.mkdir()
        for name in ("carts.csv", "orders.csv"):
            (folder / name).write_bytes((sample / name).read_bytes())
        config = folder / "cartrescue.yaml"
        config.write_text(CONFIG.format(budget=5), encoding="utf-8")
        configs.append(config)
    return configs


def timed(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (its own and its waited-for descendants') and exit code of ``command``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(command[:4])} failed ({code}): {process.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    return elapsed, usage.ru_utime + usage.ru_stime, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shops", type=int, default=50)
    parser.add_argument("--carts", type=int, default=300, help="carts per shop")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="run-all --jobs (default: the cores)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat both, alternating; medians in the last line")
    args = parser.parse_args()
    like_an_install()
    cli = [sys.executable, "-m", "cartrescue.cli"]
    with tempfile.TemporaryDirectory(prefix="cartrescue-bench-shops-") as tmp:
        root = Path(tmp)
        configs = prepare(root, args.shops, args.carts)
        separate_cpu, together_cpu, separate_wall, together_wall = [], [], [], []
        for round_ in range(1, args.rounds + 1):
            wall = cpu = 0.0
            for config in configs:
                seconds, used, _code = timed([*cli, "run", "--json", "--workers", "1", "--config", str(config)], root)
                wall, cpu = wall + seconds, cpu + used
            separate_wall.append(wall)
            separate_cpu.append(cpu)
            print(f"round {round_}: {args.shops} x `run`: {wall:6.2f} s wall, CPU {cpu:6.2f} s = "
                  f"{cpu / args.shops * 1000:4.0f} ms a shop (one after the other)", flush=True)
            wall, cpu, _code = timed([*cli, "run-all", "--json", "--jobs", str(args.jobs), *map(str, configs)], root)
            together_wall.append(wall)
            together_cpu.append(cpu)
            print(f"round {round_}: `run-all --jobs {args.jobs}`: {wall:6.2f} s wall, CPU {cpu:6.2f} s = "
                  f"{cpu / args.shops * 1000:4.0f} ms a shop (load before {os.getloadavg()[0]:.2f})", flush=True)
    separate, together = statistics.median(separate_cpu), statistics.median(together_cpu)
    print(f"Many shops: {args.shops} shops of {args.carts} carts, dry-run: run-all {together / args.shops * 1000:.0f} ms "
          f"of CPU a shop against {separate / args.shops * 1000:.0f} ms for a `run` each ({separate / together:.1f}x less "
          f"CPU; wall {statistics.median(together_wall):.1f} s against {statistics.median(separate_wall):.1f} s)")


if __name__ == "__main__":
    main()
