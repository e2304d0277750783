"""`cartrescue doctor`: every check, and a non-zero exit when reminders have silently stopped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from smtpserver import Fault, LoopbackSMTP
from sqlalchemy import update

from cartrescue.doctor import FAIL, OK, WARN, staleness
from cartrescue.errors import ExitCode
from cartrescue.ledger import ClaimRequest, Ledger, Run
from conftest import NOW, Shop, cart


def checks(result) -> dict[str, dict]:
    return {check["name"]: check for check in result.json["checks"]}


def age_runs(shop: Shop, by: timedelta) -> None:
    """Pretend every run finished ``by`` earlier than it did."""
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        table = Run.__table__  # type: ignore[attr-defined]
        with ledger.engine.begin() as conn:
            conn.execute(update(table).values(finished_at=datetime.now(timezone.utc) - by))
    finally:
        ledger.close()


@pytest.mark.smtp
def test_healthy_after_a_send_and_stale_once_runs_stop(shop: Shop) -> None:
    shop.add(cart("c1"))
    with LoopbackSMTP("starttls", auth=("shop-user", "right")) as server:
        shop.configure(smtp=server.smtp_config(), doctor={"stale_after": "2h"})
        assert shop.cli("run", "--send").exit_code == 0
        healthy = shop.cli("doctor", "--json", now=None)
        assert healthy.exit_code == 0, healthy.output
        found = checks(healthy)
        assert {name: c["status"] for name, c in found.items()} == {
            "config": OK, "ledger": OK, "source": OK, "templates": OK, "smtp": OK, "staleness": OK}
        assert "TLS TLSv1" in found["smtp"]["detail"] and "AUTH as shop-user" in found["smtp"]["detail"]
        assert "1 sent" in found["ledger"]["detail"]
        assert len(server.messages) == 1  # the doctor sent nothing

        age_runs(shop, timedelta(hours=3))
        stale = shop.cli("doctor", "--json", now=None)
    assert stale.exit_code == ExitCode.STALE == 5
    assert checks(stale)["staleness"]["status"] == FAIL
    assert "stopped" in checks(stale)["staleness"]["detail"]


def test_a_missing_ledger_is_said_to_come_with_the_first_delivering_run_as_a_dry_run_makes_none(shop: Shop) -> None:
    """A new shop's README steps run `doctor` and then a dry-run: the ledger check said "the first
    run creates it", and after that dry-run it still warned the same (a dry-run records nothing)."""
    shop.add(cart("c1"))
    assert shop.cli("run").exit_code == 0  # dry-run
    detail = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["ledger"]["detail"]
    assert "does not exist" in detail and "the first run with --send or --outbox creates it" in detail, detail
    assert not (shop.folder / "ledger.db").exists()


def test_a_ledger_file_sqlite_finds_malformed_fails_the_ledger_check_and_the_other_checks_still_run(
        shop: Shop, tmp_path: Path) -> None:
    """A ledger whose pages were damaged (a disk error, a copy taken while a run wrote) opens and
    then fails its first read: the doctor printed only `{"error": …, "message": "the ledger:
    database disk image is malformed"}`, naming no file or key, and checked nothing else."""
    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    ledger = shop.folder / "ledger.db"
    with ledger.open("r+b") as file:  # every page but the first, the schema's
        file.seek(4096)
        file.write(bytes(ledger.stat().st_size - 4096))
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    found = checks(result)
    assert (found["ledger"]["status"], found["ledger"]["exit_code"]) == (FAIL, ExitCode.CONFIG), found["ledger"]
    assert found["ledger"]["detail"] == (f"{shop.config_path}: ledger.url sqlite:///{ledger}: database disk image "
                                         "is malformed"), found["ledger"]
    assert found["source"]["status"] == OK and found["staleness"]["status"] == "skip", found
    assert result.exit_code == ExitCode.CONFIG


def test_never_ran_is_stale(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert result.exit_code == 5
    found = checks(result)
    assert found["smtp"]["status"] == "skip" and found["source"]["status"] == OK
    assert "no successful run" in found["staleness"]["detail"]


def test_dry_runs_do_not_count_but_outbox_runs_do(shop: Shop, tmp_path) -> None:
    shop.add(cart("c1"))
    assert shop.cli("run").exit_code == 0  # dry-run
    assert shop.cli("doctor", "--no-smtp", now=None).exit_code == 5
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    result = shop.cli("doctor", "--no-smtp", now=None)
    assert result.exit_code == 0, result.output
    assert "staleness" in result.stdout and "ok" in result.stdout


@pytest.mark.smtp
def test_smtp_auth_failure_fails_the_doctor(shop: Shop) -> None:
    shop.add(cart("c1"))
    with LoopbackSMTP("tls", auth=("shop-user", "right")) as server:
        shop.configure(smtp=server.smtp_config(password="wrong"))
        result = shop.cli("doctor", "--json", now=None)
    assert checks(result)["smtp"]["exit_code"] == ExitCode.SOME_FAILED
    assert result.exit_code == ExitCode.STALE  # never ran: the relay's failure is why (see below)
    assert "AUTH refused: 535" in checks(result)["smtp"]["detail"]
    assert server.messages == []


@pytest.mark.smtp
def test_a_relay_refusing_the_shops_sender_fails_the_doctor_as_it_fails_every_message(shop: Shop) -> None:
    """A relay that takes the login but refuses MAIL FROM the shop's sender (an address its AUTH
    user may not send as) failed every message of every run, while the smtp check, which stopped
    after AUTH, said ok and the doctor exited 0. It now gives MAIL FROM and RSET: nothing is sent."""
    shop.add(cart("c1"))
    refusal = "550 5.7.1 Sender address rejected: not owned by user"
    with LoopbackSMTP(faults=[Fault(".", refusal, stage="MAIL")]) as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("doctor", "--json", now=None)
    found = checks(result)["smtp"]
    assert (found["status"], found["exit_code"]) == (FAIL, ExitCode.SOME_FAILED), found
    assert "sender refused (check shop.from_email / smtp.envelope_from" in found["detail"], found
    assert refusal in found["detail"], found
    assert server.messages == []


@pytest.mark.smtp
def test_a_relay_that_wants_starttls_before_mail_fails_the_doctor_of_a_config_without_it(shop: Shop) -> None:
    """smtp.security: none against a relay that takes EHLO in plain text but wants STARTTLS
    before any mail (530): every message failed while the doctor's smtp check said ok."""
    shop.add(cart("c1"))
    with LoopbackSMTP("starttls") as server:
        shop.configure(smtp={**server.smtp_config(), "security": "none"})
        result = shop.cli("doctor", "--json", now=None)
    found = checks(result)["smtp"]
    assert (found["status"], found["exit_code"]) == (FAIL, ExitCode.SOME_FAILED), found
    assert "the relay requires STARTTLS before mail (smtp.security: starttls)" in found["detail"], found
    assert server.messages == []


@pytest.mark.smtp
def test_the_smtp_check_names_the_sender_the_relay_took(shop: Shop) -> None:
    shop.add(cart("c1"))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("doctor", "--json", now=None)
    found = checks(result)["smtp"]
    assert found["status"] == OK and "MAIL FROM accepted" in found["detail"], found
    assert server.messages == []


def test_unreachable_relay_fails_the_doctor_and_the_reminders_it_stopped_are_exit_5(shop: Shop) -> None:
    """The smtp check fails first, with a 1; the staleness it causes (no run yet) is the code
    cron acts on: a generic 1 gives way to a specific code."""
    shop.add(cart("c1"))
    with LoopbackSMTP() as server:
        port = server.port
    shop.configure(smtp={"host": "127.0.0.1", "port": port, "security": "none", "timeout": 2})
    result = shop.cli("doctor", "--json", now=None)
    found = checks(result)
    assert (found["smtp"]["status"], found["smtp"]["exit_code"]) == (FAIL, 1)
    assert f"127.0.0.1:{port}" in found["smtp"]["detail"]
    assert found["staleness"]["status"] == FAIL and result.exit_code == ExitCode.STALE


def test_bad_config_is_exit_2_and_skips_the_rest(shop: Shop) -> None:
    shop.configure(smtp={"security": "carrier-pigeon"})
    result = shop.cli("doctor", "--json", now=None)
    assert result.exit_code == 2
    found = checks(result)
    assert found["config"]["status"] == FAIL and "smtp.security" in found["config"]["detail"]
    assert {found[name]["status"] for name in ("ledger", "source", "smtp", "staleness")} == {"skip"}


def test_missing_source_is_exit_3(shop: Shop) -> None:
    shop.configure(source={"carts": "missing.csv"})
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert result.exit_code == 3
    assert checks(result)["source"]["status"] == FAIL and "missing.csv" in checks(result)["source"]["detail"]


def claim_c1(shop: Shop, channel: str = "email", transport: str = "smtp", phone: str | None = None,
             failed: bool = False) -> None:
    """A run's claim of cart c1's first step by ``channel``, in the shop's real ledger: left
    without outcome (its run killed, or who answers it silent); ``failed``: refused, by a run
    that then ended delivering nothing."""
    from cartrescue.ledger import ClaimRequest

    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        run_id = ledger.start_run("send", datetime.now(timezone.utc))
        with ledger.lock(run_id, timedelta(hours=2)):  # claims are made only under the run lock
            won = ledger.claim(run_id, [ClaimRequest("csv:c1", "c1", "c1@example.com", 1, channel, transport,
                                                     "reminder-1", None, "standard", 0.0, phone=phone)],
                               datetime.now(timezone.utc))
            if failed:
                ledger.record([(claim, "failed_permanent", "refused", "") for claim in won.values()])
        if failed:
            ledger.finish_run(run_id, "ok", {"sent": 0, "failed": 1})
    finally:
        ledger.close()


def test_unconfirmed_claims_are_reported(shop: Shop) -> None:
    claim_c1(shop)
    found = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))
    assert found["ledger"]["status"] == "warn"
    assert "1 claim (claimed) has no outcome" in found["ledger"]["detail"] and "--resend-unconfirmed" in found["ledger"]["detail"]


def test_the_ledger_line_counts_a_message_without_outcome_once(shop: Shop) -> None:
    """It read "1 unconfirmed; 1 claims have no outcome" of a single message: said twice, and
    "1 claims"."""
    claim_c1(shop)
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        ledger.record([(row["id"], "unconfirmed", "no reply after the message", "") for row in ledger.messages()])
        run_id = ledger.start_run("send", datetime.now(timezone.utc))
        with ledger.lock(run_id, timedelta(hours=2)):
            ledger.claim(run_id, [ClaimRequest("csv:c9", "c9", "c9@example.com", 1, "email", "smtp", "reminder-1",
                                               None, "standard", 0.0)], datetime.now(timezone.utc))
        ledger.record([(row["id"], "sent", "250 ok", "") for row in ledger.messages() if row["cart_id"] == "c9"])
        ledger.finish_run(run_id, "ok", {"sent": 1})
    finally:
        ledger.close()
    detail = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["ledger"]["detail"]
    assert detail.startswith("1 sent; 1 claim (unconfirmed) has no outcome (a run was killed, or the relay "), detail
    assert detail.count("unconfirmed") == 2  # the status, and the option that resends it


@pytest.mark.parametrize(("channel", "transport", "phone", "who"), [
    ("email", "smtp", None, "the relay"),
    ("sms", "twilio", "+46701234567", "the SMS gateway"),
    ("webhook", "webhook", None, "the webhook receiver"),
])
def test_unconfirmed_claims_name_the_party_of_their_channel(shop: Shop, channel: str, transport: str,
                                                            phone: str | None, who: str) -> None:
    """An SMS claim without outcome was said to be one "the relay did not answer": an SMS
    gateway is no relay, nor is a webhook's receiver."""
    claim_c1(shop, channel, transport, phone)
    detail = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["ledger"]["detail"]
    assert f"(a run was killed, or {who} did not answer after " in detail, detail
    assert (channel == "email") == ("relay" in detail), detail


@pytest.mark.parametrize(("age", "status"), [(timedelta(minutes=30), OK), (timedelta(hours=2, seconds=1), FAIL)])
def test_staleness_threshold(age: timedelta, status: str) -> None:
    now = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    verdict = staleness(now - age, timedelta(hours=2), now)
    assert verdict.status == status
    assert verdict.exit_code == (5 if status == FAIL else 0)


def test_a_template_that_cannot_render_fails_the_doctor(shop: Shop) -> None:
    templates = shop.folder / "templates" / "en"
    templates.mkdir(parents=True)
    for part in ("subject.txt", "txt", "html"):
        (templates / f"reminder-1.{part}").write_text("{{ customer.no_such_field.name }}", encoding="utf-8")
    shop.configure(templates="templates").add(cart("c1"))
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    found = checks(result)
    assert found["templates"]["status"] == FAIL
    assert "reminder-1" in found["templates"]["detail"] and "undefined" in found["templates"]["detail"]
    assert found["templates"]["exit_code"] == 1 and result.exit_code == ExitCode.STALE  # never ran


def _two_shops(tmp_path: Path) -> tuple[Shop, Shop]:
    """Two shops whose configs name the same ledger file (a config copied for a second shop)."""
    first, second = Shop(tmp_path / "shop-a"), Shop(tmp_path / "shop-b")
    ledger = tmp_path / "shared.db"
    for folder, shop in ((first.folder, first), (second.folder, second)):
        folder.mkdir()
        shop.add(cart("1042", email=f"ann@{folder.name}.example.com"))
        shop.configure(ledger={"url": f"sqlite:///{ledger}"})
    second.configure(shop={"name": "Second Shop"})
    return first, second


def test_two_shops_whose_runs_take_turns_in_one_ledger_fail_the_ledger_check(tmp_path: Path) -> None:
    """Cart 1042 of the second shop is taken for the first's (claimed elsewhere): its reminder
    is lost without a word. Their delivering runs alternate, which doctor names."""
    first, second = _two_shops(tmp_path)
    for shop in (first, second):
        assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert not list((second.folder / "out").glob("*.eml"))  # the loss itself: its cart 1042 was "done"
    stopped = first.cli("run", "--outbox", str(first.folder / "out"), "--json")
    assert stopped.exit_code == ExitCode.CONFIG and "take turns in this ledger" in stopped.json["error"]["message"]
    assert second.cli("run", "--outbox", str(second.folder / "out")).exit_code == ExitCode.CONFIG  # and the other's
    result = first.cli("doctor", "--json", "--no-smtp", now=None)
    ledger = checks(result)["ledger"]
    assert ledger["status"] == FAIL and "the runs of 2 shops take turns in it" in ledger["detail"]
    assert "Second Shop <shop@example.com>; Test Shop <shop@example.com>" in ledger["detail"]
    assert result.exit_code == ExitCode.CONFIG


def test_the_first_run_of_a_second_shop_on_a_ledger_says_so_even_under_quiet(tmp_path: Path) -> None:
    """It cannot be told from a rename yet, so it runs; but cron's mail carries the warning,
    where before nothing was said until doctor saw the shops take turns."""
    first, second = _two_shops(tmp_path)
    assert first.cli("run", "--outbox", str(first.folder / "out"), "--quiet").stdout == ""
    quiet = second.cli("run", "--outbox", str(second.folder / "out"), "--quiet")
    assert quiet.exit_code == 0 and "this ledger's last run was for shop Test Shop <shop@example.com>" in quiet.stdout
    document = second.cli("run", "--outbox", str(second.folder / "out"), "--json").json
    assert document["shop_switched_from"] is None  # its own run is now the last


def test_a_run_finding_another_shops_run_holding_the_lock_is_a_config_error(tmp_path: Path) -> None:
    """Under run-all the two shops' runs overlap: the second was "locked" (exit 4, which cron and
    --quiet take as the same shop's previous run still going) on every round, and never ran."""
    from datetime import timedelta

    first, second = _two_shops(tmp_path)
    ledger = Ledger(f"sqlite:///{tmp_path / 'shared.db'}")
    try:
        holder = ledger.start_run("outbox", NOW, "", "Test Shop <shop@example.com>")
        with ledger.lock(holder, timedelta(hours=2)):
            same = first.cli("run", "--outbox", str(first.folder / "out"), "--json")
            result = second.cli("run", "--outbox", str(second.folder / "out"), "--json")
    finally:
        ledger.close()
    assert result.exit_code == ExitCode.CONFIG
    assert "a run of shop Test Shop <shop@example.com> holds this ledger's lock" in result.json["error"]["message"]
    assert same.exit_code == ExitCode.LOCKED  # its own earlier run: wait, as ever


def test_a_shop_renamed_once_is_not_taken_for_two(tmp_path: Path) -> None:
    first, _second = _two_shops(tmp_path)
    for name in ("Test Shop", "Test Shop", "Renamed Shop", "Renamed Shop"):
        first.configure(shop={"name": name})
        assert first.cli("run", "--outbox", str(first.folder / "out")).exit_code == 0
    assert checks(first.cli("doctor", "--json", "--no-smtp", now=None))["ledger"]["status"] == OK


def test_one_shop_whose_hosts_read_the_export_under_other_paths_is_one_shop(tmp_path: Path) -> None:
    """The shards of one shop on two hosts (``run --shard``, a shared ledger) may find its export
    at other paths: the ledger knows a shop by its name and sender, which customers see."""
    first, second = _two_shops(tmp_path)
    second.configure(shop={"name": "Test Shop"})  # the same shop, its config on another host
    for shop in (first, second, first, second):
        assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert checks(first.cli("doctor", "--json", "--no-smtp", now=None))["ledger"]["status"] == OK


def test_a_stale_export_s_age_is_said_once(shop: Shop, tmp_path: Path) -> None:
    """"carts.csv written 3d 0h ago; but carts.csv was last written 3d 0h ago": the same finding twice."""
    import os
    import time

    from conftest import cli

    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    three_days_ago = time.time() - 3 * 86400
    os.utime(shop.folder / "carts.csv", (three_days_ago, three_days_ago))
    stale = cli("doctor", "--no-smtp", "--json", "--config", str(shop.config_path))
    detail = checks(stale)["source"]["detail"]
    assert "carts.csv was last written 3d 0h ago" in detail
    assert detail.count("carts.csv") == 1, detail
    assert "orders.csv written" in detail  # a fresh export's age is still said


def test_an_export_its_job_stopped_writing_fails_the_doctor_though_runs_succeed(shop: Shop, tmp_path: Path) -> None:
    # run keeps succeeding on the old file, so the staleness of runs says nothing: the file's age does.
    import os
    import time

    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    fresh = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert fresh.exit_code == 0, fresh.output
    detail = checks(fresh)["source"]["detail"]
    assert "carts.csv written" in detail and "orders.csv written" in detail

    two_days_ago = time.time() - 2 * 86400
    os.utime(shop.folder / "orders.csv", (two_days_ago, two_days_ago))
    from conftest import cli

    stale = cli("doctor", "--no-smtp", "--json", "--config", str(shop.config_path))  # the files as they are
    assert stale.exit_code == ExitCode.STALE
    source = checks(stale)["source"]
    assert source["status"] == FAIL and source["exit_code"] == ExitCode.STALE
    assert "orders.csv was last written 2d 0h ago (source.export_stale_after 24h 0m)" in source["detail"]
    assert "would be reminded of carts they bought" in source["detail"] and "carts.csv was" not in source["detail"]
    quiet = cli("doctor", "--no-smtp", "--quiet", "--config", str(shop.config_path))
    assert quiet.exit_code == ExitCode.STALE and "source failed: " in quiet.stdout

    shop.configure(source={"export_stale_after": None})
    shop.write()
    os.utime(shop.folder / "orders.csv", (two_days_ago, two_days_ago))
    assert cli("doctor", "--no-smtp", "--config", str(shop.config_path)).exit_code == 0


def test_the_doctor_counts_only_the_csv_carts_inside_max_age(shop: Shop) -> None:
    now = datetime.now(timezone.utc)  # the doctor looks at the real clock
    shop.add(cart("recent", now=now), cart("old", email="old@example.com", idle=timedelta(days=30), now=now))
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert "csv: 1 carts in the last" in checks(result)["source"]["detail"], checks(result)["source"]


def test_the_quiet_line_names_the_config_it_was_given(shop: Shop) -> None:
    # An agency's hourly loop over its shops: each line says which shop failed.
    shop.add(cart("c1"))
    shop.write()
    from conftest import cli

    result = cli("doctor", "--no-smtp", "--quiet", "--config", str(shop.config_path))
    assert result.exit_code == ExitCode.STALE
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cartrescue doctor: {shop.config_path}: staleness failed: "), lines


def test_the_quiet_line_names_the_config_once_when_the_check_names_it_too(shop: Shop) -> None:
    """A config or source failure names its config itself; the line read ``a.yaml: config failed:
    a.yaml: eligibility.cutoff: …``, twice for each of an agency's broken shops."""
    shop.add(cart("c1"))
    shop.configure(eligibility={"cutoff": "45x"})
    shop.write()
    from conftest import cli

    result = cli("doctor", "--no-smtp", "--quiet", "--config", str(shop.config_path))
    assert result.exit_code == ExitCode.CONFIG
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"cartrescue doctor: {shop.config_path}: config failed: eligibility.cutoff: expected a duration"), lines


def test_doctor_reads_the_carts_at_the_configs_pinned_clock(shop: Shop) -> None:
    """``now:`` in the config (a demo, the quick start's sample) is the doctor's clock too: it
    sees the carts a run sees, not "0 carts" because the wall clock is later."""
    from conftest import NOW, iso

    shop.add(cart("c1"), cart("c2")).configure(now=iso(NOW))
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert checks(result)["source"]["detail"].startswith("csv: 2 carts in the last"), checks(result)["source"]


def test_a_clock_pinned_by_the_config_is_a_warning_of_the_config_check(shop: Shop) -> None:
    """``now:`` copied into a shop's config (from the demo's, or an audit's) froze every cron
    run at that instant: carts left after it were never in the window, so the runs succeeded,
    sending nothing new, and ``doctor`` said all was well. The config check now warns, naming
    the key and the instant (a warning: the demo and replays pin it on purpose)."""
    from conftest import NOW, iso

    shop.add(cart("c1")).configure(now=iso(NOW))
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    config = checks(result)["config"]
    assert config["status"] == "warn", config
    assert f"now: pins the clock at {iso(NOW)}" in config["detail"], config
    assert "remove it for cron" in config["detail"], config


def test_a_tier_budget_of_0_is_a_warning_of_the_config_check(shop: Shop, tmp_path: Path) -> None:
    """A tier with ``budget: 0`` (and ``over_budget: defer``) never sends: each run defers its
    carts (``tier_budget``) until they leave the backfill, the runs succeed sending nothing, and
    the doctor said all was well. The config check now warns, naming the key and the tier."""
    shop.add(cart("c1")).configure(priority={"tiers": [{"name": "standard", "min_score": 0, "budget": 0}]})
    assert shop.cli("run", "--outbox", str(tmp_path / "out"), "--json").json["counts"]["reasons"] == {"tier_budget": 1}
    config = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["config"]
    assert config["status"] == "warn", config
    assert (f"{shop.config_path}: priority.tiers[0].budget: 0: tier 'standard' never sends by email") in config["detail"], config


def test_an_http_unsubscribe_link_is_a_warning_of_the_config_check(shop: Shop) -> None:
    """``shop.unsubscribe_url: http://…`` sent every message without List-Unsubscribe-Post (RFC
    8058 one-click is for an https link only), which Gmail and Yahoo ask of bulk senders, and the
    doctor said the config was fine. The config check now warns, naming the key."""
    shop.add(cart("c1")).configure(shop={"unsubscribe_url": "http://shop.example.com/unsubscribe?token={token}"})
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    config = checks(result)["config"]
    assert config["status"] == "warn", config
    assert "shop.unsubscribe_url" in config["detail"] and "one-click" in config["detail"], config
    assert "https://" in config["detail"], config


def test_doctor_does_not_create_the_ledger_it_checks(shop: Shop) -> None:
    """It only reads: opening a SQLite ledger at a mistyped path created an empty one there and
    said "ok, no messages yet"; it now says the file does not exist, and the run never ran."""
    shop.add(cart("c1")).configure(ledger={"url": "sqlite:///ledgr.db"})
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    found = checks(result)
    assert found["ledger"]["status"] == "warn" and "ledgr.db does not exist" in found["ledger"]["detail"]
    assert "ledger.url" in found["ledger"]["detail"]
    assert result.exit_code == 5 and "no successful run" in found["staleness"]["detail"]
    assert not (shop.folder / "ledgr.db").exists()


@pytest.mark.smtp
def test_a_sending_run_whose_every_delivery_failed_is_not_a_successful_run(shop: Shop) -> None:
    """It ended ``ok`` (it did not crash), so the doctor stayed green while the relay deferred
    every message and no reminder went out; it now fails for staleness and says why."""
    shop.add(cart("c1"))
    with LoopbackSMTP("none", faults=[Fault(".*", "451 4.7.1 try again later")]) as server:
        shop.configure(smtp=server.smtp_config(retries=0))
        sent = shop.cli("run", "--send", "--json")
        assert sent.exit_code == 1 and sent.json["counts"]["sent"] == 0, sent.output
        assert sent.json["counts"]["failed"] == 1
        quiet = shop.cli("doctor", "--quiet", now=None)
        found = checks(shop.cli("doctor", "--json", now=None))
    assert server.messages == []
    assert quiet.exit_code == ExitCode.STALE, quiet.output
    assert "staleness failed" in quiet.stdout and "the last run delivered nothing" in quiet.stdout
    assert found["staleness"]["status"] == FAIL and "every delivery failed" in found["staleness"]["detail"]


@pytest.mark.smtp
def test_a_sending_run_with_nothing_due_still_counts_as_successful(shop: Shop) -> None:
    # Nothing sent and nothing failed: the run did its job (no cart was due), reminders did not stop.
    with LoopbackSMTP("none") as server:
        shop.configure(smtp=server.smtp_config())
        assert shop.cli("run", "--send").exit_code == 0
        result = shop.cli("doctor", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert checks(result)["staleness"]["status"] == OK and server.messages == []


def test_runs_that_delivered_nothing_since_a_success_are_named_before_it_goes_stale() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    warned = staleness(now - timedelta(minutes=30), timedelta(hours=2), now, delivered_nothing=3)
    assert warned.status == "warn" and "the last 3 runs delivered nothing" in warned.detail
    stale = staleness(now - timedelta(hours=3), timedelta(hours=2), now, delivered_nothing=3)
    assert stale.status == FAIL and stale.exit_code == ExitCode.STALE and "reminders have stopped" in stale.detail


def _age_shard(shop: Shop, shard: str, by: timedelta) -> None:
    """Pretend shard ``shard``'s runs finished ``by`` earlier than they did."""
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        table = Run.__table__  # type: ignore[attr-defined]
        with ledger.engine.begin() as conn:
            conn.execute(update(table).where(table.c.shard == shard)
                         .values(finished_at=datetime.now(timezone.utc) - by))
    finally:
        ledger.close()


def test_a_shard_that_stopped_succeeding_makes_the_shop_stale_though_the_others_run(shop: Shop) -> None:
    # Shard 2 of 2 serves half the addresses: its last success, not shard 1's, says when
    # every customer was last served.
    shop.add(*(cart(f"c{n}") for n in range(6))).configure(doctor={"stale_after": "2h"})
    for k in (1, 2):
        assert shop.cli("run", "--outbox", str(shop.folder / "out"), "--shard", f"{k}/2").exit_code == 0
    _age_shard(shop, "2/2", timedelta(hours=3))
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    stale = checks(result)["staleness"]
    assert result.exit_code == ExitCode.STALE and stale["status"] == FAIL, stale
    assert "of shard 2/2" in stale["detail"] and "3h" in stale["detail"], stale["detail"]


def test_a_shard_that_never_succeeded_makes_the_shop_stale(shop: Shop) -> None:
    shop.add(*(cart(f"c{n}") for n in range(6)))
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), "--shard", "1/2").exit_code == 0
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    stale = checks(result)["staleness"]
    assert result.exit_code == ExitCode.STALE and stale["status"] == FAIL, stale
    assert "shard 2/2 never ran to a success" in stale["detail"], stale["detail"]


def test_an_unsharded_success_covers_every_customer_after_a_sharded_layout(shop: Shop) -> None:
    # --workers chooses N by the carts: a later run in one process serves every address.
    shop.add(*(cart(f"c{n}") for n in range(6))).configure(doctor={"stale_after": "2h"})
    for k in (1, 2):
        assert shop.cli("run", "--outbox", str(shop.folder / "out"), "--shard", f"{k}/2").exit_code == 0
    _age_shard(shop, "2/2", timedelta(hours=3))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert result.exit_code == 0 and checks(result)["staleness"]["status"] == OK, checks(result)["staleness"]


def test_a_call_list_file_whose_header_is_no_call_list_fails_the_doctor(shop: Shop) -> None:
    """A run fails each call claim on it as transient, every run, while the e-mails go on: only
    the claims' failures said so. The doctor names the key and the file; a missing list is fine."""
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls.csv"}).add(cart("c1"))
    fine = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["call-list"]
    assert fine["status"] == OK and "the first call begins it" in fine["detail"]
    (shop.folder / "calls.csv").write_text("order_id,amount\n1042,99.00\n", encoding="utf-8")
    found = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["call-list"]
    assert found["status"] == FAIL and found["exit_code"] == 1, found
    assert "call_list.path" in found["detail"] and "calls.csv" in found["detail"]
    assert "names no call-list column" in found["detail"]


def test_a_call_list_every_user_may_read_is_a_doctor_warning_naming_the_chmod(shop: Shop) -> None:
    """A list an older version made under the umask (0644) kept customers' names and numbers open
    to every account of the machine; a new one is 0600, and one shared with the staff's group fine."""
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls.csv"}).add(cart("c1"))
    path = shop.folder / "calls.csv"
    path.write_text("cart_id,phone\n", encoding="utf-8")
    path.chmod(0o644)
    found = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["call-list"]
    assert found["status"] == WARN, found
    assert "call_list.path" in found["detail"] and f"chmod o-r {path}" in found["detail"], found["detail"]
    path.chmod(0o640)
    assert checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["call-list"]["status"] == OK


def _doctor_without_root_powers(shop: Shop) -> dict:
    """``doctor --json`` run without the capability to write any file (root here), as the cron
    user that does not own the call list is refused: the call-list check it reports."""
    done = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m",
                           "cartrescue.cli", "doctor", "--no-smtp", "--json", "--config", str(shop.config_path)],
                          cwd=shop.folder, capture_output=True, text=True, timeout=300, check=False)
    return {check["name"]: check for check in json.loads(done.stdout)["checks"]}["call-list"]


def _without_root_powers(shop: Shop, *args: str) -> subprocess.CompletedProcess[str]:
    """``cartrescue ARGS --config ...`` run without the capability to write any file (root here),
    as the cron user that does not own a folder is refused."""
    return subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m",
                           "cartrescue.cli", *args, "--config", str(shop.config_path)],
                          cwd=shop.folder, capture_output=True, text=True, timeout=300, check=False)


def test_a_ledger_whose_folder_does_not_exist_fails_the_doctor_as_a_file_the_run_cannot_create(shop: Shop) -> None:
    """Its folder not made yet, the ledger failed as "cannot open: unable to open database file",
    where a missing file said "does not exist": it is one, and the first run cannot create it
    (every run stops there, exit 2); doctor makes neither the folder nor the file."""
    shop.add(cart("c1")).configure(ledger={"url": "sqlite:///state/ledger.db"})
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    found = checks(result)["ledger"]
    state = shop.folder / "state"
    assert found["status"] == "fail" and found["exit_code"] == int(ExitCode.CONFIG), found
    assert found["detail"].startswith(f"{state / 'ledger.db'} does not exist ({shop.config_path}: ledger.url), and "
                                      f"the first run cannot create it (no folder {state}: create it): every run stops there "
                                      "until that is mended"), found
    assert result.exit_code == int(ExitCode.CONFIG) and not state.exists()


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux's setpriv (to be refused as a user is)")
def test_a_ledger_in_a_folder_the_run_may_not_write_fails_the_doctor_naming_the_folder(shop: Shop) -> None:
    """ledger.url in a folder cron's user may not write: the doctor warned "no run has used this
    ledger yet; the first run creates it", and every run then stopped on it (exit 2, "no
    permission to write in ..."): the check run before the first sending run said it was fine."""
    state = shop.folder / "state"
    state.mkdir()
    shop.add(cart("c1")).configure(ledger={"url": "sqlite:///state/ledger.db"}).write()
    state.chmod(0o555)
    try:
        doctor = _without_root_powers(shop, "doctor", "--no-smtp", "--json")
        found = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}["ledger"]
        assert found["status"] == FAIL and found["exit_code"] == int(ExitCode.CONFIG), found
        assert found["detail"] == (
            f"{state / 'ledger.db'} does not exist ({shop.config_path}: ledger.url), and the first run cannot "
            f"create it (no permission to write in {state}): every run stops there until the user that runs cartrescue "
            "may write there")
        assert doctor.returncode == int(ExitCode.CONFIG), doctor.stderr
        run = _without_root_powers(shop, "run", "--outbox", str(shop.folder / "out"), "--json")
        assert run.returncode == int(ExitCode.CONFIG) and f"(no permission to write in {state})" in run.stderr
    finally:
        state.chmod(0o755)
    assert _without_root_powers(shop, "doctor", "--no-smtp", "--json").returncode == 5  # writable: only staleness


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux's setpriv (to be refused as a user is)")
def test_a_ledger_file_the_run_may_not_write_fails_the_doctor_naming_the_file(shop: Shop, tmp_path: Path) -> None:
    """The ledger left by a first run as root (0644), cron running as another user: every run
    stopped at its first write (exit 2, "attempt to write a readonly database") while the
    doctor, which only reads it, said the ledger was ok."""
    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    ledger = shop.folder / "ledger.db"
    ledger.chmod(0o444)
    try:
        doctor = _without_root_powers(shop, "doctor", "--no-smtp", "--json")
        found = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}["ledger"]
        assert found["status"] == FAIL and found["exit_code"] == int(ExitCode.CONFIG), found
        assert (f"no permission to read and write {ledger} ({shop.config_path}: ledger.url): every run stops at its "
                "first write (exit 2)") in found["detail"], found
        assert doctor.returncode == int(ExitCode.CONFIG), doctor.stderr
        run = _without_root_powers(shop, "run", "--outbox", str(tmp_path / "out2"), "--json")
        assert run.returncode == int(ExitCode.CONFIG), run.stderr
    finally:
        ledger.chmod(0o644)
    assert _without_root_powers(shop, "doctor", "--no-smtp", "--json").returncode == 0


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux's setpriv (to be refused as a user is)")
def test_a_call_list_the_run_may_not_write_fails_the_doctor_naming_the_file(shop: Shop) -> None:
    """call-list.csv left owned by root (0644), cron running as another user: every call failed
    with "Permission denied" while the doctor found the list fine (it read only the header)."""
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls.csv"}).add(cart("c1")).write()
    path = shop.folder / "calls.csv"
    path.write_text("cart_id,phone\n", encoding="utf-8")
    path.chmod(0o444)
    found = _doctor_without_root_powers(shop)
    assert found["status"] == FAIL and found["exit_code"] == 1, found
    assert "call_list.path" in found["detail"] and str(path) in found["detail"], found["detail"]
    assert "no permission to write" in found["detail"], found["detail"]
    path.chmod(0o640)  # owned by the user that runs: fine again
    assert _doctor_without_root_powers(shop)["status"] == OK


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux's setpriv (to be refused as a user is)")
def test_a_call_list_the_run_may_not_create_fails_the_doctor_naming_the_folder(shop: Shop) -> None:
    """No list yet, in a folder the run may not write in: the first call fails, and every one after."""
    folder = shop.folder / "calls"
    folder.mkdir()
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls/calls.csv"}).add(cart("c1")).write()
    folder.chmod(0o555)
    found = _doctor_without_root_powers(shop)
    assert found["status"] == FAIL and found["exit_code"] == 1, found
    assert str(folder) in found["detail"] and "no permission to create" in found["detail"], found["detail"]
    (shop.folder / "calls").chmod(0o755)
    (shop.folder / "calls").rmdir()  # a missing folder is made by the first call: fine
    assert _doctor_without_root_powers(shop)["status"] == OK


def test_a_call_list_whose_header_lacks_the_phone_column_fails_the_doctor_naming_the_expected_header(
        shop: Shop) -> None:
    """Staff deleted the phone column: the doctor found the header a call list's (it names
    cart_id), and every run appended calls nobody could make, recorded sent."""
    from cartrescue.channels.call_list import COLUMNS

    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls.csv"}).add(cart("c1"))
    (shop.folder / "calls.csv").write_text("cart_id,first_name,last_name,email\n", encoding="utf-8")
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    found = checks(result)["call-list"]
    assert found["status"] == FAIL and found["exit_code"] == 1, found
    path = shop.folder / "calls.csv"
    assert found["detail"].startswith(f"{shop.config_path}: call_list.path: {path}: no row added, its header "
                                      "lacks phone: 'cart_id,first_name,last_name,email'; "), found["detail"]
    assert ",".join(COLUMNS) in found["detail"]
    (path).write_text(",".join(reversed(COLUMNS)) + "\n", encoding="utf-8")  # another order is fine
    path.chmod(0o600)  # as cartrescue makes one (one every user may read is a warning)
    assert checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["call-list"]["status"] == OK


def test_the_quiet_line_of_a_broken_yaml_config_names_it_once_and_keeps_its_line(shop: Shop) -> None:
    """The YAML error names its config with the line (``a.yaml:2: not valid YAML``): the quiet
    line read ``a.yaml: config failed: a.yaml:2: not valid YAML …``, the config twice."""
    shop.write()
    shop.config_path.write_text("shop:\n  name: [unclosed\nsource: {}\n", encoding="utf-8")
    from conftest import cli

    result = cli("doctor", "--no-smtp", "--quiet", "--config", str(shop.config_path))
    assert result.exit_code == ExitCode.CONFIG, result.output
    (line,) = [line for line in result.stdout.splitlines() if " config failed: " in line]
    assert line.startswith(f"cartrescue doctor: {shop.config_path}: config failed: line 3: not valid YAML: "), line
    assert line.count(str(shop.config_path)) == 1, line


def test_the_quiet_line_of_a_failed_shop_database_names_the_config_once(shop: Shop) -> None:
    """The source check's detail names its type first (``magento2 source: a.yaml: source.url …``):
    the line read ``a.yaml: source failed: magento2 source: a.yaml: source.url …``."""
    shop.config = {**shop.config, "source": {"type": "magento2", "url": "sqlite:///no-such-shop.db"}}
    shop.write()
    from conftest import cli

    result = cli("doctor", "--no-smtp", "--quiet", "--config", str(shop.config_path))
    assert result.exit_code == ExitCode.SOURCE, result.output
    (line,) = [line for line in result.stdout.splitlines() if " source failed: " in line]
    assert line.startswith(f"cartrescue doctor: {shop.config_path}: source failed: magento2 source: source.url: "
                           "the SQLite file "), line
    assert line.count(str(shop.config_path)) == 1, line


def test_a_run_whose_every_sms_failed_asks_about_the_sms_gateway_not_the_relay(shop: Shop) -> None:
    """"is the relay refusing or deferring mail?" was asked of a run whose every SMS failed."""
    claim_c1(shop, "sms", "twilio", "+46701234567", failed=True)
    detail = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["staleness"]["detail"]
    assert "the last run delivered nothing (every delivery failed: is the SMS gateway refusing or deferring " \
           "messages? see `cartrescue report`)" in detail, detail
    assert "relay" not in detail


def test_runs_that_delivered_nothing_without_a_known_channel_ask_about_the_relay() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    verdict = staleness(now - timedelta(minutes=30), timedelta(hours=2), now, delivered_nothing=1)
    assert "is the relay refusing or deferring mail?" in verdict.detail


def test_a_secret_too_short_to_send_with_fails_the_config_check_as_every_sending_run_would(shop: Shop) -> None:
    """``run --send`` refuses an unsubscribe secret under 16 characters (exit 2), but ``doctor``
    said "config ok" and exit 0: cron's health check passed while every sending run stopped."""
    shop.configure(shop={"unsubscribe_secret": "Sh0rtS3c"}).add(cart("c1"))
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    config = checks(result)["config"]
    assert (config["status"], config["exit_code"]) == (FAIL, int(ExitCode.CONFIG))
    assert "shop.unsubscribe_secret: 8 characters, at least 16 needed" in config["detail"]
    assert "Sh0rtS3c" not in result.output


def test_one_unreadable_row_is_said_in_the_singular(shop: Shop) -> None:
    shop.add(cart("c1"), cart("c2", items=[("SKU-1", "Blue mug", "two", "25.00")]))
    detail = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["source"]["detail"]
    assert "; 1 unreadable row, first: " in detail, detail


def test_a_tier_no_cart_can_score_into_is_a_warning_of_the_config_check(shop: Shop) -> None:
    """``vip`` at 110 under the default weights (40, 25, 20, 15: 100 at most) never got a cart:
    its calls were never made, each run succeeded, and the doctor said all was well. The config
    check now warns, naming the key, its line and the scores the rules can give."""
    shop.add(cart("c1")).configure(priority={"tiers": [{"name": "vip", "min_score": 110},
                                                       {"name": "standard", "min_score": 0}]})
    config = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["config"]
    assert config["status"] == "warn", config
    assert (f"{shop.config_path}: priority.tiers[0].min_score: 110: no cart can get tier 'vip': the rules' weights "
            "give scores of 0, 15, 20, 25, 35, 40, 45, 55, 60, 65, 75, 80, 85, 100 only (priority.rules)") \
        in config["detail"], config


def test_tiers_every_cart_can_reach_add_no_warning_to_the_config_check(shop: Shop) -> None:
    shop.add(cart("c1")).configure(priority={"tiers": [{"name": "vip", "min_score": 100},
                                                       {"name": "standard", "min_score": 0}]})
    config = checks(shop.cli("doctor", "--no-smtp", "--json", now=None))["config"]
    assert "no cart can get tier" not in config["detail"], config
