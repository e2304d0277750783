"""Not on a newsletter day: a CSV export of the shop's newsletter sends defers reminders.

The shop is in Stockholm (UTC+1 in November); NOW is Friday 2026-11-20 10:00 UTC, 11:00 there.
Every cart is idle two hours, so step 1 is due. The real CLI reads the carts and the export.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import NOW, Shop, cart, iso, write_csv

UTC = timezone.utc
MIDNIGHT = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)  # Saturday 00:00 in Stockholm


def newsletters(shop: Shop, rows: list[dict[str, str]], header: list[str] | None = None, **config: object) -> None:
    write_csv(shop.folder / "sends.csv", rows, header or ["email", "sent_at", "campaign"])
    shop.configure(source={"newsletters": {"file": "sends.csv", **config}})


def send(email: str, at: datetime, campaign: str = "Friday deals") -> dict[str, str]:
    return {"email": email, "sent_at": iso(at), "campaign": campaign}


def test_a_newsletter_earlier_today_defers_the_reminder_to_tomorrow(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(hours=2))])  # 09:00 in Stockholm
    decision = shop.decisions()["c1"]
    assert (decision["action"], decision["reason"]) == ("defer", "newsletter_today")
    assert decision["not_before"] == iso(MIDNIGHT).replace("+00:00", "Z")
    assert "Friday deals" in decision["detail"]


def test_the_day_is_the_shops_not_utc(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bob@example.com"))
    newsletters(shop, [
        send("ann@example.com", datetime(2026, 11, 19, 23, 30, tzinfo=UTC)),  # 00:30 Friday in Stockholm
        send("bob@example.com", datetime(2026, 11, 19, 22, 30, tzinfo=UTC)),  # 23:30 Thursday in Stockholm
    ])
    decisions = shop.decisions()
    assert decisions["c1"]["reason"] == "newsletter_today"
    assert (decisions["c2"]["action"], decisions["c2"]["reason"]) == ("send", "due")


def test_a_newsletter_yesterday_does_not_defer(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(days=1))])
    assert shop.decisions()["c1"]["reason"] == "due"


def test_a_newsletter_scheduled_for_later_today_does_not_defer(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    newsletters(shop, [send("ann@example.com", NOW + timedelta(hours=4))])  # in the export already, not sent yet
    assert shop.decisions()["c1"]["reason"] == "due"
    later = shop.decisions(now=NOW + timedelta(hours=5))["c1"]  # after it went out
    assert later["reason"] == "newsletter_today"


def test_the_deferral_respects_quiet_hours(shop: Shop) -> None:
    shop.configure(eligibility={"quiet_hours": {"start": "21:00", "end": "08:00"}})
    shop.add(cart("c1", email="ann@example.com"))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(hours=2))])
    decision = shop.decisions()["c1"]
    assert decision["reason"] == "newsletter_today"
    assert decision["not_before"] == "2026-11-21T07:00:00Z"  # Saturday 08:00 in Stockholm


def test_a_deferred_reminder_goes_out_the_next_day(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(hours=2))])
    out = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(out)).exit_code == 0
    assert not out.exists() or not list(out.glob("*.eml"))
    next_day = shop.cli("run", "--outbox", str(out), "--json", now=MIDNIGHT + timedelta(hours=9))
    assert next_day.exit_code == 0, next_day.output
    assert [row["delivery"] for row in next_day.json["decisions"]] == ["sent"]


def test_newsletter_today_is_told_apart_from_messaged_today(shop: Shop) -> None:
    """A reminder of ours today is ``messaged_today``; only the shop's newsletter is ``newsletter_today``."""
    shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bob@example.com"))
    out = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(out), now=NOW - timedelta(hours=1)).exit_code == 0
    shop.carts.clear()
    shop.add(cart("c3", email="ann@example.com", now=NOW + timedelta(hours=1)),
             cart("c4", email="bob@example.com", now=NOW + timedelta(hours=1)))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(hours=2)), send("carl@example.com", NOW)])
    decisions = shop.decisions(now=NOW + timedelta(hours=3))
    assert decisions["c3"]["reason"] == "messaged_today"  # ours first: it says more
    assert decisions["c4"]["reason"] == "messaged_today"


def test_an_export_with_its_own_headers_and_local_times(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bob@example.com"))
    rows = [{"Email Address": "ANN@example.com ", "Send Time": "2026-11-20 09:05:00", "Campaign Title": "Week 47"},
            {"Email Address": "bob@example.com", "Send Time": "2026-11-19 23:55:00", "Campaign Title": "Week 46"}]
    newsletters(shop, rows, ["Email Address", "Send Time", "Campaign Title"],
                columns={"email": "Email Address", "sent_at": "Send Time", "campaign": "Campaign Title"})
    decisions = shop.decisions()
    assert decisions["c1"]["reason"] == "newsletter_today" and "Week 47" in decisions["c1"]["detail"]
    assert decisions["c2"]["reason"] == "due"  # 23:55 local time on Thursday


def test_bad_rows_are_reported_and_cost_only_themselves(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bob@example.com"))
    newsletters(shop, [
        send("ann@example.com", NOW - timedelta(hours=1)),
        {"email": "bob@example.com", "sent_at": "yesterday-ish", "campaign": ""},
        {"email": "not-an-address", "sent_at": iso(NOW - timedelta(hours=1)), "campaign": ""},
        {"email": "old-and-broken", "sent_at": iso(NOW - timedelta(days=30)), "campaign": ""},  # not today: not checked
    ])
    result = shop.cli("run", "--json")
    assert result.exit_code == 1
    export = shop.folder / "sends.csv"
    assert result.json["problems"] == [
        f"{export}:3: newsletter send: sent_at: not an ISO 8601 time: 'yesterday-ish' (write e.g. "
        "2026-11-20T10:03:00Z, 2026-11-20 11:03:00+01:00, or 2026-11-20 11:03 in the shop's timezone)",
        f"{export}:4: newsletter send: email: not a valid address: 'not-an-address'",
    ]
    reasons = {row["cart_id"]: row["reason"] for row in result.json["decisions"]}
    assert reasons == {"c1": "newsletter_today", "c2": "due"}


def test_a_missing_export_stops_the_run_before_anything_is_sent(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.configure(source={"newsletters": {"file": "missing.csv"}})
    out = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(out))
    assert result.exit_code == 3 and "missing.csv" in result.stderr
    assert not out.exists() or not list(out.glob("*.eml"))


def test_an_export_without_the_needed_columns_is_a_clear_error(shop: Shop) -> None:
    shop.add(cart("c1"))
    newsletters(shop, [{"Address": "ann@example.com", "When": iso(NOW)}], ["Address", "When"])
    result = shop.cli("carts")
    assert result.exit_code == 3
    assert "sends.csv:1: missing column(s): email, sent_at" in result.stderr


def test_an_unknown_column_name_is_a_config_error(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.configure(source={"newsletters": {"file": "sends.csv", "columns": {"address": "Email"}}})
    result = shop.cli("carts")
    assert result.exit_code == 2 and "source.newsletters.columns" in result.stderr


@pytest.mark.parametrize("scale", [20_000])
def test_a_large_export_is_indexed_on_disk_and_answers_per_chunk(shop: Shop, scale: int) -> None:
    """A year of weekly sends to many addresses: only today's are kept, in a scratch file."""
    shop.add(*(cart(f"c{n}", email=f"user{n}@example.com") for n in range(3)))
    rows = [send(f"user{n % 5000}@example.com", NOW - timedelta(days=7 * (n // 5000) + 1)) for n in range(scale)]
    rows.append(send("user1@example.com", NOW - timedelta(minutes=30)))
    newsletters(shop, rows)
    decisions = shop.decisions()
    assert {cart_id: row["reason"] for cart_id, row in decisions.items()} == {
        "c0": "due", "c1": "newsletter_today", "c2": "due"}


def test_the_preview_shows_the_newsletter_deferral(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(hours=2))])
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    assert (result.json["decision"], result.json["reason"]) == ("defer", "newsletter_today")


def test_the_documented_configs_load(tmp_path) -> None:
    """Every YAML example of docs/newsletters.md is a valid config."""
    import re

    import yaml

    from cartrescue.config import load_config
    from conftest import REPO

    text = (REPO / "docs" / "newsletters.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        path = tmp_path / "cartrescue.yaml"
        path.write_text(yaml.safe_dump(yaml.safe_load(block)), encoding="utf-8")
        assert load_config(path, env={}).source.newsletters is not None


def test_a_campaign_name_is_shown_as_text_never_as_markup(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a terminal wide enough for the detail column (the campaign)
    shop.add(cart("c1", email="ann@example.com"))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(hours=2), campaign="[/] [bold]Week 47\x1b[2J")])
    result = shop.cli("carts")
    assert result.exit_code == 0, result.output
    shown = " ".join(result.stdout.split())
    assert "[/]" in shown and "[bold]Week" in shown and "\x1b" not in result.stdout


def test_a_text_waits_on_a_newsletter_day_and_a_call_does_not(shop: Shop) -> None:
    """docs/newsletters.md: every channel that reaches the customer waits (a text too); staff
    call in their own hours, so the call list is not deferred."""
    shop.configure(shop={"country": "SE"},
                   priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"sender": "CartShop", "quiet_hours": None,
                        "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "t" * 32,
                                   "base_url": "https://api.example.com"}})
    shop.add(cart("texted", email="ann@example.com", phone="+46701234567", sms_consent="yes"),
             cart("called", email="bob@example.com", phone="+46701234568", items=[("S", "Lamp", 1, "900.00")]))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(hours=2)),
                       send("bob@example.com", NOW - timedelta(hours=2))])
    decisions = shop.decisions()
    assert (decisions["texted"]["reason"], decisions["texted"]["channel"]) == ("newsletter_today", "sms")
    assert (decisions["called"]["reason"], decisions["called"]["channel"]) == ("due", "call-list")


def test_a_campaign_name_on_two_lines_keeps_its_words_apart(shop: Shop) -> None:
    """A campaign title the export quotes over two lines ("Week 47\\ndeals") was shown as
    'Week 47deals': its line break was dropped as a control character instead of read as a space."""
    shop.add(cart("c1", email="ann@example.com"))
    newsletters(shop, [send("ann@example.com", NOW - timedelta(hours=2), campaign="Week 47\r\ndeals")])
    decision = shop.decisions()["c1"]
    assert decision["detail"] == "newsletter 'Week 47 deals' sent 2026-11-20 08:00 UTC"


def test_an_export_in_another_encoding_names_the_newsletter_setting_to_change(shop: Shop) -> None:
    """A cp1252 export of the newsletter tool stopped with "set source.encoding to the export's
    encoding": that is the carts' setting, so the owner changed it and the error stayed (or the
    carts broke); the export's own is source.newsletters.encoding."""
    shop.add(cart("c1", email="ann@example.com"))
    (shop.folder / "sends.csv").write_bytes(
        "email,sent_at,campaign\nann@example.com,2026-11-20 09:00,Vecka 47 – rea\n".encode("cp1252"))
    shop.configure(source={"newsletters": {"file": "sends.csv"}})
    result = shop.cli("carts")
    assert result.exit_code == 3
    assert "sends.csv:2: not utf-8-sig text" in result.stderr
    assert "set source.newsletters.encoding to the export's encoding" in result.stderr
    shop.configure(source={"newsletters": {"file": "sends.csv", "encoding": "cp1252"}})
    assert shop.decisions()["c1"]["reason"] == "newsletter_today"


def test_an_export_with_another_byte_order_mark_names_the_newsletter_setting_to_change(shop: Shop) -> None:
    """A UTF-16 export (Excel's "Unicode Text") was refused with "set source.encoding to utf-16":
    the carts' setting, not the newsletter export's."""
    shop.add(cart("c1", email="ann@example.com"))
    (shop.folder / "sends.csv").write_bytes(
        "email\tsent_at\tcampaign\nann@example.com\t2026-11-20 09:00\tWeek 47\n".encode("utf-16"))
    shop.configure(source={"newsletters": {"file": "sends.csv"}})
    result = shop.cli("carts")
    assert result.exit_code == 3
    assert "set source.newsletters.encoding to utf-16" in result.stderr
    assert "source.encoding is" not in result.stderr and "source.newsletters.encoding is utf-8-sig" in result.stderr


def test_a_title_line_above_a_semicolon_header_is_named_in_the_missing_columns_error(shop: Shop) -> None:
    """An export with a title line above a header in semicolons (Excel where the decimal mark is a
    comma) stopped on "missing column(s)" at line 1 without naming line 2: the delimiter was
    guessed from the title, so the line below read as one cell that named nothing."""
    shop.add(cart("c1", email="ann@example.com"))
    (shop.folder / "sends.csv").write_text(
        "Newsletter sends 2026-11-20\nEmail;Sent_at;Campaign\nann@example.com;2026-11-20 09:00;Week 47\n",
        encoding="utf-8")
    shop.configure(source={"newsletters": {"file": "sends.csv"}})
    result = shop.cli("carts")
    assert result.exit_code == 3
    assert "sends.csv:1: missing column(s): email, sent_at (line 2 names them: is the header there? " \
           "Remove the lines above it)" in " ".join(result.stderr.split())


def test_a_send_given_as_a_date_alone_makes_the_whole_day_a_newsletter_day(shop: Shop) -> None:
    """docs/newsletters.md: a date alone is that day's midnight in the shop's timezone."""
    shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bob@example.com"))
    newsletters(shop, [{"email": "ann@example.com", "sent_at": "2026-11-20", "campaign": "Friday deals"},
                       {"email": "bob@example.com", "sent_at": "2026-11-19", "campaign": "Thursday deals"}])
    decisions = shop.decisions()  # 11:00 on Friday 20 November in Stockholm
    assert decisions["c1"]["reason"] == "newsletter_today"
    assert decisions["c2"]["reason"] == "due"
