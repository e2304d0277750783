"""Kill-anywhere soak: ``run --send`` killed at random moments, round after round, then checked.

    python bench/soak_kill.py [--minutes 15] [--rounds N] [--ledger sqlite|postgres|both]
                              [--carts 3000] [--seed S] [--keep]

Not a benchmark and not part of the test suite: a tool that hunts for breaks of the ledger's
promise (docs/sending.md, "At most once" and "The ledger's guarantees"): a crash or a kill never
sends a step twice, never drops the record of one that was sent, and one address gets at most one
message a shop day. All on loopback:

1. A shop folder: ``--carts`` carts from ``examples/make_sample.py`` (deterministic), a config
   with every eligible cart due after a minute and two later steps (24 h, 72 h), the clock pinned
   with ``--now``. Each round advances it by 1 h, 5 h or 25 h, so later steps come due and some
   rounds fall on the same shop day as the one before.
2. A real SMTP server (aiosmtpd, this script in its own process: ``serve``), restarted each round
   with that round's fault: ``clean``, ``slow`` (a delay before each reply to a message),
   ``transient`` (421 or 451 at random, to RCPT or to the message), ``ambiguous`` (the connection
   closed after the message's final dot, before the reply: the relay has it, cartrescue cannot
   know, docs say ``unconfirmed``, never resent) or ``mixed``. It appends one JSON line per
   message it got whole (cart, step, Message-ID, recipient, ``accepted`` or ``dropped``) before it
   answers, so a message the relay took is on record even if the run dies waiting for the reply.
3. Each round: ``cartrescue run --send --json --workers W`` (W 1 or 2, forked or spawned
   workers), then a SIGKILL (70 %), SIGTERM (15 %) or nothing (15 %) to the parent or a worker
   after a random delay (0.2 s to 6 s: before, during or after the sends); every process of the
   run is waited for; then a clean re-run at the same clock.
4. After all rounds, the checks (any failure: exit 1; the details are printed):
   - no (cart, step) reached the server twice (no ``--resend-unconfirmed`` is used, so the
     ledger allows no exception);
   - every message the server got has its ledger row, of the same cart and step: ``sent`` or
     ``claimed`` (a killed run) when it was answered 250, ``unconfirmed`` or ``claimed`` when the
     connection was dropped before the reply; every ``sent`` row was answered 250;
   - no address got two messages on one shop day;
   - each kill left at most ``2 x pool_size`` claims the server never saw (the pool in flight);
   - a clean re-run leaves no claim of its own without an outcome;
   - every exit code is a documented one (README "Exit codes"), and the one the moment allows:
     0 or 1 for a run nobody killed (1 only when the relay faulted), 130 after SIGTERM, 137 when
     a worker was killed, -9 for a parent killed itself.

The last line is the verdict with the totals (rounds, kills by target and moment, ledgers,
faults, messages). Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) for its ledger;
the database ``cr_soak_<pid>`` is made and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)  # make_sample.py's default clock
POOL = 6
VARIANTS = ("clean", "slow", "transient", "ambiguous", "mixed")
#: README "Exit codes" (a run): 128 + n is a worker killed by signal n.
DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 70, 130}



# -- the SMTP server (its own process) ------------------------------------------------------------

@dataclass
class Faults:
    """What the server does wrong in one round (probabilities per message)."""

    transient: float = 0.0  # a 421/451 to RCPT or to the message
    drop: float = 0.0  # close after the final dot, before the reply
    delay: float = 0.0  # seconds before each reply to a message

    @staticmethod
    def of(variant: str) -> "Faults":
        return {
            "clean": Faults(),
            "slow": Faults(delay=0.15),
            "transient": Faults(transient=0.15),
            "ambiguous": Faults(drop=0.04),
            "mixed": Faults(transient=0.08, drop=0.02, delay=0.05),
        }[variant]


def serve(log: Path, variant: str, round_number: int, seed: int) -> None:
    """Run the recording SMTP server until SIGTERM; print its port on the first line."""
    from aiosmtpd.smtp import SMTP

    faults = Faults.of(variant)
    rng = random.Random(seed)
    out = log.open("a", encoding="utf-8")

    def record(envelope: Any, outcome: str) -> None:
        headers = BytesHeaderParser().parsebytes(bytes(envelope.original_content))
        line = {"round": round_number, "outcome": outcome, "rcpt": list(envelope.rcpt_tos),
                "message_id": str(headers.get("Message-ID", "")), "cart": str(headers.get("X-Cartrescue-Cart", "")),
                "step": str(headers.get("X-Cartrescue-Step", "")), "at": time.time()}
        out.write(json.dumps(line) + "\n")
        out.flush()

    class Handler:
        async def handle_EHLO(self, smtp: Any, session: Any, envelope: Any, hostname: str,
                              responses: list[str]) -> list[str]:
            session.host_name = hostname
            responses.insert(-1, "250-PIPELINING")
            return responses

        async def handle_RCPT(self, smtp: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            if rng.random() < faults.transient / 2:
                return rng.choice(["451 4.7.1 greylisted, try later", "421 4.3.2 shutting down"])
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"

        async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
            if rng.random() < faults.drop:
                record(envelope, "dropped")  # the relay has it; the client never hears so
                smtp.transport.abort()
                return "421 4.3.0 gone"  # never reaches the client
            if rng.random() < faults.transient / 2:
                return "451 4.3.0 try later"
            record(envelope, "accepted")
            if faults.delay:
                await asyncio.sleep(rng.uniform(0, 2 * faults.delay))
            return "250 2.0.0 Ok: queued"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY by asyncio
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        server = await loop.create_server(lambda: SMTP(Handler(), hostname="soak.example.com", timeout=60),
                                          sock=sock)
        print(sock.getsockname()[1], flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(main())


class Relay:
    """The server process of one round."""

    def __init__(self, log: Path, variant: str, round_number: int, seed: int) -> None:
        command = [sys.executable, __file__, "serve", str(log), variant, str(round_number), str(seed)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def server_log(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


class LogCounter:
    """Counts the server log's lines as it grows, reading each byte once (polled every few ms)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        if self.log.exists():
            with self.log.open("rb") as file:
                file.seek(self.offset)
                chunk = file.read()
            self.offset += len(chunk)
            self.lines += chunk.count(b"\n")
        return self.lines


# -- the ledger ------------------------------------------------------------------------------------

def ledger_rows(url: str) -> list[dict[str, Any]]:
    """Every e-mail message row of the ledger (none before the first run made the tables)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("cr_message"):
                return []
            result = conn.exec_driver_sql(
                "SELECT id, cart_key, step, status, message_id, email, run_id, reply FROM cr_message "
                "WHERE channel = 'email'")
            return [dict(row) for row in result.mappings()]
    finally:
        engine.dispose()


# -- one round -------------------------------------------------------------------------------------

Target = Literal["parent", "worker"]
Signal = Literal["SIGKILL", "SIGTERM", "none"]
TARGETS: list[Target] = ["parent", "worker"]
SIGNALS: list[Signal] = ["SIGKILL", "SIGTERM", "none"]


@dataclass
class Round:
    number: int
    ledger: str
    variant: str
    now: datetime
    workers: int
    start: str  # fork | spawn
    signal: Signal
    target: Target
    delay: float  # seconds after the start; or after the ``after`` messages, if that is set
    after: int | None = None  # kill once the server got this many messages of the round
    moment: str = ""  # before-sends | mid-sends (signal sent) | ended-first (the run ended before it) | not-killed
    killed_exit: int | None = None
    rerun_exit: int | None = None
    received_at_kill: int = 0
    stranded: int = 0
    orphans_lived: float = 0.0
    problems: list[str] = field(default_factory=list)


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux ``/proc``)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def run_command(shop: Path, now: datetime, workers: int) -> list[str]:
    return [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--config", str(shop / "cartrescue.yaml"),
            "--now", now.strftime("%Y-%m-%dT%H:%M:%SZ"), "--workers", str(workers)]


def start_run(shop: Path, name: str, command: list[str], start: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CARTRESCUE_WORKER_START=start)
    with (shop / f"{name}.out").open("wb") as out, (shop / f"{name}.err").open("wb") as err:
        return subprocess.Popen(command, cwd=shop, stdout=out, stderr=err, env=env)


def expected_exit(code: int, sent_signal: Signal, target: Target, faulty: bool) -> str:
    """Why ``code`` is wrong for a run that got ``sent_signal`` (or none), or "" when it is what
    the README promises: 0, or 1 when the relay faulted (failed deliveries); 130 after SIGTERM;
    137 (128 + SIGKILL) when a worker was killed; -9 when the parent itself was."""
    if code not in DOCUMENTED and code <= 128 and code != -signal.SIGKILL:
        return f"exit {code} is not a documented exit code"
    allowed = {0, 1} if faulty else {0}
    if sent_signal == "SIGKILL":
        allowed.add(-signal.SIGKILL if target == "parent" else 128 + signal.SIGKILL)
    if sent_signal == "SIGTERM":
        allowed.add(130)
    if code not in allowed:
        return f"exit {code}, expected one of {sorted(allowed)}"
    return ""


def workers_of(pid: int) -> list[int]:
    """The live worker processes of a run (its children but the helpers it forks, ``cr-helper-*``)."""
    found = []
    for child in children(pid):
        try:
            name = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue
        if alive(child) and not name.startswith("cr-helper-"):
            found.append(child)
    return found


def play_round(shop: Path, url: str, log: Path, spec: Round, rng: random.Random) -> None:
    relay = Relay(log, spec.variant, spec.number, rng.randrange(1 << 30))
    try:
        write_config(shop, url, relay.port, rng)
        counter = LogCounter(log)
        before = counter.count()
        command = run_command(shop, spec.now, spec.workers)
        open_at_start = {row["id"] for row in ledger_rows(url) if row["status"] == "claimed"}
        process = start_run(shop, f"round{spec.number}-kill", command, spec.start)
        killed = False
        family: set[int] = set()
        if spec.after is not None:  # a moment among the sends: after so many messages, a little later
            give_up = time.monotonic() + 120
            while (counter.count() - before < spec.after and process.poll() is None
                   and time.monotonic() < give_up):
                family.update(children(process.pid))
                time.sleep(0.005)
        deadline = time.monotonic() + spec.delay
        while time.monotonic() < deadline and process.poll() is None:
            family.update(children(process.pid))
            time.sleep(0.005)
        received = counter.count() - before
        if process.poll() is None and spec.signal != "none":
            workers = workers_of(process.pid)
            family.update(workers)
            victim = process.pid
            if spec.target == "worker" and workers:
                victim = rng.choice(workers)
            elif spec.target == "worker":
                spec.target = "parent"  # one worker runs in the parent itself
            os.kill(victim, signal.SIGKILL if spec.signal == "SIGKILL" else signal.SIGTERM)
            killed = True
            spec.moment = "before-sends" if received == 0 else "mid-sends"
        else:
            spec.moment = "ended-first" if process.poll() is not None else "not-killed"
        spec.received_at_kill = received
        spec.killed_exit = process.wait(300)
        started = time.monotonic()
        while any(alive(pid) for pid in family) and time.monotonic() - started < 300:
            time.sleep(0.05)  # a killed parent's workers: wait until none sends any more
        spec.orphans_lived = time.monotonic() - started
        if any(alive(pid) for pid in family):
            spec.problems.append("a worker outlived its killed run by 300 s")
        time.sleep(0.3)  # whatever was in flight lands now or never
        faulty = spec.variant in ("transient", "ambiguous", "mixed")
        why = expected_exit(spec.killed_exit, spec.signal if killed else "none", spec.target, faulty)
        if why:
            spec.problems.append(f"killed run: {why}: {tail(shop / f'round{spec.number}-kill.err')}")
        got = {entry["message_id"] for entry in server_log(log)}
        open_before = {row["id"] for row in ledger_rows(url) if row["status"] == "claimed"}
        stranded = {row["id"] for row in ledger_rows(url)
                    if row["status"] == "claimed" and row["message_id"] not in got} - open_at_start
        spec.stranded = len(stranded)

        rerun = start_run(shop, f"round{spec.number}-rerun", command, spec.start)
        spec.rerun_exit = rerun.wait(600)
        why = expected_exit(spec.rerun_exit, "none", "parent", faulty)
        if why:
            spec.problems.append(f"clean re-run: {why}: {tail(shop / f'round{spec.number}-rerun.err')}")
        left = {row["id"] for row in ledger_rows(url) if row["status"] == "claimed"} - open_before
        if left:
            spec.problems.append(f"the clean re-run left {len(left)} claims without outcome: ids {sorted(left)[:10]}")
    finally:
        relay.stop()


def tail(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip() if path.exists() else ""
    return text[-600:] if text else "(no stderr)"


def write_config(shop: Path, url: str, port: int, rng: random.Random) -> None:
    """B1's config (bench/send.py: every eligible cart due after a minute, steps at 24 h and 72 h)
    on this round's relay and the soak's ledger, its clock left to ``--now``, quick retries, and a
    send rate slow enough that a kill often lands mid-send."""
    import yaml
    from send import CONFIG

    config = yaml.safe_load(CONFIG.format(now=START.isoformat(), port=port, pool=POOL, pipelining="true"))
    del config["now"]
    config["source"]["export_stale_after"] = None  # the pinned clock runs ahead of the files' times
    config["ledger"] = {"url": url, "lock_timeout": "10m"}
    config["smtp"].update(timeout="20s", retries=2, backoff=0.05, backoff_max=0.2,
                          rate_per_second=rng.choice([150, 400, 1000]))
    (shop / "cartrescue.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")


# -- the checks ------------------------------------------------------------------------------------

def check(rounds: list[Round], log: Path, url: str) -> list[str]:
    """Every violation of the ledger's promise across all rounds, one line each."""
    problems: list[str] = []
    received = server_log(log)
    rows = ledger_rows(url)
    by_message_id = {row["message_id"]: row for row in rows}
    now_of = {spec.number: spec.now for spec in rounds}

    per_step = Counter((entry["cart"], entry["step"]) for entry in received)
    for (cart, step), count in sorted(per_step.items()):
        if count > 1:
            statuses = [by_message_id.get(e["message_id"], {}).get("status") for e in received
                        if (e["cart"], e["step"]) == (cart, step)]
            problems.append(f"cart {cart} step {step} reached the server {count} times (ledger: {statuses})")

    accepted_ids = {entry["message_id"] for entry in received if entry["outcome"] == "accepted"}
    for entry in received:
        row = by_message_id.get(entry["message_id"])
        if row is None:
            problems.append(f"the server got {entry['message_id']} (cart {entry['cart']} step {entry['step']}), "
                            f"the ledger has no row of it")
            continue
        if (row["cart_key"], str(row["step"])) != (entry["cart"], entry["step"]):
            problems.append(f"{entry['message_id']}: server cart/step {entry['cart']}/{entry['step']}, "
                            f"ledger {row['cart_key']}/{row['step']}")
        allowed = {"sent", "claimed"} if entry["outcome"] == "accepted" else {"unconfirmed", "claimed"}
        if row["status"] not in allowed:
            problems.append(f"{entry['message_id']} ({entry['outcome']} by the server, round {entry['round']}) "
                            f"is {row['status']!r} in the ledger: {row['reply'][:200]}")
    for row in rows:
        if row["status"] == "sent" and row["message_id"] not in accepted_ids:
            problems.append(f"ledger row {row['id']} is sent but the server never accepted {row['message_id']}")

    per_day: dict[tuple[str, str], list[int]] = defaultdict(list)
    for entry in received:
        day = now_of[entry["round"]].date().isoformat()  # shop.timezone is UTC
        for address in entry["rcpt"]:
            per_day[(address.lower(), day)].append(entry["round"])
    for (address, day), seen in sorted(per_day.items()):
        if len(seen) > 1:
            problems.append(f"{address} got {len(seen)} messages on shop day {day} (rounds {seen})")

    for spec in rounds:
        if spec.stranded > 2 * POOL:
            spec.problems.append(f"{spec.stranded} claims the server never saw after one kill (pool {POOL})")
        problems.extend(f"round {spec.number} ({spec.ledger}): {p}" for p in spec.problems)
    return problems


# -- the soak --------------------------------------------------------------------------------------

def make_shop(folder: Path, carts: int) -> None:
    subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", str(carts),
                    "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)


def add_carts(folder: Path, generation: int, now: datetime, carts: int) -> None:
    """Append a fresh sample abandoned around ``now`` to the export, as a shop's hours add carts.

    Its carts, customers and orders get ids of their own (``g<N>-``), and nine addresses in ten
    too (``+g<N>``); the tenth comes back with a new cart, which the newest-cart pass and the
    one-message-a-day rule must handle across the rounds.
    """
    scratch = folder / f"generation-{generation}"
    subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", str(carts),
                    "--out", str(scratch), "--now", now.isoformat()], check=True, stdout=subprocess.DEVNULL)
    prefix = f"g{generation}-"

    def address(email: str) -> str:
        if not email or "@" not in email or zlib.crc32(email.encode()) % 10 == 0:
            return email
        local, domain = email.rsplit("@", 1)
        return f"{local}+g{generation}@{domain}"

    for name, ids in (("carts.csv", ("cart_id", "customer_id")), ("orders.csv", ("order_id", "cart_id", "customer_id"))):
        with (scratch / name).open(newline="", encoding="utf-8") as source, \
                (folder / name).open("a", newline="", encoding="utf-8") as target:
            reader = csv.DictReader(source)
            writer = csv.DictWriter(target, fieldnames=list(reader.fieldnames or []))
            for row in reader:
                for column in ids:
                    if row.get(column):
                        row[column] = prefix + row[column]
                row["email"] = address(row["email"])
                writer.writerow(row)
    shutil.rmtree(scratch)


def soak(ledger: str, args: argparse.Namespace, rng: random.Random) -> tuple[list[Round], list[str], int]:
    """All rounds on one ledger; the rounds, the violations, the messages the server got."""
    from workers import drop_postgres, postgres_ledger  # bench/workers.py: a fresh database on 127.0.0.1:5432

    folder = Path(tempfile.mkdtemp(prefix=f"cartrescue-soak-{ledger}-"))
    database = f"cr_soak_{os.getpid()}"
    url = postgres_ledger(database) if ledger == "postgres" else f"sqlite:///{folder / 'ledger.db'}"
    log = folder / "server.jsonl"
    rounds: list[Round] = []
    try:
        make_shop(folder, args.carts)
        now = START
        ends = time.monotonic() + args.minutes * 60
        while len(rounds) < args.rounds and time.monotonic() < ends:
            spec = Round(number=len(rounds) + 1, ledger=ledger, variant=rng.choice(VARIANTS), now=now,
                         workers=rng.randint(1, 2), start=rng.choice(["fork", "spawn"]),
                         signal=rng.choices(SIGNALS, [70, 15, 15])[0], target=rng.choice(TARGETS), delay=rng.uniform(0.2, 6.0))
            if rng.random() < 0.7:  # most kills among the sends, the rest anywhere from the start
                spec.after, spec.delay = rng.choice([rng.randint(1, 20), rng.randint(20, 400)]), rng.uniform(0, 0.05)
            play_round(folder, url, log, spec, rng)
            rounds.append(spec)
            print(f"{ledger} round {spec.number}: {spec.variant}, {spec.workers} worker(s) ({spec.start}), "
                  f"{spec.signal} to {spec.target} after " + (f"{spec.after} messages + " if spec.after else "")
                  + f"{spec.delay:.2f}s ({spec.moment}, "
                  f"{spec.received_at_kill} messages by then), exits {spec.killed_exit}/{spec.rerun_exit}, "
                  f"{spec.stranded} stranded claims, workers gone {spec.orphans_lived:.1f}s after" + (f"; PROBLEMS: {spec.problems}" if spec.problems else ""),
                  flush=True)
            now += timedelta(hours=rng.choice([1, 5, 25]))
            add_carts(folder, spec.number, now, args.fresh)  # new carts, besides the later steps of the old
        problems = check(rounds, log, url)
        return rounds, problems, len(server_log(log))
    finally:
        if ledger == "postgres":
            drop_postgres(database)
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def summary(rounds: list[Round], messages: dict[str, int]) -> str:
    kills = Counter(f"{r.signal}->{r.target}@{r.moment}" for r in rounds if r.signal != "none")  # @ended-first: not sent
    variants = Counter(r.variant for r in rounds)
    workers = Counter(f"{r.workers}w-{r.start}" for r in rounds)
    return (f"{len(rounds)} rounds; ledgers {dict(Counter(r.ledger for r in rounds))}; "
            f"messages at the server {messages}; faults {dict(variants)}; workers {dict(workers)}; "
            f"signals {dict(sorted(kills.items()))}; none sent {sum(r.signal == 'none' for r in rounds)}; "
            f"stranded claims {sum(r.stranded for r in rounds)}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="per ledger")
    parser.add_argument("--rounds", type=int, default=1000, help="at most this many rounds per ledger")
    parser.add_argument("--ledger", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--carts", type=int, default=3000, help="carts in the export at the start")
    parser.add_argument("--fresh", type=int, default=400, help="carts added to the export every round")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the shop folders (logs, outputs, SQLite ledger)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"seed {seed}", flush=True)
    rng = random.Random(seed)
    all_rounds: list[Round] = []
    problems: list[str] = []
    messages: dict[str, int] = {}
    for ledger in (["sqlite", "postgres"] if args.ledger == "both" else [args.ledger]):
        rounds, found, count = soak(ledger, args, rng)
        all_rounds += rounds
        problems += [f"{ledger}: {p}" for p in found]
        messages[ledger] = count
    for problem in problems:
        print(f"VIOLATION {problem}")
    verdict = "FAIL" if problems else "ok"
    print(f"soak {verdict} (seed {seed}): {summary(all_rounds, messages)}; {len(problems)} violations")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
