"""A key that nothing reads (:meth:`cartrescue.config.Config.ignored_keys`) reaches scripts too.

Its ``warning:`` line on stderr is for a person; a script reads the ``--json`` document, and a
cron job under ``--quiet`` prints nothing on stderr at all. So each document of a command that
loads the shop's config lists the same lines in ``warnings``: a run's (and ``carts``') beside its
findings of ``templates check``, ``preview``'s beside the export's, each shop's row of
``run-all``, and a new ``warnings`` key in the others. stderr is as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from smtpserver import LoopbackSMTP

from conftest import NOW, Shop, cart, iso

IGNORED = "sms.sender: ignored: no tier or step sends by sms"


def _ignoring(shop: Shop) -> Shop:
    """``shop`` with a key nothing reads (an SMS sender while no tier texts) and two carts due."""
    return shop.configure(sms={"sender": "MyShop"}).add(cart("c1"), cart("c2"))


def _named(shop: Shop, warnings: list[str]) -> list[str]:
    return [line for line in warnings if line.startswith(f"{shop.config_path}: {IGNORED}")]


def test_a_dry_run_lists_an_ignored_key_in_the_warnings_of_its_json(shop: Shop) -> None:
    result = _ignoring(shop).cli("run", "--json")
    assert result.exit_code == 0, result.output
    assert len(_named(shop, result.json["warnings"])) == 1
    assert result.stderr.count(IGNORED) == 1  # stderr as before: once


def test_a_quiet_dry_run_lists_it_in_its_json_and_says_nothing_on_stderr(shop: Shop) -> None:
    result = _ignoring(shop).cli("run", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(_named(shop, result.json["warnings"])) == 1
    assert IGNORED not in result.stderr


def test_an_ignored_key_does_not_fail_a_strict_dry_run(shop: Shop) -> None:
    """--strict exits 1 on a finding of `templates check`; a key nothing reads is no such finding."""
    result = _ignoring(shop).cli("run", "--json", "--strict")
    assert result.exit_code == 0, result.output
    assert len(_named(shop, result.json["warnings"])) == 1


@pytest.mark.smtp
def test_a_sending_run_lists_an_ignored_key_in_the_warnings_of_its_json(shop: Shop) -> None:
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = _ignoring(shop).cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        server.wait_for(2)
    assert result.json["counts"]["sent"] == 2
    assert len(_named(shop, result.json["warnings"])) == 1


def test_carts_lists_an_ignored_key_in_the_warnings_of_its_json(shop: Shop) -> None:
    result = _ignoring(shop).cli("carts", "--json")
    assert result.exit_code == 0, result.output
    assert len(_named(shop, result.json["warnings"])) == 1


@pytest.mark.slow
def test_a_run_with_workers_lists_an_ignored_key_once(shop: Shop) -> None:
    """Its workers leave the config's warnings to it, on stderr and in the document."""
    for number in range(40):
        shop.add(cart(f"w{number}"))
    result = _ignoring(shop).cli("run", "--json", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert len(result.json["shards"]) == 2
    assert len(_named(shop, result.json["warnings"])) == 1
    assert result.stderr.count(IGNORED) == 1


def test_run_all_lists_each_shops_ignored_keys_in_its_row(make_shop: Callable[[str], Shop], tmp_path: Path) -> None:
    ignoring, plain = _ignoring(make_shop("a")), make_shop("b").add(cart("b1"))
    ignoring.write(), plain.write()
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run-all", "--json", "--now", iso(NOW),
                           str(ignoring.config_path), str(plain.config_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)["shops"]
    assert len(_named(ignoring, first["warnings"])) == 1
    assert second["warnings"] == []
    assert done.stderr.count(IGNORED) == 1


def test_preview_lists_an_ignored_key_before_the_exports_warnings(shop: Shop) -> None:
    result = _ignoring(shop).cli("preview", "c1", "--json")
    assert result.exit_code == 0, result.output
    assert len(_named(shop, result.json["warnings"])) == 1
    assert result.json["warnings"][0].startswith(f"{shop.config_path}: sms.sender")


def _mailbox(shop: Shop) -> str:
    (shop.folder / "unsubscribes.mbox").write_text("", encoding="utf-8")
    return str(shop.folder / "unsubscribes.mbox")


def _addresses(shop: Shop) -> str:
    (shop.folder / "do-not-mail.txt").write_text("gone@example.com\n", encoding="utf-8")
    return str(shop.folder / "do-not-mail.txt")


AT = ("--now", iso(NOW))

#: Every other command that loads the shop's config and prints a --json document: (its words,
#: the exit codes it may give here). A file it reads is made by the function in its words.
COMMANDS: list[tuple[tuple[str | Callable[[Shop], str], ...], tuple[int, ...]]] = [
    (("report", *AT), (0,)),
    (("codes", "list", *AT), (0,)),
    (("codes", "export", *AT), (0,)),
    (("codes", "import"), (0,)),
    (("suppress", "list"), (0,)),
    (("suppress", "import", _addresses), (0,)),
    (("suppress", "mailbox", _mailbox), (0,)),
    (("suppress", "remove", "nobody@example.com"), (1,)),
    (("unsubscribe", "bob@example.com"), (0,)),
    (("forget", "bob@example.com"), (0,)),
    (("survey", "summary"), (0,)),
    (("survey", "export"), (0,)),
    (("send-test", "me@example.com", "c1", "--outbox", "tests-out", *AT), (0,)),
    (("templates", "check", "--quick", "--template", "reminder-1", "--locale", "en"), (0, 1)),
]


@pytest.mark.parametrize(("words", "codes"), COMMANDS, ids=[" ".join(
    word for word in words[:2] if isinstance(word, str)) for words, _codes in COMMANDS])
def test_a_commands_json_lists_an_ignored_key_in_a_warnings_key(
        shop: Shop, words: tuple[str | Callable[[Shop], str], ...], codes: tuple[int, ...]) -> None:
    _ignoring(shop)
    args = [word if isinstance(word, str) else word(shop) for word in words]
    result = shop.cli(*args, "--json", now=None)
    assert result.exit_code in codes, result.output
    assert len(_named(shop, result.json["warnings"])) == 1, result.json
    assert result.stderr.count(IGNORED) == 1


def test_a_json_document_of_a_config_without_ignored_keys_has_an_empty_warnings_list(shop: Shop) -> None:
    result = shop.add(cart("c1")).cli("suppress", "list", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["warnings"] == []


def test_an_error_document_keeps_its_one_key(shop: Shop) -> None:
    """A command that failed prints ``{"error": ...}`` as the README has it: nothing beside; the
    ignored key is said on stderr, as on success."""
    result = _ignoring(shop).cli("suppress", "remove", "not an address", "--json", now=None)
    assert result.exit_code == 2, result.output
    assert list(result.json) == ["error"]
    assert result.stderr.count(IGNORED) == 1


def test_a_run_stopped_mid_document_still_lists_an_ignored_key(shop: Shop) -> None:
    """A run whose document ends with an ``error`` (SIGTERM once its decisions had begun) closes it
    with the config's warnings too: a script reads them whichever way the run ended."""
    import signal
    import time

    from test_interrupt_json import PIPE_CAPACITY, start, unread

    from conftest import REPO

    shop.configure(sms={"sender": "MyShop"})
    shop.add(*(cart(f"c{n:04d}", email=f"c{n:04d}@example.com") for n in range(1500)))
    shop.write()
    process = start("run", "--json", "--now", iso(NOW), "--config", str(shop.config_path), cwd=REPO)
    deadline = time.monotonic() + 60
    while unread(process) < PIPE_CAPACITY and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    document = json.loads(out)
    assert process.returncode == 130 and document["error"]["code"] == "interrupted", err.decode()
    assert len(_named(shop, document["warnings"])) == 1
