"""A path the user named for a command's output that cannot take it (a file where a folder should
be, a folder under a file, /proc) is a usage error naming the option, exit 2, found before anything
is read, claimed, sent or marked: never "a bug in cartrescue" (exit 70)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from cartrescue.errors import ExitCode
from conftest import NOW, Shop, cart, cli, iso
from test_incentives import _incentive_shop


@pytest.fixture
def in_the_way(shop: Shop) -> Path:
    """A plain file where the user meant a folder."""
    path = shop.folder / "afile"
    path.write_text("not a folder\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_run_outbox_onto_a_file_stops_before_any_claim(shop: Shop, in_the_way: Path, workers: str) -> None:
    shop.add(*(cart(f"c{n}") for n in range(4)))
    result = shop.cli("run", "--outbox", str(in_the_way), "--json", "--workers", workers)
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert result.json["error"]["message"] == f"--outbox {in_the_way}: is a file, not a folder"
    assert not (shop.folder / "ledger.db").exists() or shop.messages() == []


def test_run_outbox_under_a_file_names_the_option(shop: Shop, in_the_way: Path) -> None:
    shop.add(cart("c1"))
    result = shop.cli("run", "--outbox", str(in_the_way / "out"))
    assert result.exit_code == ExitCode.CONFIG
    assert f"--outbox {in_the_way / 'out'}: cannot make the folder: Not a directory" in result.stderr


def test_a_relative_outbox_is_beside_the_config(shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shop.add(cart("c1"))
    shop.write()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("run", "--outbox", "out", "--config", str(shop.config_path), "--now", iso(NOW))
    assert result.exit_code == 0, result.output
    assert len(list((shop.folder / "out").glob("*.eml"))) == 1 and not (elsewhere / "out").exists()


def test_send_test_outbox_onto_a_file(shop: Shop, in_the_way: Path) -> None:
    shop.add(cart("c1"))
    result = shop.cli("send-test", "qa@example.com", "--outbox", str(in_the_way), "--json")
    assert result.exit_code == ExitCode.CONFIG
    assert result.json["error"]["message"] == f"--outbox {in_the_way}: is a file, not a folder"


def test_preview_html_under_a_file(shop: Shop, in_the_way: Path) -> None:
    shop.add(cart("c1"))
    result = shop.cli("preview", "c1", "--html", str(in_the_way / "x.html"), "--json")
    assert result.exit_code == ExitCode.CONFIG
    assert result.json["error"]["message"].startswith(f"--html {in_the_way / 'x.html'}: cannot write: ")


def test_templates_check_junit_under_a_file(shop: Shop, in_the_way: Path) -> None:
    shop.write()
    result = shop.cli("templates", "check", "--quick", "--junit", str(in_the_way / "x.xml"), "--json", now=None)
    assert result.exit_code == ExitCode.CONFIG
    assert result.json["error"]["message"].startswith(f"--junit {in_the_way / 'x.xml'}: cannot write: ")


def test_codes_export_to_an_unwritable_path_marks_no_code_exported(shop: Shop, in_the_way: Path) -> None:
    _incentive_shop(shop)
    assert shop.cli("codes", "generate", "3", "--pool", "ship", now=None).exit_code == 0
    result = shop.cli("codes", "export", "--output", str(in_the_way / "codes.csv"), "--json")
    assert result.exit_code == ExitCode.CONFIG
    assert result.json["error"]["message"].startswith(f"--output {in_the_way / 'codes.csv'}: cannot write: ")
    assert shop.cli("codes", "export", "--json").json["exported"] == 3  # none was marked by the failed export


def _with_no_room(shop: Shop, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as on a full disk: a file size limit of 0, so every write of a file fails
    (EFBIG, as ENOSPC would); creating files and folders still works."""
    def no_room() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    return subprocess.run([sys.executable, "-m", "cartrescue.cli", *args, "--config", str(shop.config_path)],
                          cwd=shop.folder, capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=no_room, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def test_codes_export_that_cannot_write_its_file_leaves_no_file_or_folder_it_made(shop: Shop) -> None:
    """``codes export -o new/dir/codes.csv`` on a full disk exits 1, and left the folders it made
    with an empty codes.csv in them, read as an export of no code."""
    _incentive_shop(shop)
    assert shop.cli("codes", "generate", "3", "--pool", "ship", now=None).exit_code == 0
    done = _with_no_room(shop, "codes", "export", "--output", str(shop.folder / "new" / "dir" / "codes.csv"))
    assert done.returncode == ExitCode.SOME_FAILED, done.stderr
    assert "File too large" in done.stderr
    assert not (shop.folder / "new").exists()
    assert shop.cli("codes", "export", "--json").json["exported"] == 3  # none was marked


def test_init_into_a_file(in_the_way: Path) -> None:
    result = cli("init", str(in_the_way))
    assert result.exit_code == ExitCode.CONFIG
    assert f"init {in_the_way}: is a file, not a folder" in result.stderr


def test_init_elsewhere_says_how_to_run_with_its_config(tmp_path: Path) -> None:
    result = cli("init", str(tmp_path / "shop"))
    assert result.exit_code == 0
    assert f"then run `cartrescue run --config {tmp_path / 'shop' / 'cartrescue.yaml'}`" in result.stderr
    again = cli("init", str(tmp_path / "shop"))
    assert again.exit_code == ExitCode.CONFIG
    assert (f"{tmp_path / 'shop' / 'cartrescue.yaml'} and {tmp_path / 'shop' / 'templates'} exist already"
            in again.stderr)


@pytest.mark.parametrize("command", [["report", "--html"], ["survey", "export", "--output"]])
def test_report_and_survey_files_under_a_file(shop: Shop, in_the_way: Path, command: list[str]) -> None:
    shop.add(cart("c1"))
    result = shop.cli(*command, str(in_the_way / "x.out"), "--json", now=None)
    assert result.exit_code == ExitCode.CONFIG
    assert result.json["error"]["message"].startswith(f"{command[-1]} {in_the_way / 'x.out'}: cannot write: ")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("command", [["report", "--html"], ["survey", "export", "--output"],
                                     ["preview", "c1", "--now", iso(NOW), "--html"],
                                     ["templates", "check", "--quick", "--junit"], ["codes", "export", "--output"]])
def test_a_file_named_for_the_output_on_a_full_disk_is_named_in_the_error(shop: Shop, command: list[str]) -> None:
    """``report --html /var/www/report.html`` on a full disk said "cannot write its output (or a
    working file in the temporary folder)", which sent the owner to stdout and $TMPDIR, not to the
    file. Still exit 1, as for any output a full disk keeps from being written."""
    shop.add(cart("c1"))
    shop.write()
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", *command, "/dev/full", "--json",
                           "--config", str(shop.config_path)],
                          cwd=shop.folder, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == ExitCode.SOME_FAILED, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "failed"
    assert error["message"] == f"{command[-1]} /dev/full: cannot write: No space left on device"


@pytest.mark.parametrize(("command", "said"), [
    (["run", "--eml"], "--eml -: the messages go into a folder, a file each"),
    (["run", "--outbox"], "--outbox -: the messages go into a folder, a file each"),
    (["send-test", "me@example.com", "--outbox"], "--outbox -: the messages go into a folder, a file each"),
    (["report", "--csv"], "--csv -: one file per table goes into a folder"),
    (["report", "--json", "--html"], "--html -: --json writes to stdout too"),
    (["preview", "c1", "--html"], "--html -: stdout shows the preview"),
    (["preview", "c1", "--screenshot"], "--screenshot -: the picture goes to a PNG file"),
], ids=["run-eml", "run-outbox", "send-test-outbox", "report-csv", "report-html-json", "preview-html",
        "preview-screenshot"])
def test_a_dash_where_stdout_cannot_take_the_output_is_refused(
        shop: Shop, monkeypatch: pytest.MonkeyPatch, command: list[str], said: str) -> None:
    """``-`` is stdout by the usual convention: these made a file or a folder named ``-`` beside
    the config, or in the working folder, and said they had written it."""
    monkeypatch.chdir(shop.folder)
    result = shop.add(cart("c1")).cli(*command, "-")
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert said in result.stderr
    assert not (shop.folder / "-").exists()


def test_run_all_outbox_dash_is_refused(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shop.folder)
    shop.add(cart("c1")).write()
    result = cli("run-all", "--outbox", "-", str(shop.config_path))
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert "--outbox -: the messages go into a folder, a file each" in result.stderr
    assert not (shop.folder / "-").exists()


def test_report_html_dash_prints_the_page_in_place_of_the_report(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shop.folder)
    assert shop.add(cart("c1")).cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    result = shop.cli("report", "--html", "-", now=None)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>") and result.stdout.rstrip().endswith("</html>")
    assert not (shop.folder / "-").exists()
