"""Benchmark B8: the webhook channel, the whole pipeline, to a loopback receiver.

    python bench/webhook.py [--carts 20000] [--concurrency 8] [--breakdown] [--keep]

What it does, all on loopback:

1. Starts a receiver in its own process (so that it has the other core): a small asyncio HTTP/1.1
   server that checks every request's ``X-Cartrescue-Signature`` (HMAC-SHA256 of timestamp +
   body, as docs/channels.md tells receivers to), counts each ``Idempotency-Key`` and answers
   ``200``. It is not the bottleneck: it takes several times the channel's rate on one core.
2. Writes ``--carts`` carts with ``examples/make_sample.py`` (deterministic) and a config in which
   every eligible cart is due on the webhook channel (consent none, no quiet hours, step 1 after a
   minute; every gate still runs), with a fresh SQLite ledger.
3. Times ``cartrescue run --send --quiet`` as a subprocess: CSV -> plan -> render -> JSON ->
   claim -> HTTP POST -> ledger, start-up included. The rate is requests the ledger records as
   sent, divided by that wall time; the receiver's counts must agree (every request verified,
   every key once).
4. As a reference, times the HTTP client alone (httpx, the same body, the same concurrency, one
   event loop) against the same receiver: the ceiling the channel works under.

``--breakdown`` also times a dry-run of the same config (plan + render + JSON, no claim, no HTTP).
The last line is the figure. Target: >= 2,000 requests/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from installed import like_an_install

REPO = Path(__file__).resolve().parent.parent
NOW = "2026-11-20T10:00:00Z"  # make_sample.py's default clock
SECRET = "bench-webhook-secret-0123456789"

CONFIG = """\
now: "{now}"
shop: {{name: Bench Shop, from_email: shop@example.com, unsubscribe_secret: bench-not-a-secret}}
source: {{type: csv, carts: carts.csv, orders: orders.csv}}
ledger: {{url: "sqlite:///ledger.db"}}
eligibility: {{consent: none, quiet_hours: null, cutoff: 1m, max_age: 30d, backfill: 30d}}
priority:
  tiers: [{{name: standard, min_score: 0, channel: webhook}}]
sequences:
  default:
    steps:
      - {{delay: 1m, template: reminder-1}}
      - {{delay: 24h, template: reminder-2}}
webhook: {{url: "http://127.0.0.1:{port}/hook", secret: {secret}, concurrency: {concurrency}, timeout: 30s}}
"""

RECEIVER = r'''
import asyncio, hashlib, hmac, json, sys, time
SECRET = sys.argv[1].encode()
stats = {"requests": 0, "verified": 0, "refused": 0, "keys": set()}

class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
            size = int(fields.get("content-length", "0"))
            if len(self.buffer) < end + 4 + size:
                return
            body, self.buffer = self.buffer[end + 4:end + 4 + size], self.buffer[end + 4 + size:]
            self.respond(head[0], fields, body)

    def respond(self, line, fields, body):
        if line.startswith("GET /stats"):
            answer = json.dumps({**stats, "keys": len(stats["keys"])}).encode()
        else:
            stats["requests"] += 1
            parts = dict(p.split("=", 1) for p in fields.get("x-cartrescue-signature", "").split(",") if "=" in p)
            stamp = parts.get("t", "")
            mac = hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            if stamp.isdigit() and abs(time.time() - int(stamp)) <= 300 and hmac.compare_digest(mac, parts.get("v1", "")):
                stats["verified"] += 1
                stats["keys"].add(fields.get("idempotency-key"))
                answer = b'{"ok":true}'
            else:
                stats["refused"] += 1
                answer = b'{"ok":false}'
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % len(answer) + answer)

async def main():
    server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
'''

CLIENT = r'''
import asyncio, json, sys, time, httpx
url, count, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = json.dumps({"event": "cart.reminder", "text": "x" * 1500, "html": "y" * 3000}).encode()

async def main():  # as the channel does it: one client of one kept-alive connection per worker
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(limits=limits, timeout=30) for _ in range(concurrency)]
    numbers = iter(range(count))
    async def worker(client):
        for n in numbers:
            await client.post(url, content=body, headers={"Content-Type": "application/json",
                                                          "Idempotency-Key": f"ref-{n}"})
    started = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    print(count / (time.perf_counter() - started))

asyncio.run(main())
'''


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stats(port: int) -> dict[str, int]:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).json()


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``command``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr.decode()[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carts", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8, help="webhook.concurrency (default 8)")
    parser.add_argument("--breakdown", action="store_true", help="also time a dry-run of the same config")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args()
    like_an_install()

    folder = Path(tempfile.mkdtemp(prefix="cartrescue-b8-"))
    (folder / "receiver.py").write_text(RECEIVER, encoding="utf-8")
    receiver = subprocess.Popen([sys.executable, str(folder / "receiver.py"), SECRET], stdout=subprocess.PIPE)
    try:
        port = int(receiver.stdout.readline())  # type: ignore[union-attr]
        subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", str(args.carts),
                        "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
        config = folder / "cartrescue.yaml"
        config.write_text(CONFIG.format(now=NOW, port=port, secret=SECRET, concurrency=args.concurrency),
                          encoding="utf-8")
        load = os.getloadavg()[0]
        command = [sys.executable, "-m", "cartrescue.cli", "run", "--quiet", "--config", str(config)]
        dry, dry_cpu = timed(command, folder) if args.breakdown else (None, 0.0)
        elapsed, cpu = timed(command[:4] + ["--send"] + command[4:], folder)
        with sqlite3.connect(folder / "ledger.db") as db:
            sent = db.execute("SELECT count(*) FROM cr_message WHERE status = 'sent' AND transport = 'webhook'").fetchone()[0]
        seen = stats(port)
        ours = sent / elapsed
        log(f"cartrescue: {sent:,} of {args.carts:,} carts posted in {elapsed:.2f} s = {ours:,.0f} req/s "
            f"(concurrency {args.concurrency}, load before {load:.2f}); receiver: {seen['requests']:,} requests, "
            f"{seen['verified']:,} verified, {seen['refused']} refused, {seen['keys']:,} distinct keys; "
            f"{cpu * 1e6 / max(sent, 1):,.0f} µs of CPU per request, start-up included")
        if seen["verified"] != sent or seen["keys"] != sent or seen["refused"]:
            raise SystemExit("the receiver's counts do not match the ledger")
        if dry is not None:
            log(f"  of which planning + rendering + JSON (dry-run of the same config): {dry:.2f} s, "
                f"{dry_cpu * 1e6 / max(sent, 1):,.0f} µs of CPU per request; claim + HTTP + ledger: {elapsed - dry:.2f} s "
                f"= {sent / max(elapsed - dry, 1e-9):,.0f} req/s on their own, {(cpu - dry_cpu) * 1e6 / max(sent, 1):,.0f} µs "
                "of CPU per request")
        (folder / "client.py").write_text(CLIENT, encoding="utf-8")
        reference = float(subprocess.run([sys.executable, str(folder / "client.py"), f"http://127.0.0.1:{port}/ref",
                                          str(min(sent, 10000) or 1000), str(args.concurrency)],
                                         capture_output=True, text=True, check=True).stdout)
        log(f"httpx alone (same receiver, ~5 KB bodies, concurrency {args.concurrency}): {reference:,.0f} req/s; "
            f"the pipeline reaches {ours / reference:.0%} of it")
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        log(f"machine: {machine}; work folder {folder}{' (kept)' if args.keep else ''}")
        print(f"B8: cartrescue webhook {ours:,.0f} req/s ({sent:,} signed requests, each verified and once); "
              f"httpx alone {reference:,.0f} req/s (target >= 2,000 req/s)")
    finally:
        receiver.terminate()
        receiver.wait(10)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
