"""The CSV source: the generic format, its variants, and bad rows reported with file:line."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartrescue.model import RowProblem
from cartrescue.sources.csv import CsvSource, parse_decimal, parse_time
from cartrescue.sources.values import RowError
from conftest import NOW, REPO, Shop, cart, iso

HEADER = "cart_id,email,currency,created_at,updated_at,sku,name,quantity,unit_price,marketing_consent\n"


def _read(path: Path, **kwargs: object) -> tuple[list, list[RowProblem]]:
    problems: list[RowProblem] = []
    source = CsvSource(path, on_problem=problems.append, **kwargs)  # type: ignore[arg-type]
    return list(source.carts()), problems


def test_cart_level_columns_on_the_first_row_only_are_carried_to_the_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER
                    + "c1,ann@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,2,10.00,yes\n"
                    + "c1,,,,,B,Plate,1,5.50,\n"
                    + "c2,bo@example.com,SEK,2026-11-20T09:00:00+01:00,,C,Cup,1,99,no\n", encoding="utf-8")
    carts, problems = _read(path)
    assert problems == []
    assert [(c.id, len(c.items), c.total, c.customer.email, c.currency) for c in carts] == [
        ("c1", 2, Decimal("25.50"), "ann@example.com", "EUR"), ("c2", 1, Decimal("99"), "bo@example.com", "SEK")]
    assert carts[1].updated_at.isoformat() == "2026-11-20T08:00:00+00:00"


def test_bom_semicolons_decimal_commas_and_quoted_newlines_are_read(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    body = (HEADER.replace(",", ";")
            + 'c1;ann@example.com;EUR;2026-11-20T08:00:00Z;;A;"Mug\nwith a long name";1;"1 234,50";yes\n'
            + "c2;bo@example.com;EUR;2026-11-20T08:00:00Z;;B;Cup;1;nope;yes\n")
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    carts, problems = _read(path)
    assert [(c.id, c.items[0].name, c.total) for c in carts] == [("c1", "Mug\nwith a long name", Decimal("1234.50"))]
    assert [str(p) for p in problems] == [f"{path}:4: cart c2: unit_price: not a number: 'nope'"]


def test_a_tab_separated_utf16_export_from_excel_is_read_not_missing_every_column(shop: Shop) -> None:
    """Excel's "Unicode Text" save is UTF-16 with tabs. Read with a comma its header was one
    column: the run stopped (exit 3) on "missing column(s): cart_id, currency, ..." of a header
    that names every one of them, and no customer was reminded. The orders file is detected alike."""
    shop.configure(source={"encoding": "utf-16"})
    shop.write()
    at = iso(NOW - timedelta(hours=2))
    rows = [HEADER.rstrip("\n").split(","),
            ["c1", "ann@example.com", "EUR", at, "", "A", "Mug, large", "1", "12,50", "yes"],
            ["c2", "bo@example.com", "EUR", at, "", "B", "Cup", "1", "9,00", "yes"]]
    (shop.folder / "carts.csv").write_text("".join("\t".join(row) + "\r\n" for row in rows), encoding="utf-16")
    (shop.folder / "orders.csv").write_text(f"order_id\temail\ttotal\tcreated_at\r\no1\tbo@example.com\t9,00\t{iso(NOW)}\r\n",
                                            encoding="utf-16")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    assert result.exit_code == 0, result.output
    assert [(row["cart_id"], row["reason"], row["total"]) for row in result.json["decisions"]] == [
        ("c1", "due", "12.50"), ("c2", "ordered", "9.00")]
    assert result.json["problems"] == []


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (",x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes", "missing cart_id"),
        ("c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.0.0.x,yes", "unit_price: not a number"),
        ("c9,x@example.com,EUR,20/11/2026,,A,Mug,1,1.00,yes", "created_at: not an ISO 8601 time"),
        ("c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,-2,1.00,yes", "quantity: must be at least 1"),
        ("c9,not-an-address,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes", "email: not a valid address"),
        ("c9,x@example.com,euro,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes", "currency: expected an ISO 4217 code"),
        ("c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,123456789012345678901234567,yes",
         "unit_price: out of range: 123456789012345678901234567 (amounts must be below 10^12)"),
        ("c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1e9,1.00,yes",
         "quantity: more than 10,000 units in one line: '1e9'"),
        ("c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,10001,1.00,yes", "quantity: more than 10,000 units"),
        ("c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1e999999999,1.00,yes", "quantity: out of range"),
        ("c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1e999999999,yes", "unit_price: out of range"),
        # a NUL, which the ledger cannot keep (PostgreSQL refused it and stopped the whole run)
        ("c\x009,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes", "cart_id: holds a NUL character"),
        ("c9,x@example.com,EUR\x00,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes", "currency: holds a NUL character"),
    ],
)
def test_a_bad_row_is_reported_with_file_and_line_and_the_good_rows_still_read(tmp_path: Path, row: str, reason: str) -> None:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n" + row + "\n"
                    + "c3,b@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    carts, problems = _read(path)
    assert [c.id for c in carts] == ["c1", "c3"]
    assert len(problems) == 1 and problems[0].location == f"{path}:3" and reason in problems[0].reason


def test_a_bad_line_skips_its_whole_cart_never_half_of_it(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"
                    + "c1,,,,,B,Plate,x,1.00,\n", encoding="utf-8")
    carts, problems = _read(path)
    assert carts == [] and [p.location for p in problems] == [f"{path}:3"]


@pytest.mark.parametrize(
    ("rows", "line"),
    [
        (["c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,19,900.00,yes"], 3),  # a one-row cart
        (["c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes",
          "c9,,,,,B,Plate, large,1,2.00,"], 4),  # the second row of a cart
    ],
    ids=["its only row", "its second row"],
)
def test_a_row_with_more_cells_than_the_header_costs_its_whole_cart(tmp_path: Path, rows: list[str], line: int) -> None:
    # Its values sit under the wrong columns (19 as the price, 900.00 as the consent...): a
    # reminder built from it would show a wrong price or link.
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n" + "\n".join(rows) + "\n"
                    + "c3,b@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    carts, problems = _read(path)
    assert [c.id for c in carts] == ["c1", "c3"]
    assert [str(p) for p in problems] == [
        f"{path}:{line}: cart c9: 11 cells where the header has 10 columns: a value holds an unquoted delimiter? "
        "(quote it, or check the export's delimiter)"]


def test_a_row_whose_cells_past_the_header_are_blank_is_reported_too(tmp_path: Path) -> None:
    # "1,250.00" slid the consent off the end: the cell past the header is the blank consent.
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1,250.00,\n", encoding="utf-8")
    carts, problems = _read(path)
    assert carts == [] and [p.location for p in problems] == [f"{path}:2"]


def test_a_last_line_cut_short_costs_its_cart_never_a_wrong_price(tmp_path: Path) -> None:
    """An export cut mid-line ("219.00" read as "21", the consent gone): the cart's row lacks
    cells, so the cart is skipped and reported, never built from what is left."""
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"
                    + "c2,b@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"
                    + "c2,,,,,B,Throw,1,21", encoding="utf-8")
    carts, problems = _read(path)
    assert [c.id for c in carts] == ["c1"]
    assert [str(p) for p in problems] == [
        f"{path}:4: cart c2: 9 cells where the header has 10 columns: the row is cut short? (an export that "
        "stopped mid-line, or a line break inside an unquoted value)"]


def test_a_short_row_in_the_middle_costs_its_cart_only(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00\n"  # its consent lost
                    + "c2,b@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    carts, problems = _read(path)
    assert [c.id for c in carts] == ["c2"] and [p.location for p in problems] == [f"{path}:2"]


def _ann_and_her_order(tmp_path: Path, order_row: str) -> tuple[Any, list[RowProblem]]:
    """Ann's cart c1 and an orders file of one row: the order the cart's lookup finds, and the problems."""
    carts = tmp_path / "carts.csv"
    carts.write_text(HEADER + "c1,ann@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,email,customer_id,cart_id,total,status,created_at,delivered\n" + order_row,
                      encoding="utf-8")
    problems: list[RowProblem] = []
    with CsvSource(carts, orders, on_problem=problems.append) as source:
        (order,) = source.orders_for(list(source.carts()))
    return order, problems


def test_an_order_row_cut_short_holds_back_its_customers_carts(tmp_path: Path) -> None:
    order, problems = _ann_and_her_order(tmp_path, "o1,ann@example.com,,c1,25")
    assert (order.id, order.email, order.cart_id, order.unreadable) == ("o1", "ann@example.com", "c1",
                                                                        "line 2 of the orders export")
    assert [p.reason for p in problems] == [
        "order o1: 5 cells where the header has 8 columns: the row is cut short? (an export that stopped mid-line, "
        "or a line break inside an unquoted value)"]


def test_strict_stops_on_a_cart_row_cut_short_before_anything_is_delivered(shop: Shop) -> None:
    shop.add(cart("good"), cart("cut", email="cut@example.com"))
    shop.write()
    carts = shop.folder / "carts.csv"
    carts.write_text(carts.read_text(encoding="utf-8").rstrip("\n")[:-12], encoding="utf-8")
    from conftest import cli

    result = cli("run", "--outbox", str(shop.folder / "out"), "--strict", "--json", "--config", str(shop.config_path),
                 "--now", iso(NOW))
    assert result.exit_code == 3, result.output
    assert "cart cut: " in result.json["error"]["message"] and "cut short" in result.json["error"]["message"]
    assert shop.messages() == []


def test_an_export_that_ends_every_line_with_a_delimiter_header_included_is_read(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER.replace("\n", ",\n") + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes,\n",
                    encoding="utf-8")
    carts, problems = _read(path)
    assert problems == [] and [(c.id, c.total) for c in carts] == [("c1", Decimal("1.00"))]


def test_an_order_row_with_more_cells_than_the_header_is_reported_and_kept_only_as_unreadable(tmp_path: Path) -> None:
    # Its cells slid: nothing of it is read but the address in it, which holds its carts back.
    order, problems = _ann_and_her_order(tmp_path, "o1,ann@example.com,,c1,1,250.00,completed,2026-11-21T08:00:00Z,\n")
    orders = tmp_path / "orders.csv"
    assert (order.id, order.email, order.cart_id, order.unreadable) == ("o1", "ann@example.com", None,
                                                                        "line 2 of the orders export")
    assert [str(p) for p in problems] == [
        f"{orders}:2: order o1: 9 cells where the header has 8 columns: a value holds an unquoted delimiter? "
        "(quote it, or check the export's delimiter)"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_run_reports_a_row_with_too_many_cells_once_and_delivers_the_other_carts(shop: Shop, workers: str) -> None:
    from conftest import cli

    shop.add(cart("good"), cart("other", email="other@example.com"))
    shop.write()
    carts = shop.folder / "carts.csv"
    header = carts.read_text(encoding="utf-8").splitlines()[0]
    good = carts.read_text(encoding="utf-8").splitlines()[1]
    shifted = good.replace("good", "shifted").replace("@example.com", "@example.org", 1) + ",1,250.00"
    with carts.open("a", encoding="utf-8") as handle:
        handle.write(shifted + "\n")
    assert len(header.split(",")) + 2 == len(shifted.split(","))
    result = cli("run", "--json", "--workers", workers, "--config", str(shop.config_path), "--now", iso(NOW))
    assert result.exit_code == 1, result.output
    assert sorted(d["cart_id"] for d in result.json["decisions"]) == ["good", "other"]
    assert result.json["counts"]["problems"] == 1
    assert [p for p in result.json["problems"] if "carts.csv:4: cart shifted: " in p and "cells where the header" in p]


def _big(cart_id: str) -> str:
    """A row with a field past the CSV reader's limit (131,072 characters): the reader cannot read it."""
    return f'{cart_id},,,,,B,"{"x" * 200_000}",1,2.00,'


def test_an_unreadable_row_between_two_rows_of_a_cart_costs_that_cart_never_half_of_it(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"
                    + "c9,x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n" + _big("c9") + "\n"
                    + "c9,,,,,C,Cup,1,3.00,\n"
                    + "c3,b@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    carts, problems = _read(path)
    assert [c.id for c in carts] == ["c1", "c3"]
    assert [p.location for p in problems] == [f"{path}:4"]
    assert problems[0].reason.startswith("cart c9: malformed CSV: field larger than field limit")


def test_an_unreadable_row_between_two_carts_is_reported_alone(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n" + _big("c2") + "\n"
                    + "c3,b@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n" + _big("c4") + "\n",
                    encoding="utf-8")
    carts, problems = _read(path)
    assert [c.id for c in carts] == ["c1", "c3"]
    unreadable = "malformed CSV: field larger than field limit (131072)"
    assert [(p.location, p.reason) for p in problems] == [(f"{path}:3", unreadable), (f"{path}:5", unreadable)]


def _anns_orders(tmp_path: Path, orders_csv: str) -> tuple[list[Any], list[Any], list[RowProblem]]:
    """Ann's cart c1 beside the orders file ``orders_csv``: the orders a run matches to her cart,
    the orders the report reads, and the problems of both."""
    from cartrescue.sources.base import ALL_TIME

    carts = tmp_path / "carts.csv"
    carts.write_text(HEADER + "c1,ann@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text(orders_csv, encoding="utf-8")
    problems: list[RowProblem] = []
    with CsvSource(carts, orders, on_problem=problems.append) as source:
        return list(source.orders_for(list(source.carts()))), list(source.orders(ALL_TIME)), problems


def test_an_unreadable_order_row_is_reported_and_the_other_orders_still_count(tmp_path: Path) -> None:
    # It used to end the run as "a bug in cartrescue" (exit 70), for run and report alike.
    run, report, problems = _anns_orders(
        tmp_path, "order_id,email,customer_id,cart_id,total,status,created_at,delivered\n"
                  f'o1,"{"x" * 200_000}",,,1.00,completed,2026-11-21T08:00:00Z,\n'
                  "o2,ann@example.com,,c1,1.00,completed,2026-11-21T08:00:00Z,\n")
    assert [o.id for o in run] == ["o2"] and [o.id for o in report] == ["o2"]
    orders = tmp_path / "orders.csv"
    assert [str(p) for p in problems] == [f"{orders}:2: malformed CSV: field larger than field limit (131072)"] * 2


#: A WooCommerce orders table exported as it is: its statuses under ``wc-``, and the order its block
#: checkout keeps in draft for every checkout begun (an abandoned checkout itself), which an export
#: plugin writes by its label, ``Draft``.
WOO_NO_PURCHASES = ["wc-cancelled", "wc-failed", "wc-checkout-draft", "checkout-draft", "wc-trash", "WC-Failed",
                    "Draft"]


@pytest.mark.parametrize("status", WOO_NO_PURCHASES)
def test_a_woocommerce_exports_cancelled_failed_or_draft_order_is_no_purchase(tmp_path: Path, status: str) -> None:
    """Read as written, ``wc-failed`` (a payment that failed at the gateway) and a checkout's draft
    were purchases: the customer who left that very checkout was skipped as ``ordered``, never
    reminded. The WooCommerce preset read them right; a CSV export of the same table did not."""
    run, report, problems = _anns_orders(tmp_path, "order_id,email,total,status,created_at,delivered\n"
                                         f"101,ann@example.com,1.00,{status},2026-11-20T08:05:00Z,no\n"
                                         "102,ann@example.com,1.00,wc-processing,2026-11-01T08:00:00Z,no\n")
    assert [(o.id, o.status) for o in run] == [("102", "processing")] == [(o.id, o.status) for o in report]
    assert problems == []


def test_an_orders_header_the_reader_cannot_read_stops_with_exit_3(tmp_path: Path) -> None:
    from cartrescue.errors import ExitCode, SourceError

    carts = tmp_path / "carts.csv"
    carts.write_text(HEADER + "c1,ann@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text(f'order_id,"{"x" * 200_000}",created_at\n', encoding="utf-8")
    with CsvSource(carts, orders) as source, \
            pytest.raises(SourceError, match="orders.csv:1: cannot read the header") as raised:
        list(source.orders_for(list(source.carts())))
    assert raised.value.exit_code == ExitCode.SOURCE


def test_a_problem_quotes_at_most_300_characters_of_a_huge_cell(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + f"c1,{'x' * 100_000}@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n",
                    encoding="utf-8")
    carts, problems = _read(path)
    assert carts == [] and len(problems) == 1
    assert problems[0].reason.startswith("cart c1: email: not a valid address: 'xxx")
    assert len(problems[0].reason) == 300 and problems[0].reason.endswith("…")


@given(moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                           timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), None])),
       spelling=st.sampled_from(["iso", "Z", "space"]))
def test_an_orders_time_is_kept_as_the_utc_iso_text_the_index_always_held(moment: datetime, spelling: str) -> None:
    from zoneinfo import ZoneInfo

    from cartrescue.sources.csv import utc_text

    text = moment.isoformat(sep=" " if spelling == "space" else "T")
    if spelling == "Z" and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    parsed = parse_time(text, "created_at", ZoneInfo("Europe/Stockholm"))
    assert utc_text(text, parsed) == parsed.isoformat()


def test_a_header_mapping_reads_another_export(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Checkout,Mail,Cur,Started,Item,Title,Qty,Price\n"
                    "k1,ann@example.com,EUR,2026-11-20 08:00:00 +0100,S1,Mug,1,\"12,00\"\n", encoding="utf-8")
    columns = {"cart_id": "Checkout", "email": "Mail", "currency": "Cur", "created_at": "Started", "sku": "Item",
               "name": "Title", "quantity": "Qty", "unit_price": "Price"}
    carts, problems = _read(path, columns=columns)
    assert problems == [] and [(c.id, c.total, c.created_at.hour) for c in carts] == [("k1", Decimal("12.00"), 7)]


def test_a_missing_required_column_is_one_clear_error(tmp_path: Path) -> None:
    from cartrescue.errors import SourceError

    path = tmp_path / "carts.csv"
    path.write_text("cart_id,email\nc1,a@example.com\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"carts.csv:1: missing column\(s\): currency, created_at"):
        _read(path)


@pytest.mark.parametrize(("text", "value"), [("12.50", "12.50"), ("12,50", "12.50"), ("1 234,50", "1234.50"),
                                             ("1,234.50", "1234.50"), ("1.234,50", "1234.50"), ("7", "7"),
                                             ("1'234.50", "1234.50"), ("12 34 567", "1234567"),
                                             ("1\u202f234\u202f567,89", "1234567.89")])
def test_numbers_accept_a_decimal_point_or_comma(text: str, value: str) -> None:
    assert parse_decimal(text, "x") == Decimal(value)


@pytest.mark.parametrize("text", ["19 99", "12 345 6,00", "1'2'3.50", "12 34,50"])
def test_spaces_or_apostrophes_that_group_no_thousands_are_no_number(text: str) -> None:
    """Stripped unchecked, "19 99" was 1999 and "12 345 6,00" 123456: a price a hundred times
    the one meant, in a reminder, without a word."""
    from cartrescue.sources.values import RowError

    with pytest.raises(RowError, match="its spaces or apostrophes group no thousands"):
        parse_decimal(text, "x")


@pytest.mark.parametrize("text", ["1,500", "45,000", "-2,250"])
def test_a_single_comma_before_three_digits_is_refused_as_ambiguous(text: str) -> None:
    # 1.5 with a decimal comma, 1500 with a thousands comma (a US export; yen prices have no decimals).
    with pytest.raises(RowError, match=rf"x: ambiguous: '{text}' is .* with a decimal comma"):
        parse_decimal(text, "x")


@pytest.mark.parametrize(("text", "value"), [("0,125", "0.125"), ("1234,500", "1234.5"), ("1,500.00", "1500"),
                                             ("1.500,00", "1500")])
def test_a_comma_that_can_only_be_decimal_or_only_grouping_is_read(text: str, value: str) -> None:
    assert parse_decimal(text, "x") == Decimal(value)


def test_a_quantity_in_another_scripts_digits_reads_as_its_value_as_a_price_does(tmp_path: Path) -> None:
    """A quantity reads as a price (``values.parse_decimal``) and a database's number do: a
    decimal digit of any script is its value (Arabic-Indic ``٣`` is 3, Persian ``۲`` is 2), on
    the short path (``isdecimal()``, up to 5 characters) and the long one (``parse_int``) alike.
    Ids are another matter (``text.ascii_digits``): they name a row, and ``١٢`` is no row 12."""
    path = tmp_path / "carts.csv"
    path.write_text(HEADER
                    + "c1,ann@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,٣,١٢.٥٠,yes\n"
                    + "c2,bo@example.com,EUR,2026-11-20T08:00:00Z,,B,Cup,۰۰۰۰۰۲,۱۰,yes\n", encoding="utf-8")
    carts, problems = _read(path)
    assert problems == []
    assert [(c.items[0].quantity, c.items[0].unit_price, c.total) for c in carts] == [
        (3, Decimal("12.50"), Decimal("37.50")), (2, Decimal("10"), Decimal("20"))]


def test_a_time_without_offset_is_read_in_the_shop_timezone() -> None:
    from zoneinfo import ZoneInfo

    assert parse_time("2026-07-01T12:00:00", "t", ZoneInfo("Europe/Stockholm")).hour == 10


def test_a_carts_created_at_given_as_a_date_alone_is_that_days_start_in_the_shop_timezone(tmp_path: Path) -> None:
    """Unlike an order's date alone (the day's end: docs/csv-format.md), a cart's is its midnight:
    the cart is older, never younger, than it was, so its first step is never held back."""
    from zoneinfo import ZoneInfo

    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "c1,ann@example.com,EUR,2026-11-20,,A,Mug,1,10.00,yes\n", encoding="utf-8")
    (read,), problems = _read(path, shop_tz=ZoneInfo("Europe/Stockholm"))
    assert problems == []
    assert read.created_at.isoformat() == read.updated_at.isoformat() == "2026-11-19T23:00:00+00:00"


@pytest.mark.parametrize(("text", "zone"), [("0001-01-01T00:00:00", "Europe/Stockholm"),
                                           ("9999-12-31T23:59:59", "America/New_York")])
def test_a_local_time_with_no_utc_equivalent_is_a_row_error(text: str, zone: str) -> None:
    from zoneinfo import ZoneInfo

    with pytest.raises(RowError, match="updated_at: out of range"):
        parse_time(text, "updated_at", ZoneInfo(zone))


def test_the_run_reports_bad_rows_on_stderr_and_exits_1_but_processes_the_rest(shop: Shop) -> None:
    shop.add(cart("good"), [{**cart("bad")[0], "quantity": "-1"}])
    result = shop.cli("run", "--json")
    assert result.exit_code == 1
    assert "carts.csv:3: cart bad: quantity: must be at least 1" in result.stderr
    assert [d["cart_id"] for d in result.json["decisions"]] == ["good"]
    assert result.json["counts"]["problems"] == 1


def test_strict_stops_before_anything_is_delivered(shop: Shop) -> None:
    shop.add(cart("good"), [{**cart("bad")[0], "quantity": "-1"}])
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--strict")
    assert result.exit_code == 3
    assert "carts.csv:3" in result.stderr and "--strict" in result.stderr
    assert not list((shop.folder / "out").glob("*.eml")) if (shop.folder / "out").exists() else True


def test_an_unreadable_source_exits_3_with_one_line(shop: Shop) -> None:
    shop.configure(source={"carts": "missing.csv"})
    shop.write()
    from conftest import cli

    result = cli("run", "--config", str(shop.config_path))
    assert result.exit_code == 3
    assert "missing.csv: cannot open" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("key", ["carts", "orders", "newsletters.file"])
@pytest.mark.parametrize("command", [["run"], ["run", "--outbox", "out"], ["carts"]])
def test_a_missing_export_names_its_config_key_the_path_and_the_config_file(
        shop: Shop, key: str, command: list[str]) -> None:
    """It named the path alone: which setting to fix, and in which of an agency's configs, was left to guess."""
    name = key.split(".")[0]
    setting = {name: {"file": f"exports/{name}-missing.csv"}} if "." in key else {key: f"exports/{name}-missing.csv"}
    shop.add(cart("c1")).configure(source=setting)
    result = shop.cli(*command, "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"] == (f"{shop.config_path}: source.{key}: "
                                               f"{shop.folder / 'exports' / f'{name}-missing.csv'}: cannot open: "
                                               "No such file or directory")


def test_the_bundled_sample_reads_without_problems() -> None:
    carts, problems = _read(REPO / "examples" / "carts.csv")
    assert problems == [] and len(carts) >= 250
    assert {c.customer.locale for c in carts} >= {"en", "sv", "hu", "ru", "af", "kk"}


@pytest.mark.parametrize("shared", [False, True], ids=["own index", "parent's index"])
@pytest.mark.parametrize("batch", [1, 2, 5000])
def test_orders_keep_the_first_row_of_an_id_and_report_only_its_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int, shared: bool
) -> None:
    # The orders index lives in a scratch SQLite file filled in batches; whatever the batch
    # size, it answers as the in-memory index did: first row of an id wins, duplicates are
    # silent, problems come in file order, a cart's own order is found by cart id, email or
    # customer id, each once. The index a parent builds for its workers answers the same, and
    # its reader reports the same problems.
    import cartrescue.sources.csvorders as csv_orders  # where the orders reader reads it

    monkeypatch.setattr(csv_orders, "ORDER_BATCH", batch)
    carts = tmp_path / "carts.csv"
    carts.write_text(HEADER + "c1,ann@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"
                     + "c2,bo@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "order_id,email,customer_id,cart_id,total,status,created_at,delivered\n"
        "o1,ANN@example.com ,,,10.00,completed,2026-11-01T08:00:00Z,yes\n"  # line 2: by email
        "o2,x@example.com,,c2,bad,completed,2026-11-21T08:00:00Z,\n"  # line 3: unreadable, reported
        "o2,bo@example.com,,c2,5.00,completed,2026-11-21T08:00:00Z,\n"  # line 4: duplicate, ignored
        ",,,,,,,\n"  # line 5: blank
        ",x@example.com,,,1,completed,2026-11-01T08:00:00Z,\n"  # line 6: no id, reported
        "o3,bo@example.com,,,7,cancelled,2026-11-02T08:00:00Z,\n"  # line 7: ignored status...
        "o3,bo@example.com,,,7,completed,2026-11-02T08:00:00Z,\n"  # line 8: ...shadows this one
        "o4,,,c1,3.50,completed,2026-11-21T08:00:00Z,no\n"  # line 9: by cart id
        "o1,ann@example.com,,,99,completed,2026-11-01T08:00:00Z,yes\n",  # line 10: duplicate
        encoding="utf-8")
    problems: list[RowProblem] = []
    parent = tmp_path / "shared.db" if shared else None
    if parent is not None:
        with CsvSource(carts, orders, on_problem=problems.append) as builder:
            builder.publish_orders(parent)
        assert problems == []  # the parent builds; the worker reports
    with CsvSource(carts, orders, on_problem=problems.append, shared_orders=parent) as source:
        found = list(source.carts())
        matched = [(o.id, o.email, o.cart_id, o.total, o.delivered, o.unreadable) for o in source.orders_for(found)]
        scratch = source._orders.path  # type: ignore[union-attr]
    # o2's first row cannot be read: kept with its ids, as unreadable (its later duplicate stays ignored)
    assert matched == [("o4", None, "c1", Decimal("3.50"), False, None),
                       ("o1", "ann@example.com", None, Decimal("10.00"), True, None),
                       ("o2", "x@example.com", "c2", Decimal("0"), None, "line 3 of the orders export")]
    assert [str(p) for p in problems] == [f"{orders}:3: order o2: total: not a number: 'bad'", f"{orders}:6: missing order_id"]
    # the scratch index is deleted when the source closes; the parent's is the parent's to delete
    assert Path(scratch).exists() is shared


def test_amounts_keep_at_most_eight_decimal_places() -> None:
    from cartrescue.sources.values import bounded_amount

    assert bounded_amount(Decimal("0.30000000000000004"), "unit_price") == Decimal("0.30000000")
    assert bounded_amount(Decimal("12.50"), "unit_price") == Decimal("12.50")


def _two_carts_and_a_bad_row(path: Path) -> None:
    path.write_text(HEADER + "c1,a@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"
                    + ",x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"
                    + "c3,b@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")


def test_after_a_complete_activity_pass_the_carts_pass_reads_that_pass_not_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    _two_carts_and_a_bad_row(path)
    problems: list[RowProblem] = []
    source = CsvSource(path, on_problem=problems.append)
    assert [a.cart_key for a in source.activity(None)] == ["csv:c1", "csv:c3"]  # type: ignore[arg-type]
    assert problems == []  # the first pass keeps its problems for the carts pass
    path.write_text(HEADER + "c9,z@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    assert [c.id for c in source.carts()] == ["c1", "c3"]  # the export as the first pass saw it
    assert [str(p) for p in problems] == [f"{path}:3: missing cart_id"]  # reported once, by the carts pass
    assert [c.id for c in source.carts()] == ["c9"]  # the spool is read once; then the file again


def test_an_activity_pass_left_unfinished_leaves_the_carts_pass_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    _two_carts_and_a_bad_row(path)
    problems: list[RowProblem] = []
    source = CsvSource(path, on_problem=problems.append)
    passes = source.activity(None)  # type: ignore[arg-type]
    next(passes)
    passes.close()
    assert [c.id for c in source.carts()] == ["c1", "c3"]
    assert [str(p) for p in problems] == [f"{path}:3: missing cart_id"]


def test_a_shards_spool_holds_its_own_carts_and_only_shard_one_reports_the_rows_of_none(tmp_path: Path) -> None:
    from cartrescue.shards import Shard

    path = tmp_path / "carts.csv"
    rows = "".join(f"c{n},p{n}@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n" for n in range(40))
    path.write_text(HEADER + rows + ",x@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    seen: list[str] = []
    for index in (1, 2):
        shard = Shard(index, 2)
        problems: list[RowProblem] = []
        source = CsvSource(path, on_problem=problems.append)
        list(source.shard_activity(None, shard))  # type: ignore[arg-type]
        carts = [c.id for c in source.shard_carts(None, shard)]  # type: ignore[arg-type]
        assert carts and all(shard.owns(f"p{c[1:]}@example.com", f"csv:{c}") for c in carts)
        assert [p.reason for p in problems] == (["missing cart_id"] if index == 1 else [])
        seen += carts
    assert sorted(seen) == sorted(f"c{n}" for n in range(40))


def test_the_spool_of_one_shard_is_not_used_for_another(tmp_path: Path) -> None:
    from cartrescue.shards import Shard

    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "".join(f"c{n},p{n}@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"
                                     for n in range(20)), encoding="utf-8")
    source = CsvSource(path)
    list(source.shard_activity(None, Shard(1, 2)))  # type: ignore[arg-type]
    assert len([c.id for c in source.carts()]) == 20  # the whole file, read again


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_mapped_column_the_export_lacks_is_reported_once(shop: Shop, workers: str) -> None:
    import json
    import os
    import subprocess
    import sys

    shop.add(cart("c1"), cart("c2", email="bo@example.com"))
    shop.configure(source={"columns": {"marketing_consent": "Consent"}}).write()  # the file says marketing_consent
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--workers", workers, "--config",
                           str(shop.config_path), "--now", iso(NOW)], cwd=REPO, capture_output=True, timeout=120,
                          check=False, env=dict(os.environ))
    assert done.returncode == 1, done.stderr.decode()
    problems = json.loads(done.stdout)["problems"]
    assert problems == [f"{shop.folder / 'carts.csv'}:1: no column 'Consent' (source.columns.marketing_consent) in the "
                        "header: marketing_consent is blank on every row"]


@pytest.mark.parametrize(("full", "locale", "split"), [
    ("Åsa Lindström", "sv", ("Åsa", "Lindström")), ("Kovács Ágnes", "hu_HU", ("Ágnes", "Kovács")),
    ("Anna Maria van der Berg", "", ("Anna", "Maria van der Berg")), ("Cher", "en", ("Cher", ""))])
def test_a_full_name_gives_the_first_name_the_language_puts_first_or_last(full: str, locale: str,
                                                                           split: tuple[str, str]) -> None:
    from cartrescue.sources.csv import split_name

    assert split_name(full, locale) == split


def test_a_quote_left_open_over_an_order_row_with_an_extra_cell_is_reported_not_a_crash(tmp_path: Path) -> None:
    """Without cart_id and customer_id columns (read as a blank cell past the row), a taken row
    with more cells than the header was cut to the header and read past its end: IndexError, exit 70."""
    carts = tmp_path / "carts.csv"
    carts.write_text(HEADER + "c1,ann@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n", encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text('order_id,email,status,created_at\no1,ann@example.com,"gift,2026-11-20T09:00:00Z\n'
                      "o2,bo@example.com,paid,2026-11-20T09:00:00Z,extra\n"
                      'o3,cy@example.com,paid",2026-11-20T09:00:00Z\n', encoding="utf-8")
    problems: list[RowProblem] = []
    with CsvSource(carts, orders, on_problem=problems.append) as source:
        (order,) = source.orders_for(list(source.carts()))
    assert (order.id, order.unreadable) == ("o1", "line 2 of the orders export")
    assert [p.location for p in problems] == [f"{orders}:2"] and "(order o1, o2, o3)" in problems[0].reason


@given(sign=st.sampled_from(["", "-"]), whole=st.integers(0, 10**14), places=st.integers(0, 12),
       fraction=st.integers(0, 10**12), point=st.booleans())
def test_an_amount_written_plain_reads_as_the_general_parser_reads_it(sign: str, whole: int, places: int,
                                                                     fraction: int, point: bool) -> None:
    """``parse_amount`` counts a plain number's places in its text (its fast path): the same
    Decimal to the exponent (``str``) as ``bounded_amount(parse_decimal(...))``, more than eight
    places rounded, out of range refused with the same reason."""
    from cartrescue.sources.values import bounded_amount, parse_amount

    text = f"{sign}{whole}" + (f".{str(fraction)[:places].zfill(places)}" if point and places else "")

    def read(parse: Any) -> str:
        try:
            return str(parse())
        except RowError as exc:
            return f"error: {exc}"

    assert read(lambda: parse_amount(text, "unit_cost")) == read(
        lambda: bounded_amount(parse_decimal(text, "unit_cost"), "unit_cost", text))


def test_the_first_pass_reads_each_carts_address_and_last_change_where_its_rows_write_them(tmp_path: Path) -> None:
    """The first pass takes a cart's address and last change from its first row where written
    there (trimmed, the address folded), else from the first later row that does (a blank or a
    cell of spaces is none), its last change else its creation; a cart without either, or with a
    time it cannot read, is no address's newest; an empty cart that says no withdraws."""
    path = tmp_path / "carts.csv"
    path.write_text(HEADER
                    + "c1, Ann@Example.com ,EUR,2026-11-20T07:00:00Z, 2026-11-20T08:00:00+01:00 ,A,Mug,1,1.00,\n"
                    + "c2,  ,EUR,2026-11-20T07:00:00Z,   ,A,Mug,1,1.00,\n"
                    + "c2,bo@example.com,,,2026-11-20T09:30:00Z,B,Cup,1,1.00,\n"
                    + "c3,cy@example.com,EUR,2026-11-20T06:00:00Z,,A,Mug,1,1.00,\n"
                    + "c4,dee@example.com,EUR,,,A,Mug,1,1.00,\n"
                    + "c5,eve@example.com,EUR,2026-11-20T07:00:00Z,yesterday,A,Mug,1,1.00,\n"
                    + "c6,,EUR,2026-11-20T07:00:00Z,2026-11-20T07:00:00Z,A,Mug,1,1.00,\n"
                    + "c7,fay@example.com,EUR,2026-11-20T05:00:00Z,,,,,,no\n", encoding="utf-8")
    source = CsvSource(path)
    seen = [(a.email, a.updated_at.isoformat(), a.cart_key, a.empty, a.free, a.no_marketing, a.no_sms)
            for a in source.activity(None)]  # type: ignore[arg-type]
    assert seen == [
        ("ann@example.com", "2026-11-20T07:00:00+00:00", "csv:c1", False, False, False, False),
        ("bo@example.com", "2026-11-20T09:30:00+00:00", "csv:c2", False, False, False, False),
        ("cy@example.com", "2026-11-20T06:00:00+00:00", "csv:c3", False, False, False, False),
        ("fay@example.com", "2026-11-20T05:00:00+00:00", "csv:c7", True, False, True, False),
    ]


@given(row=st.lists(st.text(alphabet=" \t\u00a0ab1,é\u3000", max_size=6), min_size=1, max_size=30),
       picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_a_rows_cells_are_read_stripped_from_where_the_header_puts_them(row: list[str], picks: list[int]) -> None:
    """``stripped_cells`` (code written for one file's header) reads the cells at the header's
    positions, in the header's order, each stripped as ``str.strip`` strips it, into a new list."""
    from cartrescue.sources.csv import stripped_cells

    positions = tuple(pick % len(row) for pick in picks)
    cells = stripped_cells(positions)
    read = cells(row)
    assert read == [row[position].strip() for position in positions]
    assert type(read) is list and read is not cells(row)  # the carts pass fills blanks in it


def test_yes_no_cells_are_read_in_any_case_and_a_word_that_is_neither_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "carts.csv"
    path.write_text("cart_id,email,currency,created_at,sku,name,quantity,unit_price,marketing_consent,is_guest\n"
                    "c1,a@example.com,EUR,2026-11-20T08:00:00Z,A,Mug,1,1.00,Nein,YES\n"
                    "c2,b@example.com,EUR,2026-11-20T08:00:00Z,A,Mug,1,1.00,ja,no\n"
                    "c3,c@example.com,EUR,2026-11-20T08:00:00Z,A,Mug,1,1.00,maybe,\n"
                    "c4,d@example.com,EUR,2026-11-20T08:00:00Z,A,Mug,1,1.00,, WAHR \n", encoding="utf-8")
    carts, problems = _read(path)
    assert [(c.id, c.customer.marketing_consent, c.customer.is_guest) for c in carts] == [
        ("c1", False, True), ("c2", True, False), ("c4", None, True)]
    assert [str(p) for p in problems] == [f"{path}:4: cart c3: marketing_consent: expected yes/no, got 'maybe'"]


def test_a_carts_blank_cells_are_taken_from_its_later_rows_and_its_lines_add_up_to_its_total(tmp_path: Path) -> None:
    """Where the first row leaves a cart-level cell blank, the first later row that writes it
    gives it (a column the file lacks is blank in every row); without a total, the lines' totals
    add up to it as ``sum`` adds them."""
    path = tmp_path / "carts.csv"
    path.write_text("cart_id,email,currency,created_at,sku,name,quantity,unit_price,first_name,total\n"
                    "c1,,EUR,2026-11-20T08:00:00Z,A,Mug,2,1.10,,\n"
                    "c1,,,,B,Cup,3,0.30,Ann,\n"
                    "c1,a@example.com,,,C,Lid,1,0.05,Bo,\n"
                    "c2,b@example.com,SEK,2026-11-20T08:00:00Z,A,Mug,1,9,,\n"
                    "c2,b@example.com,SEK,2026-11-20T08:00:00Z,B,Cup,1,1,,12.50\n", encoding="utf-8")
    carts, problems = _read(path)
    assert problems == []
    assert [(c.id, c.customer.email, c.customer.first_name, c.customer.phone, str(c.total)) for c in carts] == [
        ("c1", "a@example.com", "Ann", None, "3.15"), ("c2", "b@example.com", None, None, "12.50")]


def test_carts_strict_says_nothing_was_listed_not_delivered(shop: Shop) -> None:
    """``carts`` never delivers: its --strict stop says so in its own words, not a run's."""
    shop.add(cart("good"), [{**cart("bad")[0], "quantity": "-1"}])
    result = shop.cli("carts", "--strict", "--json")
    assert result.exit_code == 3, result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{shop.folder / 'carts.csv'}:3: cart bad: quantity: must be at least 1"), message
    assert message.endswith("(--strict: no cart was listed)"), message
    assert "delivered" not in message


def test_run_strict_still_says_nothing_was_delivered(shop: Shop) -> None:
    shop.add(cart("good"), [{**cart("bad")[0], "quantity": "-1"}])
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--strict", "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"].endswith("(--strict: nothing was delivered)")
