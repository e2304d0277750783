"""An opt-out that arrives while a run delivers stops that run's message to that person.

The planner reads the suppressions when it decides a cart; a large shop's run then delivers for
minutes. A customer who clicks yesterday's one-click unsubscribe meanwhile (the unsubscribe
server writes the suppression into the same ledger) must not get today's step: the run looks up
the suppressions recorded since it began just before each chunk's claims. Real parts: the real
CLI, a loopback SMTP server whose handler is the concurrent writer, SQLite and PostgreSQL ledgers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from httpserver import Answer, Seen, TwilioEmulator
from shopdb import shop_database
from smtpserver import LoopbackSMTP, Received

from cartrescue.ledger import Ledger
from cartrescue.pipeline.executor import LOOK_SECONDS, SUPPRESSED_MEANWHILE
from cartrescue.suppressions import unsubscribe, unsubscribe_number
from conftest import NOW, REPO, Shop, cart, iso
from test_sms_channel import sms_shop

pytestmark = pytest.mark.smtp

CARTS = [f"c{number:02d}" for number in range(10)]
LATE = "c09"  # delivered in the last chunk: its address unsubscribes as the first message arrives


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, shop: Shop) -> Iterator[str]:
    """``shop``'s ledger, configured: its SQLite file, or a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{shop.folder / 'ledger.db'}"
        return
    with shop_database("postgres", "optout") as db:
        shop.configure(ledger={"url": db.url})
        yield db.url


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Two sends a chunk: ten carts are claimed in five chunks, one after the other."""
    from cartrescue.pipeline import executor

    monkeypatch.setattr(executor, "DELIVERY_CHUNK", 2)
    return 2


def _unsubscribe_on_first_message(server: LoopbackSMTP, url: str, address: str) -> list[bool]:
    """As the first message arrives (before the server answers it), ``address`` clicks the
    one-click unsubscribe: a real writer of the same ledger, as the webhook server is."""
    done: list[bool] = []

    def on_message(_message: Received) -> None:
        if done:
            return
        ledger = Ledger(url)
        try:
            done.append(unsubscribe(ledger, address, "unused-secret", source="webhook").added)
        finally:
            ledger.close()

    server.on_message = on_message
    return done


def _send_as_one_unsubscribes(shop: Shop, url: str, address: str) -> tuple[Any, dict[str, int]]:
    """``run --send --json`` to a loopback relay while ``address`` unsubscribes as the first
    message arrives; the run's outcome, and how many messages each recipient got."""
    with LoopbackSMTP() as server:
        done = _unsubscribe_on_first_message(server, url, address)
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--json")
        assert done == [True]
        received = dict(server.recipients())
    assert result.exit_code == 0, result.output
    return result, received


def _decisions(result: Any) -> dict[str, dict[str, Any]]:
    assert "Traceback" not in result.output, result.output
    counts = result.json["counts"]
    assert counts["send"] + counts["skip"] + counts["defer"] + counts["holdout"] == counts["carts"]
    assert sum(counts["deliveries"].values()) == sum(bool(d["delivery"]) for d in result.json["decisions"])
    return {d["cart_id"]: d for d in result.json["decisions"]}


def test_an_address_unsubscribed_during_the_run_gets_no_message(shop: Shop, ledger_url: str, small_chunks: int) -> None:
    shop.add(*(cart(name) for name in CARTS))
    result, received = _send_as_one_unsubscribes(shop, ledger_url, f"{LATE}@example.com")
    found = _decisions(result)
    assert f"{LATE}@example.com" not in received
    assert (found[LATE]["action"], found[LATE]["reason"], found[LATE]["delivery"]) == ("skip", "suppressed", None)
    assert received == {f"{name}@example.com": 1 for name in CARTS if name != LATE}
    counts = result.json["counts"]
    assert (counts["send"], counts["skip"], counts["sent"]) == (9, 1, 9)
    ledger = Ledger(ledger_url)
    try:
        assert LATE not in {row["cart_id"] for row in ledger.messages()}
    finally:
        ledger.close()


def test_a_run_without_an_opt_out_meanwhile_sends_every_chunk(shop: Shop, small_chunks: int) -> None:
    """The look between chunks finds nothing and holds nothing back."""
    shop.add(*(cart(name) for name in CARTS))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--json")
        received = server.recipients()
    assert result.exit_code == 0, result.output
    _decisions(result)
    assert received == {f"{name}@example.com": 1 for name in CARTS}


class _StopOnFirstText(TwilioEmulator):
    """Twilio's emulator where ``number`` replies STOP (the inbound webhook suppresses it in the
    ledger) as the first text is accepted, before its answer goes back to the run."""

    def __init__(self, url: str, number: str) -> None:
        super().__init__()
        self.ledger_url, self.number = url, number
        self.stopped: list[bool] = []

    def answer(self, seen: Seen) -> Answer:
        answer = super().answer(seen)
        if answer.status == 201 and not self.stopped:
            ledger = Ledger(self.ledger_url)
            try:
                self.stopped.append(unsubscribe_number(ledger, self.number, source="sms STOP"))
            finally:
                ledger.close()
        return answer


def _texts_as_the_last_number_stops(shop: Shop, gateway: type[_StopOnFirstText]) -> Any:
    """``run --send --json`` of ten texts, one at a time, through ``gateway`` while the last
    cart's number (``s009``) replies STOP as the first text is accepted: the nine other numbers
    got one text each, that one none. The run's outcome."""
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    with gateway(url, "+46701234509") as twilio:
        sms_shop(shop, twilio.url, carts=10, concurrency=1)
        result = shop.cli("run", "--send", "--json")
        assert twilio.stopped == [True]
        texted = sorted(m["To"] for m in twilio.messages)
    assert result.exit_code == 0, result.output
    assert texted == [f"+4670123450{n}" for n in range(9)]
    return result


def test_a_number_that_replies_stop_during_the_run_gets_no_text(shop: Shop, small_chunks: int) -> None:
    result = _texts_as_the_last_number_stops(shop, _StopOnFirstText)
    found = _decisions(result)
    assert (found["s009"]["action"], found["s009"]["reason"], found["s009"]["delivery"]) == ("skip", "suppressed", None)
    counts = result.json["counts"]
    assert (counts["send"], counts["skip"], counts["sent"]) == (9, 1, 9)


def test_each_worker_looks_up_the_opt_outs_before_its_chunks(shop: Shop, ledger_url: str) -> None:
    """``run --workers 2``, a real process that forks its shards (two sends a chunk, set before
    it forks): the shard that has the late cart skips it, the other's counts are untouched."""
    carts = [f"w{number:02d}" for number in range(20)]
    late = carts[-1]  # the last of its shard's carts, several chunks after the first message
    shop.add(*(cart(name) for name in carts))
    with LoopbackSMTP() as server:
        done = _unsubscribe_on_first_message(server, ledger_url, f"{late}@example.com")
        shop.configure(smtp=server.smtp_config())
        shop.write()
        code = ("import sys; from cartrescue.pipeline import executor; executor.DELIVERY_CHUNK = 2; "
                "from cartrescue.cli import main; sys.argv[0] = 'cartrescue'; main()")
        run = subprocess.run([sys.executable, "-c", code, "run", "--send", "--json", "--workers", "2", "--config",
                              str(shop.config_path), "--now", iso(NOW)], cwd=REPO, capture_output=True, timeout=120,
                             check=False)
        assert done == [True]
        received = server.recipients()
    assert run.returncode == 0, run.stderr.decode()
    document = json.loads(run.stdout)
    assert [s["started"] for s in document["shards"]] == ["fork", "fork"]
    found = {d["cart_id"]: d for d in document["decisions"]}
    assert (found[late]["action"], found[late]["reason"], found[late]["delivery"]) == ("skip", "suppressed", None)
    assert received == {f"{name}@example.com": 1 for name in carts if name != late}
    counts = document["counts"]
    assert (counts["carts"], counts["send"], counts["skip"], counts["sent"]) == (20, 19, 1, 19)


def test_a_budget_slot_left_by_a_send_suppressed_meanwhile_goes_to_the_tiers_next_cart(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``budget: 1``: the tier's best cart is skipped as suppressed at its claim, so its slot is
    not spent: the tier's next cart, which the budget deferred, goes out in it."""
    from cartrescue.pipeline import executor

    monkeypatch.setattr(executor, "DELIVERY_CHUNK", 1)
    shop.configure(priority={"rules": {"high_value": {"weight": 40, "threshold": 200},
                                       "high_margin": {"weight": 20, "threshold": 0.5}},
                             "tiers": [{"name": "high", "min_score": 30, "budget": 1},
                                       {"name": "standard", "min_score": 0}]})
    shop.add(cart("first"),  # standard: decided, and delivered, before the budget's sends
             cart("best", items=[("B", "Lamp", 1, "250.00", None, 500)]),  # 60: kept
             cart("next", items=[("B", "Lamp", 1, "250.00")]))  # 40: the budget's spare
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    result, received = _send_as_one_unsubscribes(shop, url, "best@example.com")
    found = _decisions(result)
    assert received == {"first@example.com": 1, "next@example.com": 1}
    assert (found["best"]["action"], found["best"]["reason"]) == ("skip", "suppressed")
    assert (found["next"]["action"], found["next"]["delivery"]) == ("send", "sent")
    assert found["next"]["detail"].startswith("in the slot of a send this run did not claim")


def test_a_held_out_cart_suppressed_meanwhile_is_skipped_not_held_out(shop: Shop, small_chunks: int) -> None:
    """A holdout is claimed too (the control group, step by step): one whose address was
    suppressed since the planner decided it is a ``suppressed`` skip, as the planner would say."""
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}], "holdout": 0.5}})
    shop.add(*(cart(name) for name in CARTS))
    order = [(d["cart_id"], d["action"]) for d in shop.cli("carts", "--json").json["decisions"]]
    first_send = next(at for at, (_key, action) in enumerate(order) if action == "send")
    late = [key for key, action in order[first_send + 4:] if action == "holdout"]
    assert late, order  # the salt's draw puts a holdout two chunks after the first send
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    result, _received = _send_as_one_unsubscribes(shop, url, f"{late[-1]}@example.com")
    found = _decisions(result)
    assert (found[late[-1]]["action"], found[late[-1]]["reason"]) == ("skip", "suppressed")
    assert result.json["counts"]["holdout"] == sum(action == "holdout" for _key, action in order) - 1


# -- within a chunk: a relay that takes its time -------------------------------------------------

SLOW = 0.3  # seconds the slow relay (or gateway) takes over each message: ten take 3 s, in one chunk


def _slow_relay_where_one_unsubscribes(server: LoopbackSMTP, shop: Shop, address: str) -> list[int]:
    """Each message takes the relay :data:`SLOW` seconds; as the first arrives, ``address`` is
    unsubscribed by ``cartrescue unsubscribe`` in a process of its own, as the shop's staff would
    (the exit codes of that command, once it ran).

    The first message's answer then waits more than :data:`LOOK_SECONDS`: the claims made as the
    chunk began (each connection's first two, pipelined) looked at the opt-outs before the
    unsubscribe, and on a fast machine the next claims came within the second after that look,
    so they rightly did not look again, and ``address`` went out (a test that failed on an idle
    machine only). Held this long, the claim after the answer is the first that must look."""
    codes: list[int] = []

    def on_message(_message: Received) -> None:
        if not codes:
            done = subprocess.run([sys.executable, "-m", "cartrescue", "unsubscribe", address, "--config",
                                   str(shop.config_path)], cwd=REPO, capture_output=True, timeout=60, check=False)
            codes.append(done.returncode)
            time.sleep(LOOK_SECONDS + 0.2)
        time.sleep(SLOW)

    server.on_message = on_message
    return codes


@pytest.mark.slow
def test_an_address_unsubscribed_while_a_slow_relay_takes_the_chunk_gets_no_message(shop: Shop) -> None:
    """Ten carts in one chunk (250 sends) to a relay that takes 0.3 s a message: the chunk's own
    look came before the first claim, so the claims look again once a second has passed, and
    the address unsubscribed after the first message is skipped at its claim."""
    shop.add(*(cart(name) for name in CARTS))
    with LoopbackSMTP() as server:
        codes = _slow_relay_where_one_unsubscribes(server, shop, f"{LATE}@example.com")
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--json")
        received = dict(server.recipients())
    assert codes == [0]
    assert result.exit_code == 0, result.output
    found = _decisions(result)
    assert f"{LATE}@example.com" not in received
    assert (found[LATE]["action"], found[LATE]["reason"], found[LATE]["delivery"]) == ("skip", "suppressed", None)
    assert found[LATE]["detail"] == SUPPRESSED_MEANWHILE
    assert received == {f"{name}@example.com": 1 for name in CARTS if name != LATE}
    counts = result.json["counts"]
    assert (counts["send"], counts["skip"], counts["sent"]) == (9, 1, 9)
    assert LATE not in {row["cart_id"] for row in shop.messages()}


@pytest.mark.slow
def test_a_limit_slot_left_by_a_send_skipped_at_its_claim_goes_to_the_send_that_waits(shop: Shop) -> None:
    """``run --limit 9`` of ten carts: ``c08``, unsubscribed while the slow relay takes the chunk,
    is skipped at its claim, so its slot is not spent: ``c09``, which the limit deferred, goes out."""
    shop.add(*(cart(name) for name in CARTS))
    with LoopbackSMTP() as server:
        codes = _slow_relay_where_one_unsubscribes(server, shop, "c08@example.com")
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--json", "--limit", "9")
        received = dict(server.recipients())
    assert codes == [0]
    assert result.exit_code == 0, result.output
    found = _decisions(result)
    assert received == {f"{name}@example.com": 1 for name in CARTS if name != "c08"}
    assert (found["c08"]["action"], found["c08"]["reason"]) == ("skip", "suppressed")
    assert (found["c09"]["action"], found["c09"]["delivery"]) == ("send", "sent")


class _SlowGatewayWhereOneRepliesStop(_StopOnFirstText):
    """Twilio's emulator that takes :data:`SLOW` seconds over each text; ``number`` replies STOP
    as the first text is accepted."""

    def answer(self, seen: Seen) -> Answer:
        answer = super().answer(seen)
        if answer.status == 201:
            time.sleep(SLOW)
        return answer


@pytest.mark.slow
def test_a_number_that_replies_stop_while_a_slow_gateway_takes_the_chunk_gets_no_text(shop: Shop) -> None:
    """The SMS channel claims through the same feed as e-mail: one chunk of ten texts, one at a
    time, to a gateway that takes 0.3 s a text; the number that replied STOP after the first is
    skipped at its claim."""
    found = _decisions(_texts_as_the_last_number_stops(shop, _SlowGatewayWhereOneRepliesStop))
    assert (found["s009"]["action"], found["s009"]["reason"], found["s009"]["detail"]) == \
        ("skip", "suppressed", SUPPRESSED_MEANWHILE)


def _looks_during(run: Callable[[], Any]) -> tuple[Any, int, float]:
    """``run()``'s outcome, how many looks at the new suppressions its ledger was asked (the
    statements SQLAlchemy executed, in this process), and how long it took."""
    statements: list[str] = []

    def before_cursor_execute(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    started = time.monotonic()
    try:
        outcome = run()
    finally:
        elapsed = time.monotonic() - started
        event.remove(Engine, "before_cursor_execute", before_cursor_execute)
    looks = sum(bool(re.search(r"FROM cr_suppression\s+WHERE cr_suppression\.id > ", s)) for s in statements)
    return outcome, looks, elapsed


def test_a_fast_run_looks_at_the_opt_outs_at_most_once_a_second(shop: Shop) -> None:
    """Sixty sends in one chunk, each claimed on its own (one connection): the claims look again
    only once a second has passed since the last look, never once a message. However slow the
    machine, a run of ``elapsed`` seconds makes at most one look a started second."""
    carts = [f"f{number:02d}" for number in range(60)]
    shop.add(*(cart(name) for name in carts))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config(pool_size=1))
        result, looks, elapsed = _looks_during(lambda: shop.cli("run", "--send", "--json"))
        received = server.recipients()
    assert result.exit_code == 0, result.output
    assert received == {f"{name}@example.com": 1 for name in carts}
    assert 1 <= looks <= 1 + int(elapsed / LOOK_SECONDS), (looks, elapsed)
