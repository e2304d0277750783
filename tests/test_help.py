"""`--help` explains: every command's options read as they are used, and the exit codes cron can act on."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from cartrescue.cli import app
from cartrescue.errors import ExitCode


def _command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "cartrescue")
def test_no_flag_is_shown_with_a_type_as_if_it_took_a_value(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert "--help" in text
    assert "<bool>" not in text
    if path == ("run",):
        assert re.search(r"│ --send\s+Really deliver", text), text
        assert re.search(r"│ --outbox\s+DIR\s+Write every message", text), text  # a value's option names it


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "cartrescue")
def test_no_help_shows_a_placeholder_left_in_braces(path: tuple[str, ...]) -> None:
    """typer 0.29 wrote a required argument as ``{count}`` on the usage line: read as a template
    placeholder left unfilled (and a docstring's ``{name}`` would read the same)."""
    text = _help(path)
    assert not re.search(r"\{[^{}]*\}", text), text


def test_an_argument_is_named_in_capitals_on_the_usage_line_and_in_its_panel() -> None:
    text = _help(("codes", "generate"))
    assert re.search(r"Usage: .*codes generate \[OPTIONS\] COUNT\s*$", text, re.MULTILINE), text
    assert re.search(r"│ \*\s+COUNT\s", text), text
    assert re.search(r"Usage: .*send-test \[OPTIONS\] ADDRESS \[CART_ID\]\s*$", _help(("send-test",)), re.MULTILINE)
    assert re.search(r"Usage: .*run-all \[OPTIONS\] CONFIG\.\.\.\s*$", _help(("run-all",)), re.MULTILINE)


def test_the_main_help_lists_every_exit_code() -> None:
    text = " ".join(_help(()).split())
    listed = {int(code) for code in re.findall(r"\b(\d+) [a-z(]", text.split("Exit codes:", 1)[1])}
    assert {int(code) for code in ExitCode} | {130} <= listed


def test_forget_help_says_messages_keep_their_rows_without_the_address() -> None:
    """It said "Deletes its messages", while forget keeps every message row (the record of each
    cart's steps, which must never go out twice) and only removes the address from it."""
    text = " ".join(_help(("forget",)).replace("│", " ").split())
    assert "Deletes its messages" not in text
    assert "keeps its messages without the address" in text


def test_forget_help_says_the_files_options_take_a_phone_number_too() -> None:
    """``forget PHONE --files`` removes the number's call-list rows and texts; its help began
    "Also remove the address from the files", as if an address alone had files."""
    text = " ".join(_help(("forget",)).replace("│", " ").split())
    files = text.split("Options", 1)[1].split("--files", 1)[1].split("--keep-files", 1)[0]
    assert not files.strip().startswith("Also remove the address")
    assert "address or phone number" in files and "A number:" in files


def test_run_all_help_says_its_exit_codes_and_what_an_overlapping_round_does() -> None:
    """An agency's cron reads run-all's exit code and starts a round every few minutes. Its help
    only pointed to the README for the order of the codes and said nothing of a round that starts
    while the last still runs (each shop's lock: the shop is skipped, exit 4, silent)."""
    text = " ".join(_help(("run-all",)).replace("│", " ").split())
    listed = {int(code) for code in re.findall(r"\b(\d+) [a-z(]", text.split("Exit code:", 1)[1])}
    assert {0, 1, 2, 3, 4, 6, 70, 130} <= listed
    assert "128 + n" in text and "--timeout" in text.split("Exit code:", 1)[1]
    assert "still runs" in text and "skipped" in text


@pytest.mark.parametrize(("path", "codes"), [
    (("templates", "check"), {0, 1, 2, 3}),
    (("preview",), {0, 1, 2, 3}),
    (("carts",), {0, 1, 2, 3}),
    (("run",), {0, 1, 2, 3, 4, 6, 130}),  # the cron job's own help listed none: what --strict on a bad row exits
    (("report",), {0, 1, 2, 3}),
    (("send-test",), {0, 1, 2, 3}),  # it said "Exit 1 when the relay refused": a template error is 1 too
])
def test_the_help_of_the_commands_scripts_act_on_lists_their_exit_codes(path: tuple[str, ...],
                                                                         codes: set[int]) -> None:
    """A pre-commit hook, a CI job or a developer's script acts on them: the docs listed them,
    `--help` did not (`carts` exits 1 on an unreadable row and 3 on an unreadable source;
    `report` 1 when its --email was not sent)."""
    text = " ".join(_help(path).replace("│", " ").split())
    assert "Exit codes:" in text, text
    listed = {int(code) for code in re.findall(r"\b(\d+) [a-z(]", text.split("Exit codes:", 1)[1])}
    assert codes <= listed, text


@pytest.mark.parametrize("command", ["report", "report-all"])
def test_report_quiet_help_says_warnings_are_printed_too(command: str) -> None:
    """``--quiet`` said "Print nothing but errors", yet a bad order row's ``warning:`` is printed
    (rightly: cron must mail a row the report left out)."""
    text = " ".join(_help((command,)).replace("│", " ").split())
    quiet = text.split("--quiet -q", 1)[1].split(" --", 1)[0]
    assert "errors and warnings" in quiet and "bad order row" in quiet, quiet


def test_run_strict_help_says_a_bad_source_row_exits_3() -> None:
    """``--strict`` said "stop before delivering anything"; the README said a dry-run "with such a
    finding" exits 1, while a bad row exits 3 (the source): a script testing for 1 missed it."""
    text = " ".join(_help(("run",)).replace("│", " ").split())
    assert re.search(r"--strict Stop before delivering anything if any source row is bad \(exit 3", text), text


@pytest.mark.parametrize("path", [("codes", "export"), ("survey", "export")], ids=" ".join)
def test_an_exports_json_option_says_what_it_prints_and_that_the_csv_file_is_still_written(
        path: tuple[str, ...]) -> None:
    """"Print one JSON document instead of tables": an export prints no table, and a script
    author read it as JSON codes written to --output instead of the CSV the shop imports."""
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", _help(path)).split())
    assert "instead of tables" not in text
    assert "in place of the CSV on stdout; with --output the CSV is still written" in text
