"""The carts file split by several helpers at once, each a piece (:mod:`cartrescue.sources.pieces`).

The spec: whatever the file holds, the spools the helpers write are what one helper writes,
entry for entry: every group, problem and activity in file order, the repeated cart ids of all
pieces together. A cut that the reading of the piece before does not confirm (a quote the guess
miscounted, a cart that goes on) and a helper that fails cost only time.
"""

from __future__ import annotations

import json
import marshal
import os
import struct
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartrescue import processes
from cartrescue.errors import SourceError
from cartrescue.sources.csv import CsvSource
from cartrescue.sources.pieces import Cut, counted, find_cuts
from cartrescue.sources.shared import activity_spool, piece_spool

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="a piece is split by a forked helper")

HEADER = "cart_id,email,currency,created_at,updated_at,sku,name,quantity,unit_price"
UTC = ZoneInfo("UTC")


def _row(cart_id: str, name: str = "Mug", price: str = "5.00", email: str = "") -> str:
    email = email or f"{cart_id or 'none'}@example.com"
    return f"{cart_id},{email},EUR,2026-11-20T08:00:00Z,2026-11-20T08:30:00Z,SKU-1,{name},1,{price}"


def _write(path: Path, lines: list[str], ending: str = "\n") -> Path:
    path.write_bytes(ending.join([HEADER, *lines, ""]).encode("utf-8"))
    return path


def _entries(path: Path) -> list[object]:
    """A spool's entries (each batch's cart ids, before its entries, skipped), and its end mark."""
    data, at, found = path.read_bytes(), 0, []
    while at < len(data):
        length, ids = struct.unpack_from("<QQ", data, at)
        at += 16
        if not length:
            found.append("end")
            break
        found.extend(marshal.loads(data[at + ids:at + ids + length]))
        at += ids + length
    return found


def _split(carts: Path, folder: Path, least: int, count: int = 2, encoding: str = "utf-8-sig"
           ) -> tuple[int, list[object]]:
    """How many pieces after the first were taken, and every entry of every spool written in
    ``count`` shards (as many pieces, each of ``least`` bytes at least)."""
    folder.mkdir()
    spools = [folder / f"carts.spool.{index}" for index in range(1, count + 1)]
    source = CsvSource(carts, shop_tz=UTC, encoding=encoding)
    source.piece_from = least
    taken = source.publish_shards(spools)
    return taken, [(_entries(path), _entries(activity_spool(path))) for path in spools]


ONE = 1 << 62  # a piece larger than any file: one helper splits it all


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Helpers forked as in a run (the test runner's captured streams would forbid it), on a
    machine with cores enough for a piece a shard."""
    from cartrescue import workers

    monkeypatch.setattr(processes, "start_method", lambda: "fork")
    monkeypatch.setattr(workers, "usable_cores", lambda: 8)


def _cut(carts: Path, least: int = 0) -> Cut | None:
    """The cut of ``carts`` in two pieces, if any."""
    cuts = find_cuts(carts, ",", 0, 1, 2, least)
    return cuts[0] if cuts else None


def _carts(count: int, rows: int = 1) -> list[str]:
    return [_row(f"c{n:05d}", name=f"Mug {k}") for n in range(count) for k in range(rows)]


# -- where the cut falls ---------------------------------------------------------------------


def test_a_file_smaller_than_two_pieces_is_not_cut(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(100))
    size = carts.stat().st_size
    assert _cut(carts, least=size // 2 + 1) is None
    assert _cut(carts, least=size // 2) is not None


def test_a_file_is_cut_in_as_many_pieces_as_asked_each_near_its_point(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(400))
    size = carts.stat().st_size
    cuts = find_cuts(carts, ",", 0, 1, 4, least=0)
    assert [cut.offset * 4 // size for cut in cuts] == [1, 2, 3]  # each just past its quarter
    assert [cut.line for cut in cuts] == sorted({cut.line for cut in cuts})
    assert len(find_cuts(carts, ",", 0, 1, 4, least=size // 3)) == 2  # three pieces of a third at least


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_the_cut_is_the_first_new_cart_past_the_middle_and_its_offset_is_its_line(tmp_path: Path,
                                                                                 ending: str) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(200, rows=3), ending)
    cut = _cut(carts)
    assert cut is not None
    data = carts.read_bytes()
    lines = data.split(ending.encode())
    assert data[cut.offset:].startswith(lines[cut.line - 1] + ending.encode())
    assert cut.offset >= len(data) // 2
    assert lines[cut.line - 1].split(b",")[0] != lines[cut.line - 2].split(b",")[0]
    # the first cart starting after the first line past the middle (that line may be a cart's second)
    starts = [len(ending.encode().join(lines[:at])) + len(ending) for at in range(len(lines))]
    past = min(at for at in range(len(lines)) if starts[at] > len(data) // 2)
    firsts = [at for at in range(past + 1, len(lines)) if lines[at].split(b",")[0] != lines[at - 1].split(b",")[0]]
    assert cut.line - 1 == firsts[0]


def test_the_cut_is_never_inside_a_quoted_cell_across_the_middle(tmp_path: Path) -> None:
    long_note = "\n".join(f"note line {n}" for n in range(400))
    lines = [*_carts(50), _row("quoted", name=f'"{long_note}"'), *_carts(10)]
    carts = _write(tmp_path / "carts.csv", lines)
    middle = carts.stat().st_size // 2
    assert carts.read_bytes().index(b"note line 0") < middle < carts.read_bytes().index(b"note line 399")
    cut = _cut(carts)
    assert cut is not None
    # past the quoted cell: the first cart there might go on from the quoted one, the next cannot
    assert carts.read_bytes()[cut.offset:].startswith(b"c00001,")


def test_a_file_with_lines_ended_by_a_carriage_return_alone_is_not_cut(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(200), "\r")
    assert _cut(carts) is None


def test_only_utf8_exports_are_cut() -> None:
    assert counted("utf-8-sig") and counted("UTF8")
    assert not counted("utf-16") and not counted("cp1252") and not counted("no-such-codec")


# -- the pieces write what one helper writes -----------------------------------------------


@pytest.mark.usefixtures("forking")
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("count", [2, 3, 4])
def test_helpers_of_pieces_write_the_spools_one_helper_writes(tmp_path: Path, ending: str, count: int) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(300, rows=2), ending)
    one = _split(carts, tmp_path / "one", least=ONE, count=count)
    pieces = _split(carts, tmp_path / "pieces", least=0, count=count)
    assert (one[0], pieces[0]) == (0, count - 1)
    assert pieces[1] == one[1]
    assert piece_spool(tmp_path / "pieces" / "carts.spool.1", count).stat().st_size > 0  # the last piece, apart


@pytest.mark.usefixtures("forking")
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"])
def test_an_export_with_a_byte_order_mark_is_cut_as_one_without(tmp_path: Path, encoding: str) -> None:
    carts = _write(tmp_path / "carts.csv", [_row(f"c{n}", name="Kaffeetasse für Ünal") for n in range(300)])
    carts.write_bytes(b"\xef\xbb\xbf" + carts.read_bytes())
    one = _split(carts, tmp_path / "one", least=ONE, encoding=encoding)
    assert _split(carts, tmp_path / "two", least=0, encoding=encoding) == (1, one[1])


@pytest.mark.usefixtures("forking")
def test_an_export_not_in_utf8_is_split_by_one_helper(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", [_row(f"c{n}", name="Kaffeetasse für Ünal") for n in range(300)])
    carts.write_bytes(carts.read_bytes().decode("utf-8").encode("cp1252"))
    one = _split(carts, tmp_path / "one", least=ONE, encoding="cp1252")
    assert _split(carts, tmp_path / "two", least=0, encoding="cp1252") == (0, one[1])


@pytest.mark.usefixtures("forking")
def test_pieces_are_no_more_than_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cartrescue import workers

    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    carts = _write(tmp_path / "carts.csv", _carts(300))
    assert _split(carts, tmp_path / "pieces", least=0, count=4)[0] == 1


@pytest.mark.usefixtures("forking")
def test_a_cart_id_in_both_halves_is_found_in_pieces_and_a_cart_listed_twice_alike(tmp_path: Path) -> None:
    lines = [_row("split", name="Mug"), _row("twice"), *_carts(200), _row("split", name="Pot"), _row("twice")]
    carts = _write(tmp_path / "carts.csv", lines)
    one = _split(carts, tmp_path / "one", least=ONE)
    two = _split(carts, tmp_path / "two", least=0)
    assert two == (1, one[1])
    repeated = [entry for _rows, activity in two[1] for entry in activity if isinstance(entry, tuple) and entry[0] is None]
    assert set(repeated[0][1]) == {"split", "twice"}  # type: ignore[index]
    assert repeated[0][1]["twice"][1] and not repeated[0][1]["split"][1]  # type: ignore[index]


@pytest.mark.usefixtures("forking")
@pytest.mark.parametrize("failing", [2, 3])
def test_a_helper_of_a_piece_that_fails_leaves_the_first_to_read_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   failing: int) -> None:
    split_piece = CsvSource._split_piece

    def fail(self: CsvSource, number: int, cuts: list[Cut], spools: list[Path]) -> None:
        if number == failing:
            raise OSError("disk full")
        split_piece(self, number, cuts, spools)

    monkeypatch.setattr(CsvSource, "_split_piece", fail)  # inherited by the forked helpers
    carts = _write(tmp_path / "carts.csv", _carts(300, rows=2))
    one = _split(carts, tmp_path / "one", least=ONE, count=3)
    assert _split(carts, tmp_path / "three", least=0, count=3) == (0, one[1])


@pytest.mark.usefixtures("forking")
def test_a_cut_the_piece_before_does_not_confirm_leaves_it_to_read_on(tmp_path: Path) -> None:
    # A quote inside an unquoted cell before the middle: the count of quotes is odd from there,
    # and the guess lands inside the quoted note, which the reader sees as a quoted cell.
    note = "\n".join(f"c{n:05d},x@example.com,EUR" for n in range(60))
    lines = [_row("inch", name='5" screen'), *_carts(100), _row("noted", name=f'"{note}"'), *_carts(100)]
    carts = _write(tmp_path / "carts.csv", lines)
    one = _split(carts, tmp_path / "one", least=1 << 62)
    two = _split(carts, tmp_path / "two", least=0)
    assert two[1] == one[1]


@pytest.mark.usefixtures("forking")
def test_a_piece_that_reads_on_past_a_cut_it_does_not_confirm_is_the_last_taken(tmp_path: Path) -> None:
    # The stray quote is in the second piece: its guess of the third cut lands inside the note.
    note = "\n".join(f"c{n:05d},x@example.com,EUR" for n in range(200))
    lines = [*_carts(100), _row("inch", name='5" screen'), *_carts(10), _row("noted", name=f'"{note}"'), *_carts(80)]
    carts = _write(tmp_path / "carts.csv", lines)
    first, second = find_cuts(carts, ",", 0, 1, 3, least=0)
    assert first.line < 100 < 112 + 20 < second.line < 112 + 200  # the second inside the note
    one = _split(carts, tmp_path / "one", least=ONE, count=3)
    assert _split(carts, tmp_path / "three", least=0, count=3) == (1, one[1])


@pytest.mark.usefixtures("forking")
def test_a_cart_broken_in_one_piece_is_not_built_from_its_rows_in_another(tmp_path: Path) -> None:
    lines = [_row("gone"), "gone,cut@example.com", *_carts(200), _row("gone", name="Pot")]
    carts = _write(tmp_path / "carts.csv", lines)
    one = _split(carts, tmp_path / "one", least=ONE)
    assert _split(carts, tmp_path / "two", least=0) == (1, one[1])


def _asked_at(carts: Path, line: int, elsewhere: bool = False) -> bool:
    """Whether the reading of ``carts`` confirms a cut at ``line`` (``elsewhere``: found in another
    file); it reads every row either way (the cut is not handed over)."""
    from cartrescue.sources.pieces import identity

    asked: list[bool] = []
    data = carts.read_bytes()
    offset = len(b"".join(data.splitlines(keepends=True)[:line - 1]))
    with carts.open("rb") as handle:
        cut = Cut(line, offset, (0, 0, 0, 0) if elsewhere else identity(handle.fileno()),
                  hand_over=lambda: asked.append(True) or False)
    source = CsvSource(carts, shop_tz=UTC)
    assert list(source._cart_rows(end=cut)) == list(source._cart_rows())
    return bool(asked)


def test_a_piece_confirms_a_cut_only_where_a_cart_starts(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", [_row("a"), _row("b"), _row("b", name="Pot"), _row("c")])
    assert [_asked_at(carts, line) for line in (3, 4, 5)] == [True, False, True]


def test_a_piece_refuses_a_cut_found_in_another_file(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", [_row("a"), _row("b")])
    assert (_asked_at(carts, 3), _asked_at(carts, 3, elsewhere=True)) == (True, False)


def test_a_piece_refuses_a_cut_inside_a_quoted_cell(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", [_row("a", name='"two\nlines"'), _row("b")])
    assert [_asked_at(carts, line) for line in (3, 4)] == [False, True]


def test_a_piece_refuses_a_cut_at_a_cart_a_quote_left_open_took_rows_of(tmp_path: Path) -> None:
    # a's quote takes b's whole row in: b is skipped whole, its row after the quote too
    lines = [_row("a", name='"open'), _row("b"), _row("b", name='close"'), _row("b", name="Pot"), _row("c")]
    carts = _write(tmp_path / "carts.csv", lines)
    assert [_asked_at(carts, line) for line in (5, 6)] == [False, True]


def test_a_later_piece_refuses_a_file_that_is_not_the_one_cut(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(300))
    cut = _cut(carts)
    assert cut is not None
    cut.file = (0, 0, 0, 0)
    with pytest.raises(SourceError, match="changed while it was being split"):
        list(CsvSource(carts, shop_tz=UTC)._cart_rows(begin=cut))


# Any file made of these pieces: carts of one or more rows, cells quoted whole, quoted over lines,
# with doubled quotes, a quote in an unquoted cell, a quote left open, blank lines, rows without
# a cart id, rows too wide or cut short, cart ids met again, alike or not.
_NAMES = st.sampled_from(["Mug", '"Mug, blue"', '"two\nlines"', '"say ""hi"""', '5" screen', '"open', '""',
                          '"a\r\nb"', "Pot"])
_PIECES = st.one_of(
    st.tuples(st.just("cart"), st.integers(0, 30), st.lists(_NAMES, min_size=1, max_size=3)),
    st.tuples(st.just("blank"), st.just(0), st.just([])),
    st.tuples(st.just("no id"), st.just(0), st.just([])),
    st.tuples(st.just("wide"), st.integers(0, 30), st.just([])),
    st.tuples(st.just("short"), st.integers(0, 30), st.just([])),
)


def _lines(pieces: list[tuple[str, int, list[str]]]) -> list[str]:
    lines = []
    for kind, number, names in pieces:
        if kind == "cart":
            lines.extend(_row(f"c{number}", name=name) for name in names)
        elif kind == "blank":
            lines.append("")
        elif kind == "no id":
            lines.append(_row(""))
        elif kind == "wide":
            lines.append(_row(f"c{number}") + ",extra")
        else:
            lines.append(f"c{number},short@example.com")
    return lines


@pytest.mark.usefixtures("forking")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_PIECES, min_size=2, max_size=40), ending=st.sampled_from(["\n", "\r\n"]),
       count=st.integers(2, 4))
def test_any_file_split_in_pieces_gives_what_one_helper_gives(tmp_path_factory: pytest.TempPathFactory,
                                                             pieces: list[tuple[str, int, list[str]]],
                                                             ending: str, count: int) -> None:
    folder = tmp_path_factory.mktemp("pieces")
    carts = _write(folder / "carts.csv", _lines(pieces), ending)
    one = _split(carts, folder / "one", least=ONE, count=count)
    assert _split(carts, folder / "pieces", least=0, count=count)[1] == one[1]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the split's helpers are forked on Linux only")
def test_a_run_whose_export_is_split_in_pieces_decides_as_its_shards_reading_it_alone(demo: Path,
                                                                                      tmp_path: Path) -> None:
    from conftest import REPO

    subprocess.run([sys.executable, str(REPO / "examples" / "make_sample.py"), "--carts", "2600", "--out",
                    str(demo.parent)], check=True, capture_output=True)
    assert (demo.parent / "carts.csv").stat().st_size >= 2 << 20  # two pieces of 1 MiB at least

    def run(*arguments: str) -> dict[str, dict[str, tuple[str, str]]]:
        (demo.parent / "demo-ledger.db").unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--config", str(demo),
                               *arguments], cwd=tmp_path, capture_output=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return {row["cart_id"]: (row["action"], row["reason"]) for row in json.loads(done.stdout)["decisions"]}

    pieces = run("--workers", "2")  # the export split in two pieces, then in two spools
    alone = {**run("--shard", "1/2"), **run("--shard", "2/2")}  # each shard reads the file itself
    assert len(pieces) == 2600 and pieces == alone
