"""B6: cold start, `cartrescue --help`, median of 10 runs (target < 250 ms).

    python bench/coldstart.py [--runs 10]

Heavy modules (SQLAlchemy, Jinja, Babel, aiosmtplib) are imported inside the commands; this
keeps that honest. Prints the figure as the last line. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from installed import like_an_install


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    like_an_install()
    command = [shutil.which("cartrescue") or "cartrescue", "--help"]
    if command[0] == "cartrescue":
        command = [sys.executable, "-m", "cartrescue.cli", "--help"]
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - started) * 1000)
    print(f"runs (ms): {', '.join(f'{t:.0f}' for t in times)}")
    print(f"B6 cold start: median {statistics.median(times):.0f} ms over {args.runs} runs of `cartrescue --help`")


if __name__ == "__main__":
    main()
