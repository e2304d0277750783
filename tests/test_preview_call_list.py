"""`preview` of a step that goes by the call list: the row a run appends for staff to phone, not
an e-mail no run sends."""

from __future__ import annotations

import csv
import io

from conftest import Shop, cart


def _calling(shop: Shop) -> Shop:
    """A shop whose one tier phones its carts, with a shared code on the call's offer."""
    return shop.configure(
        shop={"country": "SE"}, call_list={"path": "calls.csv"},
        priority={"tiers": [{"name": "vip", "min_score": 0, "channel": "call-list"}]},
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "incentive": {
            "kind": "percent", "value": 10, "code": "CALL10", "valid_for": "3d"}}]}})


def _rows(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def test_preview_of_a_call_list_step_shows_the_row_a_run_appends_and_no_email(shop: Shop) -> None:
    _calling(shop).add(cart("c1", phone="070-123 45 67", locale="sv"))
    shown = shop.cli("preview", "c1", "--json")
    assert shown.exit_code == 0, shown.output
    assert (shown.json["channel"], shown.json["subject"], shown.json["text"], shown.json["html"]) == (
        "call-list", None, None, None)
    assert shown.json["to"] == "+46701234567" and shown.json["list"] == str(shop.folder / "calls.csv")
    ran = shop.cli("run", "--outbox", str(shop.folder / "out"))
    assert ran.exit_code == 0, ran.output
    [row] = _rows((shop.folder / "calls.csv").read_text(encoding="utf-8"))
    assert shown.json["row"] == row
    assert row["incentive"].startswith("10% off with code CALL10, valid until ")


def test_preview_of_a_call_list_step_prints_the_row_column_by_column(shop: Shop) -> None:
    _calling(shop).add(cart("c1", phone="070-123 45 67"))
    shown = shop.cli("preview", "c1")
    assert shown.exit_code == 0, shown.output
    assert "Subject:" not in shown.stdout and "Unsubscribe" not in shown.stdout
    assert "Call list: no message is sent; a run appends this row for staff to phone to " in shown.stdout
    lines = shown.stdout.splitlines()
    assert any(line.split() == ["phone", "070-123", "45", "67"] for line in lines), shown.stdout
    assert any(line.split()[:2] == ["incentive", "10%"] for line in lines), shown.stdout


def test_preview_of_a_call_list_step_writes_its_row_under_the_shops_list_header(shop: Shop) -> None:
    """A list re-saved by Excel with ";" and begun by an older version (no timezone column):
    the row a run appends there, with the decimal comma."""
    (shop.folder / "calls.csv").write_text("cart_id;phone;total;tier\r\n", encoding="utf-8")
    _calling(shop).add(cart("c1", phone="070-123 45 67", items=[("S", "Lamp", 1, "900.50")]))
    shown = shop.cli("preview", "c1", "--json")
    assert shown.exit_code == 0, shown.output
    assert shown.json["row"] == {"cart_id": "c1", "phone": "070-123 45 67", "total": "900,50", "tier": "vip"}


def test_preview_of_a_call_list_step_says_when_the_list_takes_no_row(shop: Shop) -> None:
    (shop.folder / "calls.csv").write_text("name,email\r\n", encoding="utf-8")
    _calling(shop).add(cart("c1", phone="070-123 45 67"))
    shown = shop.cli("preview", "c1", "--json")
    assert shown.exit_code == 0, shown.output
    assert any("calls.csv: no row added, its header lacks cart_id and phone" in w for w in shown.json["warnings"])
    assert shown.json["row"]["cart_id"] == "c1"


def test_preview_of_a_call_list_step_refuses_html_and_screenshot(shop: Shop) -> None:
    _calling(shop).add(cart("c1", phone="070-123 45 67"))
    result = shop.cli("preview", "c1", "--html", str(shop.folder / "x.html"))
    assert result.exit_code == 2 and "a row of the call list (call-list): it has no HTML" in result.stderr
    assert not (shop.folder / "x.html").exists()


def test_preview_of_a_call_list_step_a_run_sends_by_email_shows_that_email(shop: Shop) -> None:
    """A cart without a number gets the step by e-mail (channel_fallback): that e-mail, no row."""
    _calling(shop).add(cart("c1"))
    shown = shop.cli("preview", "c1", "--json")
    assert shown.exit_code == 0, shown.output
    assert shown.json["channel"] == "email" and shown.json["subject"] and shown.json["row"] is None
