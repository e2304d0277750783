"""Benchmark: money formatting, :func:`cartrescue.compose.money.format_money` vs Babel's ``format_currency``.

    python bench/money.py [--amounts 100000] [--reference-amounts 0] [--repeat 3]

Formats the same varied amounts (whole and fractional, 0-4 places, negatives, zeros, from cents
to millions) in varied (locale, currency) pairs with ``format_money(amount, currency, locale)``
and with ``babel.numbers.format_currency(amount, currency, locale=locale)``, checks that every
string is the same, and prints microseconds per call for both. The ratio is the last line.

Timing: each formatter runs ``--repeat`` passes in chunks of 1,000 after a short warm-up; the
fastest time of each chunk counts (the machine is shared; the fastest try is the least
disturbed one). Babel is timed on the first ``--reference-amounts`` amounts (0 = all of them).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babel.numbers import format_currency  # noqa: E402

from cartrescue.compose.money import format_money  # noqa: E402

PAIRS = [
    ("en", "USD"), ("en_GB", "GBP"), ("sv", "SEK"), ("sv_SE", "EUR"), ("hu", "HUF"),
    ("ru", "RUB"), ("af", "ZAR"), ("kk", "KZT"), ("de", "EUR"), ("fr", "CHF"),
    ("hi_IN", "INR"), ("ja", "JPY"), ("ar", "BHD"), ("nl", "EUR"),
]  # fmt: skip

Case = tuple[Decimal, str, str]


def make_amounts(count: int, seed: int = 5) -> list[Case]:
    """``count`` (amount, currency, locale) triples, mostly shop-like prices."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        locale, currency = rng.choice(PAIRS)
        roll = rng.random()
        if roll < 0.6:  # a price or cart total: 1.00-2,000.00
            amount = Decimal(rng.randint(100, 200_000)).scaleb(-2)
        elif roll < 0.75:  # whole units, up to a million (HUF/KZT-like totals)
            amount = Decimal(rng.randint(0, 1_000_000))
        elif roll < 0.9:  # computed: discounts, tax, 3-4 places to round
            amount = Decimal(rng.randint(0, 10**9)).scaleb(-rng.randint(3, 4))
        else:  # refunds and corrections
            amount = -Decimal(rng.randint(0, 10**7)).scaleb(-rng.randint(0, 4))
        cases.append((amount, currency, locale))
    return cases


def ours(case: Case) -> str:
    return format_money(case[0], case[1], case[2])


def babel(case: Case) -> str:
    return format_currency(case[0], case[1], locale=case[2])


def time_per_call(
    fmt: Callable[[Case], str], cases: Sequence[Case], repeat: int, chunk: int = 1000
) -> tuple[float, list[str]]:
    """Microseconds per call (best of ``repeat`` per chunk), and the strings."""
    for case in cases[:500]:  # warm-up: imports, locale data, caches
        fmt(case)
    chunks = [cases[i : i + chunk] for i in range(0, len(cases), chunk)]
    best = [float("inf")] * len(chunks)
    out: list[str] = []
    for _ in range(repeat):
        out = []
        for n, part in enumerate(chunks):
            start = time.perf_counter()
            strings = [fmt(case) for case in part]
            best[n] = min(best[n], time.perf_counter() - start)
            out += strings
    return sum(best) / len(cases) * 1e6, out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amounts", type=int, default=100_000)
    parser.add_argument("--reference-amounts", type=int, default=0,
                        help="how many of the amounts to format with Babel (0 = all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)  # fmt: skip

    cases = make_amounts(args.amounts)
    sample = cases[: args.reference_amounts or None]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{len(cases)} amounts over {len(PAIRS)} (locale, currency) pairs")

    load = os.getloadavg()[0]
    fast, got = time_per_call(ours, cases, args.repeat)
    slow, expected = time_per_call(babel, sample, args.repeat)
    print(f"format_money:    {fast:.2f} us/call over {len(cases)} (best of {args.repeat} per 1000)")
    print(f"format_currency: {slow:.2f} us/call over {len(sample)} (best of {args.repeat} per 1000)")
    print(f"load average before timing: {load:.2f} (other work on the machine slows both)")
    differ = [(case, a, b) for case, a, b in zip(sample, got, expected) if a != b]
    for case, a, b in differ[:5]:
        print(f"  DIFFERS {case}: {a!r} != babel {b!r}")
    verdict = f"all {len(sample)} identical" if not differ else f"{len(differ)} of {len(sample)} DIFFER"
    print(f"money: format_money {fast:.2f} us/call, format_currency {slow:.2f} us/call, "
          f"{slow / fast:.1f}x faster; {verdict}")  # fmt: skip
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
