"""Seeded fuzzing of the whole CLI with hostile carts files and configs.

Each case mutates a slice of the bundled sample (hostile cell values, broken rows, stray bytes,
truncation, repeated rows, a wrong header) or its config, then runs ``carts``, ``run`` or
``run --outbox`` with ``--json`` in-process. Whatever the input: no traceback, stdout is exactly
one valid JSON document, and the exit code is one of the README's table (never 70, "a bug").
Each case has its own fixed seed, so a failure names its case number and replays alone; the cases
run in slices of ``SLICE``, which pytest-xdist spreads over the cores.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cartrescue.cli import app
from conftest import REPO

pytestmark = pytest.mark.slow

CASES = 320
SLICE = 40  # cases per test, so that pytest-xdist spreads them over the cores
SEED = 20261130
EXIT_CODES = {0, 1, 2, 3, 4, 5, 6}  # README: Exit codes
SAMPLE_LINES = (REPO / "examples" / "carts.csv").read_text(encoding="utf-8").splitlines(keepends=True)[:61]
ORDERS = (REPO / "examples" / "orders.csv").read_text(encoding="utf-8")

HOSTILE = [
    "", " ", "[/]", "[bold red]x", "\x1b[2J\x1b]0;title\x07", "\x00", "\r", "a\nb", '"', '""', "'", ";", ",,,",
    "123456789012345678901234567", "1e9", "1E400", "-5", "-0", "NaN", "Infinity", "9" * 400, "0.0000001",
    "1,234.56", "1.234,56", "1 234,56", "12,5", "0", "2026-13-45", "2026-11-20T25:00", "9999-12-31T23:59:59",
    "0001-01-01T00:00:00", "1700000000", "😀" * 200, "=HYPERLINK(\"http://evil.example\")", "+46 70",
    "@SUM(A1)", "javascript:alert(1)", "data:text/html,<script>1</script>", "<script>alert(1)</script>",
    "{{ 7 * 7 }}", "{% for x in range(10**9) %}", "åsa@example.com", "x@y", "@@", "a@b@c.example",
    "bot-1@example.com", "noreply@example.com", "x@storebotmail.joonix.net", "\u202eevil", "SEK", "XXX", "eur",
    "JPY", "BHD", "yes", "no", "maybe", "sv_SE", "zz", "../../etc/passwd", "%s%s%n", "NULL", "None", "true",
    "x" * 5000,
]
CONFIG_MUTATIONS = [
    {"eligibility": {"cutoff": "soon"}}, {"eligibility": {"consent": "sometimes"}}, {"ledger": {"lock_timeout": "1s"}},
    {"shop": {"timezone": "Mars/Base"}}, {"shop": {"from_email": ""}}, {"shop": {"reply_to": "nope"}},
    {"priority": {"tiers": []}}, {"priority": {"tiers": [{"name": "x", "sequence": "missing"}]}},
    {"sequences": {"default": {"steps": []}}}, {"templates": "no-such-folder"}, {"source": {"type": "nope"}},
    {"source": {"carts": "missing.csv"}}, {"source": {"encoding": "no-such-codec"}}, {"source": {"delimiter": "ab"}},
    {"smtp": {"port": 0}}, {"shop": {"currency": "EURO"}}, {"shop": {"exchange_rates": {"SEK": -1}}},
    {"eligibility": {"min_total": "lots"}}, {"now": "yesterday"}, {"colour": "red"},
]


def _mutate_rows(rng: random.Random, lines: list[str]) -> list[str]:
    lines = list(lines)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        row = rng.randrange(1, len(lines)) if len(lines) > 1 else 0
        if kind <= 2:  # a hostile value in a random cell
            cells = lines[row].rstrip("\n").split(",")
            cells[rng.randrange(len(cells))] = rng.choice(HOSTILE).replace(",", ";")
            lines[row] = ",".join(cells) + "\n"
        elif kind == 3:  # a row repeated further down
            lines.insert(rng.randrange(1, len(lines) + 1), lines[row])
        elif kind == 4:  # a row cut short or lost
            lines[row] = lines[row][: rng.randrange(len(lines[row]) + 1)]
        elif kind == 5:  # a header cell renamed
            cells = lines[0].rstrip("\n").split(",")
            cells[rng.randrange(len(cells))] = rng.choice(["id", "E-mail", "", "cart_id"])
            lines[0] = ",".join(cells) + "\n"
        elif kind == 6:  # an extra cell or an unbalanced quote
            lines[row] = lines[row].rstrip("\n") + rng.choice([",extra", ',"open', ",,,"]) + "\n"
        else:
            del lines[row]
    return lines


def _carts_bytes(rng: random.Random) -> bytes:
    data = "".join(_mutate_rows(rng, SAMPLE_LINES)).encode("utf-8")
    roll = rng.random()
    if roll < 0.08:  # stray bytes that are not UTF-8
        at = rng.randrange(len(data))
        data = data[:at] + bytes([rng.choice([0x80, 0xE9, 0xFF, 0xC3])]) + data[at:]
    elif roll < 0.12:  # the export died half-way
        data = data[: rng.randrange(len(data))]
    elif roll < 0.15:
        data = b""
    elif roll < 0.18:
        data = data.replace(b",", b";")
    return data


def _config(rng: random.Random, folder: Path) -> dict:
    config = yaml.safe_load((REPO / "examples" / "cartrescue.yaml").read_text(encoding="utf-8"))
    config["ledger"] = {"url": f"sqlite:///{folder / 'ledger.db'}"}
    config["shop"]["unsubscribe_secret"] = "fuzz-secret-0123456789"
    if rng.random() < 0.15:
        mutation = rng.choice(CONFIG_MUTATIONS)
        for key, value in mutation.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
    return config


@pytest.mark.parametrize("first", range(0, CASES, SLICE))
def test_no_input_gives_a_traceback_or_anything_but_one_json_document(tmp_path: Path, first: int) -> None:
    runner = CliRunner()
    failures: list[str] = []
    for case in range(first, first + SLICE):
        rng = random.Random(SEED * 1000 + case)  # each case replays on its own
        folder = tmp_path / f"case-{case}"
        folder.mkdir()
        (folder / "carts.csv").write_bytes(_carts_bytes(rng))
        (folder / "orders.csv").write_text(ORDERS, encoding="utf-8")
        config = folder / "cartrescue.yaml"
        config.write_text(yaml.safe_dump(_config(rng, folder), allow_unicode=True), encoding="utf-8")
        command = rng.choice([["carts"], ["run"], ["run", "--outbox", str(folder / "out")]])
        result = runner.invoke(app, [*command, "--json", "--config", str(config)], catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            failures.append(f"case {case} {command}: {type(result.exception).__name__}: {result.exception}")
            continue
        try:
            document = json.loads(result.stdout)
        except ValueError as exc:
            failures.append(f"case {case} {command}: stdout is not one JSON document ({exc}): {result.stdout[-300:]!r}")
            continue
        if result.exit_code not in EXIT_CODES:
            failures.append(f"case {case} {command}: exit {result.exit_code}: {result.stderr[-300:]}")
        elif result.exit_code >= 2 and "error" not in document:
            failures.append(f"case {case} {command}: exit {result.exit_code} without an error object")
        if "Traceback" in result.stderr:
            failures.append(f"case {case} {command}: a traceback on stderr")
    print("\n".join(failures))  # shown by pytest on failure, one line per case
    assert failures == []
