"""CsvRows (cartrescue.sources.csvlines) reads exactly what Python's csv reader reads.

It cuts a line without a quote character itself and gives the others to the C reader; these
tests hold it to the C reader's rows, line numbers and errors on any text, including quotes
that open and close across lines, every line ending, blank lines and rows past the field limit.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartrescue.sources.csvlines import CsvRows

Seen = list[tuple[object, ...]]


@contextmanager
def field_limit(size: int) -> Iterator[int]:
    """The csv module's field limit at ``size`` characters, so that rows run past it; restored after."""
    before = csv.field_size_limit(size)
    try:
        yield size
    finally:
        csv.field_size_limit(before)


@pytest.fixture
def small_field_limit() -> Iterator[int]:
    with field_limit(12) as size:
        yield size


def headers(reader: Any, count: int) -> Seen:
    """``count`` rows read one by one, as a header is (or what stopped each), with the line count after."""
    seen: Seen = []
    for _ in range(count):
        try:
            seen.append(("header", next(reader), reader.line_num))
        except (StopIteration, csv.Error) as exc:
            seen.append(("header", type(exc).__name__, reader.line_num))
    return seen


def reference(text: str, delimiter: str, header_rows: int) -> Seen:
    """What the loop over ``csv.reader`` that CsvRows replaced made of ``text``: each row with the
    line it starts on and the reader's line count after it, each refused row with its error."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    seen = headers(reader, header_rows)
    line = reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            return seen
        except csv.Error as exc:
            line = reader.line_num
            seen.append(("malformed", start, str(exc), line))
            continue
        line = reader.line_num
        seen.append((start, row, line))


def through_csv_rows(text: str, delimiter: str, header_rows: int) -> Seen:
    rows = CsvRows(io.StringIO(text, newline=""), delimiter)
    seen = headers(rows, header_rows)
    for start, row in rows.numbered(lambda line, exc: seen.append(("malformed", line, str(exc), rows.line_num)),
                                    lambda: AssertionError("text decoded")):
        seen.append((start, row, rows.line_num))
    return seen


#: Pieces of CSV text: cells, each delimiter, quotes alone and doubled, whole quoted cells, every
#: line ending, a NUL.
PIECES = st.sampled_from(["a", "bc", "é€", " ", ",", ";", "\t", '"', '""', "\n", "\r", "\r\n", "\x00",
                          "x" * 14, '"a,b"', ',"c;d",', '"\t"'])
TEXTS = st.lists(PIECES, max_size=40).map("".join)


@settings(max_examples=600, deadline=None)
@given(text=TEXTS, delimiter=st.sampled_from([",", ";", "\t"]), header_rows=st.integers(0, 1))
def test_csv_rows_reads_any_text_as_the_csv_reader_does(text: str, delimiter: str, header_rows: int) -> None:
    with field_limit(12):
        assert through_csv_rows(text, delimiter, header_rows) == reference(text, delimiter, header_rows)


def test_a_line_without_quotes_is_cut_at_its_delimiters_whatever_its_ending() -> None:
    text = "id,name\r\n1,shirt\n2,\r3,cap,,\n\n4"
    rows = CsvRows(io.StringIO(text, newline=""), ",")
    assert next(rows) == ["id", "name"]
    assert list(rows.numbered(lambda line, exc: None, AssertionError)) == [
        (2, ["1", "shirt"]), (3, ["2", ""]), (4, ["3", "cap", "", ""]), (5, []), (6, ["4"])]


def test_a_quoted_cell_over_three_lines_counts_its_lines_and_the_next_row_starts_after_them() -> None:
    text = 'id,note\n1,"one\ntwo\nthree"\n2,plain\n'
    rows = CsvRows(io.StringIO(text, newline=""), ",")
    next(rows)
    read = []
    for start, row in rows.numbered(lambda line, exc: None, AssertionError):
        read.append((start, row, rows.line_num))
    assert read == [(2, ["1", "one\ntwo\nthree"], 4), (5, ["2", "plain"], 5)]


def test_a_row_past_the_field_limit_is_the_readers_error_on_its_line(small_field_limit: int) -> None:
    text = "id,note\n1," + "n" * (small_field_limit + 1) + "\n2,ok\n"
    rows = CsvRows(io.StringIO(text, newline=""), ",")
    next(rows)
    refused: list[tuple[int, str]] = []
    read = list(rows.numbered(lambda line, exc: refused.append((line, str(exc))), AssertionError))
    assert refused == [(2, f"field larger than field limit ({small_field_limit})")]
    assert read == [(3, ["2", "ok"])]


def test_undecodable_text_raises_what_the_caller_names(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_bytes(b"id,name\n" + b"1,cafe\n" * 5000 + b"2,caf\xe9\n")  # past the first chunk decoded

    class Undecodable(Exception):
        pass

    with path.open("r", encoding="utf-8", newline="") as handle:
        rows = CsvRows(handle, ",")
        assert next(rows) == ["id", "name"]
        with pytest.raises(Undecodable):
            list(rows.numbered(lambda line, exc: None, Undecodable))


@pytest.mark.parametrize("text", [
    '"a",x"b"\n', 'x"b"\n', '"a"b,c\n', 'a,"b""c",d\n', '"",x\n', 'a,""\n', '"a,b",\n', ',"a"\n', '"a"\n',
    '""\n', '"a","b"\n', '"a",,"b"\n', '"a",x,"b"\n', 'a, "b"\n', '"a" ,b\n', '"a,b\nc",d\n', 'a,"b\r\n',
    '"a""",b\n', '"a"\r\n"b"\r\n'])
def test_a_line_with_quotes_inside_or_around_its_cells_reads_as_the_csv_reader_reads_it(text: str) -> None:
    assert through_csv_rows(text, ",", 0) == reference(text, ",", 0)
