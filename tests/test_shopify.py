"""Shopify's exports read through the shopify_csv preset (a header mapping, nothing more)."""

from __future__ import annotations

from pathlib import Path

from cartrescue.config import load_config
from cartrescue.sources import open_source
from conftest import REPO, cli


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "cartrescue.yaml"
    fixtures = REPO / "tests" / "fixtures"
    path.write_text(
        "shop: {timezone: Europe/Stockholm}\n"
        f"source: {{type: shopify_csv, carts: '{fixtures / 'shopify_checkouts.csv'}', "
        f"orders: '{fixtures / 'shopify_orders.csv'}'}}\n"
        f"ledger: {{url: 'sqlite:///{tmp_path / 'l.db'}'}}\n", encoding="utf-8")
    return path


def test_the_checkouts_export_reads_into_carts_without_problems(tmp_path: Path) -> None:
    problems: list[object] = []
    with open_source(load_config(_config(tmp_path)), problems.append) as source:
        carts = list(source.carts(None))  # type: ignore[arg-type]
        orders = list(source.orders_for(carts))
    assert problems == []
    assert len(carts) == 5 and all(c.source == "shopify" and c.items for c in carts)
    assert all(c.customer.email and c.customer.email.endswith(("example.com", "example.org", "example.net")) for c in carts)
    assert {o.status for o in orders}.isdisjoint({"voided", "refunded", "cancelled"})


def test_the_carts_command_decides_on_shopify_exports(tmp_path: Path) -> None:
    result = cli("carts", "--json", "--config", str(_config(tmp_path)), "--now", "2026-11-20T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert len(result.json["decisions"]) == 5


def test_orders_by_time_read_one_order_per_name_with_its_discount_code(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from cartrescue.sources.base import Window

    problems: list[object] = []
    window = Window(datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 12, 31, tzinfo=timezone.utc))
    with open_source(load_config(_config(tmp_path)), problems.append) as source:
        orders = list(source.orders(window))
        later = list(source.orders(Window(datetime(2026, 11, 1, tzinfo=timezone.utc), window.end)))
    assert problems == []  # the line rows after an order's first row are not orders of their own
    assert [(o.id, o.discount_codes, str(o.total)) for o in orders] == [("#1001", (), "2499.00"),
                                                                        ("#1002", ("WELCOME10",), "49.70")]
    assert orders[0].created_at == datetime(2026, 11, 20, 7, 15, tzinfo=timezone.utc)  # voided #1003 left out
    assert [o.id for o in later] == ["#1001"]


def _checkouts_with_consent_header(tmp_path: Path, name: str | None) -> Path:
    """The fixture's checkouts export with its consent column renamed (None: removed)."""
    import csv

    fixture = REPO / "tests" / "fixtures" / "shopify_checkouts.csv"
    with fixture.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    at = rows[0].index("Accepts Marketing")
    for row in rows:
        if name is None:
            del row[at]
        elif row is rows[0]:
            row[at] = name
    path = tmp_path / "checkouts.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    config = _config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8").replace(
        str(fixture), str(path)), encoding="utf-8")
    return config


def test_the_newer_accepts_email_marketing_header_is_read_as_consent(tmp_path: Path) -> None:
    problems: list[object] = []
    with open_source(load_config(_checkouts_with_consent_header(tmp_path, "Accepts Email Marketing")),
                     problems.append) as source:
        carts = list(source.carts(None))  # type: ignore[arg-type]
    assert problems == [] and {c.customer.marketing_consent for c in carts} >= {True, False}


def test_an_export_without_a_consent_column_is_reported_not_read_as_no_consent_in_silence(tmp_path: Path) -> None:
    # Every cart would be a no_consent skip and cron would print nothing.
    result = cli("run", "--json", "--config", str(_checkouts_with_consent_header(tmp_path, None)),
                 "--now", "2026-11-20T12:00:00Z")
    assert result.exit_code == 1, result.output
    (problem,) = [p for p in result.json["problems"] if "consent" in p]
    assert problem.endswith(":1: no column 'Accepts Marketing|Accepts Email Marketing' "
                            "(source.columns.marketing_consent) in the header: marketing_consent is blank on every row")


def _orders_with(tmp_path: Path, change: dict[str, dict[str, str]]) -> Path:
    """The fixture's orders export with some cells of an order's first row changed."""
    import csv

    fixture = REPO / "tests" / "fixtures" / "shopify_orders.csv"
    with fixture.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
        header = list(rows[0].keys())
    for row in rows:
        if row["Created at"] and row["Name"] in change:
            row.update(change[row["Name"]])
    path = tmp_path / "orders.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    config = _config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8").replace(str(fixture), str(path)), encoding="utf-8")
    return config


def test_the_billing_name_gives_the_greetings_first_name(tmp_path: Path) -> None:
    with open_source(load_config(_config(tmp_path))) as source:
        names = {c.id: (c.customer.first_name, c.customer.last_name) for c in source.carts(None)}  # type: ignore[arg-type]
    assert names["#35012278100001"] == ("Emma", "Walker") and names["#35012278100002"] == ("Åsa", "Lindström")


def test_a_cancelled_order_is_no_order_though_its_financial_status_says_paid(tmp_path: Path) -> None:
    config = _orders_with(tmp_path, {"#1003": {"Financial Status": "paid"}})  # Cancelled at stays filled
    with open_source(load_config(config)) as source:
        carts = list(source.carts(None))  # type: ignore[arg-type]
        orders = {o.id for o in source.orders_for(carts)}
    assert "#1003" not in orders and "#1001" in orders


def test_an_order_whose_payment_authorization_expired_is_no_order(tmp_path: Path) -> None:
    """Shopify's Financial Status ``expired``: the payment was authorized and never captured (as
    ``voided``), nothing was bought; it was read as an order, so the customer's cart was never
    reminded and the report could credit it as won back."""
    config = _orders_with(tmp_path, {"#1001": {"Financial Status": "expired"}})
    with open_source(load_config(config)) as source:
        carts = list(source.carts(None))  # type: ignore[arg-type]
        orders = {o.id for o in source.orders_for(carts)}
    assert "#1001" not in orders and "#1002" in orders


def test_the_fulfillment_status_is_read_as_delivered(tmp_path: Path) -> None:
    with open_source(load_config(_config(tmp_path))) as source:
        carts = list(source.carts(None))  # type: ignore[arg-type]
        delivered = {o.id: o.delivered for o in source.orders_for(carts)}
    assert delivered == {"#1001": False, "#1002": True}


def test_the_refunded_amount_is_deducted_from_the_reports_revenue(tmp_path: Path) -> None:
    """#1001 (2499.00 SEK, 499.00 refunded: Financial Status partially_refunded) was counted whole."""
    from datetime import datetime, timezone

    from reportdata import Row, write_ledger

    config = _orders_with(tmp_path, {"#1001": {"Financial Status": "partially_refunded", "Refunded Amount": "499.00"}})
    write_ledger(tmp_path / "l.db", [Row("35012278100002", datetime(2026, 11, 20, 6, tzinfo=timezone.utc),
                                         email="asa.lindstrom@example.com")])
    result = cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", "--config", str(config),
                 "--now", "2026-11-28T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert (result.json["summary"]["orders"], result.json["summary"]["revenue"]) == (1, "2000.00")
