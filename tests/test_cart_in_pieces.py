"""A cart whose rows stand in more than one place of the export: never half a cart.

An export ordered by product (or a job that appends a second batch) lists one cart's rows apart.
Building its first piece alone would remind the customer of half the cart, with half its value
and half its margin in the score. The first pass finds such ids (``cartrescue.sources.apart``),
so the cart is skipped whole and reported once, whichever worker holds which piece; a cart listed
twice alike is still sent once, from its first appearance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import NOW, REPO, Shop, cart, iso

import cartrescue.sources.apart
from cartrescue.ledger import Ledger
from cartrescue.shards import owner
from cartrescue.sources.apart import Apart, ApartIds

TWO_ITEMS = (("SKU-1", "Blue mug", 1, "25.00"), ("SKU-2", "Red teapot", 1, "40.00"))


def _in_pieces(shop: Shop) -> Shop:
    """c1's first row on line 2, its second row (no address: cart-level columns are on the
    first row only) on line 5, after c2 and c3."""
    first, second = cart("c1", items=TWO_ITEMS)
    return shop.add([first], cart("c2"), cart("c3"), [second])


def _problem(shop: Shop) -> str:
    return (f"{shop.folder / 'carts.csv'}:2: cart c1: its rows are not together (groups at lines 2, 5): skipped "
            "whole, never half a cart (the export must list a cart's rows one after another)")


def _sent_carts(shop: Shop) -> list[str]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return sorted(message["cart_key"] for message in ledger.messages())
    finally:
        ledger.close()


def test_a_cart_in_two_pieces_is_skipped_whole_and_reported_once(shop: Shop) -> None:
    result = _in_pieces(shop).cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 1, result.output  # a bad row: the run went through
    assert result.json["problems"] == [_problem(shop)]
    assert sorted(row["cart_id"] for row in result.json["decisions"]) == ["c2", "c3"]
    assert _sent_carts(shop) == ["csv:c2", "csv:c3"]


def test_a_cart_listed_twice_alike_is_sent_once_from_its_first_appearance(shop: Shop) -> None:
    shop.add(cart("c1", items=TWO_ITEMS), cart("c2"), cart("c1", items=TWO_ITEMS))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 1, result.output
    assert result.json["problems"] == [f"{shop.folder / 'carts.csv'}:5: cart c1: the same cart id again (only its "
                                       "first appearance is used)"]
    decided = {row["cart_id"]: row for row in result.json["decisions"]}
    assert decided["c1"]["total"] == "65.00"
    assert _sent_carts(shop) == ["csv:c1", "csv:c2"]


@pytest.mark.parametrize("other", [{"email": "zed@example.com"}, {"currency": "SEK"}, {"customer_id": "C-9"},
                                   {"created_at": "2026-11-19T07:00:00Z"}], ids=["email", "currency", "customer", "created"])
def test_two_carts_under_one_id_with_the_same_items_are_not_one_cart_listed_twice(shop: Shop, other: dict) -> None:
    """A spreadsheet rounded two ids to 3.50123E+13: the second customer's cart was "the same
    cart again" and dropped, and listed first the next day it took over the other's sequence."""
    first = cart("3.50123E+13", email="ann@example.com", items=TWO_ITEMS)
    second = cart("3.50123E+13", email="ann@example.com", items=TWO_ITEMS)
    second[0].update(other)  # cart-level cells are on a cart's first row
    shop.add(first, cart("c2"), second)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 1, result.output
    assert [problem.split(": ", 1)[1] for problem in result.json["problems"]] == [
        "cart 3.50123E+13: its rows are not together (groups at lines 2, 5): skipped whole, never half a cart (the "
        "export must list a cart's rows one after another)"]
    assert _sent_carts(shop) == ["csv:c2"]


def test_an_export_too_large_for_one_batch_finds_its_pieces_through_the_scratch_file(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cartrescue.sources.apart, "_BATCH", 2)
    result = _in_pieces(shop).cli("run", "--json")
    assert result.json["problems"] == [_problem(shop)]
    assert sorted(row["cart_id"] for row in result.json["decisions"]) == ["c2", "c3"]


@pytest.mark.parametrize("batch", [2, 5000])
def test_the_repeated_ids_are_the_same_whatever_the_batch_size(monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    monkeypatch.setattr(cartrescue.sources.apart, "_BATCH", batch)
    ids = ApartIds()
    for cart_id, line, digest in [("a", 2, 11), ("b", 3, 12), ("a", 4, 11), ("c", 5, 13), ("c", 6, 14), ("a", 7, 11)]:
        ids.add(cart_id, line, digest)
    assert ids.finish() == {"a": Apart((2, 4, 7), True), "c": Apart((5, 6), False)}


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["2", "3"])
def test_workers_skip_both_pieces_and_report_them_once(shop: Shop, workers: str) -> None:
    # The second piece has no address, so it goes to the shard of its cart id, not the one its
    # address put the first piece in: every worker must know the cart is in pieces.
    assert owner("c1@example.com", "csv:c1", int(workers)) != owner("", "csv:c1", int(workers))
    _in_pieces(shop)
    shop.add(*(cart(f"d{n:02d}") for n in range(20)))
    shop.write()
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--workers", workers, "--outbox",
                           str(shop.folder / "out"), "--config", str(shop.config_path), "--now", iso(NOW)],
                          cwd=REPO, capture_output=True, timeout=120, check=False, env=dict(os.environ))
    assert done.returncode == 1, done.stderr.decode()
    document = json.loads(done.stdout)
    assert document["problems"] == [_problem(shop)]
    assert "c1" not in {row["cart_id"] for row in document["decisions"]}
    assert _sent_carts(shop) == sorted(["csv:c2", "csv:c3", *(f"csv:d{n:02d}" for n in range(20))])


@pytest.mark.parametrize("batch", [2, 5000])
def test_a_broken_group_makes_every_group_of_its_id_no_cart_whatever_the_batch_size(
    monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(cartrescue.sources.apart, "_BATCH", batch)
    ids = ApartIds()
    ids.add("a", 2, 11)
    ids.add("b", 3, 12)
    ids.add_broken("a", 4)
    ids.add("a", 7, 11)
    ids.add_broken("c", 8)
    assert ids.finish() == {"a": Apart((2, 4, 7), False, (4,))}


def test_preview_of_a_cart_in_pieces_says_why_it_cannot_show_it(shop: Shop) -> None:
    result = _in_pieces(shop).cli("preview", "c1")
    assert result.exit_code == 3, result.output
    assert f"cart 'c1' cannot be read: {_problem(shop)}" in " ".join(result.stderr.split())


def _with_a_bad_row(shop: Shop, line: int, fault: str, *more: list[dict[str, str]]) -> Shop:
    """:func:`_in_pieces` (and ``more`` carts after) with line ``line`` cut short by its last
    cell (a blank one), or one cell too wide."""
    _in_pieces(shop).add(*more).write()
    path = shop.folder / "carts.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = lines[line - 1][:-1] if fault == "cut short" else lines[line - 1] + ","
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    return shop


def _bad_row_problems(shop: Shop, line: int, fault: str) -> list[str]:
    """The bad row's problem and, at the other piece, the cart's: in file order."""
    bad = (f"{shop.folder / 'carts.csv'}:{line}: cart c1: "
           + ("24 cells where the header has 25 columns: the row is cut short? (an export that stopped mid-line, or "
              "a line break inside an unquoted value)" if fault == "cut short" else
              "26 cells where the header has 25 columns: a value holds an unquoted delimiter? (quote it, or check "
              "the export's delimiter)"))
    other = 5 if line == 2 else 2
    pieces = (f"{shop.folder / 'carts.csv'}:{other}: cart c1: its rows are not together (groups at lines 2, 5): "
              "skipped whole, never half a cart (the export must list a cart's rows one after another)")
    return [bad, pieces] if line < other else [pieces, bad]


@pytest.mark.parametrize("line", [2, 5])
@pytest.mark.parametrize("fault", ["cut short", "too wide"])
def test_a_row_of_the_wrong_width_skips_its_carts_other_piece_too(shop: Shop, fault: str, line: int) -> None:
    result = _with_a_bad_row(shop, line, fault).cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 1, result.output
    assert result.json["problems"] == _bad_row_problems(shop, line, fault)
    assert sorted(row["cart_id"] for row in result.json["decisions"]) == ["c2", "c3"]
    assert _sent_carts(shop) == ["csv:c2", "csv:c3"]


@pytest.mark.slow
def test_workers_skip_the_other_piece_of_a_cart_with_a_row_cut_short(shop: Shop) -> None:
    _with_a_bad_row(shop, 2, "cut short", *(cart(f"d{n:02d}") for n in range(20)))
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--workers", "2", "--outbox",
                           str(shop.folder / "out"), "--config", str(shop.config_path), "--now", iso(NOW)],
                          cwd=REPO, capture_output=True, timeout=120, check=False, env=dict(os.environ))
    assert done.returncode == 1, done.stderr.decode()
    assert json.loads(done.stdout)["problems"] == _bad_row_problems(shop, 2, "cut short")
    assert _sent_carts(shop) == sorted(["csv:c2", "csv:c3", *(f"csv:d{n:02d}" for n in range(20))])


def test_preview_of_a_cart_with_a_row_cut_short_apart_says_why_it_cannot_show_it(shop: Shop) -> None:
    result = _with_a_bad_row(shop, 5, "cut short").cli("preview", "c1")
    assert result.exit_code == 3, result.output
    assert f"cart 'c1' cannot be read: {_bad_row_problems(shop, 5, 'cut short')[0]}" in " ".join(result.stderr.split())


@pytest.mark.parametrize("per_statement", [1, 7, 100])
def test_the_repeated_ids_are_the_same_whatever_rows_one_statement_inserts(monkeypatch: pytest.MonkeyPatch,
                                                                          per_statement: int) -> None:
    """The groups are inserted many rows a statement (``scratch.ManyRows``): a statement's rows
    go in one after another, an id repeated inside one statement or across two is found alike."""
    from cartrescue.scratch import ManyRows

    add = cartrescue.sources.apart._ADD
    monkeypatch.setattr(cartrescue.sources.apart, "_ADD", ManyRows(add.statement, add.row, per_statement))
    ids = ApartIds()
    groups = [(f"c{(n * 37) % 230}", n + 2, (n * 37) % 230 + (n % 3 == 0 and n > 230)) for n in range(250)]
    for cart_id, line, digest in groups:
        ids.add(cart_id, line, digest)
    expected: dict[str, list[tuple[int, int]]] = {}
    for cart_id, line, digest in groups:
        expected.setdefault(cart_id, []).append((line, digest))
    assert ids.finish() == {cart_id: Apart(tuple(line for line, _ in seen), len({digest for _, digest in seen}) == 1)
                            for cart_id, seen in expected.items() if len(seen) > 1}
