"""Incentive codes: unique per recipient and step, allocated only on delivery, never reused."""

from __future__ import annotations

import contextlib
import csv
import email
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from email import policy
from pathlib import Path

import pytest
import shopdb
import yaml
from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError
from httpserver import Answer, WebhookReceiver
from smtpserver import Fault, LoopbackSMTP

from cartrescue.config import Config, ConfigError, load_config
from cartrescue.compose.incentives import (
    ALPHABET,
    MIN_LEFT_AT_RETRY,
    CodePoolEmpty,
    Codes,
    Imported,
    generate_code,
    placeholder,
)
from cartrescue.pool_file import read_pool_file
from cartrescue.ledger import Ledger
from conftest import NOW, REPO, Shop, cart

POOL = [f"POOL-{n:04}" for n in range(200)]


def _config(tmp_path: Path, pool_size: int = 200, **codes: object) -> Config:
    (tmp_path / "codes.txt").write_text("code\n# issued by the shop\n" + "\n".join(POOL[:pool_size]) + "\n\n",
                                        encoding="utf-8")
    source = codes or {"pool": "welcome", "file": "codes.txt"}
    raw = {
        "source": {"type": "csv", "carts": "carts.csv"},
        "ledger": {"url": "sqlite:///ledger.db"},
        "priority": {"tiers": [{"name": "high", "min_score": 50}, {"name": "standard", "min_score": 0}]},
        "sequences": {"default": {"steps": [
            {"delay": "1h", "template": "reminder-3",
             "incentive": {"kind": "percent", "value": 10, "valid_for": "3d", "codes": source},
             "tier_incentives": {"high": {"kind": "percent", "value": 15, "valid_for": "2d",
                                          "codes": {"pool": "vip", "pattern": "VIP-{random:8}"}}}},
        ]}},
    }
    path = tmp_path / "cartrescue.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(path)


def _codes(config: Config) -> Codes:
    return Codes(config, Ledger(config.ledger_url))


def _allocation(codes: Codes, pool: str, claim: int, now: datetime = NOW) -> tuple[str, str]:
    code, expires = codes.allocate(pool, claim, cart_key=f"csv:{claim}", email=f"p{claim}@example.com", step=1,
                                   now=now)
    return code, expires.isoformat()


def _allocate(codes: Codes, pool: str, claim: int) -> str:
    return _allocation(codes, pool, claim)[0]


# -- codes and config -------------------------------------------------------------------------

def test_generated_codes_follow_the_pattern_with_unambiguous_characters() -> None:
    made = {generate_code("CR-{random:8}") for _ in range(2000)}
    assert len(made) == 2000
    for code in made:
        assert code.startswith("CR-") and len(code) == 11 and set(code[3:]) <= set(ALPHABET)
    assert not set("".join(made)) & set("01IO")
    assert generate_code("{random:6}-X-{random:6}")[6:9] == "-X-"


def test_a_dry_run_shows_a_placeholder(tmp_path: Path) -> None:
    config = _config(tmp_path)
    step = config.sequences["default"].steps[0]
    assert placeholder(step.incentive.codes) == "XXXXXXXX"
    assert placeholder(step.tier_incentives["high"].codes) == "VIP-XXXXXXXX"


@pytest.mark.parametrize(
    "incentive,message",
    [
        ({"kind": "percent", "codes": {"pool": "x", "pattern": "CR-NOPLACEHOLDER"}}, "random:N"),
        ({"kind": "percent", "codes": {"pool": "x", "pattern": "CR-{random:4}"}}, "N >= 6"),
        ({"kind": "percent", "codes": {"pool": "x", "pattern": "CR-{random:8}", "file": "c.txt"}}, "exactly one"),
        ({"kind": "percent", "codes": {"pool": "x"}}, "exactly one"),
        ({"kind": "percent", "code": "SHARED", "codes": {"pool": "x", "file": "c.txt"}}, "not both"),
        ({"kind": "percent", "codes": {"pool": "Bad Name", "file": "c.txt"}}, "lower-case name"),
    ],
)
def test_bad_code_sources_are_config_errors(tmp_path: Path, incentive: dict, message: str) -> None:
    path = tmp_path / "cartrescue.yaml"
    path.write_text(yaml.safe_dump({"source": {"type": "csv", "carts": "c.csv"}, "sequences": {"default": {
        "steps": [{"delay": "1h", "template": "reminder-3", "incentive": incentive}]}}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "sequences.default.steps[0].incentive" in str(info.value)


def test_one_pool_is_one_offer_and_tier_incentives_name_known_tiers(tmp_path: Path) -> None:
    def write(steps: list[dict]) -> Path:
        path = tmp_path / "cartrescue.yaml"
        path.write_text(yaml.safe_dump({"source": {"type": "csv", "carts": "c.csv"},
                                        "sequences": {"default": {"steps": steps}}}), encoding="utf-8")
        return path

    codes = {"pool": "p", "file": "c.txt"}
    with pytest.raises(ConfigError, match="code pool 'p' is used by"):
        load_config(write([{"delay": "1h", "template": "reminder-1", "incentive": {"kind": "percent", "value": 10, "codes": codes}},
                           {"delay": "2h", "template": "reminder-3", "incentive": {"kind": "percent", "value": 20, "codes": codes}}]))
    with pytest.raises(ConfigError, match="unknown tier 'gold'"):
        load_config(write([{"delay": "1h", "template": "reminder-3", "tier_incentives": {"gold": None}}]))


POOL_FILE_FAULTS = {
    "missing": (None, "cannot read the code pool: No such file or directory"),
    "a code with a space": (b"AAA-1\nhas space\n", ":2: not a code (at most 64 characters, no spaces)"),
    "not UTF-8": ("RABATT-\u00c41\n".encode("latin-1"), ":1: not UTF-8 text"),
}


@pytest.mark.parametrize("fault", POOL_FILE_FAULTS)
@pytest.mark.parametrize("command", [["run"], ["doctor", "--no-smtp"], ["templates", "check", "--quick"]])
def test_a_missing_or_malformed_pool_file_fails_at_config_load_naming_the_key_and_the_file(
        shop: Shop, fault: str, command: list[str]) -> None:
    """It passed config load, doctor and templates check; only a delivering run found it, cart by cart."""
    content, message = POOL_FILE_FAULTS[fault]
    folder = shop.folder / "pools"
    folder.mkdir()
    if content is not None:
        (folder / "codes.txt").write_bytes(content)
    shop.add(cart("c1")).configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3", "incentive": {"kind": "percent", "value": 10,
                                                               "codes": {"pool": "welcome", "file": "pools/codes.txt"}}}]}})
    result = shop.cli(*command, "--json", now=None)
    assert result.exit_code == 2, result.output
    text = result.json["error"]["message"] if "error" in result.json else \
        {check["name"]: check for check in result.json["checks"]}["config"]["detail"]
    assert text.startswith(f"{shop.config_path}: sequences.default.steps[0].incentive.codes.file: "
                           f"{folder / 'codes.txt'}"), text  # resolved beside the config, not the cwd
    assert message in text


def test_a_tier_incentives_pool_file_is_checked_at_config_load_too(shop: Shop) -> None:
    shop.add(cart("c1")).configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3", "tier_incentives": {"standard": {
            "kind": "percent", "value": 10, "codes": {"pool": "welcome", "file": "absent.txt"}}}}]}})
    result = shop.cli("run", "--json")
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"].startswith(
        f"{shop.config_path}: sequences.default.steps[0].tier_incentives.standard.codes.file: "
        f"{shop.folder / 'absent.txt'}: cannot read the code pool")


def test_the_pool_file_reader_skips_header_comments_and_blanks_and_rejects_garbage(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("\ufeffcode\n# comment\nAAA-1\n\nBBB-2,extra column\n", encoding="utf-8")
    assert read_pool_file(good) == ["AAA-1", "BBB-2"]
    bad = tmp_path / "bad.txt"
    bad.write_text("AAA-1\nhas space\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.txt:2: not a code"):
        read_pool_file(bad)


def test_a_pool_file_with_quoted_cells_gives_the_codes_without_their_quotes(tmp_path: Path) -> None:
    """A CSV the shop's platform or a spreadsheet exported quotes its cells: ``"SAVE-1","0"``.
    The quotes were kept, ``"SAVE-1"`` handed out (a code no shop takes) and the quoted header
    ``"Code"`` imported as a code."""
    quoted = tmp_path / "codes.csv"
    quoted.write_text('"Code","Usage Count"\r\n"SAVE-1","0"\r\n"SAVE,2","0"\r\n', encoding="utf-8")
    assert read_pool_file(quoted) == ["SAVE-1", "SAVE,2"]


def test_a_pool_file_whose_header_names_a_code_column_gives_that_column(tmp_path: Path) -> None:
    """A discount export (Shopify's through an export app: ``ID,Title,Code,Used Count``) has its
    codes in its ``Code`` column. The first column was read: the header ``ID`` and the discount's
    id handed out as codes, which no checkout takes."""
    export = tmp_path / "discounts.csv"
    export.write_text("ID,Title,Code,Used Count\n1192,Come back,BACK-1,0\n1192,Come back,BACK-2,0\n", encoding="utf-8")
    assert read_pool_file(export) == ["BACK-1", "BACK-2"]



@pytest.mark.parametrize("before", ["\ufeff\r\n", "# discount codes, exported 2026-11-01\n", "\n \n"])
def test_a_pool_files_header_under_blank_lines_or_a_comment_is_no_code(tmp_path: Path, before: str) -> None:
    """The header was read from the first line only: under a blank line or a comment it was none,
    the word ``Code`` was handed out as a customer's code and the discount's ids as codes."""
    export = tmp_path / "discounts.csv"
    export.write_text(before + "ID,Title,Code\r\n1192,Come back,BACK-1\r\n\r\n1192,Come back,BACK-2\r\n",
                      encoding="utf-8", newline="")
    assert read_pool_file(export) == ["BACK-1", "BACK-2"]


def test_a_bad_code_under_a_pool_files_late_header_is_named_by_its_own_line(tmp_path: Path) -> None:
    bad = tmp_path / "codes.txt"
    bad.write_text("# from the shop\n\ncode\nAAA-1\nhas space\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"codes.txt:5: not a code"):
        read_pool_file(bad)

def test_a_pool_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """It was a UnicodeDecodeError: exit 70, "a bug in cartrescue", and in a run every cart of
    the step a render error that did not name the file."""
    latin = tmp_path / "codes.txt"
    latin.write_bytes("RABATT-Ä1\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"codes.txt:1: not UTF-8 text"):
        read_pool_file(latin)


# -- allocation -------------------------------------------------------------------------------

def test_a_pool_hands_out_each_code_once_then_refuses(tmp_path: Path) -> None:
    codes = _codes(_config(tmp_path, pool_size=5))
    got = [_allocate(codes, "welcome", claim) for claim in range(1, 6)]
    assert sorted(got) == POOL[:5]
    assert _allocate(codes, "welcome", 3) == got[2]  # the same claim again: the same code
    with pytest.raises(CodePoolEmpty, match="no unused code left"):
        _allocate(codes, "welcome", 6)
    assert codes.summary(NOW)["welcome"]["unused"] == 0


def test_importing_twice_adds_nothing(tmp_path: Path) -> None:
    codes = _codes(_config(tmp_path, pool_size=10))
    assert codes.import_file("welcome") == Imported(10, 10, 0, 0)
    assert codes.import_file("welcome") == Imported(10, 0, 0, 0)
    assert codes.count_free("welcome") == 10


@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_a_pool_file_code_written_twice_in_other_cases_is_one_code_given_once_on_every_ledger(
        tmp_path: Path, kind: str) -> None:
    """Shops take discount codes without case (Shopify, Magento, WooCommerce; the report matches
    them so): ``SAVE-1`` and ``save-1`` are one coupon. Imported as two, two customers got it."""
    config = _config(tmp_path)
    (tmp_path / "codes.txt").write_text("SAVE-1\nsave-1\nSAVE-2\n", encoding="utf-8")
    with _codes_on(kind, config) as codes:
        assert codes.import_file("welcome", NOW) == Imported(3, 2, 0, 0)
        given = [_allocate(codes, "welcome", claim) for claim in (1, 2)]
        assert sorted(given) == ["SAVE-1", "SAVE-2"]
        with pytest.raises(CodePoolEmpty):
            _allocate(codes, "welcome", 3)


def test_a_code_of_another_pool_file_in_other_case_is_not_imported_again(tmp_path: Path) -> None:
    """The ledger holds a code once; ``save-1`` of a second pool file is the first's ``SAVE-1``."""
    config = _config(tmp_path)
    (tmp_path / "codes.txt").write_text("SAVE-1\n", encoding="utf-8")
    codes = _codes(config)
    table = codes.table
    with codes.engine.begin() as conn:
        conn.execute(table.insert(), [dict(pool="other", code="save-1", origin="file", kind="percent", value="5",
                                           created_at=NOW)])
    assert codes.import_file("welcome", NOW) == Imported(1, 0, 0, 0)
    with pytest.raises(CodePoolEmpty):
        _allocate(codes, "welcome", 1)


def test_a_ledger_holding_a_code_in_two_cases_never_hands_out_the_twin_of_one_given(tmp_path: Path) -> None:
    """A ledger filled before the import knew the case of codes holds both spellings, one of
    them given to a customer: the other is withdrawn by the next import, never given to a second."""
    config = _config(tmp_path)
    (tmp_path / "codes.txt").write_text("SAVE-1\nsave-1\n", encoding="utf-8")
    codes = _codes(config)
    table = codes.table
    with codes.engine.begin() as conn:
        conn.execute(table.insert(), [dict(pool="welcome", code=code, origin="file", kind="percent", value="10",
                                           created_at=NOW) for code in ("SAVE-1", "save-1")])
        conn.execute(table.update().where(table.c.code == "save-1").values(claim_id=1, allocated_at=NOW))
    with pytest.raises(CodePoolEmpty):
        _allocate(codes, "welcome", 2)
    assert codes.summary(NOW)["welcome"]["withdrawn"] == 1


@contextlib.contextmanager
def _codes_on(kind: str, config: Config) -> Iterator[Codes]:
    """The config's pools on a ledger of ``kind``: its SQLite file, or a PostgreSQL or MariaDB
    database made for the test (and dropped after it)."""
    with contextlib.ExitStack() as stack:
        url = config.ledger_url if kind == "sqlite" else stack.enter_context(shopdb.shop_database(kind, "ledger")).url
        ledger = Ledger(url)
        stack.callback(ledger.close)
        yield Codes(config, ledger)


@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_a_code_taken_out_of_the_pool_file_is_withdrawn_and_never_allocated_on_every_ledger(
        tmp_path: Path, kind: str) -> None:
    with _codes_on(kind, _config(tmp_path, pool_size=6)) as codes:
        assert _allocate(codes, "welcome", 1) == "POOL-0000"
        (tmp_path / "codes.txt").write_text("POOL-0000\nPOOL-0004\n", encoding="utf-8")
        assert codes.import_file("welcome", NOW) == Imported(2, 0, 4, 0)
        assert _allocate(codes, "welcome", 2) == "POOL-0004"
        with pytest.raises(CodePoolEmpty):
            _allocate(codes, "welcome", 3)
        assert codes.count_free("welcome") == 0
        assert codes.summary(NOW)["welcome"] == {"unused": 0, "active": 0, "expired": 0, "undelivered": 2,
                                                 "withdrawn": 4}


# -- a retry after the code's expiry ------------------------------------------------------------
# The welcome pool's codes are valid 3 days: one allocated at NOW (the 20th) dies at the end of
# the 23rd (this config's shop is in UTC), 2026-11-24T00:00Z, i.e. NOW + 3 days 14 hours.
DEAD = NOW + timedelta(days=3, hours=14)


@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_a_claim_retried_after_its_code_expired_gets_a_fresh_code_valid_from_the_retry_on_every_ledger(
        tmp_path: Path, kind: str) -> None:
    with _codes_on(kind, _config(tmp_path, pool_size=6)) as codes:
        assert _allocation(codes, "welcome", 1, NOW) == ("POOL-0000", "2026-11-24T00:00:00+00:00")
        fresh = _allocation(codes, "welcome", 1, DEAD)
        assert fresh == ("POOL-0001", "2026-11-28T00:00:00+00:00")  # counted from the retry, as a first one
        assert _allocation(codes, "welcome", 1, DEAD + timedelta(hours=1)) == fresh  # idempotent again


def _held(codes: Codes, claim: int) -> tuple[list[str], list[str]]:
    """The codes the claim holds, and those a retry took off it (its ``replaced_claim_id``)."""
    table = codes.table
    with codes.engine.connect() as conn:
        held = conn.execute(select(table.c.code).where(table.c.claim_id == claim)).scalars().all()
        replaced = conn.execute(select(table.c.code).where(table.c.replaced_claim_id == claim)).scalars().all()
    return sorted(held), sorted(replaced)


@contextlib.contextmanager
def _failing_take(codes: Codes) -> Iterator[list[str]]:
    """The ledger's real engine, whose next statement giving a claim a code (the update of a free
    row, the insert of a generated one) fails in the database itself: it names a table that does
    not exist. A fault between taking the old code off the claim and giving it the new one.
    Yields the statements that were made to fail."""
    failed: list[str] = []

    def fault(conn: object, cursor: object, statement: str, params: object, context: object,
              executemany: bool) -> tuple[str, object]:
        if not failed and statement.startswith(("UPDATE cr_code SET claim_id=", "INSERT INTO cr_code ")) \
                and "allocated_at" in statement:
            failed.append(statement)
            statement = statement.replace(" cr_code", " cr_code_gone", 1)
        return statement, params

    event.listen(codes.engine, "before_cursor_execute", fault, retval=True)
    try:
        yield failed
    finally:
        event.remove(codes.engine, "before_cursor_execute", fault)


@pytest.mark.parametrize("pool", ["welcome", "vip"])  # a pool file's free code; a generated one
@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_a_database_error_while_a_retry_replaces_an_expired_code_leaves_the_claim_its_one_code_on_every_ledger(
        tmp_path: Path, kind: str, pool: str) -> None:
    with _codes_on(kind, _config(tmp_path, pool_size=6)) as codes:
        old = _allocate(codes, pool, 1)
        with _failing_take(codes) as failed, pytest.raises(DBAPIError):
            _allocation(codes, pool, 1, DEAD)
        assert failed, "the fault never fired"
        assert _held(codes, 1) == ([old], [])  # the replacement was undone with the failed allocation
        new = _allocation(codes, pool, 1, DEAD)[0]  # the next retry replaces it
        assert new != old and _held(codes, 1) == ([new], [old])


def test_a_retry_after_expiry_from_a_dry_pool_leaves_the_claim_its_old_code_until_codes_are_added(
        tmp_path: Path) -> None:
    codes = _codes(_config(tmp_path, pool_size=1))
    assert _allocate(codes, "welcome", 1) == "POOL-0000"
    with pytest.raises(CodePoolEmpty):
        _allocation(codes, "welcome", 1, DEAD)
    assert _held(codes, 1) == (["POOL-0000"], [])
    (tmp_path / "codes.txt").write_text("POOL-0000\nPOOL-0001\n", encoding="utf-8")
    codes.import_file("welcome", DEAD)  # as the next run does first
    assert _allocation(codes, "welcome", 1, DEAD + timedelta(hours=1))[0] == "POOL-0001"
    assert _held(codes, 1) == (["POOL-0001"], ["POOL-0000"])


def test_a_retry_keeps_a_code_with_a_day_left_and_replaces_one_in_its_last_hours(tmp_path: Path) -> None:
    """A 3-day code retried in its last hour would reach a customer who could not use it."""
    codes = _codes(_config(tmp_path, pool_size=6))
    first = _allocation(codes, "welcome", 1, NOW)  # works until DEAD
    assert _allocation(codes, "welcome", 1, DEAD - MIN_LEFT_AT_RETRY) == first
    fresh = _allocation(codes, "welcome", 1, DEAD - timedelta(hours=1))
    assert fresh == ("POOL-0001", "2026-11-27T00:00:00+00:00")  # 3 days from the retry, as a first one
    assert _held(codes, 1) == (["POOL-0001"], ["POOL-0000"])
    # the old code may be in the customer's mailbox, and works until its own end
    assert {row["code"]: row["status"] for row in codes.rows(DEAD - timedelta(hours=1))}["POOL-0000"] == "active"
    assert _allocation(codes, "welcome", 1, DEAD) == fresh  # the fresh code is kept in its turn


def test_a_retry_keeps_a_code_valid_less_than_a_day_while_its_whole_validity_is_left(tmp_path: Path) -> None:
    codes = _codes(_config(tmp_path, pool_size=6))

    def allocation(now: datetime) -> tuple[str, str]:
        code, expires = codes.allocate("welcome", 1, cart_key="csv:1", email="p1@example.com", step=1, now=now,
                                       valid_for=timedelta(hours=12))
        return code, expires.isoformat()

    first = allocation(NOW)  # 10:00 + 12 h is still the 20th: it works until midnight, 14 h
    assert first == ("POOL-0000", "2026-11-21T00:00:00+00:00")
    assert allocation(NOW + timedelta(hours=2)) == first  # 12 h left: the whole offer
    assert allocation(NOW + timedelta(hours=2, minutes=1)) == ("POOL-0001", "2026-11-22T00:00:00+00:00")


def test_a_code_replaced_on_a_retry_is_never_handed_out_again(tmp_path: Path) -> None:
    codes = _codes(_config(tmp_path, pool_size=2))
    assert _allocate(codes, "welcome", 1) == "POOL-0000"
    assert _allocation(codes, "welcome", 1, DEAD)[0] == "POOL-0001"
    assert codes.count_free("welcome") == 0
    with pytest.raises(CodePoolEmpty):
        _allocation(codes, "welcome", 2, DEAD)
    (tmp_path / "codes.txt").write_text("POOL-0000\nPOOL-0001\n", encoding="utf-8")  # still in the shop's file
    assert codes.import_file("welcome", DEAD) == Imported(2, 0, 0, 0)
    assert codes.count_free("welcome") == 0


def test_a_generated_code_replaced_on_a_retry_is_exported_with_its_own_expiry_beside_the_new_one(
        tmp_path: Path) -> None:
    """The shop imported the first code with its expiry; the export after the retry adds the new
    code with its own, and the old one (asked for with --all) still says when it died."""
    codes = _codes(_config(tmp_path))
    old, _ = _allocation(codes, "vip", 1, NOW)  # the vip offer is valid 2 days: the 22nd
    codes.mark_exported(codes.exportable(NOW), NOW)
    new, _ = _allocation(codes, "vip", 1, DEAD)
    assert new != old

    def exported(rows: list[dict]) -> set[tuple[str, str, str]]:
        return {(row["code"], row["status"], row["expires_at"]) for row in rows}

    assert exported(codes.exportable(DEAD)) == {(new, "undelivered", "2026-11-27T00:00:00Z")}
    assert exported(codes.exportable(DEAD, include_exported=True)) == {
        (old, "expired", "2026-11-23T00:00:00Z"), (new, "undelivered", "2026-11-27T00:00:00Z")}


def test_an_older_ledger_without_the_replacement_column_gets_it_when_it_opens(tmp_path: Path) -> None:
    config = _config(tmp_path, pool_size=6)
    Ledger(config.ledger_url).close()
    with contextlib.closing(sqlite3.connect(tmp_path / "ledger.db")) as db:  # as cartrescue before it made one
        db.execute("ALTER TABLE cr_code DROP COLUMN replaced_claim_id")
        db.execute("PRAGMA user_version = 1")  # an older cartrescue's (no stamp of this version's schema)
        db.commit()
    codes = _codes(config)
    assert _allocate(codes, "welcome", 1) == "POOL-0000"
    assert _allocation(codes, "welcome", 1, DEAD)[0] == "POOL-0001"
    assert {row["code"]: row["status"] for row in codes.rows(DEAD)}["POOL-0000"] == "expired"


def test_a_pattern_pool_uses_pre_generated_codes_first_then_makes_new_ones(tmp_path: Path) -> None:
    codes = _codes(_config(tmp_path))
    ahead = codes.generate("vip", 3)
    got = [_allocate(codes, "vip", claim) for claim in range(1, 6)]
    assert got[:3] == ahead and len(set(got)) == 5
    assert all(code.startswith("VIP-") for code in got)
    with pytest.raises(ConfigError, match="comes from a file"):
        codes.generate("welcome", 1)


def test_a_collision_of_generated_codes_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cartrescue.compose.incentives as incentives

    sequence = iter(["VIP-AAAAAAAA", "VIP-AAAAAAAA", "VIP-AAAAAAAA", "VIP-BBBBBBBB"])
    monkeypatch.setattr(incentives, "generate_code", lambda pattern: next(sequence))
    codes = _codes(_config(tmp_path))
    assert [_allocate(codes, "vip", 1), _allocate(codes, "vip", 2)] == ["VIP-AAAAAAAA", "VIP-BBBBBBBB"]


def test_threads_allocating_at_once_never_share_a_code(tmp_path: Path) -> None:
    config = _config(tmp_path, pool_size=120)
    codes = _codes(config)
    codes.import_file("welcome")

    def take(claim: int) -> str | None:
        try:
            return _allocate(codes, "welcome" if claim % 2 else "vip", claim)
        except CodePoolEmpty:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(take, range(1, 401)))
    pooled = [r for claim, r in zip(range(1, 401), results) if claim % 2]
    generated = [r for claim, r in zip(range(1, 401), results) if not claim % 2]
    assert sorted(r for r in pooled if r is not None) == sorted(POOL[:120])  # 200 asked, 120 exist
    assert pooled.count(None) == 80
    assert None not in generated and len(set(generated)) == 200


_WORKER = """
import json, sys, time
from cartrescue.config import load_config
from cartrescue.compose.incentives import CodePoolEmpty, Codes
from cartrescue.ledger import Ledger
from datetime import datetime, timezone
config = load_config(sys.argv[1])
codes = Codes(config, Ledger(config.ledger_url))
pool, first, count, start = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
while time.time() < start:
    time.sleep(0.001)
got = {}
for claim in range(first, first + count):
    try:
        got[claim] = codes.allocate(pool, claim, cart_key=f"csv:{claim}", email=None, step=1,
                                    now=datetime.now(timezone.utc))[0]
    except CodePoolEmpty:
        got[claim] = None
print(json.dumps(got))
"""


def _race(config: Config, pool: str, count: int) -> dict[int, str | None]:
    start = time.time() + 2.0  # both processes have imported everything by then
    processes = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(config.base_dir / "cartrescue.yaml"), pool,
                          str(first), str(count), str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=REPO)
        for first in (1, 100_001)
    ]
    results: dict[int, str | None] = {}
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.update({int(k): v for k, v in json.loads(out).items()})
    return results


@pytest.mark.slow
def test_two_processes_allocating_from_one_pool_never_share_a_code(tmp_path: Path) -> None:
    config = _config(tmp_path, pool_size=200)
    results = _race(config, "welcome", 150)  # 300 asked for, 200 exist
    given = [code for code in results.values() if code is not None]
    assert sorted(given) == sorted(POOL)
    assert Counter(code is None for code in results.values()) == {False: 200, True: 100}
    both = {claim > 100_000 for claim, code in results.items() if code is not None}
    assert both == {True, False}  # each process won some: they really raced
    rows = list(_codes(config).rows(NOW, statuses=("undelivered",)))
    assert len(rows) == 200 and len({r["cart_key"] for r in rows}) == 200


@pytest.mark.slow
def test_two_processes_generating_codes_never_share_one(tmp_path: Path) -> None:
    config = _config(tmp_path)
    results = _race(config, "vip", 200)
    assert None not in results.values() and len(set(results.values())) == 400



@pytest.mark.slow
def test_codes_generate_lets_a_run_record_its_claims_while_it_makes_many_codes(tmp_path: Path) -> None:
    """One transaction for every code held the SQLite ledger's write lock as long as the command
    ran: a run delivering meanwhile could not record its claims and stopped, exit 2."""
    codes = _codes(_config(tmp_path))
    made: list[list[str]] = []
    generating = threading.Thread(target=lambda: made.append(codes.generate("vip", 20_000)))
    generating.start()
    try:
        time.sleep(0.3)
        writer = sqlite3.connect(tmp_path / "ledger.db", timeout=3, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # the write lock a run's claim takes
        still_generating = generating.is_alive()
        writer.execute("ROLLBACK")
        writer.close()
    finally:
        generating.join()
    assert still_generating, "the write lock was free only once every code was made"
    assert len(made[0]) == 20_000 and codes.count_free("vip") == 20_000

@pytest.mark.slow
def test_codes_import_lets_a_run_record_its_claims_while_it_reads_a_large_pool_file(tmp_path: Path) -> None:
    """One transaction for a whole pool file held the SQLite ledger's write lock until the last
    code was in (over 30 s for 400,000): a run delivering meanwhile could not record its claims.
    A writer that asks for the lock again and again while 60,000 codes go in gets it each time."""
    codes = _codes(_config(tmp_path))
    (tmp_path / "codes.txt").write_text("\n".join(f"BULK-{n:07}" for n in range(60_000)) + "\n", encoding="utf-8")
    imported: list[object] = []
    importing = threading.Thread(target=lambda: imported.append(codes.import_file("welcome")))
    writer = sqlite3.connect(tmp_path / "ledger.db", timeout=3, isolation_level=None)
    refused: list[str] = []
    tries = 0
    importing.start()
    try:
        while importing.is_alive():
            try:
                writer.execute("BEGIN IMMEDIATE")  # the write lock a run's claim takes
                writer.execute("ROLLBACK")
                tries += 1
            except sqlite3.OperationalError as error:
                refused.append(str(error))
            time.sleep(0.05)
    finally:
        importing.join()
        writer.close()
    assert refused == [] and tries > 1
    assert imported[0] == Imported(60_000, 60_000, 0, 0) and codes.count_free("welcome") == 60_000


# -- through a run -----------------------------------------------------------------------------

def _incentive_shop(shop: Shop, carts: int = 12, pool: int = 50) -> Shop:
    (shop.folder / "codes.txt").write_text("\n".join(POOL[:pool]) + "\n", encoding="utf-8")
    shop.add(*(cart(f"c{i:03}") for i in range(carts)))
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3",
         "incentive": {"kind": "percent", "value": 10, "valid_for": "3d", "codes": {"pool": "welcome", "file": "codes.txt"}}},
        {"delay": "2d", "template": "reminder-3",
         "incentive": {"kind": "free_shipping", "valid_for": "5d", "codes": {"pool": "ship", "pattern": "SHIP-{random:6}"}}},
    ]}})
    return shop


def _texts(outbox: Path) -> dict[str, str]:
    found = {}
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        found[path.name] = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return found


def test_a_delivered_message_carries_its_own_code_and_expiry(shop: Shop) -> None:
    _incentive_shop(shop)
    outbox = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(outbox), "--json")
    assert result.exit_code == 0, result.output
    texts = _texts(outbox)
    assert len(texts) == 12
    shown = {name: next(code for code in POOL if code in text) for name, text in texts.items()}
    assert len(set(shown.values())) == 12  # one code per recipient
    assert all("November 23, 2026" in text for text in texts.values())  # NOW + 3 days, in English
    codes = _codes(load_config(shop.config_path))
    active = list(codes.rows(NOW, statuses=("active",)))
    assert sorted(r["code"] for r in active) == sorted(shown.values())
    # The message says "valid until November 23": the code works to the end of that day in the
    # shop's timezone (midnight in Stockholm), not only to the hour it was sent.
    assert {r["expires_at"] for r in active} == {"2026-11-23T23:00:00Z"}
    assert {r["status"] for r in codes.rows(NOW + timedelta(days=3, hours=12), statuses=("active",))} == {"active"}
    for name, code in shown.items():  # the file is the cart's; the ledger row says the same cart
        row = next(r for r in active if r["code"] == code)
        assert row["cart_key"].replace(":", "_") in name and row["step"] == 1

    # Step 2 two days later: a generated code from the other pool, a new one for each recipient.
    later = shop.cli("run", "--outbox", str(outbox), "--json", now=NOW + timedelta(days=2, hours=2))
    assert later.exit_code == 0, later.output
    step2 = {n: t for n, t in _texts(outbox).items() if "-step2-" in n}
    assert len(step2) == 12
    generated = [line.split(": ")[1] for text in step2.values() for line in text.splitlines()
                 if line.startswith("Your code: ")]
    assert len(generated) == 12 and len(set(generated)) == 12 and all(c.startswith("SHIP-") for c in generated)


#: 00:30 in Stockholm on Saturday 24 October 2026: the clocks go back on the Sunday (a 25-hour day).
BEFORE_CLOCKS_GO_BACK = datetime.fromisoformat("2026-10-23T22:30:00+00:00")


def test_a_code_given_the_night_before_the_clocks_go_back_is_valid_to_the_day_of_delivery_plus_valid_for(
        shop: Shop) -> None:
    _incentive_shop(shop, carts=0)
    shop.add(cart("c-dst", now=BEFORE_CLOCKS_GO_BACK))
    outbox = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(outbox), "--json", now=BEFORE_CLOCKS_GO_BACK)
    assert result.exit_code == 0, result.output
    [text] = _texts(outbox).values()
    assert "October 27, 2026" in text  # 24 October + 3d; 72 hours alone end on the 26th at 23:30
    [row] = _codes(load_config(shop.config_path)).rows(BEFORE_CLOCKS_GO_BACK, statuses=("active",))
    assert row["expires_at"] == "2026-10-27T23:00:00Z"  # midnight in Stockholm (CET) after the 27th


def test_a_shared_code_shown_the_night_before_the_clocks_go_back_is_valid_to_the_day_of_delivery_plus_valid_for(
        shop: Shop) -> None:
    shop.add(cart("c-dst", now=BEFORE_CLOCKS_GO_BACK))
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": {
        "kind": "percent", "value": 10, "valid_for": "3d", "code": "COMEBACK10"}}]}})
    result = shop.cli("run", "--eml", str(shop.folder / "look"), "--json", now=BEFORE_CLOCKS_GO_BACK)
    assert result.exit_code == 0, result.output
    [text] = _texts(shop.folder / "look").values()
    assert "COMEBACK10" in text and "October 27, 2026" in text

def test_a_code_expires_on_the_day_its_own_message_shows_when_offers_share_a_pool(shop: Shop) -> None:
    """One pool, a tier's offer valid 7 days and the step's 1 day: every code got the first
    definition's expiry, and a message that said "November 27" carried a code dead on the 21st."""
    (shop.folder / "codes.txt").write_text("\n".join(POOL[:10]) + "\n", encoding="utf-8")
    shop.add(cart("big", items=(("SKU-9", "Sofa", 1, "900.00"),)), cart("small"))
    offer = {"kind": "percent", "value": 10, "codes": {"pool": "welcome", "file": "codes.txt"}}
    shop.configure(priority={"tiers": [{"name": "high", "min_score": 35}, {"name": "standard", "min_score": 0}]},
                   sequences={"default": {"steps": [{
                       "delay": "1h", "template": "reminder-3", "incentive": {**offer, "valid_for": "1d"},
                       "tier_incentives": {"high": {**offer, "valid_for": "7d"}}}]}})
    outbox = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(outbox)).exit_code == 0
    expiry = {row["cart_key"]: row["expires_at"]
              for row in _codes(load_config(shop.config_path)).rows(NOW, statuses=("active",))}
    assert expiry == {"csv:big": "2026-11-27T23:00:00Z", "csv:small": "2026-11-21T23:00:00Z"}
    texts = {name.split("-step")[0]: text for name, text in _texts(outbox).items()}
    assert "November 27, 2026" in texts["csv_big"] and "November 21, 2026" in texts["csv_small"]


@pytest.mark.smtp
@pytest.mark.parametrize(("fault", "status", "options"), [
    ("451 4.7.1 try again later", "failed_transient", ()),  # the next run sends it
    ("drop-after-data", "unconfirmed", ("--resend-unconfirmed",)),  # sent again on request
])
def test_a_message_sent_again_a_day_later_shows_the_expiry_its_code_was_given(
        shop: Shop, fault: str, status: str, options: tuple[str, ...]) -> None:
    """The code was given on the 20th, valid 3 days: it dies at the end of the 23rd, whatever day
    its message finally goes out. The message said "November 24" when sent a day later."""
    _incentive_shop(shop, carts=1, pool=5)
    with _failed_first_attempt(shop, fault) as server:
        assert [m["status"] for m in shop.messages()] == [status]
        later = shop.cli("run", "--send", "--json", *options, now=NOW + timedelta(days=1))
        assert later.json["counts"]["deliveries"] == {"sent": 1}, later.output
    text = _last_text(server)
    (row,) = _codes(load_config(shop.config_path)).rows(NOW, statuses=("active",))
    assert row["code"] in text and row["expires_at"] == "2026-11-23T23:00:00Z"
    assert "November 23, 2026" in text and "November 24" not in text


def test_a_webhook_posted_again_a_day_later_carries_the_expiry_its_code_was_given(shop: Shop) -> None:
    _incentive_shop(shop, carts=1, pool=5)
    with WebhookReceiver("whsec-" + "k" * 30) as receiver:
        shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                       webhook={"url": receiver.url, "secret": "whsec-" + "k" * 30, "retries": 0})
        receiver.plan(Answer(503, b"maintenance"))
        assert shop.cli("run", "--send").exit_code == 1
        later = shop.cli("run", "--send", "--json", now=NOW + timedelta(days=1))
        assert later.json["counts"]["deliveries"] == {"sent": 1}, later.output
        (document,) = receiver.accepted.values()
    (row,) = _codes(load_config(shop.config_path)).rows(NOW, statuses=("active",))
    assert document["incentive"]["code"] == row["code"]
    assert document["incentive"]["expires_at"] == row["expires_at"] == "2026-11-23T23:00:00Z"
    assert "November 23, 2026" in document["text"]


# A code valid 1 day, given on the 20th, dies at the end of the 21st; the retry on the 22nd (within
# a backfill of 5 days) needs a new one, valid to the end of the 23rd.
RETRY = NOW + timedelta(days=2)


def _one_day_shop(shop: Shop, pool: int = 5) -> Shop:
    (shop.folder / "codes.txt").write_text("\n".join(POOL[:pool]) + "\n", encoding="utf-8")
    shop.add(cart("c000"))
    shop.configure(eligibility={"backfill": "5d"}, sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3",
         "incentive": {"kind": "percent", "value": 10, "valid_for": "1d", "codes": {"pool": "welcome", "file": "codes.txt"}}},
    ]}})
    return shop


@contextlib.contextmanager
def _failed_first_attempt(shop: Shop, fault: str = "451 4.7.1 try again later") -> Iterator[LoopbackSMTP]:
    """A loopback relay whose answer to c000's first message is ``fault``; that run made, at NOW."""
    with LoopbackSMTP(faults=[Fault(r"^c000@", fault, stage="DATA", times=1)]) as server:
        shop.configure(smtp=server.smtp_config(retries=0))
        shop.cli("run", "--send")
        yield server


def _last_text(server: LoopbackSMTP) -> str:
    return server.messages[-1].parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr,no-any-return]


@pytest.mark.smtp
@pytest.mark.parametrize(("fault", "status", "options"), [
    ("451 4.7.1 try again later", "failed_transient", ()),
    ("drop-after-data", "unconfirmed", ("--resend-unconfirmed",)),
])
def test_a_message_retried_after_its_code_expired_carries_a_fresh_code_and_a_future_expiry(
        shop: Shop, fault: str, status: str, options: tuple[str, ...]) -> None:
    _one_day_shop(shop)
    with _failed_first_attempt(shop, fault) as server:
        assert [m["status"] for m in shop.messages()] == [status]
        later = shop.cli("run", "--send", "--json", *options, now=RETRY)
        assert later.json["counts"]["deliveries"] == {"sent": 1}, later.output
    text = _last_text(server)
    assert "POOL-0001" in text and "POOL-0000" not in text
    assert "November 23, 2026" in text and "November 21" not in text
    (row,) = _codes(load_config(shop.config_path)).rows(RETRY, statuses=("active",))
    assert (row["code"], row["expires_at"]) == ("POOL-0001", "2026-11-23T23:00:00Z")


@pytest.mark.smtp
def test_a_message_retried_in_the_last_hour_of_its_code_carries_a_fresh_code(shop: Shop) -> None:
    _one_day_shop(shop)  # c000's code, given at NOW, works to the end of the 21st in Stockholm
    with _failed_first_attempt(shop) as server:
        later = shop.cli("run", "--send", "--json", now=datetime.fromisoformat("2026-11-21T22:30:00+00:00"))
        assert later.json["counts"]["deliveries"] == {"sent": 1}, later.output
    text = _last_text(server)
    assert "POOL-0001" in text and "POOL-0000" not in text
    assert "November 22, 2026" in text and "November 21" not in text


@pytest.mark.smtp
def test_the_code_a_retry_replaced_lists_as_expired(shop: Shop) -> None:
    _one_day_shop(shop)
    with _failed_first_attempt(shop):
        assert shop.cli("run", "--send", now=RETRY).exit_code == 0
    listed = shop.cli("codes", "list", "--status", "all", "--json", now=RETRY)
    assert {row["code"]: (row["status"], row["email"], row["expires_at"]) for row in listed.json["codes"]
            if row["status"] != "unused"} == {
        "POOL-0000": ("expired", "c000@example.com", "2026-11-21T23:00:00Z"),
        "POOL-0001": ("active", "c000@example.com", "2026-11-23T23:00:00Z")}


def test_a_webhook_retried_after_its_code_expired_carries_the_fresh_codes_expiry(shop: Shop) -> None:
    _one_day_shop(shop)
    with WebhookReceiver("whsec-" + "k" * 30) as receiver:
        shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                       webhook={"url": receiver.url, "secret": "whsec-" + "k" * 30, "retries": 0})
        receiver.plan(Answer(503, b"maintenance"))
        assert shop.cli("run", "--send").exit_code == 1
        later = shop.cli("run", "--send", "--json", now=RETRY)
        assert later.json["counts"]["deliveries"] == {"sent": 1}, later.output
        (document,) = receiver.accepted.values()
    assert document["incentive"]["code"] == "POOL-0001"
    assert document["incentive"]["expires_at"] == "2026-11-23T23:00:00Z"
    assert "November 23, 2026" in document["text"]


@pytest.mark.smtp
def test_a_retry_after_expiry_waits_as_failed_transient_while_the_pool_is_dry(shop: Shop) -> None:
    _one_day_shop(shop, pool=1)
    with _failed_first_attempt(shop) as server:
        dry = shop.cli("run", "--send", "--json", now=RETRY)
        assert dry.exit_code == 1 and dry.json["counts"]["deliveries"] == {"failed_transient": 1}, dry.output
        assert not server.messages
        (shop.folder / "codes.txt").write_text("POOL-0000\nPOOL-0001\n", encoding="utf-8")
        later = shop.cli("run", "--send", "--json", now=RETRY + timedelta(hours=1))
        assert later.json["counts"]["deliveries"] == {"sent": 1}, later.output
    assert "POOL-0001" in _last_text(server)


@pytest.mark.smtp
def test_forget_keeps_a_code_a_retry_replaced_spent(shop: Shop) -> None:
    """The replaced code may have reached the customer (an unconfirmed delivery): never freed."""
    _one_day_shop(shop, pool=3)
    with _failed_first_attempt(shop, "drop-after-data"):
        assert shop.cli("run", "--send", "--resend-unconfirmed", now=RETRY).exit_code == 0
    result = shop.cli("forget", "c000@example.com", "--json", now=None)
    assert (result.json["codes_kept"], result.json["codes_freed"]) == (2, 0), result.output
    codes = _codes(load_config(shop.config_path))
    assert codes.count_free("welcome") == 1
    assert {row["code"]: row["email"] for row in codes.rows(RETRY) if row["status"] != "unused"} == {
        "POOL-0000": None, "POOL-0001": None}


def test_a_dry_run_and_a_preview_allocate_nothing(shop: Shop) -> None:
    _incentive_shop(shop)
    assert shop.cli("run", "--json").exit_code == 0
    assert shop.cli("carts", "--json").exit_code == 0
    preview = shop.cli("preview", "c001", "--json")
    assert preview.exit_code == 0, preview.output
    assert "Your code: XXXXXXXX" in preview.json["text"]
    codes = _codes(load_config(shop.config_path))
    assert not list(codes.rows(NOW, statuses=("active", "expired", "undelivered")))


def test_an_empty_pool_fails_the_message_and_never_sends_it_without_a_code(shop: Shop) -> None:
    _incentive_shop(shop, carts=5, pool=3)
    outbox = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(outbox), "--json")
    assert result.exit_code == 1  # some carts failed
    assert result.json["counts"]["sent"] == 3 and result.json["counts"]["failed"] == 2
    failed = [m for m in Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").messages() if m["status"] != "sent"]
    assert len(failed) == 2 and all("no unused code left" in m["reply"] for m in failed)
    assert len(list(outbox.glob("*.eml"))) == 3
    [(why, count)] = result.json["counts"]["failures"].items()
    assert count == 2 and "code pool 'welcome' has no unused code left" in why


def test_a_dry_pool_is_a_transient_failure_and_the_carts_go_out_once_codes_are_added(shop: Shop) -> None:
    """Not a template problem: the delivery is `failed_transient` (as the ledger records it),
    the run exits 1, and the next run after the shop adds codes sends those carts."""
    _incentive_shop(shop, carts=5, pool=3)
    outbox = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(outbox), "--json")
    assert result.exit_code == 1
    deliveries = Counter(row["delivery"] for row in result.json["decisions"])
    assert deliveries == {"sent": 3, "failed_transient": 2}
    assert result.json["counts"]["deliveries"] == {"sent": 3, "failed_transient": 2}
    assert result.json["counts"]["failed"] == 2
    (shop.folder / "codes.txt").write_text("\n".join(POOL[:5]) + "\n", encoding="utf-8")
    later = shop.cli("run", "--outbox", str(outbox), "--json", now=NOW + timedelta(minutes=30))
    assert later.exit_code == 0, later.output
    assert later.json["counts"]["deliveries"] == {"sent": 2}
    assert sorted(m["status"] for m in shop.messages()) == ["sent"] * 5


def test_the_summary_under_quiet_says_why_deliveries_failed(shop: Shop) -> None:
    # Cron mails what --quiet prints: "failed 2" alone sends the owner digging through --json.
    _incentive_shop(shop, carts=5, pool=3)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--quiet")
    assert result.exit_code == 1
    text = " ".join(result.stdout.split())  # the terminal wraps long lines
    assert "delivered 3, failed 2" in text and "failed: 2 × " in text and "has no unused code left" in text


def test_tiers_get_their_own_incentive(shop: Shop) -> None:
    (shop.folder / "codes.txt").write_text("\n".join(POOL) + "\n", encoding="utf-8")
    shop.add(cart("big", items=(("SKU-9", "Sofa", 1, "900.00"),)), cart("small"))
    shop.configure(priority={"tiers": [{"name": "high", "min_score": 35}, {"name": "standard", "min_score": 0}]},
                   sequences={"default": {"steps": [{
                       "delay": "1h", "template": "reminder-3",
                       "incentive": {"kind": "percent", "value": 10, "codes": {"pool": "welcome", "file": "codes.txt"}},
                       "tier_incentives": {"high": {"kind": "fixed", "value": 50, "code": "SOFA50"}}}]}})
    big, small = shop.cli("preview", "big", "--json"), shop.cli("preview", "small", "--json")
    assert "Your code: SOFA50" in big.json["text"] and "€50.00 off" in big.json["text"]
    assert "Your code: XXXXXXXX" in small.json["text"] and "10% off" in small.json["text"]


def test_codes_list_shows_unused_active_and_expired(shop: Shop) -> None:
    _incentive_shop(shop, carts=4, pool=10)
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    now = shop.cli("codes", "list", "--json", "--status", "all")
    assert now.exit_code == 0, now.output
    assert now.json["pools"]["welcome"] == {"unused": 6, "active": 4, "expired": 0, "undelivered": 0, "withdrawn": 0}
    assert now.json["pools"]["ship"] == {"unused": 0, "active": 0, "expired": 0, "undelivered": 0, "withdrawn": 0}
    later = shop.cli("codes", "list", "--json", "--status", "expired", "--status", "unused",
                     now=NOW + timedelta(days=4))
    by_status = Counter(row["status"] for row in later.json["codes"])
    assert by_status == {"expired": 4, "unused": 6}
    assert all(row["email"] for row in later.json["codes"] if row["status"] == "expired")
    table = shop.cli("codes", "list", "--status", "expired", now=NOW + timedelta(days=4))
    assert table.exit_code == 0 and "welcome" in table.stdout and "4 codes" in table.stdout
    bad = shop.cli("codes", "list", "--status", "lost")
    assert bad.exit_code == 2 and "expected one of unused" in bad.stderr


@pytest.mark.smtp
def test_a_code_whose_message_may_have_been_delivered_is_active_then_expired_not_undelivered(shop: Shop) -> None:
    """The relay took the whole message and the connection dropped before its reply (unconfirmed),
    or a killed run left the claim (claimed): the customer may hold the code, as `forget` assumes
    (it keeps such codes spent). They expire by date as a sent message's do; a failed one's not."""
    _incentive_shop(shop, carts=3, pool=10)
    faults = [Fault(r"^c000@", "drop-after-data"), Fault(r"^c001@", "550 5.1.1 no such user")]
    with LoopbackSMTP(faults=faults) as server:
        shop.configure(smtp=server.smtp_config())
        assert shop.cli("run", "--send").exit_code == 1  # c001 failed
    statuses = {m["email"]: m["status"] for m in shop.messages()}
    assert statuses == {"c000@example.com": "unconfirmed", "c001@example.com": "failed_permanent",
                        "c002@example.com": "sent"}

    def by_cart(now: datetime) -> dict[str, str]:
        listed = shop.cli("codes", "list", "--status", "all", "--json", now=now)
        return {row["cart_key"]: row["status"] for row in listed.json["codes"] if row["cart_key"]}

    assert by_cart(NOW) == {"csv:c000": "active", "csv:c001": "undelivered", "csv:c002": "active"}
    assert by_cart(NOW + timedelta(days=4)) == {"csv:c000": "expired", "csv:c001": "undelivered",
                                                "csv:c002": "expired"}
    with sqlite3.connect(shop.folder / "ledger.db") as db:  # what a run killed mid-send leaves
        db.execute("UPDATE cr_message SET status = 'claimed' WHERE status = 'unconfirmed'")
    db.close()
    assert by_cart(NOW + timedelta(days=4))["csv:c000"] == "expired"


def test_generated_codes_are_exported_once_for_the_shop(shop: Shop) -> None:
    _incentive_shop(shop)
    made = shop.cli("codes", "generate", "5", "--pool", "ship", "--json", now=None)
    assert made.exit_code == 0, made.output
    assert len(made.json["codes"]) == 5
    target = shop.folder / "export.csv"
    first = shop.cli("codes", "export", "--output", str(target))
    assert first.exit_code == 0 and "exported 5 codes" in first.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert sorted(r["code"] for r in rows) == sorted(made.json["codes"])
    assert {(r["kind"], r["status"], r["usage_limit"]) for r in rows} == {("free_shipping", "unused", "1")}
    again = shop.cli("codes", "export", "--json")
    assert again.json["exported"] == 0
    everything = shop.cli("codes", "export", "--all", "--json")
    assert everything.json["exported"] == 5
    wrong = shop.cli("codes", "generate", "5", "--pool", "welcome", now=None)
    assert wrong.exit_code == 2 and "comes from a file" in wrong.stderr
    unknown = shop.cli("codes", "export", "--pool", "nope")
    assert unknown.exit_code == 2 and "unknown code pool 'nope'" in unknown.stderr


def test_an_export_to_dash_prints_the_codes_on_stdout_and_writes_no_file(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-o -`` is stdout, as for ``survey export``: it wrote a file named ``-``."""
    _incentive_shop(shop)
    made = shop.cli("codes", "generate", "3", "--pool", "ship", "--json", now=None)
    assert made.exit_code == 0, made.output
    monkeypatch.chdir(shop.folder)
    result = shop.cli("codes", "export", "-o", "-")
    assert result.exit_code == 0, result.output
    assert sorted(row["code"] for row in csv.DictReader(io.StringIO(result.stdout))) == sorted(made.json["codes"])
    assert not (shop.folder / "-").exists()
    assert shop.cli("codes", "export", "--json").json["exported"] == 0  # marked exported, as to a file


def test_an_export_with_no_new_code_leaves_the_last_exports_file_as_it_was(shop: Shop) -> None:
    """``codes export -o codes.csv`` run again before the shop imported the file: it emptied it
    (a header alone), and the codes it held were marked exported, never to be exported again."""
    _incentive_shop(shop)
    assert shop.cli("codes", "generate", "5", "--pool", "ship", now=None).exit_code == 0
    target = shop.folder / "codes.csv"
    assert shop.cli("codes", "export", "--output", str(target)).exit_code == 0
    exported = target.read_text(encoding="utf-8")
    again = shop.cli("codes", "export", "--output", str(target))
    assert again.exit_code == 0 and f"no code to export: {target} left as it was" in again.stderr
    assert target.read_text(encoding="utf-8") == exported and len(exported.splitlines()) == 6
    fresh = shop.folder / "fresh.csv"
    assert shop.cli("codes", "export", "--output", str(fresh), "--json").json["unchanged"] is False
    assert fresh.read_text(encoding="utf-8").splitlines() == exported.splitlines()[:1]  # a new file: its header


@pytest.mark.parametrize("as_json", [False, True])
def test_codes_generate_for_an_unknown_pool_names_the_known_pools_and_exits_2(shop: Shop, as_json: bool) -> None:
    _incentive_shop(shop)
    result = shop.cli("codes", "generate", "5", "--pool", "nope", *(["--json"] if as_json else []), now=None)
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"] if as_json else result.stderr
    assert "unknown code pool 'nope' (known: ship, welcome)" in message
    if as_json:
        assert result.json["error"]["code"] == "config"


@pytest.mark.parametrize("command", [["generate", "5"], ["list"], ["export"], ["import"]])
def test_a_mistyped_pool_creates_no_ledger_file(shop: Shop, command: list[str]) -> None:
    _incentive_shop(shop)
    assert not (shop.folder / "ledger.db").exists()
    result = shop.cli("codes", *command, "--pool", "nope", now=None)
    assert result.exit_code == 2 and "unknown code pool 'nope'" in result.stderr
    assert not (shop.folder / "ledger.db").exists()


def test_codes_import_reads_the_pool_files(shop: Shop) -> None:
    _incentive_shop(shop, pool=7)
    result = shop.cli("codes", "import", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json == {"pools": {"welcome": {"read": 7, "added": 7, "withdrawn": 0, "restored": 0}}, "warnings": []}


def _given(shop: Shop) -> dict[str, str]:
    """cart key -> the code it was given."""
    listed = shop.cli("codes", "list", "--status", "all", "--json").json["codes"]
    return {row["cart_key"]: row["code"] for row in listed if row["cart_key"]}


def test_codes_import_withdraws_unused_codes_taken_out_of_the_pool_file(shop: Shop) -> None:
    """The shop disabled POOL-0003 and POOL-0004 and took them out of the file: they were still
    handed out. Withdrawn, they never are; a code already given (POOL-0000) stays as it is."""
    _incentive_shop(shop, carts=2, pool=6)
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert sorted(_given(shop).values()) == ["POOL-0000", "POOL-0001"]
    kept = ["POOL-0001", "POOL-0002", "POOL-0005", "POOL-0010"]
    (shop.folder / "codes.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
    imported = shop.cli("codes", "import", "--json", now=None)
    assert imported.exit_code == 0, imported.output
    assert imported.json == {"pools": {"welcome": {"read": 4, "added": 1, "withdrawn": 2, "restored": 0}}, "warnings": []}
    listed = shop.cli("codes", "list", "--status", "withdrawn", "--json")
    assert listed.json["pools"]["welcome"] == {"unused": 3, "active": 2, "expired": 0, "undelivered": 0,
                                               "withdrawn": 2}
    assert [(row["code"], row["status"]) for row in listed.json["codes"]] == [
        ("POOL-0003", "withdrawn"), ("POOL-0004", "withdrawn")]
    table = shop.cli("codes", "list")
    assert "withdrawn" in table.stdout

    shop.add(*(cart(f"d{i:03}") for i in range(5)))
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(minutes=30))
    assert later.json["counts"]["deliveries"] == {"sent": 3, "failed_transient": 2}
    given = _given(shop)
    assert sorted(given.values()) == ["POOL-0000", "POOL-0001", "POOL-0002", "POOL-0005", "POOL-0010"]

    # Listed again (the shop enabled it again): it may be handed out again.
    (shop.folder / "codes.txt").write_text("\n".join([*kept, "POOL-0003"]) + "\n", encoding="utf-8")
    again = shop.cli("codes", "import", "--json", now=None)
    assert again.json == {"pools": {"welcome": {"read": 5, "added": 0, "withdrawn": 0, "restored": 1}}, "warnings": []}
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), now=NOW + timedelta(hours=1)).exit_code == 1
    assert "POOL-0003" in _given(shop).values() and "POOL-0004" not in _given(shop).values()


def test_a_run_withdraws_codes_taken_out_of_the_pool_file_before_handing_any_out(shop: Shop) -> None:
    _incentive_shop(shop, carts=1, pool=4)
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    (shop.folder / "codes.txt").write_text("POOL-0000\nPOOL-0003\n", encoding="utf-8")
    shop.add(cart("d1"), cart("d2"))
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(minutes=30))
    assert later.json["counts"]["deliveries"] == {"sent": 1, "failed_transient": 1}
    assert sorted(_given(shop).values()) == ["POOL-0000", "POOL-0003"]
    summary = shop.cli("codes", "list", "--json").json["pools"]["welcome"]
    assert (summary["unused"], summary["active"], summary["withdrawn"]) == (0, 2, 2)


@pytest.mark.slow
def test_two_concurrent_runs_never_give_one_code_to_two_recipients(shop: Shop) -> None:
    _incentive_shop(shop, carts=80, pool=100)
    shop.write()
    outbox = shop.folder / "out"
    command = [sys.executable, "-m", "cartrescue.cli", "run", "--outbox", str(outbox), "--json", "--config",
               str(shop.config_path), "--now", NOW.isoformat()]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                             env={**os.environ, "COLUMNS": "200"}) for _ in range(2)]
    for run in runs:
        run.communicate(timeout=180)
    assert sorted(run.returncode for run in runs) in ([0, 0], [0, 4])
    texts = _texts(outbox)
    assert len(texts) == 80
    shown = [code for text in texts.values() for code in POOL if code in text]
    assert len(shown) == 80 and len(set(shown)) == 80
    codes = _codes(load_config(shop.config_path))
    assert codes.summary(NOW)["welcome"] == {"unused": 20, "active": 80, "expired": 0, "undelivered": 0, "withdrawn": 0}


@pytest.mark.parametrize(("locale", "shown"), [("en", "12.5%"), ("sv", "12,5\u00a0%"), ("hu", "12,5%")])
def test_a_percent_incentive_is_written_as_the_customers_locale_writes_it(shop: Shop, locale: str, shown: str) -> None:
    shop.add(cart("c1", locale=locale))
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3",
                                                     "incentive": {"kind": "percent", "value": "12.5", "code": "C"}}]}})
    result = shop.cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    assert shown in result.json["text"]


@pytest.mark.parametrize(("incentive", "message"), [
    ({"kind": "percent", "value": 110}, "at most 100 (got 110)"),
    ({"kind": "percent", "value": 0}, "above 0 and at most 100 (got 0)"),
    ({"kind": "fixed", "value": -5}, "an amount above 0 (got -5)"),
])
def test_an_incentive_no_shop_means_is_a_config_error(shop: Shop, incentive: dict, message: str) -> None:
    shop.add(cart("c1"))
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": incentive}]}})
    result = shop.cli("carts")
    assert result.exit_code == 2 and "sequences.default.steps[0].incentive" in result.stderr and message in result.stderr


def test_codes_list_without_a_pool_says_none_is_configured_and_where(shop: Shop) -> None:
    """An empty table and no word read as a listing that failed, or as pools with no codes."""
    shop.add(cart("c1"))
    done = shop.cli("codes", "list")
    assert done.exit_code == 0, done.output
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (  # after the note that no run has made the ledger yet
        f"note: {shop.config_path}: no code pool is configured: a step's incentive sets one "
        "(sequences.NAME.steps[N].incentive.codes: {pool: NAME, file: FILE} or {pool: NAME, pattern: PATTERN})")


def _doctor_codes(shop: Shop) -> tuple[int, dict]:
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    return result.exit_code, {check["name"]: check for check in result.json["checks"]}["codes"]


def test_a_code_pool_file_with_no_unused_code_left_fails_the_doctor(shop: Shop) -> None:
    """Two codes for three carts: the run failed the third message ("code pool 'welcome' has no
    unused code left"), as every run after it fails each message offering the pool, while the
    doctor said all was well and exited 0."""
    _incentive_shop(shop, carts=3, pool=2)
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 1
    exit_code, found = _doctor_codes(shop)
    assert (found["status"], found["exit_code"]) == ("fail", 1), found
    assert found["detail"].startswith(
        f"{shop.config_path}: sequences.default.steps[0].incentive: code pool 'welcome' has no unused code left in "
        f"{shop.folder / 'codes.txt'} (its 2 codes were handed out): every message offering it fails"), found
    assert exit_code == 1


def test_the_doctor_counts_the_unused_codes_of_a_pool_file(shop: Shop) -> None:
    _incentive_shop(shop, carts=1, pool=5)
    assert _doctor_codes(shop)[1] == {"name": "codes", "status": "ok", "exit_code": 0,
                                      "detail": f"welcome: 5 of 5 codes unused in {shop.folder / 'codes.txt'}"}
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert _doctor_codes(shop)[1]["detail"] == f"welcome: 4 of 5 codes unused in {shop.folder / 'codes.txt'}"
