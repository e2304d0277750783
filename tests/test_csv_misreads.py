"""Exports a careless reader would misread: a quote left open, rows without a cart id, one id for
two customers, a column named twice, a pipe, a thousands dot. Each costs its own cart, reported
with its lines, never another customer's reminder, never one customer's rows in another's
message, never a wrong price shown.

A quote that is not closed where it should be makes one cell of every line up to the next quote.
The cells that follow it often still add up to the header's width, so before this the next
customers' rows (their addresses too) became a product's name in the first customer's message,
their carts were gone without a word, and the run exited 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from cartrescue.model import RowProblem
from conftest import NOW, Shop, cart, iso, order

HEADER = "cart_id,email,currency,created_at,sku,name,quantity,unit_price,marketing_consent\n"
AT = iso(NOW - timedelta(hours=2))
#: c1's row with a quote left open (its name cell), then c2's row, which the quote takes in.
_OPEN_QUOTE = [f'c1,a@example.com,EUR,{AT},S1,"12 inch pan,1,10', f"c2,b@example.com,EUR,{AT},S2,Pot,2,20"]


def _carts_file(shop: Shop, lines: list[str], header: str = HEADER) -> None:
    """The shop's carts.csv as written here (the shop's own writer would quote it right)."""
    shop.write()
    (shop.folder / "carts.csv").write_text(header + "".join(line + ",yes\n" for line in lines), encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]


def _messages(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8", errors="replace") for path in folder.rglob("*.eml")}


def test_a_quote_left_open_in_the_carts_file_never_puts_other_customers_rows_in_a_message(shop: Shop) -> None:
    _carts_file(shop, [f'c1,a@example.com,EUR,{AT},S1,"12 inch pan,1,10',
                       f"c2,b@example.com,EUR,{AT},S2,Mug,1,10",
                       f'c3,c@example.com,EUR,{AT},S3,"Pan",1,10',
                       f"c4,d@example.com,EUR,{AT},S4,Lamp,1,10"])
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 1, result.output  # reported: cron hears of it
    decided = {row["cart_id"] for row in result.json["decisions"]}
    assert decided == {"c4"}
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:2: cart c1: a quoted cell runs to line 4 and holds 1 row(s) of the file "
        "(cart c2): a quote left open? Lines 2-4 are skipped, with carts c1, c2, c3 whole, never one customer's "
        "rows in another's message"]
    messages = _messages(shop.folder / "out")
    assert len(messages) == 1 and not any("b@example.com" in text for text in messages.values())


def _after_an_open_quote(shop: Shop, *lines: str) -> tuple[set[str], list[str]]:
    """The carts decided and the problems of ``carts --json`` over :data:`_OPEN_QUOTE`, then
    ``lines`` (line 4 on), then c4's cart."""
    _carts_file(shop, [*_OPEN_QUOTE, *lines, f"c4,d@example.com,EUR,{AT},S9,Lamp,1,10"])
    document = shop.cli("carts", "--json").json
    return {row["cart_id"] for row in document["decisions"]}, document["problems"]


def test_a_cart_a_quote_left_open_took_rows_of_is_skipped_whole_not_sent_with_the_rest(shop: Shop) -> None:
    decided, problems = _after_an_open_quote(shop, f'c2,b@example.com,EUR,{AT},S3,"Lid",1,5',
                                             f"c2,b@example.com,EUR,{AT},S4,Bowl,1,3")
    assert decided == {"c4"}  # never c2 with its bowl alone
    assert problems == [
        f"{shop.folder / 'carts.csv'}:2: cart c1: a quoted cell runs to line 4 and holds 1 row(s) of the file "
        "(cart c2): a quote left open? Lines 2-4 are skipped, with carts c1, c2 whole, never one customer's rows "
        "in another's message"]


def test_a_cart_whose_first_row_a_quote_left_open_closed_in_is_skipped_whole(shop: Shop) -> None:
    decided, _ = _after_an_open_quote(shop, f'c3,c@example.com,EUR,{AT},S3,"Pot",2,20',
                                      f"c3,c@example.com,EUR,{AT},S4,Lid,1,5")
    assert decided == {"c4"}  # never c3 with its lid alone


def test_a_cart_a_quote_left_open_took_a_row_of_is_skipped_where_its_other_rows_stand_apart(shop: Shop) -> None:
    decided, problems = _after_an_open_quote(shop, f'c3,c@example.com,EUR,{AT},S3,"Pan",1,10',
                                             f"c5,e@example.com,EUR,{AT},S5,Lamp,1,10",
                                             f"c2,b@example.com,EUR,{AT},S6,Cup,1,5")
    assert decided == {"c4", "c5"}  # never c2 with its cup alone
    assert problems[1] == (
        f"{shop.folder / 'carts.csv'}:6: cart c2: its rows are not together (groups at lines 3, 6): skipped whole, "
        "never half a cart (the export must list a cart's rows one after another)")


def test_a_quote_left_open_in_the_orders_file_holds_back_the_customers_of_the_orders_it_took_in(
        shop: Shop) -> None:
    shop.add(cart("liam", email="liam@example.com"), cart("ethan", email="ethan@example.com"),
             cart("olivia", email="olivia@example.com"))
    shop.add_orders(dict(order("1050", email="liam@example.com", created=NOW), status='"gift wrap please'),
                    order("1051", email="ethan@example.com", created=NOW))
    shop.write()
    orders = shop.folder / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8").replace('"""gift wrap please"', '"gift wrap please'),
                      encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    decided = {row["cart_id"]: (row["action"], row["reason"]) for row in result.json["decisions"]}
    assert decided["liam"] == decided["ethan"] == ("defer", "unreadable_order")  # ethan bought: never reminded
    assert decided["olivia"] == ("send", "due")
    assert any("a quoted cell runs to line 3 and holds 1 row(s) of the file (order 1050, 1051)" in problem
               for problem in result.json["problems"]), result.json["problems"]


def test_an_order_whose_row_a_quote_left_open_closed_in_holds_back_its_customer(shop: Shop) -> None:
    shop.add(cart("c1", email="a@example.com"), cart("c2", email="b@example.com"),
             cart("c3", email="c@example.com"), cart("c4", email="d@example.com"))
    shop.write()
    (shop.folder / "orders.csv").write_text(
        "order_id,email,status,created_at\n"
        f'o1,a@example.com,"gift wrap,{iso(NOW)}\n'
        f"o2,b@example.com,paid,{iso(NOW)}\n"
        f'o3,c@example.com,"paid",{iso(NOW)}\n', encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("run", "--json")
    decided = {row["cart_id"]: (row["action"], row["reason"]) for row in result.json["decisions"]}
    assert decided["c3"] == ("defer", "unreadable_order")  # c3 bought (o3): never reminded
    assert decided["c4"] == ("send", "due")


def test_a_row_without_a_cart_id_between_two_rows_of_a_cart_skips_that_cart_whole(shop: Shop) -> None:
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10",
                       f",a@example.com,EUR,{AT},S2,Sofa,1,900",
                       f"c1,a@example.com,EUR,{AT},S3,Plate,1,5",
                       f"c2,b@example.com,EUR,{AT},S4,Lamp,1,10"])
    result = shop.cli("carts", "--json")
    assert {row["cart_id"] for row in result.json["decisions"]} == {"c2"}  # never c1 without its sofa
    assert result.json["problems"] == [f"{shop.folder / 'carts.csv'}:3: cart c1: missing cart_id (its other rows "
                                       "are skipped too: never half a cart)"]


def test_a_row_without_a_cart_id_between_two_rows_of_a_cart_skips_its_rows_elsewhere_too(shop: Shop) -> None:
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10",
                       f",a@example.com,EUR,{AT},S2,Sofa,1,900",
                       f"c1,a@example.com,EUR,{AT},S3,Plate,1,5",
                       f"c2,b@example.com,EUR,{AT},S4,Lamp,1,10",
                       f"c1,a@example.com,EUR,{AT},S5,Cup,1,5"])
    result = shop.cli("carts", "--json")
    assert {row["cart_id"] for row in result.json["decisions"]} == {"c2"}  # never c1 with its cup alone
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:3: cart c1: missing cart_id (its other rows are skipped too: never half a cart)",
        f"{shop.folder / 'carts.csv'}:6: cart c1: its rows are not together (groups at lines 2, 6): skipped whole, "
        "never half a cart (the export must list a cart's rows one after another)"]


def test_a_bad_cart_level_value_given_on_a_later_row_of_the_cart_is_reported_at_that_row(shop: Shop) -> None:
    _carts_file(shop, ["c1,a@example.com,,,S1,Pan,1,10",
                       "c1,,,,S2,Pot,1,10",
                       "c1,,EUR,20.11.2026,S3,Lid,1,5"])
    result = shop.cli("carts", "--json")
    [problem] = result.json["problems"]
    assert problem.startswith(f"{shop.folder / 'carts.csv'}:4: cart c1: created_at: not an ISO 8601 time: '20.11.2026'")


def test_a_time_written_another_way_says_how_to_write_it(shop: Shop) -> None:
    """``06/12/2026 14:05`` (June or December?) was refused with no word of the form it takes."""
    _carts_file(shop, ["c1,a@example.com,EUR,06/12/2026 14:05,S1,Pan,1,10"])
    [problem] = shop.cli("carts", "--json").json["problems"]
    assert problem.endswith("not an ISO 8601 time: '06/12/2026 14:05' (write e.g. 2026-11-20T10:03:00Z, "
                            "2026-11-20 11:03:00+01:00, or 2026-11-20 11:03 in the shop's timezone)"), problem


def test_rows_of_one_cart_id_naming_two_customers_are_no_cart(shop: Shop) -> None:
    """Two carts under one id (a spreadsheet rounded both ids to 3.50123E+13): one message would
    show Anna Bert's products. The cart is skipped, naming both lines; the next cart is sent."""
    _carts_file(shop, [f"3.50123E+13,anna@example.com,EUR,{AT},S1,Pregnancy test,1,10",
                       f"3.50123E+13,bert@example.com,EUR,{AT},S2,Hair loss shampoo,1,10",
                       f"c2,b@example.com,EUR,{AT},S4,Lamp,1,10"])
    result = shop.cli("carts", "--json")
    assert {row["cart_id"] for row in result.json["decisions"]} == {"c2"}
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:2: cart 3.50123E+13: email 'anna@example.com' (line 2) and 'bert@example.com' "
        "(line 3) in one cart: two carts under one id? (an id a spreadsheet rounded: 3.50123E+13)"]


def test_rows_of_one_cart_in_two_currencies_are_no_cart(shop: Shop) -> None:
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10",
                       f"c1,,SEK,{AT},S2,Lamp,1,500"])
    result = shop.cli("carts", "--json")
    assert result.json["decisions"] == []
    assert "currency 'eur' (line 2) and 'sek' (line 3) in one cart" in result.json["problems"][0]


def test_a_column_the_run_reads_named_twice_in_the_header_stops_the_run(shop: Shop) -> None:
    """The second 'email' column, blank, was read silently: every cart no_contact, nothing said."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    path = shop.folder / "carts.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("marketing_consent", "email", 1)
                    .replace(",yes\n", ",\n"), encoding="utf-8")
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"] == (f"{path}:1: column 'email' (email) appears 2 times (columns 2, 9): "
                                               "which one holds it? Rename or drop the others")


def test_an_export_through_a_pipe_is_a_clear_source_error(shop: Shop) -> None:
    """``cat carts.csv | cartrescue run`` with ``carts: /dev/stdin`` was an internal error
    (exit 70): the export is read more than once. A redirect from a file still reads."""
    shop.add(cart("c1"))
    shop.write()
    shop.configure(source={"type": "csv", "carts": "/dev/stdin", "orders": "orders.csv"})
    shop.write()
    command = [sys.executable, "-m", "cartrescue.cli", "carts", "--json", "--config", str(shop.config_path),
               "--now", iso(NOW)]
    with (shop.folder / "carts.csv").open("rb") as carts:
        piped = subprocess.run(command, input=carts.read(), capture_output=True, cwd=shop.folder,
                               env={**os.environ, "COLUMNS": "200"})
    assert piped.returncode == 3, piped.stderr
    assert "/dev/stdin: not a regular file (a pipe?)" in piped.stdout.decode()
    with (shop.folder / "carts.csv").open("rb") as carts:
        redirected = subprocess.run(command, stdin=carts, capture_output=True, cwd=shop.folder)
    assert redirected.returncode == 0, redirected.stdout[-500:]


def test_a_price_with_a_thousands_dot_is_refused_as_ambiguous_not_read_a_thousand_times_too_small(
        shop: Shop) -> None:
    """A European export's 1.299 (one thousand two hundred ninety-nine) was read as 1.299 euros."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Sofa,1,1.299", f"c2,b@example.com,EUR,{AT},S2,Mug,1,12.50"])
    result = shop.cli("carts", "--json")
    assert {row["cart_id"] for row in result.json["decisions"]} == {"c2"}
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:2: cart c1: unit_price: ambiguous: '1.299' is 1.299 with a decimal point, 1299 "
        "with a thousands dot, and EUR has 2 decimals: write it without the dot, or with its decimals "
        "(1299.00 or 1.299,00)"]


def test_a_cost_with_a_thousands_dot_is_refused_as_its_price_would_be(shop: Shop) -> None:
    """A unit_cost of 1.299 EUR (1,299) read as 1.30 made a 1,499 sofa look 99.9 % margin, and the
    high-margin rule put it first; a price written so was refused, its cost was not."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Sofa,1,1499.00,1.299", f"c2,b@example.com,EUR,{AT},S2,Mug,1,12.50,4.00"],
                HEADER.replace(",unit_price,", ",unit_price,unit_cost,"))
    result = shop.cli("carts", "--json")
    assert {row["cart_id"] for row in result.json["decisions"]} == {"c2"}
    (problem,) = result.json["problems"]
    assert problem.startswith(f"{shop.folder / 'carts.csv'}:2: cart c1: unit_cost: ambiguous: '1.299'"), problem


@pytest.mark.parametrize(("price", "was"), [("1.234.56", "123456"), ("12.5.0", "1250"), ("1,2,3", "123"),
                                           ("12,34.50", "1234.50")])
def test_a_price_whose_separators_group_no_thousands_is_refused_not_read_with_them_stripped(
        shop: Shop, price: str, was: str) -> None:
    """Every mark of a number with two of them was stripped, grouping or not: ``1.234.56`` went
    out as 123456 euros, a hundred times the price, without a word."""
    _carts_file(shop, [f'c1,a@example.com,EUR,{AT},S1,Sofa,1,"{price}"', f"c2,b@example.com,EUR,{AT},S2,Mug,1,12.50",
                       f'c3,c@example.com,INR,{AT},S3,Rug,1,"12,34,567.50"',
                       f'c4,d@example.com,EUR,{AT},S4,Car,1,"1.234.567,50"'])
    result = shop.cli("carts", "--json")
    assert [(row["cart_id"], row["total"]) for row in result.json["decisions"]] == [
        ("c2", "12.50"), ("c3", "1234567.50"), ("c4", "1234567.50")], f"c1 read as {was}?"
    mark = "." if price.count(".") > 1 else ","
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:2: cart c1: unit_price: not a number: {price!r} (its {mark!r} groups no "
        "thousands: write it without them, as 1234.50)"]


def test_three_decimals_are_a_price_in_a_currency_of_thousandths(shop: Shop) -> None:
    _carts_file(shop, [f"c1,a@example.com,KWD,{AT},S1,Lamp,1,1.250"])
    (decision,) = shop.cli("carts", "--json").json["decisions"]
    assert (decision["currency"], decision["total"]) == ("KWD", "1.250")


def test_a_negative_cost_is_refused_as_a_negative_price_is(shop: Shop) -> None:
    """It made the line look more than 100 % margin: the high-margin rule's top score."""
    shop.write()
    path = shop.folder / "carts.csv"
    path.write_text(HEADER.replace(",marketing_consent", ",unit_cost,marketing_consent")
                    + f"c1,a@example.com,EUR,{AT},S1,Mug,1,10,-5,yes\n", encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    assert result.json["decisions"] == []
    assert result.json["problems"] == [f"{path}:2: cart c1: unit_cost: negative: '-5'"]


def test_a_byte_order_mark_read_with_an_explicit_encoding_keeps_the_first_orders_column(shop: Shop) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark; read as ``utf-8`` it stuck to the first
    header, ``\\ufeffemail``: the column read as absent, every address blank without a word, and
    c2's buyer reminded of the cart she bought."""
    shop.add(cart("c2"))
    shop.configure(source={"encoding": "utf-8"})
    shop.write()
    (shop.folder / "orders.csv").write_bytes(
        b"\xef\xbb\xbfemail,order_id,total,currency,status,created_at\n"
        + f"c2@example.com,o1,30.00,EUR,paid,{iso(NOW - timedelta(minutes=30))}\n".encode())
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    assert [(row["cart_id"], row["reason"]) for row in result.json["decisions"]] == [("c2", "ordered")]
    assert result.json["problems"] == []


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_a_utf8_export_with_its_byte_order_mark_read_as_an_8_bit_encoding_stops_the_run(
        shop: Shop, encoding: str) -> None:
    """An exporter that moved from cp1252 to "UTF-8 with BOM": read as the config says, Åsa was
    Ã…sa in every reminder, without a word. The mark says what the file is: exit 3, naming it."""
    shop.configure(source={"encoding": encoding})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Tr\u00e5dl\u00f6sa h\u00f6rlurar,1,10"])
    path = shop.folder / "carts.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_text(encoding="utf-8").encode("utf-8"))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    assert result.json["error"]["message"].startswith(
        f"{shop.config_path}: source.carts: {path}: starts with UTF-8's byte-order mark, and source.encoding is "
        f"{encoding}")


def test_a_byte_order_mark_read_as_utf8_keeps_the_first_carts_column(shop: Shop) -> None:
    """The carts file's first column, cart_id, was "missing" (exit 3) in a file that has it."""
    shop.configure(source={"encoding": "utf-8"})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    path = shop.folder / "carts.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = shop.cli("carts", "--json")
    assert result.exit_code == 0, result.output
    assert [row["cart_id"] for row in result.json["decisions"]] == ["c1"]


def test_blank_lines_before_the_header_are_no_row_not_a_header_naming_no_column(shop: Shop) -> None:
    """A blank line (or one of delimiters only: a spreadsheet's empty first row) above the header
    was read as the header: the run stopped (exit 3) on "missing column(s): cart_id, currency,
    ..." of a file whose next line names them all, and nobody was reminded."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10", f"c2,b@example.com,EUR,{AT},S2,Pot,x,20"])
    path = shop.folder / "carts.csv"
    path.write_bytes(b"\xef\xbb\xbf\r\n;;;;;;;;\r\n" + path.read_bytes().replace(b",", b";"))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 1, result.output
    assert [row["cart_id"] for row in result.json["decisions"]] == ["c1"]
    assert result.json["problems"] == [f"{path}:5: cart c2: quantity: not a number: 'x'"]


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_excels_sep_line_above_the_header_names_the_delimiter_and_is_no_header(shop: Shop, delimiter: str) -> None:
    """Some exporters write ``sep=;`` above the header so that Excel opens the file in columns:
    it was read as the header, and the run stopped on "missing column(s): cart_id, ..."."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10", f"c2,b@example.com,EUR,{AT},S2,Pot,x,20"])
    path = shop.folder / "carts.csv"
    path.write_bytes(f"\ufeffsep={delimiter}\r\n".encode() + path.read_bytes().replace(b",", delimiter.encode()))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 1, result.output
    assert [row["cart_id"] for row in result.json["decisions"]] == ["c1"]
    assert result.json["problems"] == [f"{path}:4: cart c2: quantity: not a number: 'x'"]


def test_a_header_below_blank_lines_is_named_by_its_own_line_in_a_missing_column_error(shop: Shop) -> None:
    """The error said ``carts.csv:1:``, a blank line, while the header it meant was on line 3."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"], HEADER.replace("unit_price", "price"))
    path = shop.folder / "carts.csv"
    path.write_bytes(b"\r\n\r\n" + path.read_bytes())
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 and result.json["error"]["message"] == f"{path}:3: missing column(s): unit_price"


def test_an_orders_export_of_line_breaks_alone_stops_the_run_as_an_empty_one(shop: Shop) -> None:
    """An export job that failed after its first line break wrote no order: read as "missing
    column(s): order_id, created_at" it named a header it never wrote, not the failed export."""
    shop.add(cart("c1"))
    shop.write()
    (shop.folder / "orders.csv").write_bytes(b"\r\n\r\n")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("run", "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"].startswith(
        f"{shop.config_path}: source.orders: {shop.folder / 'orders.csv'}: empty, not even a header (did the export "
        "job fail?)")


def test_a_byte_order_mark_read_as_utf8_keeps_the_first_newsletter_column(tmp_path: Path) -> None:
    """The newsletter export's first column, email, was "missing" (exit 3) in a file that has it."""
    from cartrescue.sources.base import Window
    from cartrescue.sources.sends_csv import CsvSends

    path = tmp_path / "sends.csv"
    path.write_bytes(b"\xef\xbb\xbfemail,sent_at\n" + f"a@example.com,{iso(NOW)}\n".encode())
    problems: list[RowProblem] = []
    sends = CsvSends(path, encoding="utf-8", on_problem=problems.append)
    try:
        found = list(sends.sends_for(["a@example.com"], Window(NOW - timedelta(hours=1), NOW + timedelta(hours=1))))
    finally:
        sends.close()
    assert [send.email for send in found] == ["a@example.com"] and problems == []


def test_an_order_a_quote_closing_on_the_next_line_took_in_holds_back_its_customer(shop: Shop) -> None:
    """The quote o1's status opens closes inside o2's line: no line of the cell held a whole
    row, the cells still added up to the header's width, and o2 was gone without a word: t2's
    buyer was reminded of the cart she bought."""
    shop.add(cart("t1"), cart("t2"), cart("t3"))
    shop.write()
    at = iso(NOW - timedelta(minutes=30))
    (shop.folder / "orders.csv").write_text(
        "order_id,email,customer_id,cart_id,total,currency,status,created_at,delivered\n"
        f'o1,t1@example.com,,t1,10.00,EUR,"complete,{at},yes\n'
        f'o2,t2@example.com,,t2,10.00,EUR,complete",{at},yes\n', encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    decided = {row["cart_id"]: (row["action"], row["reason"]) for row in result.json["decisions"]}
    assert decided == {"t1": ("defer", "unreadable_order"), "t2": ("defer", "unreadable_order"),
                       "t3": ("send", "due")}
    assert result.json["problems"] == [
        f"{shop.folder / 'orders.csv'}:2: a quoted cell runs to line 3 and holds 1 row(s) of the file (order o1, o2): "
        "a quote left open? Those orders' customers' carts wait until it is fixed"]


def test_each_order_a_quote_left_open_took_in_is_named_by_the_line_it_starts_on(shop: Shop) -> None:
    """o1's status opens a quote that o3's closes: the customers of o1, o2 and o3 wait, each
    detail naming where its order's row starts (as a cart a quote took is reported), after a
    quoted cell over two lines (o0's) that is no open quote. Every order the quote took was
    said to be on o1's line: o2's on line 4, not 5."""
    shop.add(cart("t1"), cart("t2"), cart("t3"), cart("t4"), cart("t5"))
    shop.write()
    at = iso(NOW - timedelta(minutes=30))
    (shop.folder / "orders.csv").write_text(
        "order_id,email,customer_id,cart_id,total,currency,status,created_at,delivered\n"
        f'o0,x@example.com,,,10.00,EUR,"complete\n(left at the door)",{at},yes\n'
        f'o1,t1@example.com,,t1,10.00,EUR,"complete,{at},yes\n'
        f"o2,t2@example.com,,t2,10.00,EUR,complete,{at},yes\n"
        f'o3,t3@example.com,,t3,10.00,EUR,complete",{at},yes\n'
        f"o4,t4@example.com,,t4,ten,EUR,complete,{at},yes\n", encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    details = {row["cart_id"]: (row["reason"], row["detail"]) for row in result.json["decisions"]}
    assert details == {
        "t1": ("unreadable_order", "order o1 (line 4 of the orders export) could not be read"),
        "t2": ("unreadable_order", "order o2 (line 5 of the orders export) could not be read"),
        "t3": ("unreadable_order", "order o3 (line 6 of the orders export) could not be read"),
        "t4": ("unreadable_order", "order o4 (line 7 of the orders export) could not be read"),
        "t5": ("due", "")}
    assert result.json["problems"] == [
        f"{shop.folder / 'orders.csv'}:4: a quoted cell runs to line 6 and holds 1 row(s) of the file "
        "(order o1, o2, o3): a quote left open? Those orders' customers' carts wait until it is fixed",
        f"{shop.folder / 'orders.csv'}:7: order o4: total: not a number: 'ten'"]


def test_a_cart_a_quote_closing_on_the_next_line_took_a_row_of_is_skipped_whole(shop: Shop) -> None:
    """c2's row lost its start to c1's name cell and was no row at all; a product name over two
    lines (its delimiters far from a row's worth) is still read."""
    _carts_file(shop, [f'c1,a@example.com,EUR,{AT},S1,"12 inch pan,1,10',
                       f'c2,b@example.com,EUR,{AT},S2,Pot",2,20',
                       f'c3,c@example.com,EUR,{AT},S3,"Pan, cast iron\nwith lid, 28 cm",1,10',
                       f"c4,d@example.com,EUR,{AT},S4,Lamp,1,10"])
    result = shop.cli("carts", "--json")
    assert {row["cart_id"] for row in result.json["decisions"]} == {"c3", "c4"}
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:2: cart c1: a quoted cell runs to line 3 and holds 1 row(s) of the file "
        "(cart c2): a quote left open? Lines 2-3 are skipped, with carts c1, c2 whole, never one customer's "
        "rows in another's message"]


def test_rows_without_the_delimiter_that_ends_the_header_are_read_not_all_cut_short(shop: Shop) -> None:
    """``…;marketing_consent;``: the header's unnamed last column made every row one cell short
    of it, "cut short?", every cart skipped (and every order unreadable) in a file read right."""
    shop.add(cart("c1"), cart("c2"))
    shop.add_orders(order("o1", email="c2@example.com", created=NOW - timedelta(minutes=30)))
    shop.write()
    for name in ("carts.csv", "orders.csv"):
        path = shop.folder / name
        header, rest = path.read_text(encoding="utf-8").split("\n", 1)
        path.write_text((header + ",\n" + rest).replace(",", ";"), encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    assert [(row["cart_id"], row["reason"]) for row in result.json["decisions"]] == [("c1", "due"), ("c2", "ordered")]
    assert result.json["problems"] == []


@pytest.mark.parametrize(("line", "field"), [("S1,Pan\x00lid", "name"), ("S\x00X,Pan", "sku")])
def test_a_nul_in_a_lines_sku_or_name_costs_its_cart_not_the_message(shop: Shop, line: str, field: str) -> None:
    """Only cart-level cells were checked: a NUL in an item's name went out in the message."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},{line},1,10", f"c2,b@example.com,EUR,{AT},S1,Pan,1,10"])
    result = shop.cli("carts", "--json")
    assert [row["cart_id"] for row in result.json["decisions"]] == ["c2"]
    assert [problem.split(": ", 1)[1] for problem in result.json["problems"]] == [
        f"cart c1: {field}: holds a NUL character (\\x00), which no ledger can keep"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "cp1252", "utf-16-be"])
def test_a_utf16_export_with_its_byte_order_mark_read_as_another_encoding_says_it_is_utf16(
        shop: Shop, encoding: str) -> None:
    """Excel's "Unicode Text" save is UTF-16 with a byte-order mark. Read as utf-8 the error said
    "set source.encoding ... e.g. cp1252"; set so, the run stopped on "missing column(s):
    cart_id, currency, ..." of a header that names them all, and utf-16-be read it garbled. The
    mark says what the file is: exit 3, naming the file and the encoding to set."""
    shop.configure(source={"encoding": encoding})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    path = shop.folder / "carts.csv"
    path.write_bytes(path.read_text(encoding="utf-8").replace(",", "\t").encode("utf-16"))  # little-endian, marked
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    assert result.json["error"]["message"].startswith(
        f"{shop.config_path}: source.carts: {path}: starts with UTF-16's byte-order mark, and source.encoding is "
        f"{encoding}: the export is UTF-16")
    assert "set source.encoding to utf-16" in result.json["error"]["message"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_a_utf16_export_with_its_byte_order_mark_reads_as_utf16_or_its_byte_order(shop: Shop, encoding: str) -> None:
    """Set to utf-16-le, the byte order the docs name for a file without its mark, a file with
    its mark stopped the run: "starts with UTF-8's byte-order mark ... set source.encoding to
    utf-8-sig", which was read as UTF-8 and refused again."""
    shop.configure(source={"encoding": encoding})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    for name in ("carts.csv", "orders.csv"):
        path = shop.folder / name
        path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 0, result.output
    assert [row["cart_id"] for row in result.json["decisions"]] == ["c1"]


@pytest.mark.parametrize(("encoding", "order"), [("utf-8-sig", "utf-16-le"), ("cp1252", "utf-16-be")])
def test_a_utf16_export_without_its_byte_order_mark_read_as_8_bit_text_says_it_is_utf16(
        shop: Shop, encoding: str, order: str) -> None:
    """A UTF-16 export saved without its mark decodes as UTF-8 (or cp1252) without an error, a NUL
    between every letter: the run stopped on "missing column(s): cart_id, ... (the header has
    '\\x00c\\x00a...')", which says nothing of the encoding. Its NULs say it: exit 3, naming the
    file and the byte order to set."""
    shop.configure(source={"encoding": encoding})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    path = shop.folder / "carts.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode(order))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{shop.config_path}: source.carts: {path}: "), message
    assert message.endswith(f"set source.encoding to {order}"), message


def test_a_carts_column_named_almost_as_the_format_names_it_is_reported_not_read_as_absent_in_silence(
        shop: Shop) -> None:
    """A hand-written export with ``E-Mail`` for ``email``: every cart was a no_contact skip, exit
    0, nothing said, and no customer was ever reminded."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"], header=HEADER.replace(",email,", ",E-Mail,"))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 1, result.output
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:1: column 'E-Mail' is no column cartrescue reads: is it email? Rename it "
        "email, or map it (source.columns: {email: \"E-Mail\"}); as it is, email is blank on every row"]


def test_an_orders_column_misspelt_is_reported_not_read_as_absent_in_silence(shop: Shop) -> None:
    """An orders export with ``emial``: no order was tied to its buyer's cart by address, and the
    guest who had bought was reminded of the cart, without a word."""
    shop.add(cart("c1"))
    shop.write()
    (shop.folder / "orders.csv").write_text(
        f"order_id,customer_id,emial,total,currency,status,created_at\no1,,c1@example.com,30.00,EUR,paid,{AT}\n", encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    assert result.exit_code == 1, result.output
    assert result.json["problems"] == [
        f"{shop.folder / 'orders.csv'}:1: column 'emial' is no column cartrescue reads: is it email? Rename it "
        "email, or map it (source.order_columns: {email: \"emial\"}); as it is, email is blank on every row"]


def test_a_required_column_named_almost_as_the_format_names_it_is_named_in_the_error(shop: Shop) -> None:
    """``missing column(s): unit_price`` of a header with ``Unit Price``: which column is it?"""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"], header=HEADER.replace(",unit_price,", ",Unit Price,"))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"] == (
        f"{shop.folder / 'carts.csv'}:1: missing column(s): unit_price (the header has 'Unit Price': rename it "
        "unit_price, or map it in source.columns)")


def test_a_required_column_the_mapping_names_and_the_file_lacks_names_the_mapping_key(shop: Shop) -> None:
    """``source.columns: {cart_id: "Checkout ID"}`` on an export whose column is ``Cart ID``: the
    error said ``missing column(s): Checkout ID``, a name the owner may not recognise as the one
    they wrote in the config, nor know where to change. It names the key that maps it."""
    shop.configure(source={"columns": {"cart_id": "Checkout ID", "unit_price": "Price"}})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"],
                header=HEADER.replace("cart_id,", "Cart ID,").replace(",unit_price,", ",Price,"))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    assert result.json["error"]["message"] == (
        f"{shop.folder / 'carts.csv'}:1: missing column(s): Checkout ID (source.columns.cart_id)")


def test_a_required_orders_column_the_mapping_names_and_the_file_lacks_names_the_mapping_key(shop: Shop) -> None:
    shop.add(cart("c1")).configure(source={"order_columns": {"created_at": "Placed"}})
    shop.write()
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"] == (
        f"{shop.folder / 'orders.csv'}:1: missing column(s): Placed (source.order_columns.created_at)")


def test_a_header_the_mapping_gives_one_field_is_not_read_as_another_fields_own_name(shop: Shop) -> None:
    """A Shopify-style export mapped by hand, ``cart_id: Name`` (Shopify's ``#1001``) and the
    product's column left unmapped: ``Name`` was read as the product's ``name`` too, and the
    reminder listed "#1001 × 1 — €25.00" as the product, exit 0, nothing said. A header the
    config maps to one field is that field's: the product column is missing, and said so."""
    shop.configure(source={"columns": {"cart_id": "Name"}})
    _carts_file(shop, [f"#1001,a@example.com,EUR,{AT},S1,Mug,1,10"],
                header=HEADER.replace("cart_id,", "Name,").replace(",name,", ",Lineitem name,"))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    assert result.json["error"]["message"] == (
        f"{shop.folder / 'carts.csv'}:1: missing column(s): name (the header's 'Name' is source.columns.cart_id: "
        "map name to its own column)")


def test_columns_cartrescue_does_not_read_are_not_taken_for_misspelt_ones(shop: Shop) -> None:
    """An export's own columns (a note, a device id, a second phone) are left alone in silence."""
    header = HEADER.replace(",marketing_consent", ",note,Device ID,phone2,Total Tax,marketing_consent")
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10,gift,d-1,+46701234567,2"], header=header)
    result = shop.cli("carts", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["problems"] == []


@pytest.mark.parametrize("price", ["499 kr", "€59.90", "59,90 EUR", "$ 12"])
def test_a_price_written_with_its_currency_says_to_write_the_number_alone(shop: Shop, price: str) -> None:
    """``499 kr`` was "not a number ... (its spaces or apostrophes group no thousands: write it
    without them, as 1234.50)": the owner looked for a thousands space the cell does not have."""
    _carts_file(shop, [f'c1,a@example.com,SEK,{AT},S1,Mug,1,"{price}"', f"c2,b@example.com,SEK,{AT},S2,Pot,1,20"])
    result = shop.cli("carts", "--json")
    assert result.exit_code == 1, result.output
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:2: cart c1: unit_price: not a number: {price!r} (a currency in it? write the "
        "number alone, as 1234.50: the currency has its own column)"]
    assert [row["cart_id"] for row in result.json["decisions"]] == ["c2"]


def test_a_quantity_written_with_its_unit_says_to_write_the_number_alone(shop: Shop) -> None:
    """``2 pcs`` is no price: a currency hint there would send the owner to the wrong column."""
    _carts_file(shop, [f"c1,a@example.com,SEK,{AT},S1,Mug,2 pcs,10", f"c2,b@example.com,SEK,{AT},S2,Pot,1,20"])
    result = shop.cli("carts", "--json")
    assert result.exit_code == 1, result.output
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:2: cart c1: quantity: not a number: '2 pcs' (a unit in it? write the number "
        "alone, as 3)"]


def test_the_report_names_an_orders_column_named_almost_as_the_format_names_it(shop: Shop) -> None:
    """``E-Mail`` in the orders export: no order was tied to its buyer's reminder by address, and
    the report showed nothing won back, with no word of why."""
    from reportdata import Row, write_ledger

    shop.configure(ledger={"url": "sqlite:///ledger.db"})
    shop.write()
    write_ledger(shop.folder / "ledger.db", [Row("t1", NOW, email="ann@example.com")])
    path = shop.folder / "orders.csv"
    path.write_text("order_id,customer_id,E-Mail,total,currency,status,created_at\n"
                    f"o1,,ann@example.com,30.00,EUR,paid,{iso(NOW + timedelta(hours=2))}\n", encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=NOW + timedelta(days=6))
    assert "problems" in result.json, result.output
    assert result.json["problems"] == [
        f"{path}:1: column 'E-Mail' is no column cartrescue reads: is it email? Rename it email, or map it "
        "(source.order_columns: {email: \"E-Mail\"}); as it is, email is blank on every row"], result.output


def test_an_orders_file_whose_only_address_column_is_misnamed_says_which_column_it_may_be(shop: Shop) -> None:
    """"none of the columns that tie an order to a cart (email, customer_id, cart_id)" of a file
    with ``E-Mail``: the owner had to find the column the error meant."""
    shop.add(cart("c1"))
    shop.write()
    (shop.folder / "orders.csv").write_text(f"order_id,E-Mail,total,currency,status,created_at\n"
                                            f"o1,c1@example.com,30.00,EUR,paid,{AT}\n", encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"].endswith(
        "map the export's one in source.order_columns (the header has 'E-Mail': rename it email, or map it in "
        "source.order_columns)")


@pytest.mark.parametrize(("name", "key", "header"), [
    ("orders.csv", "source.order_columns", "Order ID,email,total,currency,status,created_at\n"),
    ("sends.csv", "source.newsletters.columns", "E-Mail,sent_at,campaign\n")])
def test_a_required_column_named_almost_so_names_the_key_that_maps_its_own_file(
        shop: Shop, name: str, key: str, header: str) -> None:
    """The newsletter export's ``E-Mail`` was to be mapped "in source.columns", the carts' key,
    where the config refuses it: its own key is source.newsletters.columns."""
    shop.add(cart("c1")).configure(source={"newsletters": {"file": "sends.csv"}})
    shop.write()
    (shop.folder / "sends.csv").write_text("email,sent_at,campaign\n", encoding="utf-8")
    (shop.folder / name).write_text(header, encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    cell = header.split(",")[0]
    assert result.json["error"]["message"].endswith(f"(the header has {cell!r}: rename it "
                                                    f"{'order_id' if name == 'orders.csv' else 'email'}, or map it "
                                                    f"in {key})")


def test_a_preview_of_a_cart_shows_what_is_wrong_with_the_exports_columns(shop: Shop) -> None:
    """``preview c1`` of an export with ``E-Mail`` for ``email`` said ``no_contact`` and nothing
    more: the warning a run gives (the column the owner misnamed) was heard only for the cart's
    own rows. It is shown with the cart now, on stderr and in ``--json``'s ``warnings``."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"], header=HEADER.replace(",email,", ",E-Mail,"))
    said = ("column 'E-Mail' is no column cartrescue reads: is it email? Rename it email, or map it "
            "(source.columns: {email: \"E-Mail\"}); as it is, email is blank on every row")
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["reason"] == "no_contact"
    assert result.json["warnings"] == [f"{shop.folder / 'carts.csv'}:1: {said}"]
    shown = shop.cli("preview", "c1")
    assert said in " ".join(shown.stderr.split()), shown.stderr


def test_a_preview_of_a_cart_from_a_sound_export_has_no_warnings(shop: Shop) -> None:
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0 and result.json["warnings"] == [], result.output


def test_a_title_line_above_the_header_is_named_in_the_missing_columns_error(shop: Shop) -> None:
    """An export with a title line above its header ("Abandoned checkouts, 6 Dec 2026") stopped
    on "missing column(s): cart_id, ..." at line 1, though line 2 names them all."""
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"], header="Abandoned checkouts 2026-12-06\n" + HEADER)
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3, result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{shop.folder / 'carts.csv'}:1: missing column(s): "), message
    assert message.endswith("(line 2 names them: is the header there? Remove the lines above it)"), message


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_a_utf8_export_without_its_byte_order_mark_read_as_an_8_bit_encoding_stops_the_run(
        shop: Shop, encoding: str) -> None:
    """An export job that moved from cp1252 to UTF-8 (without a mark) under a config still saying
    cp1252: every byte decodes, so Åsa was Ã…sa in every reminder, exit 0, without a word. Text
    that is valid UTF-8 with letters beyond ASCII is UTF-8: exit 3, naming the file, the line and
    the encoding to set."""
    shop.configure(source={"encoding": encoding})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10",
                       f"c2,b@example.com,EUR,{AT},S2,Tr\u00e5dl\u00f6sa h\u00f6rlurar,1,10"])
    path = shop.folder / "carts.csv"
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{shop.config_path}: source.carts: {path}:3: UTF-8 text, and source.encoding is "
                              f"{encoding}: "), message
    assert "'å'" in message and "'Ã¥'" in message, message
    assert message.endswith("set source.encoding to utf-8-sig, or leave it out"), message
    assert not (shop.folder / "out").exists() or not _messages(shop.folder / "out")


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_an_8_bit_export_read_as_its_8_bit_encoding_is_read_as_before(shop: Shop, encoding: str) -> None:
    """The other side of the UTF-8 check: a real cp1252 export (its å one byte, no valid UTF-8)
    and one of ASCII alone read as they always did."""
    shop.configure(source={"encoding": encoding})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10",
                       f"c2,b@example.com,EUR,{AT},S2,Tr\u00e5dl\u00f6sa h\u00f6rlurar,1,10"])
    path = shop.folder / "carts.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))
    result = shop.cli("carts", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(row["cart_id"] for row in result.json["decisions"]) == ["c1", "c2"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1252"])
@pytest.mark.parametrize(("start", "said"), [
    (b"\x1f\x8b\x08\x00", "gzip-compressed"),
    (b"PK\x03\x04\x14\x00", "a zip archive (an Excel .xlsx workbook?)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel .xls workbook")])
def test_a_compressed_export_or_a_workbook_is_named_as_such_not_as_text_of_another_encoding(
        shop: Shop, start: bytes, said: str, encoding: str) -> None:
    """A ``carts.csv.gz`` or a ``carts.xlsx`` named as the export was "not utf-8-sig text ...; set
    source.encoding to the export's encoding, e.g. cp1252"; so set, its bytes were read as text.
    Exit 3, saying what the file is and what to do."""
    shop.configure(source={"encoding": encoding})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    path = shop.folder / "carts.csv"
    path.write_bytes(start + bytes(range(256)) * 4)
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{shop.config_path}: source.carts: {path}: {said}, not CSV text"), message
    assert "source.encoding" not in message, message


@pytest.mark.parametrize(("configured", "written"), [(";", ","), (",", ";"), (",", "\t")])
def test_a_delimiter_set_otherwise_than_the_exports_says_so_not_only_missing_columns(
        shop: Shop, configured: str, written: str) -> None:
    """``source.delimiter: ";"`` over an export in commas (Excel's region changed, or the export
    job did) read the header as one cell: exit 3 on "missing column(s): cart_id, currency, ...",
    every one of them in the header, and no word of the delimiter. The error says which one the
    header is written in."""
    shop.configure(source={"delimiter": configured})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    path = shop.folder / "carts.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(",", written), encoding="utf-8")
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{path}:1: missing column(s): cart_id, "), message
    assert message.endswith(f"(the header's columns are separated by {written!r}, not {configured!r}: set "
                            f"source.delimiter to {written!r}, or null to find it from the header)"), message


def test_an_orders_export_in_another_delimiter_than_the_one_set_says_so(shop: Shop) -> None:
    """The delimiter set is the orders export's too: in another, its error said only "missing
    column(s): order_id, created_at"."""
    shop.configure(source={"delimiter": ","})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"])
    orders = shop.folder / "orders.csv"
    orders.write_text(f"order_id;email;total;currency;status;created_at\no1;a@example.com;10;EUR;paid;{AT}\n",
                      encoding="utf-8")
    result = shop.cli("carts", "--json")
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    message = result.json["error"]["message"]
    assert message.startswith(f"{orders}:1: missing column(s): order_id, created_at"), message
    assert message.endswith("(the header's columns are separated by ';', not ',': set source.delimiter to ';', "
                            "or null to find it from the header)"), message


def test_a_mapped_column_the_header_lacks_is_reported_at_the_headers_line(shop: Shop) -> None:
    """Below Excel's ``sep=,`` line (or blank lines) the header is not line 1, but the problem of
    a mapped column it lacks named line 1, the hint line, where the owner found no header."""
    shop.configure(source={"columns": {"phone": "Mobile"}, "order_columns": {"customer_id": "Customer"}})
    _carts_file(shop, [f"c1,a@example.com,EUR,{AT},S1,Mug,1,10"], header="sep=,\n\n" + HEADER)
    orders = shop.folder / "orders.csv"
    orders.write_text(f"sep=,\norder_id,email,total,currency,status,created_at\no1,b@example.com,10,EUR,paid,{AT}\n",
                      encoding="utf-8")
    result = shop.cli("carts", "--json")
    assert result.exit_code == 1, result.output
    assert sorted(result.json["problems"]) == sorted([
        f"{shop.folder / 'carts.csv'}:3: no column 'Mobile' (source.columns.phone) in the header: phone is blank "
        "on every row",
        f"{orders}:2: no column 'Customer' (source.order_columns.customer_id) in the header: customer_id is blank on "
        "every row"])
