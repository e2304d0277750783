"""Stepping the clock through a cart's life: each step once, in order, never twice."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from pathlib import Path

from cartrescue.ledger import Ledger
from conftest import NOW, Shop, cart, order

H = timedelta(hours=1)
START = NOW - 5 * timedelta(minutes=1)  # the cart's last activity


def _outbox_run(shop: Shop, at_hours: float) -> tuple[int, list[str]]:
    """Run with --outbox at START + hours; return the exit code and the new .eml files."""
    folder = shop.folder / "out"
    before = set(folder.glob("*.eml")) if folder.exists() else set()
    result = shop.cli("run", "--outbox", str(folder), "--json", now=START + at_hours * H)
    assert result.exit_code == 0, result.output
    return result.exit_code, sorted(p.name for p in set(folder.glob("*.eml")) - before)


def _steps(shop: Shop) -> list[tuple[str, int, str]]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    return [(m["cart_key"], m["step"], m["status"]) for m in ledger.messages()]


def test_steps_one_two_three_go_out_once_each_and_nothing_after(shop: Shop) -> None:
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    delivered = {hours: _outbox_run(shop, hours)[1] for hours in (0.5, 1, 24, 72, 100)}
    assert [len(files) for files in delivered.values()] == [0, 1, 1, 1, 0]
    assert [name.split("-step")[1][0] for hours in (1, 24, 72) for name in delivered[hours]] == ["1", "2", "3"]
    assert _steps(shop) == [("csv:c1", 1, "sent"), ("csv:c1", 2, "sent"), ("csv:c1", 3, "sent")]


def test_rerunning_the_same_instant_delivers_nothing(shop: Shop) -> None:
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    for hours in (1, 24, 72):
        assert len(_outbox_run(shop, hours)[1]) == 1
        assert _outbox_run(shop, hours)[1] == []
    assert len(_steps(shop)) == 3


def test_a_late_run_sends_the_first_step_not_a_later_one(shop: Shop) -> None:
    shop.configure(eligibility={"backfill": "4d"})
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    files = _outbox_run(shop, 100 - 30)[1]  # cron was down for days: step 3's time has passed
    assert [name.split("-step")[1][0] for name in files] == ["1"]


def test_an_order_placed_after_step_one_stops_step_two(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com", now=START, idle=timedelta(0)))
    assert len(_outbox_run(shop, 1)[1]) == 1
    shop.add_orders(order("o1", email="ann@example.com", created=START + 3 * H))
    assert _outbox_run(shop, 24)[1] == []
    decision = shop.decisions(now=START + 24 * H)["c1"]
    assert (decision["action"], decision["reason"]) == ("skip", "ordered")


def test_activity_after_a_step_re_times_the_later_steps(shop: Shop) -> None:
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    assert len(_outbox_run(shop, 1)[1]) == 1
    shop.carts.clear()
    shop.add(cart("c1", now=START + 10 * H, idle=timedelta(0)))  # the customer came back at +10 h
    assert _outbox_run(shop, 24)[1] == []  # step 2 now falls due 24 h after +10 h
    assert shop.decisions(now=START + 24 * H)["c1"]["reason"] == "step_not_due"
    assert len(_outbox_run(shop, 34.5)[1]) == 1


def test_every_eml_is_multipart_alternative_with_text_and_html(shop: Shop) -> None:
    for index, locale in enumerate(["en", "sv", "hu", "ru", "af", "kk"]):
        shop.add(cart(f"c{index}", locale=locale, first_name="Åsa Жанна", items=[("A", "Ärm ☕ mug", 2, "19.50")]))
    folder = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(folder)).exit_code == 0
    files = sorted(folder.glob("*.eml"))
    assert len(files) == 6
    for path in files:
        message = email.message_from_bytes(Path(path).read_bytes(), policy=email.policy.default)
        assert message.get_content_type() == "multipart/alternative"
        parts = [part.get_content_type() for part in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert message["Message-ID"].endswith("@example.com>") and message["Date"]
        assert "Ärm ☕ mug" in message.get_body(("plain",)).get_content()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_plain_dry_run_records_nothing(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("run", "--json")
    assert result.exit_code == 0 and result.json["counts"]["send"] == 1
    assert _steps(shop) == []
    assert not (shop.folder / "out").exists()


def test_a_cart_id_repeated_further_down_the_file_is_delivered_once(shop: Shop) -> None:
    shop.add(cart("c1"), cart("c2", email="other@example.com"), cart("c1"))
    folder = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(folder), "--json")
    assert result.exit_code == 1, result.output  # the repeat is reported as a bad row
    assert "carts.csv:4: cart c1: the same cart id again" in result.json["problems"][0]
    assert [m["status"] for m in Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").messages()] == ["sent", "sent"]
    assert sorted(p.name.split("-step")[0] for p in folder.glob("*.eml")) == ["csv_c1", "csv_c2"]
