"""What a config gets wrong that can be known at start is refused at start.

A step naming a template the shop's default locale has no files of, or a channel section a run
cannot deliver with, stops every run before it takes the run lock or claims a cart: exit 2, a
message naming the file and the key, and with ``--json`` one document with an ``error``. Before,
the template was a ``render_error`` per cart once the step came due (exit 1, and nothing said
while it was not due yet), and the channel section failed after the lock and a recorded run.

On a copy of the bundled demo (examples/cartrescue.yaml, carts.csv, orders.csv, the shipped
templates), its ledger a real SQLite file or a real PostgreSQL database.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from shopdb import shop_database

from conftest import REPO, besides_the_pinned_clock, cli

MISSING_STEP = "sequences.default.steps[2].template"
WEBHOOK_TIERS = {"tiers": [{"name": "standard", "min_score": 0, "sequence": "default", "channel": "webhook"}]}
SMS_TIERS = {"tiers": [{"name": "standard", "min_score": 0, "sequence": "default", "channel": "sms"}]}


def _demo(folder: Path, ledger: str | None = None, **changes: Any) -> Path:
    """The bundled demo in ``folder``, its config with ``changes`` (top-level keys replaced)."""
    for name in ("carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, folder / name)
    config = yaml.safe_load((REPO / "examples" / "cartrescue.yaml").read_text(encoding="utf-8"))
    config["ledger"] = {"url": ledger or f"sqlite:///{folder / 'demo-ledger.db'}"}
    config["shop"]["unsubscribe_secret"] = "a-long-enough-secret-of-the-suite"
    config.update(changes)
    path = folder / "cartrescue.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _sequence_with(template: str, at: int = 2, **step: Any) -> dict[str, Any]:
    """The demo's sequences, step ``at`` of ``default`` naming ``template`` (and ``step``'s keys)."""
    steps: list[dict[str, Any]] = [{"delay": "1h", "template": "reminder-1"}, {"delay": "24h", "template": "reminder-2"},
                                   {"delay": "72h", "template": "reminder-3"}]
    steps[at] = {**steps[at], "template": template, **step}
    return {"default": {"steps": steps}, "call": {"steps": [{"delay": "1h", "template": "reminder-1"}]}}


def _recorded(url: str) -> dict[str, int]:
    """Rows of the ledger's run, lock and message tables (none where the ledger was never made)."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return {}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        with engine.connect() as connection:
            return {name: connection.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar_one()
                    for name in ("cr_run", "cr_lock", "cr_message") if name in tables}
    finally:
        engine.dispose()


def _refused(outcome: Any, config: Path, key: str, *said: str) -> dict[str, Any]:
    """Exit 2; stdout one JSON document whose error names the file and the key; stderr one line."""
    assert outcome.exit_code == 2, outcome.output
    document = json.loads(outcome.stdout)  # the whole of stdout: one document
    error = document["error"]
    assert error["code"] == "config" and error["exit_code"] == 2
    assert error["message"].startswith(f"{config}: {key}: "), error["message"]
    for words in said:
        assert words in error["message"], error["message"]
    assert besides_the_pinned_clock(outcome.stderr) == [f"error: {error['message']}"]  # the demo's clock is pinned
    return document


@pytest.mark.parametrize("command", [["run", "--json"], ["run", "--outbox", "out", "--json"], ["carts", "--json"],
                                     ["preview", "cart-000001", "--step", "1", "--json"],
                                     ["send-test", "me@example.com", "cart-000001", "--step", "1", "--outbox", "out",
                                      "--json"]])
def test_a_step_whose_template_is_not_in_the_default_locale_is_refused_at_start(command: list[str],
                                                                                tmp_path: Path) -> None:
    """The demo's carts are at steps 1 to 3; step 3 names reminder-9 (only reminder-1..3 exist).
    ``carts`` listed such a config's carts as due for a step no run would take."""
    config = _demo(tmp_path, sequences=_sequence_with("reminder-9"))
    outcome = cli(*command, "--config", str(config))
    _refused(outcome, config, MISSING_STEP, "no template reminder-9 in", str(REPO / "templates" / "en"),
             "reminder-1, reminder-2, reminder-3")
    assert _recorded(f"sqlite:///{tmp_path / 'demo-ledger.db'}") == {}
    assert not list(tmp_path.glob("out/*"))


def test_run_all_refuses_the_shop_whose_step_names_a_missing_template(tmp_path: Path) -> None:
    config = _demo(tmp_path, sequences=_sequence_with("reminder-9"))
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run-all", "--outbox", "out", "--json", str(config)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    (shop,) = json.loads(done.stdout)["shops"]
    assert shop["exit_code"] == 2 and f"{MISSING_STEP}: no template reminder-9" in shop["error"]["message"]
    assert _recorded(f"sqlite:///{tmp_path / 'demo-ledger.db'}") == {}


def test_doctor_fails_the_config_for_a_step_whose_template_is_missing(tmp_path: Path) -> None:
    config = _demo(tmp_path, sequences=_sequence_with("reminder-9"))
    outcome = cli("doctor", "--no-smtp", "--json", "--config", str(config))
    document = json.loads(outcome.stdout)
    assert outcome.exit_code == 2 and document["exit_code"] == 2, outcome.output
    check = next(check for check in document["checks"] if check["name"] == "config")
    assert check["status"] == "fail" and check["detail"].startswith(f"{config}: {MISSING_STEP}: no template reminder-9")


def _own_templates(folder: Path, files: dict[str, str]) -> Path:
    """A templates folder of the shop's own with ``files`` (``en/mine.txt``: its text)."""
    root = folder / "mine"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


EMAIL = {"en/mine.subject.txt": "Your cart at {{ shop.name }}", "en/mine.txt": "{{ recovery_url }} {{ unsubscribe_url }}"}
HTML = '<p><a href="{{ recovery_url }}">cart</a> <a href="{{ unsubscribe_url }}">unsubscribe</a></p>'


def test_an_ab_arm_without_an_html_part_of_its_own_or_the_base_is_refused(tmp_path: Path) -> None:
    """Variant ``a`` has its own HTML, ``b`` has none and the base has none either: every cart
    drawn into ``b`` would fail; each arm's part is its own file, else the base one."""
    folder = _own_templates(tmp_path, {**EMAIL, "en/mine@a.html": HTML})
    config = _demo(tmp_path, templates=str(folder), sequences=_sequence_with("mine", variants={"a": 1, "b": 1}))
    _refused(cli("run", "--json", "--config", str(config)), config, MISSING_STEP,
             "has no mine@b.html nor mine.html")


def test_what_every_arm_and_locale_can_render_is_accepted(tmp_path: Path) -> None:
    """Each arm has its HTML; the base none (no customer renders it); sv has no files of mine
    and the default locale sv falls back to en, as a render does. The run renders them all (the
    demo's carts are all at step 1 on a new ledger)."""
    folder = _own_templates(tmp_path, {**EMAIL, "en/mine@a.html": HTML, "en/mine@b.html": HTML})
    config = _demo(tmp_path, templates=str(folder), sequences=_sequence_with("mine", 0, variants={"a": 1, "b": 1}))
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["shop"]["default_locale"] = "sv"
    config.write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True), encoding="utf-8")
    outcome = cli("run", "--json", "--config", str(config))
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.stdout)
    assert document["counts"]["problems"] == 0
    sent = [row for row in document["decisions"] if row["action"] == "send" and row["template"] == "mine"]
    assert {row["variant"] for row in sent} == {"a", "b"}


def test_a_texted_step_without_its_sms_file_is_refused(tmp_path: Path) -> None:
    """The tier texts step 3; ``mine`` has its e-mail parts (a cart without a mobile number
    gets the e-mail) but no ``mine.sms.txt``."""
    folder = _own_templates(tmp_path, {**EMAIL, "en/mine.html": HTML})
    config = _demo(tmp_path, templates=str(folder), sequences=_sequence_with("mine", channel="sms"),
                   sms={"sender": "Example", "twilio": {"account_sid": "AC0", "auth_token": "secret-token"}})
    _refused(cli("run", "--json", "--config", str(config)), config, MISSING_STEP, "no template mine in",
             "no mine.sms.txt")


@pytest.mark.parametrize("fallback", [True, False])
def test_a_texted_step_needs_e_mail_parts_only_where_it_can_go_by_e_mail(fallback: bool, tmp_path: Path) -> None:
    """``mine`` has only its text; the demo's carts have no SMS consent, so with
    ``channel_fallback`` (the default) each would get the step's e-mail, which cannot render."""
    folder = _own_templates(tmp_path, {"en/mine.sms.txt": "{{ shop.name }}: {{ recovery_url }} Reply STOP to opt out"})
    config = _demo(tmp_path, templates=str(folder), priority=SMS_TIERS, sequences=_sequence_with("mine", 0),
                   eligibility={"channel_fallback": fallback},
                   sms={"sender": "Example", "twilio": {"account_sid": "AC0", "auth_token": "secret-token"}})
    outcome = cli("run", "--json", "--config", str(config))
    if fallback:
        _refused(outcome, config, "sequences.default.steps[0].template", "no mine.subject.txt",
                 "goes by e-mail to a cart it cannot reach: eligibility.channel_fallback")
    else:
        assert outcome.exit_code == 0, outcome.output
        assert json.loads(outcome.stdout)["counts"]["problems"] == 0


@contextmanager
def _ledger(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a new ledger: a SQLite file in ``folder``, or a database of its own on the
    machine's PostgreSQL or MariaDB server (dropped afterwards)."""
    with ExitStack() as stack:
        yield f"sqlite:///{folder / 'demo-ledger.db'}" if kind == "sqlite" else \
            stack.enter_context(shop_database(kind, "startchecks")).url


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                                  pytest.param("mariadb", marks=pytest.mark.mariadb)])
@pytest.mark.parametrize(("sections", "extra", "key"), [
    pytest.param({"priority": WEBHOOK_TIERS, "webhook": {"url": None, "secret": "s" * 32}}, [], "webhook.url",
                 id="webhook-url"),
    pytest.param({"priority": SMS_TIERS, "sms": {"sender": None, "twilio": {"account_sid": "AC0",
                                                                            "auth_token": "secret-token"}}},
                 [], "sms.sender", id="sms-sender"),
    pytest.param({"smtp": {"host": "127.0.0.1", "security": "tls", "ca_file": "not-a-ca.pem"}}, [], "smtp.ca_file",
                 id="smtp-ca-file"),
    pytest.param({"smtp": {"host": "127.0.0.1", "rate_per_hour": 1}}, ["--shard", "1/2"], "smtp.rate_per_hour",
                 id="smtp-hour-per-shard"),
])
def test_a_channel_section_a_run_cannot_deliver_with_is_refused_before_the_lock(
        sections: dict[str, Any], extra: list[str], key: str, kind: str, tmp_path: Path) -> None:
    """Nothing is recorded: no run, no lock, no claim (before: a run recorded as failed, its
    lock taken and released)."""
    (tmp_path / "not-a-ca.pem").write_text("not a certificate\n", encoding="utf-8")
    with _ledger(kind, tmp_path) as url:
        config = _demo(tmp_path, url, **sections)
        _refused(cli("run", "--send", "--json", *extra, "--config", str(config)), config, key)
        assert sum(_recorded(url).values()) == 0, _recorded(url)
