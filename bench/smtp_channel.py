"""The SMTP channel alone: CPU per message, with and without PIPELINING, against Postfix's smtp-sink.

    python bench/smtp_channel.py [--messages 20000] [--pool 16] [--rounds 3]

B1 (bench/send.py) measures the whole pipeline; this isolates what issue 13 asked of the
channel: messages already rendered (~8.8 KB, text + HTML) go through ``SmtpChannel.deliver``
(MIME build, dot-stuffing, MAIL/RCPT/DATA, the message, the replies) to ``smtp-sink`` on
loopback, which this script starts (installing Debian's postfix if needed, as bench/send.py
does). It alternates rounds of the pipelined path (the relay offers PIPELINING: ``smtp-sink``
does) and the stepwise one (``smtp.pipelining: false``, what a relay without PIPELINING gets),
and reports the process CPU time (user + system, so the socket calls count) per message and the
wall-clock rate. The last line is the median CPU per message of each path and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from send import find_sink, log, start_sink  # noqa: E402  (bench/send.py: the same sink)

from cartrescue.channels.base import Envelope  # noqa: E402
from cartrescue.channels.smtp import SmtpChannel, SmtpSettings  # noqa: E402
from cartrescue.model import Address, OutgoingMessage  # noqa: E402

TEXT = ("Hello Ann, the Blue mug is still in your cart. " * 2 + "\n") * 45  # ~4.3 KB
HTML = "<p>" + TEXT.replace("\n", "</p>\n<p>") + "</p>"


def envelopes(count: int) -> list[Envelope]:
    when = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    return [
        Envelope(number, None, OutgoingMessage(  # type: ignore[arg-type]  # the channel never reads the decision
            message_id=f"<cr.{number}.bench@example.com>", sender=Address("shop@example.com", "Bench Shop"),
            to=Address(f"c{number}@example.com", "Ann Tester"), subject="Ann, you left something in your cart",
            text=TEXT, html=HTML, date=when))
        for number in range(count)
    ]


def one_round(port: int, batch: list[Envelope], pool: int, pipelining: bool) -> tuple[float, float, int]:
    """(CPU µs per message, messages per second, sent)."""
    channel = SmtpChannel(SmtpSettings(host="127.0.0.1", port=port, security="none", envelope_from="shop@example.com",
                                       pool_size=pool, pipelining=pipelining))
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        sent = sum(outcome.status == "sent" for outcome in channel.deliver(batch))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        channel.close()
    if pipelining and channel.stats.pipelined != channel.stats.transactions:
        raise SystemExit("the sink did not offer PIPELINING: the pipelined round was not pipelined")
    return cpu / len(batch) * 1e6, len(batch) / wall, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sink, port = start_sink(find_sink())
    try:
        batch = envelopes(args.messages)
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for number in range(args.rounds):
            for pipelining in (True, False):
                load = os.getloadavg()[0]
                per_message, rate, sent = one_round(port, batch, args.pool, pipelining)
                if sent != len(batch):
                    raise SystemExit(f"only {sent} of {len(batch)} messages were accepted")
                cpu[pipelining].append(per_message)
                log(f"round {number + 1}, {'pipelined' if pipelining else 'stepwise '}: {per_message:5.0f} µs CPU "
                    f"a message, {rate:,.0f} msg/s (pool {args.pool}, load before {load:.2f})")
    finally:
        sink.terminate()
        sink.wait(10)
    piped, stepwise = statistics.median(cpu[True]), statistics.median(cpu[False])
    print(f"SMTP channel: {piped:.0f} µs CPU a message pipelined, {stepwise:.0f} µs stepwise "
          f"({stepwise / piped:.1f}x), MIME build and dot-stuffing included, {args.messages:,} messages a round")


if __name__ == "__main__":
    main()
