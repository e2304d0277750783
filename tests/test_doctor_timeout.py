"""`doctor --timeout` bounds every check that talks to a server: an agency's hourly loop of
``doctor --quiet`` over its shops is not held for half an hour by one server that stops answering.

Before, the SMTP check waited ``smtp.timeout`` three times over for a relay that takes the
connection and never greets (``smtp.timeout: 10m``, sane for a slow relay's big batches: 30
minutes), and the webhook's probe its own ``webhook.timeout``; the shops after it in the loop were
not checked that hour. Each check is now bounded by the shorter of its own bound and ``--timeout``
(30 s by default), and fails with one line naming the server, the bound and what to raise.
The shop database's and the ledger's statements: tests/test_source_silence.py, test_ledger_silence.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tcpproxy import SilentServer

from cartrescue.errors import ExitCode
from conftest import REPO, Shop, cart

#: ``--timeout`` of these tests, and how long the doctor may take in all (its start and other checks too).
TIMEOUT = 2
WITHIN = 20


def doctor(shop: Shop, *args: str, within: float = WITHIN) -> tuple[int, str, str, float]:
    """``cartrescue doctor ARGS`` in its own process, which must end ``within`` seconds: its exit
    code, stdout, stderr and seconds taken."""
    shop.write()
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "doctor", *args, "--config",
                               str(shop.config_path)], cwd=REPO, capture_output=True, text=True, timeout=within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"doctor still waits for a server that stopped answering after {within} s")
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def ran_once(shop: Shop, tmp_path: Path) -> None:
    """A successful run in the ledger: the staleness check passes, so the exit is the relay's."""
    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(tmp_path / "out"), now=None).exit_code == 0


@pytest.mark.slow
def test_a_relay_that_never_greets_fails_the_smtp_check_within_the_doctors_timeout(shop: Shop, tmp_path: Path) -> None:
    ran_once(shop, tmp_path)
    with SilentServer() as port:
        shop.configure(smtp={"host": "127.0.0.1", "port": port, "security": "none", "timeout": "10m"})
        code, out, err, took = doctor(shop, "--timeout", f"{TIMEOUT}s", "--json")
    assert code == ExitCode.SOME_FAILED == 1, err
    checks = {check["name"]: check for check in json.loads(out)["checks"]}  # one document
    smtp = checks["smtp"]
    assert (smtp["status"], smtp["exit_code"]) == ("fail", 1)
    assert smtp["detail"] == (f"127.0.0.1:{port} (none): no answer within {TIMEOUT} s (doctor --timeout; "
                              "3 times smtp.timeout allows 1800 s)"), smtp
    assert took < TIMEOUT + 15
    assert checks["staleness"]["status"] == "ok"


@pytest.mark.slow
def test_the_quiet_line_of_a_relay_that_never_greets_names_the_relay_and_the_option(
        shop: Shop, tmp_path: Path) -> None:
    ran_once(shop, tmp_path)
    with SilentServer() as port:
        shop.configure(smtp={"host": "127.0.0.1", "port": port, "security": "none", "timeout": "10m"})
        code, out, err, _took = doctor(shop, "--timeout", f"{TIMEOUT}s", "--quiet")
    assert code == 1, err
    assert out.splitlines() == [f"cartrescue doctor: {shop.config_path}: smtp failed: 127.0.0.1:{port} (none): no "
                                f"answer within {TIMEOUT} s (doctor --timeout; 3 times smtp.timeout allows 1800 s)"]


@pytest.mark.slow
def test_without_timeout_the_doctor_gives_up_on_a_silent_relay_after_30_seconds(shop: Shop, tmp_path: Path) -> None:
    """The agency's loop gives no ``--timeout``: the default bounds it (30 s, not 30 minutes)."""
    ran_once(shop, tmp_path)
    with SilentServer() as port:
        shop.configure(smtp={"host": "127.0.0.1", "port": port, "security": "none", "timeout": "10m"})
        code, out, err, took = doctor(shop, "--json", within=60)
    assert code == 1, err
    smtp = {check["name"]: check for check in json.loads(out)["checks"]}["smtp"]
    assert "no answer within 30 s (doctor --timeout" in smtp["detail"], smtp
    assert 29 < took < 50


@pytest.mark.slow
def test_a_webhook_that_never_answers_fails_within_the_doctors_timeout(shop: Shop, tmp_path: Path) -> None:
    ran_once(shop, tmp_path)
    with SilentServer() as port:
        shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                       webhook={"url": f"http://127.0.0.1:{port}/hook?token=querysecret123", "secret": "w" * 20,
                                "timeout": "10m"})
        code, out, err, took = doctor(shop, "--timeout", f"{TIMEOUT}s", "--no-smtp", "--json")
    assert code == 1, err
    webhook = {check["name"]: check for check in json.loads(out)["checks"]}["webhook"]
    assert (webhook["status"], webhook["exit_code"]) == ("fail", 1)
    assert webhook["detail"] == (f"http://127.0.0.1:{port}/hook: no complete answer within {TIMEOUT} s "
                                 "(doctor --timeout; webhook.timeout allows 600 s)"), webhook
    assert took < TIMEOUT + 15


@pytest.mark.slow
@pytest.mark.parametrize("url", [
    pytest.param("postgresql+psycopg://postgres@127.0.0.1:{port}/x", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("mysql+pymysql://root@127.0.0.1:{port}/x", marks=pytest.mark.mariadb, id="mariadb")])
def test_a_database_that_never_greets_fails_the_ledger_and_source_checks_within_the_doctors_timeout(
        shop: Shop, url: str) -> None:
    """Connecting waited ``drivers.CONNECT_WAIT`` (10 s) for each of the ledger and the source."""
    from test_source_sql import QUERIES

    with SilentServer() as port:
        shop.config = {**shop.config, "source": {"type": "sql", "url": url.format(port=port), "queries": QUERIES},
                       "ledger": {"url": url.format(port=port)}}
        code, out, err, took = doctor(shop, "--timeout", f"{TIMEOUT}s", "--no-smtp", "--json")
    assert code == ExitCode.CONFIG, err  # the ledger's, the first failed check
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert (checks["ledger"]["status"], checks["ledger"]["exit_code"]) == ("fail", 2), checks["ledger"]
    assert (checks["source"]["status"], checks["source"]["exit_code"]) == ("fail", 3), checks["source"]
    assert f"127.0.0.1:{port}" in checks["ledger"]["detail"] and f"127.0.0.1:{port}" in checks["source"]["detail"]
    assert took < 15, took  # 2 x drivers.CONNECT_WAIT (20 s) without --timeout; room for a loaded machine's start


@pytest.mark.parametrize("given", ["0", "soon", "-1s"])
def test_a_timeout_that_is_no_duration_above_zero_is_a_usage_error(shop: Shop, given: str) -> None:
    result = shop.cli("doctor", "--timeout", given, "--json", now=None)
    assert result.exit_code == 2
    assert result.json["error"]["message"].startswith("--timeout: "), result.output


@pytest.mark.slow
@pytest.mark.parametrize(("url", "waited"), [
    # libpq counts connect_timeout in whole seconds, 2 at least: a 1 s --timeout waits 2 s there
    pytest.param("postgresql+psycopg://postgres@127.0.0.1:{port}/x", "2 s (doctor --timeout; PostgreSQL waits whole "
                 "seconds, 2 at least)", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("mysql+pymysql://root@127.0.0.1:{port}/x", "1 s (doctor --timeout)", marks=pytest.mark.mariadb,
                 id="mariadb")])
def test_a_database_that_never_greets_is_said_to_have_run_past_the_doctors_timeout(
        shop: Shop, url: str, waited: str) -> None:
    """Connecting is bounded by ``--timeout`` too: the line names the option to raise, as a
    statement's line does, not only "connection timed out"."""
    from test_source_sql import QUERIES

    with SilentServer() as port:
        where = url.format(port=port)
        shop.config = {**shop.config, "source": {"type": "sql", "url": where, "queries": QUERIES},
                       "ledger": {"url": where}}
        code, out, err, _took = doctor(shop, "--timeout", "1s", "--no-smtp", "--json")
    assert code == ExitCode.CONFIG, err
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert checks["ledger"]["detail"] == f"{shop.config_path}: ledger.url {where} did not answer within {waited}"
    assert checks["source"]["detail"] == (f"sql source: {shop.config_path}: source.url {where} did not answer "
                                          f"within {waited}")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_that_never_greets_within_the_drivers_own_connect_wait_is_said_so(shop: Shop) -> None:
    """``--timeout`` above ``drivers.CONNECT_WAIT`` (10 s): connecting runs out of the drivers'
    own wait first, and the line said psycopg's "connection timeout expired" (the ledger) or
    "connection timed out" (the source). Now it says how long, as under a shorter ``--timeout``,
    and names no option: none raises it."""
    from test_source_sql import QUERIES

    with SilentServer() as port:
        where = f"postgresql+psycopg://postgres@127.0.0.1:{port}/x"
        shop.config = {**shop.config, "source": {"type": "sql", "url": where, "queries": QUERIES},
                       "ledger": {"url": where}}
        code, out, err, took = doctor(shop, "--timeout", "20s", "--no-smtp", "--json", within=60)
    assert code == ExitCode.CONFIG, err
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert checks["ledger"]["detail"] == f"{shop.config_path}: ledger.url {where} did not answer within 10 s"
    assert checks["source"]["detail"] == f"sql source: {shop.config_path}: source.url {where} did not answer within 10 s"
    assert took < 40, took  # 2 x drivers.CONNECT_WAIT


def test_a_connect_wait_shorter_than_the_doctors_timeout_is_not_said_to_be_its() -> None:
    """Without ``--timeout`` (30 s) a server's 10 s to connect are the drivers' own bound: the
    line of a connection that timed out then names no option (there is none to raise)."""
    from sqlalchemy.engine import make_url

    from cartrescue.drivers import CONNECT_WAIT, connect_wait

    url = make_url("postgresql+psycopg://postgres@127.0.0.1:5/x")
    assert connect_wait(url, 30.0) == (CONNECT_WAIT, None)
    assert connect_wait(url, None) == (CONNECT_WAIT, None)
    assert connect_wait(url, 5.0) == (5, "doctor --timeout")
    assert connect_wait(make_url("postgresql+psycopg://postgres@127.0.0.1:5/x?connect_timeout=3"), 1.0)[1] is None


@pytest.mark.parametrize(("value", "said"), [("0", "--timeout: expected a duration above zero, got '0'"),
                                             ("5", "--timeout: a duration needs its unit: 5m, 5h or 5s?")])
def test_a_timeout_of_a_bare_number_says_what_is_wrong_with_it(shop: Shop, value: str, said: str) -> None:
    """``doctor --timeout 0`` and ``--timeout 5`` said "expected a duration like 45m, 24h or 3d",
    though 0 is a duration (README) and 5 lacks only its unit; they say which, as ``0s`` did."""
    from conftest import cli

    shop.write()
    done = cli("doctor", "--config", str(shop.config_path), "--timeout", value)
    assert done.exit_code == 2
    assert said in done.stderr, done.stderr
