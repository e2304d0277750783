"""The carts file split by two helpers at once, each a half (:mod:`cartrescue.sources.halves`).

The spec: whatever the file holds, the spools two helpers write are byte for byte what one
helper writes, in entries: every group, problem and activity in file order, the repeated cart ids
of both halves together. A cut that the first half's reading does not confirm (a quote the
guess miscounted, a cart that goes on) and a second helper that fails cost only time.
"""

from __future__ import annotations

import marshal
import os
import struct
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartrescue import processes
from cartrescue.errors import SourceError
from cartrescue.sources.csv import CsvSource
from cartrescue.sources.halves import Cut, counted, find_cut
from cartrescue.sources.shared import activity_spool, half_spool

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the second half is split by a forked helper")

HEADER = "cart_id,email,currency,created_at,updated_at,sku,name,quantity,unit_price"
UTC = ZoneInfo("UTC")


def _row(cart_id: str, name: str = "Mug", price: str = "5.00", email: str = "") -> str:
    email = email or f"{cart_id or 'none'}@example.com"
    return f"{cart_id},{email},EUR,2026-11-20T08:00:00Z,2026-11-20T08:30:00Z,SKU-1,{name},1,{price}"


def _write(path: Path, lines: list[str], ending: str = "\n") -> Path:
    path.write_bytes(ending.join([HEADER, *lines, ""]).encode("utf-8"))
    return path


def _entries(path: Path) -> list[object]:
    """A spool's entries, and its end mark."""
    data, at, found = path.read_bytes(), 0, []
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        at += 8
        if not length:
            found.append("end")
            break
        found.extend(marshal.loads(data[at:at + length]))
        at += length
    return found


def _split(carts: Path, folder: Path, least: int, count: int = 2) -> tuple[bool, list[object]]:
    """Whether the second half was used, and every entry of every spool written."""
    folder.mkdir()
    spools = [folder / f"carts.spool.{index}" for index in range(1, count + 1)]
    source = CsvSource(carts, shop_tz=UTC)
    source.halve_from = least
    halved = source.publish_shards(spools)
    return halved, [(_entries(path), _entries(activity_spool(path))) for path in spools]


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Helpers forked as in a run (the test runner's captured streams would forbid it)."""
    monkeypatch.setattr(processes, "start_method", lambda: "fork")


def _carts(count: int, rows: int = 1) -> list[str]:
    return [_row(f"c{n:05d}", name=f"Mug {k}") for n in range(count) for k in range(rows)]


# -- where the cut falls ---------------------------------------------------------------------


def test_a_file_smaller_than_the_threshold_is_not_cut(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(100))
    assert find_cut(carts, ",", 0, 1, least=carts.stat().st_size + 1) is None
    assert find_cut(carts, ",", 0, 1, least=carts.stat().st_size) is not None


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_the_cut_is_the_first_new_cart_past_the_middle_and_its_offset_is_its_line(tmp_path: Path,
                                                                                 ending: str) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(200, rows=3), ending)
    cut = find_cut(carts, ",", 0, 1, least=0)
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
    cut = find_cut(carts, ",", 0, 1, least=0)
    assert cut is not None
    # past the quoted cell: the first cart there might go on from the quoted one, the next cannot
    assert carts.read_bytes()[cut.offset:].startswith(b"c00001,")


def test_a_file_with_lines_ended_by_a_carriage_return_alone_is_not_cut(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(200), "\r")
    assert find_cut(carts, ",", 0, 1, least=0) is None


def test_only_utf8_exports_are_cut() -> None:
    assert counted("utf-8-sig") and counted("UTF8")
    assert not counted("utf-16") and not counted("cp1252") and not counted("no-such-codec")


# -- the two halves write what one helper writes -----------------------------------------------


@pytest.mark.usefixtures("forking")
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_two_helpers_write_the_spools_one_helper_writes(tmp_path: Path, ending: str) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(300, rows=2), ending)
    one = _split(carts, tmp_path / "one", least=1 << 62)
    two = _split(carts, tmp_path / "two", least=0)
    assert (one[0], two[0]) == (False, True)
    assert two[1] == one[1]
    assert half_spool(tmp_path / "two" / "carts.spool.1").stat().st_size > 0  # the second half was split apart


@pytest.mark.usefixtures("forking")
def test_a_cart_id_in_both_halves_is_found_in_pieces_and_a_cart_listed_twice_alike(tmp_path: Path) -> None:
    lines = [_row("split", name="Mug"), _row("twice"), *_carts(200), _row("split", name="Pot"), _row("twice")]
    carts = _write(tmp_path / "carts.csv", lines)
    one = _split(carts, tmp_path / "one", least=1 << 62)
    two = _split(carts, tmp_path / "two", least=0)
    assert two == (True, one[1])
    repeated = [entry for _rows, activity in two[1] for entry in activity if isinstance(entry, tuple) and entry[0] is None]
    assert set(repeated[0][1]) == {"split", "twice"}  # type: ignore[index]
    assert repeated[0][1]["twice"][1] and not repeated[0][1]["split"][1]  # type: ignore[index]


@pytest.mark.usefixtures("forking")
def test_a_second_helper_that_fails_leaves_the_first_to_read_on(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: CsvSource, cut: Cut, spools: list[Path]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(CsvSource, "_split_half", fail)  # inherited by the forked helper
    carts = _write(tmp_path / "carts.csv", _carts(300, rows=2))
    one = _split(carts, tmp_path / "one", least=1 << 62)
    assert _split(carts, tmp_path / "two", least=0) == (False, one[1])


@pytest.mark.usefixtures("forking")
def test_a_cut_the_first_half_does_not_confirm_leaves_it_to_read_on(tmp_path: Path) -> None:
    # A quote inside an unquoted cell before the middle: the count of quotes is odd from there,
    # and the guess lands inside the quoted note, which the reader sees as a quoted cell.
    note = "\n".join(f"c{n:05d},x@example.com,EUR" for n in range(60))
    lines = [_row("inch", name='5" screen'), *_carts(100), _row("noted", name=f'"{note}"'), *_carts(100)]
    carts = _write(tmp_path / "carts.csv", lines)
    one = _split(carts, tmp_path / "one", least=1 << 62)
    two = _split(carts, tmp_path / "two", least=0)
    assert two[1] == one[1]


@pytest.mark.usefixtures("forking")
def test_a_cart_broken_in_one_half_is_not_built_from_its_rows_in_the_other(tmp_path: Path) -> None:
    lines = [_row("gone"), "gone,cut@example.com", *_carts(200), _row("gone", name="Pot")]
    carts = _write(tmp_path / "carts.csv", lines)
    one = _split(carts, tmp_path / "one", least=1 << 62)
    assert _split(carts, tmp_path / "two", least=0) == (True, one[1])


class _Asked(Cut):
    """A cut that records whether the first half's reading confirmed it (and reads on anyway)."""

    asked = False

    def hand_over(self) -> bool:
        self.asked = True
        return False


def _asked_at(carts: Path, line: int, elsewhere: bool = False) -> bool:
    """Whether the reading of ``carts`` confirms a cut at ``line`` (``elsewhere``: found in another
    file); it reads every row either way."""
    from cartrescue.sources.halves import identity

    data = carts.read_bytes()
    offset = len(b"".join(data.splitlines(keepends=True)[:line - 1]))
    with carts.open("rb") as handle:
        cut = _Asked(line, offset, (0, 0, 0, 0) if elsewhere else identity(handle.fileno()))
    source = CsvSource(carts, shop_tz=UTC)
    assert list(source._cart_rows(end=cut)) == list(source._cart_rows())
    return cut.asked


def test_the_first_half_confirms_a_cut_only_where_a_cart_starts(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", [_row("a"), _row("b"), _row("b", name="Pot"), _row("c")])
    assert [_asked_at(carts, line) for line in (3, 4, 5)] == [True, False, True]


def test_the_first_half_refuses_a_cut_found_in_another_file(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", [_row("a"), _row("b")])
    assert (_asked_at(carts, 3), _asked_at(carts, 3, elsewhere=True)) == (True, False)


def test_the_first_half_refuses_a_cut_inside_a_quoted_cell(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", [_row("a", name='"two\nlines"'), _row("b")])
    assert [_asked_at(carts, line) for line in (3, 4)] == [False, True]


def test_the_first_half_refuses_a_cut_at_a_cart_a_quote_left_open_took_rows_of(tmp_path: Path) -> None:
    # a's quote takes b's whole row in: b is skipped whole, its row after the quote too
    lines = [_row("a", name='"open'), _row("b"), _row("b", name='close"'), _row("b", name="Pot"), _row("c")]
    carts = _write(tmp_path / "carts.csv", lines)
    assert [_asked_at(carts, line) for line in (5, 6)] == [False, True]


def test_the_second_half_refuses_a_file_that_is_not_the_one_cut(tmp_path: Path) -> None:
    carts = _write(tmp_path / "carts.csv", _carts(300))
    cut = find_cut(carts, ",", 0, 1, least=0)
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
@given(pieces=st.lists(_PIECES, min_size=2, max_size=40), ending=st.sampled_from(["\n", "\r\n"]))
def test_any_file_split_in_two_halves_gives_what_one_helper_gives(tmp_path_factory: pytest.TempPathFactory,
                                                                 pieces: list[tuple[str, int, list[str]]],
                                                                 ending: str) -> None:
    folder = tmp_path_factory.mktemp("halves")
    carts = _write(folder / "carts.csv", _lines(pieces), ending)
    one = _split(carts, folder / "one", least=1 << 62)
    assert _split(carts, folder / "two", least=0)[1] == one[1]
