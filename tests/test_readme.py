"""The README's promises: its Quick-start commands run as written, and CI runs the test command."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == commands[1]


@pytest.mark.slow
def test_the_demo_command_runs_as_written_in_a_fresh_clone(tmp_path: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    clone = tmp_path / "clone"
    for name in files:
        if name and (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    result = subprocess.run(quick_start_commands()[0], shell=True, cwd=clone, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"\d+ send", result.stdout) and re.search(r"\d+ defer", result.stdout)
    assert "dry-run: nothing was delivered or recorded" in result.stdout


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives ``path``'s headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated one numbered."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"#{1,6} ", line):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_every_link_between_the_docs_leads_to_a_file_and_heading_that_exist() -> None:
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]:
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert broken == []



def _command_table() -> dict[str, list[str]]:
    """The README's command table: each row -> the commands its first cell names, with the
    argument words written after them (``suppress import FILE``; a cell may name several)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("| command | what it does |", 1)[1].split("\n### ", 1)[0]
    return {line: [named.replace("\\|", "|") for named in re.findall(r"`([^`]+)`", line.split(" | ", 1)[0])]
            for line in section.splitlines() if line.startswith("| `")}


def _help_output(words: list[str]) -> str:
    return _help_of(tuple(words))


@functools.cache
def _help_of(words: tuple[str, ...]) -> str:
    from typer.testing import CliRunner

    from cartrescue.cli import app

    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result.output


def _help_text(words: list[str]) -> str:
    return " ".join(_help_output(words).replace("│", " ").split())


def _usage(words: list[str]) -> str:
    """The command and its arguments as its usage line writes them, without ``[OPTIONS]``."""
    line = re.search(r"Usage: cartrescue (.*?) \[OPTIONS\] ?(.*)", _help_output(words))
    assert line is not None
    return f"{line[1]} {line[2].strip()}".strip()


def _commands(words: str) -> list[list[str]]:
    """The commands a table cell names: ``codes list|export`` is two, ``TOKEN|EMAIL`` one argument."""
    parts = words.split()
    subs = parts[1].split("|") if len(parts) > 1 and parts[1].islower() else [""]
    return [[parts[0], sub] if sub else [parts[0]] for sub in subs]


def test_the_command_table_has_a_row_for_every_command() -> None:
    import typer

    from cartrescue.cli import app

    named = {words.split()[0] for cell in _command_table().values() for words in cell}
    assert named == set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_each_command_of_the_table_is_written_with_the_arguments_of_its_usage_line() -> None:
    wrong = [f"README `{words}`, --help `{_usage(words.split())}`" for cell in _command_table().values()
             for words in cell if len(_commands(words)) == 1 and _usage(words.split()) != words]
    assert wrong == []


def test_every_option_a_row_of_the_table_names_is_in_its_commands_help() -> None:
    missing = []
    for row, cell in _command_table().items():
        helps = " ".join(_help_text(command) for words in cell for command in _commands(words))
        missing += [f"{cell[0]}: {option}" for option in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", row)))
                    if option not in helps]
    assert missing == []


def test_a_default_the_table_gives_for_an_option_is_the_one_its_help_gives() -> None:
    """`--jobs N` at a time (default: the cores) was "the cores, at most 8" in --help."""
    wrong = []
    for row, cell in _command_table().items():
        if len(cell) != 1 or len(_commands(cell[0])) != 1:
            continue
        helps = _help_text(cell[0].split()).lower()
        for option, default in re.findall(r"`(--[a-z][a-z0-9-]*)(?: [A-Z]+)?`[^`(|]*?\(default:? `?([^`)]+)", row):
            if not re.search(rf"default: {re.escape(default.lower())}[).]", helps):
                wrong.append(f"{cell[0]} {option}: README {default!r}")
    assert wrong == []


@pytest.mark.slow
def test_the_run_json_example_has_the_keys_of_the_demos_document() -> None:
    """The example under `--json` lacked `warnings`, which every run's document ends with."""
    import json

    text = (REPO / "README.md").read_text(encoding="utf-8").split("### `--json`", 1)[1]
    example = json.loads(re.search(r"```json\n(.+?)\n```", text, re.S)[1])  # type: ignore[index]
    result = subprocess.run([sys.executable, "-m", "cartrescue", "run", "--config", "examples/cartrescue.yaml",
                             "--json", "--workers", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert list(example) == list(document)
    shown = example["decisions"][0]
    assert [list(shown)] == [list(d) for d in document["decisions"] if d["cart_id"] == shown["cart_id"]]
    assert set(example["counts"]) == set(document["counts"])


def test_every_option_a_command_line_of_the_docs_gives_is_in_that_commands_help() -> None:
    """A command line in README.md or docs/ (a code block's, or a `cartrescue ...` span) is copied
    as written: each option it gives must be one its command takes."""
    import typer

    from cartrescue.cli import app

    groups = {name: set(getattr(command, "commands", {})) for name, command in
              typer.main.get_command(app).commands.items()}  # type: ignore[attr-defined]
    missing = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        lines = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]
        lines += re.findall(r"`(cartrescue [^`]+)`", text)
        for line in lines:
            for name, rest in re.findall(r"\bcartrescue ([a-z][a-z-]*)([^#&|;`]*)", line):
                if name not in groups:
                    continue
                words = [name, *rest.split()[:1]] if groups[name] and rest.split()[:1] in [[s] for s in groups[name]] \
                    else [name]
                helps = _help_text(words)
                missing += [f"{doc.name}: {line.strip()}: {option}"
                            for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest) if option not in helps]
    assert missing == []


def test_the_upgrading_section_names_the_version_that_runs() -> None:
    """0.1.0 stayed for weeks of changes: a new wheel installed over the old one was 'already
    installed' and changed nothing, and --version could not tell them apart. A release raises
    the version and says so where the README tells what an upgrade changes."""
    from cartrescue import __version__

    upgrading = (REPO / "README.md").read_text(encoding="utf-8").split("### Upgrading", 1)[1].split("\n## ", 1)[0]
    assert f"{__version__} is the version of " in upgrading
