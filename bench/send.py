"""Benchmark B1: the full send pipeline against Postfix's smtp-sink, and mailmerge 2.3.0 beside it.

    python bench/send.py [--carts 20000] [--pool 16] [--mailmerge both|text|markdown|none] [--stepwise]
                         [--breakdown] [--keep] [--rounds 1]

What it does, all on loopback:

1. Finds ``smtp-sink`` (Debian package ``postfix``); if it is missing, installs it with
   ``apt-get install -y postfix`` (``DEBIAN_FRONTEND=noninteractive``; the Postfix daemon is not
   started). Starts ``smtp-sink`` itself on 127.0.0.1 and a free port, and stops it at the end.
2. Writes ``--carts`` carts with ``examples/make_sample.py`` (deterministic) and a config in which
   every eligible cart is due (consent none, no quiet hours, step 1 after a minute; all the gates
   still run), a fresh SQLite ledger, and ``smtp.pool_size = --pool``.
3. Times ``cartrescue run --send --quiet`` as a subprocess: CSV -> plan -> claim -> render ->
   MIME -> SMTP -> ledger, start-up included. The rate is messages the ledger records as sent,
   divided by that wall time. The CPU time of all its processes (workers included) is printed
   too: on a machine whose speed drifts, it compares two versions better than the wall time.
4. Installs mailmerge 2.3.0 into a venv under /tmp (once; ``pip install mailmerge==2.3.0``), and
   has it send the same recipients (the rows cartrescue sent: address, name, the first item) to
   the same sink, timed the same way: with a plain-text template (its fastest case, the
   reference of BENCHMARKS.md) and with a Markdown one (text + HTML, the shape of our messages).
5. Prints the rates and ratios; the last line is the figure, with the conservative ratio (against
   the plain-text run). Targets: >= 4,000 msg/s and >= 5x mailmerge.

``--rounds N`` repeats steps 3 and 4 N times, alternating (each cartrescue run on a fresh ledger),
and the last line gives the medians: the rate, and the ratio of each round's pair. On a machine
whose speed drifts from minute to minute, a pair measured side by side is the steadier figure.

``--breakdown`` also times a dry-run of the same config (plan + render only, no MIME, no SMTP,
no ledger writes), which says how much of the send run is the pipeline before the channel.
``--stepwise`` also times the send with ``smtp.pipelining: false`` (each command waits for its
reply, as against a relay without PIPELINING), on a fresh ledger, in the same run.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from installed import like_an_install

REPO = Path(__file__).resolve().parent.parent
MAILMERGE_VENV = Path(tempfile.gettempdir()) / "cartrescue-bench-mailmerge-2.3.0"
NOW = "2026-11-20T10:00:00Z"  # make_sample.py's default clock

CONFIG = """\
now: "{now}"
shop: {{name: Bench Shop, from_email: shop@example.com, unsubscribe_secret: bench-not-a-secret}}
source: {{type: csv, carts: carts.csv, orders: orders.csv}}
ledger: {{url: "sqlite:///ledger.db"}}
eligibility: {{consent: none, quiet_hours: null, cutoff: 1m, max_age: 30d}}
priority:
  tiers: [{{name: standard, min_score: 0, channel: email}}]
sequences:
  default:
    steps:
      - {{delay: 1m, template: reminder-1}}
      - {{delay: 24h, template: reminder-2}}
      - {{delay: 72h, template: reminder-3}}
smtp: {{host: 127.0.0.1, port: {port}, security: none, pool_size: {pool}, timeout: 60s, pipelining: {pipelining}}}
"""

_MAILMERGE_HEAD = """\
TO: "{{first_name}} {{last_name}}" <{{email}}>
SUBJECT: {{first_name}}, you left something in your cart
FROM: Bench Shop <shop@example.com>
"""
MAILMERGE_TEMPLATES = {
    # Plain text: mailmerge's fastest case, and the reference in BENCHMARKS.md (the conservative ratio).
    "text": _MAILMERGE_HEAD + """
Hi {{first_name}},

You left {{item}} in your cart at Bench Shop. It is still waiting for you:
{{recovery_url}}

Unsubscribe: https://shop.example.com/unsubscribe?token=bench
""",
    # Markdown: mailmerge's way to text + HTML (multipart/alternative), the same shape as ours.
    "markdown": _MAILMERGE_HEAD + """CONTENT-TYPE: text/markdown

Hi {{first_name}},

You left **{{item}}** in your cart at Bench Shop. It is still waiting for you:
[finish your order]({{recovery_url}})

[Unsubscribe](https://shop.example.com/unsubscribe?token=bench)
""",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find_sink() -> str:
    for candidate in (shutil.which("smtp-sink"), "/usr/sbin/smtp-sink"):
        if candidate and Path(candidate).exists():
            return candidate
    log("smtp-sink not found: installing Debian's postfix (apt-get, non-interactive)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = sudo + ["apt-get", "install", "-y", "-q", "postfix"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)
    return "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink(binary: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [binary]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
    command += ["-h", "sink.example.com", f"127.0.0.1:{port}", "1024"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100).startswith(b"220"):
                    return process, port
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"smtp-sink exited: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not answer within 10 s")


def timed(command: list[str], cwd: Path, stdout: int | None = subprocess.DEVNULL) -> float:
    """Wall seconds of ``command``; its CPU seconds (all its processes) go to ``timed.cpu``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # type: ignore[attr-defined]
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr.decode()[-2000:]}")
    return elapsed


def cartrescue_command() -> list[str]:
    return [sys.executable, "-m", "cartrescue.cli"]


def sent_rows(ledger: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(ledger) as db:
        return db.execute("SELECT email, cart_id FROM cr_message WHERE status = 'sent' AND transport = 'smtp'").fetchall()


def ensure_mailmerge() -> Path:
    binary = MAILMERGE_VENV / "bin" / "mailmerge"
    if not binary.exists():
        log(f"installing mailmerge 2.3.0 into {MAILMERGE_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(MAILMERGE_VENV)], check=True)
        subprocess.run([str(MAILMERGE_VENV / "bin" / "pip"), "install", "-q", "mailmerge==2.3.0"], check=True)
    return binary


def mailmerge_inputs(folder: Path, sent: list[tuple[str, str]], port: int) -> tuple[Path, Path]:
    """The same recipients as cartrescue's sent rows, with their names and first item."""
    wanted = {cart_id for _email, cart_id in sent}
    carts: dict[str, dict[str, str]] = {}
    with (folder / "carts.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["cart_id"] in wanted and row["cart_id"] not in carts:
                carts[row["cart_id"]] = row
    database = folder / "mailmerge_database.csv"
    with database.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "item", "recovery_url"])
        for email, cart_id in sent:
            row = carts[cart_id]
            writer.writerow([email, row["first_name"], row["last_name"], row["name"], row["recovery_url"]])
    for name, text in MAILMERGE_TEMPLATES.items():
        (folder / f"mailmerge_{name}.txt").write_text(text, encoding="utf-8")
    config = folder / "mailmerge_server.conf"
    config.write_text(f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nratelimit = 0\n", encoding="utf-8")
    return database, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carts", type=int, default=20000)
    parser.add_argument("--pool", type=int, default=16, help="smtp.pool_size for cartrescue (default 16)")
    parser.add_argument("--mailmerge", choices=["text", "markdown", "both", "none"], default="both",
                        help="mailmerge templates to time: plain text (its fast case, the ratio on the last line), "
                             "markdown (text + HTML like ours), both (default) or none")
    parser.add_argument("--breakdown", action="store_true", help="also time a dry-run of the same config")
    parser.add_argument("--stepwise", action="store_true",
                        help="also time the send without PIPELINING (smtp.pipelining: false)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time cartrescue and mailmerge this many times, alternating; the last line gives medians")
    parser.add_argument("--workers", type=int, default=None,
                        help="run --workers N (default: run's own default, the cores for 20,000 carts)")
    args = parser.parse_args()
    like_an_install()

    sink, port = start_sink(find_sink())
    folder = Path(tempfile.mkdtemp(prefix="cartrescue-b1-"))
    try:
        subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", str(args.carts),
                        "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
        config = folder / "cartrescue.yaml"
        config.write_text(CONFIG.format(now=NOW, port=port, pool=args.pool, pipelining="true"), encoding="utf-8")
        load = os.getloadavg()[0]

        dry = None
        if args.breakdown:
            dry = timed(cartrescue_command() + ["run", "--config", str(config), "--quiet"], folder)
            (folder / "ledger.db").unlink(missing_ok=True)
        if args.stepwise:
            stepwise = folder / "stepwise.yaml"
            stepwise.write_text(CONFIG.format(now=NOW, port=port, pool=args.pool, pipelining="false")
                                .replace("ledger.db", "ledger-stepwise.db"), encoding="utf-8")
            took = timed(cartrescue_command() + ["run", "--send", "--quiet", "--config", str(stepwise)], folder)
            count = len(sent_rows(folder / "ledger-stepwise.db"))
            log(f"cartrescue without PIPELINING: {count:,} sent in {took:.2f} s = {count / took:,.0f} msg/s "
                f"(load before {load:.2f})")
        workers = [] if args.workers is None else ["--workers", str(args.workers)]
        names = ["text", "markdown"] if args.mailmerge == "both" else [] if args.mailmerge == "none" else [args.mailmerge]
        rates: list[float] = []
        ratios: dict[str, list[float]] = {name: [] for name in names}
        sent: list[tuple[str, str]] = []
        for round_number in range(1, args.rounds + 1):
            (folder / "ledger.db").unlink(missing_ok=True)
            load = os.getloadavg()[0]
            elapsed = timed(cartrescue_command() + ["run", "--send", "--quiet", "--config", str(config), *workers],
                            folder)
            cpu = timed.cpu  # type: ignore[attr-defined]
            sent = sent_rows(folder / "ledger.db")
            ours = len(sent) / elapsed
            rates.append(ours)
            prefix = f"round {round_number}: " if args.rounds > 1 else ""
            log(f"{prefix}cartrescue: {len(sent):,} of {args.carts:,} carts sent in {elapsed:.2f} s = {ours:,.0f} msg/s, "
                f"CPU {cpu:.2f} s = {cpu / max(len(sent), 1) * 1e6:,.0f} us/msg over all its processes "
                f"(pool {args.pool}, PIPELINING, load before {load:.2f})")
            if dry is not None and round_number == 1:
                log(f"  of which planning + rendering (dry-run of the same config): {dry:.2f} s; "
                    f"claim + MIME + SMTP + ledger: {elapsed - dry:.2f} s "
                    f"= {len(sent) / max(elapsed - dry, 1e-9):,.0f} msg/s on their own")
            if names and round_number == 1:  # every round sends the same rows
                database, mm_config = mailmerge_inputs(folder, sent, port)
                binary = ensure_mailmerge()
            for name in names:
                took = timed([str(binary), "--no-dry-run", "--no-limit", "--output-format", "raw", "--template",
                              str(folder / f"mailmerge_{name}.txt"), "--database", str(database),
                              "--config", str(mm_config)], folder)
                theirs = len(sent) / took
                ratios[name].append(ours / theirs)
                cpu = timed.cpu  # type: ignore[attr-defined]
                log(f"{prefix}mailmerge 2.3.0 ({name} template): {len(sent):,} messages in {took:.2f} s = "
                    f"{theirs:,.0f} msg/s, CPU {cpu:.2f} s = {cpu / len(sent) * 1e6:,.0f} us/msg; "
                    f"cartrescue is {ours / theirs:.1f}x")
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        log(f"machine: {machine}; work folder {folder}{' (kept)' if args.keep else ''}")
        ratio = ""
        if names:
            name = "text" if "text" in names else names[0]  # the conservative reference first
            ratio = f", ratio to mailmerge 2.3.0 ({name}) {statistics.median(ratios[name]):.1f}x"
        spread = f" (median of {args.rounds} rounds: {min(rates):,.0f}-{max(rates):,.0f})" if args.rounds > 1 else ""
        print(f"B1: cartrescue {statistics.median(rates):,.0f} msg/s{spread} ({len(sent):,} messages){ratio} "
              f"(targets: >= 4,000 msg/s, >= 5x)")
    finally:
        sink.terminate()
        sink.wait(10)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
