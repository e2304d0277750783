"""What a second worker can add on this machine: the same pure-Python work in 1 and in N processes.

    python bench/cores.py [--seconds 1.5] [--rounds 3]

Each round times a fixed piece of interpreter work (dict stores, string building, the kind of
work a run does per cart) in one process alone, then in N processes at once (N = the usable
cores), and reports the CPU time each process took. On dedicated cores the N processes take as
long as one alone; on a VM whose cores share a physical core, or a busy host, each takes longer,
and N workers can never run N times as fast. ``scaling`` is how many times one process's work
the N processes together do per second of wall time (N at best).

Not a benchmark of cartrescue: it says what the machine allows the B2 and B9 figures to reach.
Prints the figure as the last line. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time


def _work(loops: int) -> float:
    """CPU seconds for ``loops`` iterations of dict and string work."""
    started = time.process_time()
    table: dict[int, str] = {}
    for number in range(loops):
        table[number & 1023] = f"{number}:{number * 7}"
    return time.process_time() - started


def _calibrate(seconds: float) -> int:
    loops = 100_000
    while True:
        took = _work(loops)
        if took >= 0.2:
            return int(loops * seconds / took)
        loops *= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="CPU seconds of work per process (default 1.5)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    loops = _calibrate(args.seconds)
    alone: list[float] = []
    together: list[float] = []
    walls: list[float] = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(cores) as pool:
        for _round in range(args.rounds):
            alone.append(pool.apply(_work, (loops,)))
            started = time.perf_counter()
            times = pool.map(_work, [loops] * cores, chunksize=1)
            walls.append(time.perf_counter() - started)
            together.extend(times)
            print(f"  one alone {alone[-1]:.2f} s CPU; {cores} at once {', '.join(f'{t:.2f}' for t in times)} s CPU "
                  f"each, {walls[-1]:.2f} s wall (load {os.getloadavg()[0]:.2f})", flush=True)
    one, each = statistics.median(alone), statistics.median(together)
    scaling = cores * one / statistics.median(walls)
    print(f"cores: {cores} usable; each of {cores} busy processes runs at {one / each:.2f}x the speed of one alone; "
          f"scaling {scaling:.2f}x of {cores}")


if __name__ == "__main__":
    main()
