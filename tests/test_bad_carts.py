"""One bad cart costs that cart: never the run, never another customer's reminder, never a claim.

Each failure class gets a good cart before and after the bad one. The good ones are delivered;
the bad one is reported with the file and line it came from; no ``claimed`` row is left, so
the bad cart's step goes out once the cause is fixed. What can fail for one cart (rendering,
building the message, encoding the address, amounts) happens before its claim.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import shopdb
from smtpserver import LoopbackSMTP

from cartrescue.compose import render
from cartrescue.ledger import Ledger, cart_value_limits
from cartrescue.sources.magento import MagentoSource
from cartrescue.sources.prestashop import PrestaShopSource
from cartrescue.sources.sql import DatabaseSource
from cartrescue.sources.woocommerce import WooCommerceSource
from conftest import NOW, Shop, cart, cli, iso


def _ledger_rows(shop: Shop) -> list[dict[str, Any]]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return ledger.messages()
    finally:
        ledger.close()


def _run_outbox(shop: Shop, *extra: str, now: Any = NOW) -> Any:
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", *extra, now=now)
    assert "Traceback" not in result.output
    return result


def _as_is(shop: Shop, *args: str) -> Any:
    """The CLI on the files as they are now (``Shop.cli`` would write them anew first)."""
    return cli(*args, "--config", str(shop.config_path), "--now", iso(NOW))


def _delivered(shop: Shop) -> list[str]:
    return sorted(path.name.split("-step")[0].removeprefix("csv_") for path in (shop.folder / "out").glob("*.eml"))


def _own_templates(shop: Shop, subject: str, text: str = "{{ unsubscribe_url }}\n",
                   html: str = "<p>{{ unsubscribe_url }}</p>") -> Path:
    """A templates folder of the shop's own with one step in English; returns its en/ folder."""
    folder = shop.folder / "templates" / "en"
    folder.mkdir(parents=True, exist_ok=True)
    for part, content in (("subject.txt", subject), ("txt", text), ("html", html)):
        (folder / f"reminder-1.{part}").write_text(content, encoding="utf-8")
    shop.configure(templates="templates")
    return folder


def _sandwich(shop: Shop, bad: list[dict[str, str]]) -> None:
    shop.add(cart("good-1", email="first@example.com"), bad, cart("good-2", email="last@example.com"))


def _assert_bad_cart_cost_only_itself(shop: Shop, result: Any, line: int, reason: str) -> None:
    assert result.exit_code == 1, result.output
    assert _delivered(shop) == ["good-1", "good-2"]
    problems = result.json["problems"]
    assert len(problems) == 1
    assert problems[0].startswith(f"{shop.folder / 'carts.csv'}:{line}: cart bad"), problems
    assert reason in problems[0]
    rows = _ledger_rows(shop)
    assert sorted((row["cart_id"], row["status"]) for row in rows) == [("good-1", "sent"), ("good-2", "sent")]
    assert {row["delivery"] for row in result.json["decisions"] if row["cart_id"] == "bad"} == {"render_error"}


def test_markup_in_an_address_is_printed_as_text_and_the_run_goes_on(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    shop.add(cart("good-1", email="first@example.com"), cart("bad[/]", email="x[/]y@example.com", first_name="[bold]"),
             cart("good-2", email="last@example.com"))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--all")  # the table, not JSON
    assert result.exit_code == 0, result.output
    assert "bad[/]" in result.stdout and "x[/]y@example.com" in result.stdout
    assert _delivered(shop) == ["bad_", "good-1", "good-2"]  # the file name is made safe


def test_escape_sequences_in_data_never_reach_the_terminal(shop: Shop) -> None:
    shop.add(cart("bell", email="bell@example.com"))
    shop.write()
    text = (shop.folder / "carts.csv").read_text(encoding="utf-8").replace("bell,", "bell\x1b[2J\x1b]0;owned\x07,", 1)
    (shop.folder / "carts.csv").write_text(text, encoding="utf-8")
    result = _as_is(shop, "carts", "--all")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "bell" in result.stdout


def test_a_27_digit_price_costs_only_its_cart(shop: Shop) -> None:
    _sandwich(shop, cart("bad", items=(("S", "Gold", 1, "123456789012345678901234567"),)))
    result = _run_outbox(shop)
    assert result.exit_code == 1
    assert _delivered(shop) == ["good-1", "good-2"]
    assert any("carts.csv:3: cart bad" in problem for problem in result.json["problems"])
    assert not [row for row in _ledger_rows(shop) if row["status"] == "claimed"]


def test_a_quantity_of_1e9_costs_only_its_cart_where_it_is_read(shop: Shop) -> None:
    _sandwich(shop, cart("bad", items=(("S", "Screws", "1e9", "0.10"),)))
    result = _run_outbox(shop)
    assert result.exit_code == 1
    assert _delivered(shop) == ["good-1", "good-2"]
    assert result.json["problems"] == [
        f"{shop.folder / 'carts.csv'}:3: cart bad: quantity: more than 10,000 units in one line: '1e9'"]
    assert not [row for row in _ledger_rows(shop) if row["status"] == "claimed"]


@pytest.mark.parametrize("column, item", [("quantity", ("S", "Screws", "²", "0.10")),
                                          ("stock_on_hand", ("S", "Screws", 1, "0.10", None, "²"))])
def test_a_superscript_digit_costs_only_its_cart_where_it_is_read(
        shop: Shop, column: str, item: tuple[Any, ...]) -> None:
    """``'²'.isdigit()`` is true, and ``int('²')`` stopped the whole run (exit 70)."""
    _sandwich(shop, cart("bad", items=(item,)))
    result = _run_outbox(shop)
    assert result.exit_code == 1, result.output
    assert _delivered(shop) == ["good-1", "good-2"]
    assert result.json["problems"] == [f"{shop.folder / 'carts.csv'}:3: cart bad: {column}: not a number: '²'"]


@pytest.mark.parametrize("source", [MagentoSource, PrestaShopSource, WooCommerceSource])
def test_a_cart_id_in_superscript_digits_is_no_cart_of_a_shop_database(source: type[DatabaseSource]) -> None:
    """``preview ²`` asked ``int('²')`` for the id: exit 70, not "not found" (never reaches the database)."""
    opened = source("sqlite://")
    try:
        assert opened.cart("²") is None
    finally:
        opened.close()


def test_an_address_that_cannot_be_encoded_costs_only_its_cart(shop: Shop) -> None:
    _sandwich(shop, cart("bad", email="åsa@example.com"))
    result = _run_outbox(shop)
    if result.exit_code == 0:  # the address is sendable (SMTPUTF8 support): then it must have gone out
        assert _delivered(shop) == ["bad", "good-1", "good-2"]
        return
    _assert_bad_cart_cost_only_itself(shop, result, 3, "")


def test_a_runaway_template_fails_only_the_cart_that_triggers_it(shop: Shop) -> None:
    loop = "{% for item in items %}{% for i in range(item.quantity * 1000) %}.{% endfor %}{% endfor %}"
    _own_templates(shop, "Your cart", loop + "\n{{ unsubscribe_url }}\n")
    _sandwich(shop, cart("bad", items=(("S", "Screws", 500, "0.10"),)))
    result = _run_outbox(shop)
    _assert_bad_cart_cost_only_itself(shop, result, 3, "range(): more than 100000 items")


def test_a_template_loop_that_prints_nothing_is_stopped_and_costs_only_its_cart(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """No size or range() limit sees an empty loop: the render's time limit stops it (made
    0.3 s here from render.MAX_RENDER_SECONDS), and the run goes on with the other carts."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.3)
    loop = ('{% for item in items %}{% for a in "x"|center(item.quantity) %}{% for b in "y"|center(item.quantity) %}'
            "{% endfor %}{% endfor %}{% endfor %}")
    _own_templates(shop, "Your cart", loop + "\n{{ unsubscribe_url }}\n")
    _sandwich(shop, cart("bad", items=(("S", "Screws", 9000, "0.10"),)))
    result = _run_outbox(shop)
    _assert_bad_cart_cost_only_itself(shop, result, 3, "the message took more than 0.3 s to render (a runaway loop?)")


def test_a_template_that_piles_up_memory_is_stopped_and_costs_only_its_cart(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values kept in a list (``append``) pass the size limits one by one: 100,000 of 100 KB
    each took gigabytes within the time limit, and a small server's run was killed by the
    kernel. Past ``render.MAX_RENDER_MEMORY`` (32 MiB here) the message fails, as a loop out of
    time does, and the run goes on with the other carts."""
    monkeypatch.setattr(render, "MAX_RENDER_MEMORY", 32 * 1024 * 1024, raising=False)
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 5.0)
    pile = ('{% set kept = [] %}{% for i in range(items[0].quantity * 100) %}{% if kept.append("x" * 99999) %}'
            "{% endif %}{% endfor %}{{ kept|length }}")  # 100 KB a message for one item, 5 GB for 500
    _own_templates(shop, "Your cart", pile + "\n{{ unsubscribe_url }}\n")
    _sandwich(shop, cart("bad", items=(("S", "Screws", 500, "0.10"),)))
    result = _run_outbox(shop)
    _assert_bad_cart_cost_only_itself(shop, result, 3, "the message took more than 32 MiB of memory to render "
                                                       "(a runaway loop?)")


def test_a_template_that_runs_out_of_time_for_every_cart_costs_the_run_its_time_only_a_few_times(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop that never ends, whatever the cart: each message of it ran the full clock (10 s), so
    a run with 1,000 such carts took hours. After it ran out of time for
    ``render.MAX_TIMEOUTS_PER_FILE`` messages, the file's later messages fail at once, unclaimed
    as every render error (the next run tries them again), with the file and line of the loop."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.3)
    loop = "Hello\n{% set s = 'x' * 90000 %}\n{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    _own_templates(shop, "Your cart", loop + "\n{{ unsubscribe_url }}\n")
    shop.add(*(cart(f"c{n}") for n in range(8)))
    result = _run_outbox(shop)
    assert result.exit_code == 1, result.output
    assert _delivered(shop) == []
    failures = result.json["counts"]["failures"]
    timed_out = "en/reminder-1.txt:3: the message took more than 0.3 s to render (a runaway loop?)"
    assert failures[timed_out] == render.MAX_TIMEOUTS_PER_FILE == 3, failures
    assert failures[f"en/reminder-1.txt: not rendered: it took more than 0.3 s for {render.MAX_TIMEOUTS_PER_FILE} "
                    "messages of this run already (a runaway loop?)"] == 5, failures
    assert _ledger_rows(shop) == []


def test_a_template_error_on_one_carts_data_costs_only_that_cart(shop: Shop) -> None:
    _own_templates(shop, "{{ 100 // (cart.item_count - 7) }} things")
    _sandwich(shop, cart("bad", items=(("S", "Socks", 7, "2.00"),)))
    result = _run_outbox(shop)
    _assert_bad_cart_cost_only_itself(shop, result, 3, "ZeroDivisionError")


def test_a_template_error_names_the_template_line_as_templates_check_does(shop: Shop) -> None:
    _own_templates(shop, "Your cart", "Hello\n\n{{ 100 // (cart.item_count - 7) }} things\n{{ unsubscribe_url }}\n")
    _sandwich(shop, cart("bad", items=(("S", "Socks", 7, "2.00"),)))
    result = _run_outbox(shop)
    _assert_bad_cart_cost_only_itself(shop, result, 3, "en/reminder-1.txt:3: ZeroDivisionError")


def test_an_undefined_value_names_the_template_line_too(shop: Shop) -> None:
    text = "Hello\n\n{% if cart.item_count == 7 %}{{ no_such_value }}{% endif %} things\n{{ unsubscribe_url }}\n"
    _own_templates(shop, "Your cart", text)
    _sandwich(shop, cart("bad", items=(("S", "Socks", 7, "2.00"),)))
    result = _run_outbox(shop)
    _assert_bad_cart_cost_only_itself(shop, result, 3, "en/reminder-1.txt:3: 'no_such_value' is undefined")


@pytest.mark.parametrize(("text", "said"), [
    ("{{ cart.total|date }}", "date: '"),  # a formatted value: the documented filter stopped the run (exit 70)
    ("{{ 5|money(none) }}", "money: "),
    ("{{ none|date }}", "date: None is not a date"),  # Babel printed today's date
])
def test_a_filter_failing_on_one_carts_data_costs_only_that_cart(shop: Shop, text: str, said: str) -> None:
    _own_templates(shop, "Your cart", f"{{% if cart.item_count == 7 %}}{text}{{% endif %}}\n{{{{ unsubscribe_url }}}}\n")
    _sandwich(shop, cart("bad", items=(("S", "Socks", 7, "2.00"),)))
    result = _run_outbox(shop)
    _assert_bad_cart_cost_only_itself(shop, result, 3, "en/reminder-1.txt:1: ")
    assert said in result.json["problems"][0]


def test_any_exception_a_template_raises_costs_only_its_cart(shop: Shop) -> None:
    """An AssertionError or AttributeError from inside a filter ended the whole run as an
    internal error (exit 70): every other customer lost their reminder."""
    _own_templates(shop, "Your cart", "{% if cart.item_count == 7 %}{{ 5|money(5) }}{% endif %}\n{{ unsubscribe_url }}\n")
    _sandwich(shop, cart("bad", items=(("S", "Socks", 7, "2.00"),)))
    result = _run_outbox(shop)
    _assert_bad_cart_cost_only_itself(shop, result, 3, "en/reminder-1.txt:1: ")


def test_the_failed_cart_goes_out_once_the_cause_is_fixed(shop: Shop) -> None:
    folder = _own_templates(shop, "{{ 100 // (cart.item_count - 7) }} things")
    _sandwich(shop, cart("bad", items=(("S", "Socks", 7, "2.00"),)))
    assert _run_outbox(shop).exit_code == 1
    (folder / "reminder-1.subject.txt").write_text("Your things", encoding="utf-8")
    assert _run_outbox(shop).exit_code == 0
    assert _delivered(shop) == ["bad", "good-1", "good-2"]


def test_an_unknown_variable_in_a_template_fails_each_cart_but_claims_none(shop: Shop) -> None:
    body = "{{ no_such_thing }} {{ unsubscribe_url }}"
    _own_templates(shop, body, body, body)
    shop.add(cart("c1"), cart("c2", email="c2@example.com"))
    result = _run_outbox(shop)
    assert result.exit_code == 1
    assert result.json["counts"]["failed"] == 2
    assert _ledger_rows(shop) == []


@pytest.mark.smtp
def test_over_smtp_a_bad_cart_between_good_ones_leaves_no_claim(shop: Shop) -> None:
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        _sandwich(shop, cart("bad", items=(("S", "Gold", 1, "123456789012345678901234567"),)))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 1
        server.wait_for(2)
        assert sorted(server.recipients()) == ["first@example.com", "last@example.com"]
    assert sorted((row["cart_id"], row["status"]) for row in _ledger_rows(shop)) == [("good-1", "sent"),
                                                                                      ("good-2", "sent")]


def test_a_file_that_is_not_utf8_exits_3_naming_file_and_line(shop: Shop) -> None:
    shop.add(cart("c1"), cart("c2", first_name="Zoë"), cart("c3"))
    shop.write()
    path: Path = shop.folder / "carts.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("cp1252"))
    result = _as_is(shop, "run", "--json")
    assert result.exit_code == 3
    assert result.json["error"]["message"].startswith(f"{path}:3: not utf-8-sig text")
    assert "source.encoding" in result.json["error"]["message"]


@pytest.mark.parametrize("name", ["carts.csv", "orders.csv"])
def test_a_utf16_export_without_its_byte_order_mark_exits_3_naming_the_file(shop: Shop, name: str) -> None:
    """Python's utf-16 codec raises a plain UnicodeError there, not UnicodeDecodeError: exit 70.
    The orders export's error names its own setting (source.orders_encoding: the carts' unless set)."""
    shop.add(cart("c1"))
    shop.configure(source={"encoding": "utf-16"})
    shop.write()
    for path in (shop.folder / "carts.csv", shop.folder / "orders.csv"):
        path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16-le" if path.name == name else "utf-16"))
    result = _as_is(shop, "run", "--json")
    assert result.exit_code == 3, result.output
    assert result.json["error"]["message"] == (
        f"{shop.folder / name}:1: not utf-16 text (UTF-16 stream does not start with BOM); set "
        f"{'source.encoding' if name == 'carts.csv' else 'source.orders_encoding'} to the export's encoding, e.g. utf-16-le")


def test_the_export_encoding_can_be_configured(shop: Shop) -> None:
    shop.add(cart("c1", first_name="Zoë"))
    shop.configure(source={"encoding": "cp1252"})
    shop.write()
    path: Path = shop.folder / "carts.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("cp1252"))
    result = _as_is(shop, "run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert result.json["counts"]["sent"] == 1
    import email

    message = email.message_from_bytes(next((shop.folder / "out").glob("*.eml")).read_bytes(),
                                       policy=email.policy.default)
    assert "Zoë" in message.get_body(("plain",)).get_content()


def test_an_empty_carts_file_is_a_warning_and_exit_1(shop: Shop) -> None:
    shop.write()
    (shop.folder / "carts.csv").write_text("", encoding="utf-8")
    result = _as_is(shop, "run", "--json")
    assert result.exit_code == 1
    assert result.json["counts"]["carts"] == 0
    assert "no carts in the file, not even a header" in result.json["problems"][0]


def test_a_carts_file_with_a_header_and_no_row_is_a_quiet_run_with_nothing_to_do(shop: Shop) -> None:
    # A small shop's export often has no abandoned checkout: cron must not mail about it every run.
    shop.write()
    (shop.folder / "carts.csv").write_text("cart_id,currency,created_at,sku,name,quantity,unit_price\n",
                                           encoding="utf-8")
    result = _as_is(shop, "run", "--send", "--quiet")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert _as_is(shop, "run", "--json").json["problems"] == []


def test_a_run_prints_at_most_twenty_problem_lines_and_counts_them_all(shop: Shop) -> None:
    # An export re-saved from a spreadsheet with hundreds of bad rows: a readable cron mail.
    shop.add(*([dict(row, quantity="many") for row in cart(f"bad{n}")] for n in range(30)))
    shop.add(cart("good"))
    shop.write()
    result = _as_is(shop, "run", "--quiet")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert sum(line.startswith("warning: ") for line in lines) == 21
    assert "more than 20 problems: the others are not printed" in " ".join(result.stderr.split())
    assert "30 problems" in result.stdout + result.stderr


def test_a_nested_render_leaves_no_clock_running_after_the_outer_one() -> None:
    """templates check renders a text message inside its own timed block: the outer block disarms."""
    import signal

    deadline = render.Deadline(5.0)
    with deadline:
        with deadline:
            assert deadline.armed
        assert deadline.armed and signal.getitimer(signal.ITIMER_REAL)[0] > 0
    assert not deadline.armed and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_cart_whose_message_fails_to_render_gives_its_run_limit_slot_to_the_next(shop: Shop) -> None:
    """``run --limit 1``, a careful first live run: the first chosen cart's template fails on its
    data (nothing claimed), and the next cart, which would render, waited with ``run_limit``."""
    _own_templates(shop, "{{ 100 // (cart.item_count - 7) }} things")
    shop.add(cart("bad", email="first@example.com", items=(("S", "Socks", 7, "2.00"),)),
             cart("good", email="last@example.com"))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--limit", "1", "--json")
    found = {d["cart_id"]: d for d in result.json["decisions"]}
    assert found["bad"]["delivery"] == "render_error", found["bad"]
    assert (found["good"]["action"], found["good"]["delivery"]) == ("send", "sent"), found["good"]
    assert _delivered(shop) == ["good"]


@pytest.mark.parametrize("kind", [pytest.param("sqlite", id="sqlite"), *shopdb.KINDS])
def test_a_value_longer_than_the_ledger_keeps_costs_its_cart_alone_on_every_ledger(shop: Shop, kind: str) -> None:
    """A cart id, customer id or locale longer than its ledger column: PostgreSQL refused it at
    the cart's claim and the run stopped there (exit 2), every later run too, so the carts after
    it were never reminded; MariaDB refused a long id and cut the others; SQLite kept them all.
    Now each such cart is a problem with its file and line, the same on every ledger, and the
    others go out. A browser's Accept-Language list is its first tag (44 characters, ``de_DE``)."""
    limits = cart_value_limits()
    room = limits["cart_key"] - len("csv:")  # the id's room in the key, csv: + the id
    long_id, widest_id = "L" * (room + 1), "W" * room
    shop.add(cart("good-1", email="first@example.com"),
             cart(long_id, email="long-id@example.com"),
             cart("bad-customer", customer_id="7" * (limits["customer_id"] + 1)),
             cart("bad-locale", locale="de-" + "x" * (limits["locale"] - 2)),
             cart("browser", locale="de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7,fr;q=0.6"),
             cart(widest_id, email="widest@example.com", customer_id="7" * limits["customer_id"]),
             cart("good-2", email="last@example.com"))
    carts = shop.folder / "carts.csv"
    expected = [f"{carts}:3: cart {long_id}: cart_id: {room + 1} characters, more than the ledger keeps "
                f"({room} for a cart of source csv)",
                f"{carts}:4: cart bad-customer: customer_id: {limits['customer_id'] + 1} characters, more than the "
                f"ledger keeps ({limits['customer_id']})",
                f"{carts}:5: cart bad-locale: locale: {limits['locale'] + 1} characters, more than the ledger keeps "
                f"({limits['locale']})"]
    with shopdb.ledger_on(shop, kind) as url:
        first = _run_outbox(shop)
        assert first.exit_code == 1, first.output  # 1: delivered, with unreadable rows (README)
        assert first.json["problems"] == expected
        assert first.json["counts"]["sent"] == 4
        later = _run_outbox(shop, now=NOW + timedelta(minutes=10))
        assert later.exit_code == 1, later.output
        assert later.json["problems"] == expected
        ledger = Ledger(url)
        try:
            rows = ledger.messages()
        finally:
            ledger.close()
    assert sorted((row["cart_id"], row["locale"], row["status"]) for row in rows) == [
        ("W" * room, "en", "sent"), ("browser", "de_DE", "sent"), ("good-1", "en", "sent"), ("good-2", "en", "sent")]
    assert [len(row["customer_id"] or "") for row in rows if row["cart_id"] == widest_id] == [limits["customer_id"]]
