"""Compiled templates kept between runs (cartrescue/template_cache.py): used only while the
source is unchanged, only in a private folder, and never at the cost of a render."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cartrescue.compose.render import Renderer
from cartrescue.config import Config
from cartrescue.template_cache import cache_folder, private_folder

SUBJECT = "en/reminder-1.subject.txt"


def _renderer(templates: Path, cache: Path | str, monkeypatch: pytest.MonkeyPatch) -> Renderer:
    monkeypatch.setenv("CARTRESCUE_CACHE_DIR", str(cache))
    return Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=templates))


def _templates(tmp_path: Path, subject: str = "Hello {{ shop.name }}") -> Path:
    folder = tmp_path / "templates" / "en"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reminder-1.subject.txt").write_text(subject, encoding="utf-8")
    return folder.parent


def _compiles(renderer: Renderer) -> list[str]:
    """Records the names the environment compiles (the real compile still runs)."""
    compiled: list[str] = []
    compile_ = renderer.env.compile

    def counting(source: Any, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name or "")
        return compile_(source, name, *args, **kwargs)

    renderer.env.compile = counting  # type: ignore[method-assign]
    return compiled


def _subject(renderer: Renderer) -> str:
    return renderer.render_file(SUBJECT, {"shop": {"name": "Shop"}})


def _next_run(templates: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    """A new run's subject, and the templates it compiled for it."""
    renderer = _renderer(templates, cache, monkeypatch)
    compiled = _compiles(renderer)
    return _subject(renderer), compiled


def test_a_second_run_loads_a_compiled_template_instead_of_compiling_it(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    templates, cache = _templates(tmp_path), tmp_path / "cache"
    assert _subject(_renderer(templates, cache, monkeypatch)) == "Hello Shop"
    assert _next_run(templates, cache, monkeypatch) == ("Hello Shop", [])
    assert len(list((cache / "templates").glob("*.jinja"))) == 1


def test_a_first_run_compiles_and_keeps_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates, cache = _templates(tmp_path), tmp_path / "cache"
    assert _next_run(templates, cache, monkeypatch) == ("Hello Shop", [SUBJECT])
    assert len(list((cache / "templates").glob("*.jinja"))) == 1
    assert oct((cache / "templates").stat().st_mode & 0o777) == oct(0o700)


def test_an_edited_template_is_compiled_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates, cache = _templates(tmp_path), tmp_path / "cache"
    assert _subject(_renderer(templates, cache, monkeypatch)) == "Hello Shop"
    _templates(tmp_path, "Bye {{ shop.name }}")
    assert _next_run(templates, cache, monkeypatch) == ("Bye Shop", [SUBJECT])


def test_a_damaged_cache_file_is_compiled_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates, cache = _templates(tmp_path), tmp_path / "cache"
    _subject(_renderer(templates, cache, monkeypatch))
    for kept in (cache / "templates").glob("*.jinja"):
        kept.write_bytes(kept.read_bytes()[:40] + b"\x00garbage")
    assert _next_run(templates, cache, monkeypatch) == ("Hello Shop", [SUBJECT])


def test_a_folder_others_can_write_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates, cache = _templates(tmp_path), tmp_path / "cache"
    (cache / "templates").mkdir(parents=True)
    (cache / "templates").chmod(0o777)
    assert _subject(_renderer(templates, cache, monkeypatch)) == "Hello Shop"
    assert list((cache / "templates").iterdir()) == []


def test_a_symlinked_folder_is_not_used(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    assert private_folder(real) == real
    assert private_folder(tmp_path / "link") is None


def test_a_cache_that_cannot_be_made_costs_only_the_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates = _templates(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    renderer = _renderer(templates, blocker, monkeypatch)
    assert renderer.env.bytecode_cache is None
    assert _subject(renderer) == "Hello Shop"


def test_an_empty_setting_turns_the_cache_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _renderer(_templates(tmp_path), "", monkeypatch).env.bytecode_cache is None


@pytest.mark.parametrize(("environ", "expected"), [
    ({"CARTRESCUE_CACHE_DIR": "/srv/cache", "XDG_CACHE_HOME": "/x"}, "/srv/cache/templates"),
    ({"XDG_CACHE_HOME": "/x"}, "/x/cartrescue/templates"),
    ({"XDG_CACHE_HOME": "relative"}, "~/.cache/cartrescue/templates"),  # the XDG spec: ignored
    ({}, "~/.cache/cartrescue/templates"),
])
def test_the_cache_folder_follows_the_settings(environ: dict[str, str], expected: str) -> None:
    assert cache_folder(environ) == Path(os.path.expanduser(expected))


@pytest.mark.parametrize("home", ["", "/"])
def test_no_home_folder_means_no_cache(monkeypatch: pytest.MonkeyPatch, home: str) -> None:
    monkeypatch.setenv("HOME", home)  # a bare cron entry or container
    assert cache_folder({}) is None
    assert cache_folder({"XDG_CACHE_HOME": "/x"}) == Path("/x/cartrescue/templates")


def test_a_template_compiled_by_another_build_of_the_code_generator_is_compiled_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade that keeps the version number (0.1.0 for weeks) and the generator's class name,
    or a checkout being worked on, changes what templates compile to: its cache is not used."""
    import cartrescue.compose.render as render_module
    import cartrescue.template_cache as template_cache

    templates, cache = _templates(tmp_path), tmp_path / "cache"
    assert _subject(_renderer(templates, cache, monkeypatch)) == "Hello Shop"
    assert _next_run(templates, cache, monkeypatch) == ("Hello Shop", [])  # the same build: loaded
    changed = tmp_path / "render.py"  # the module as another build of it writes the generator
    changed.write_bytes(Path(render_module.__file__).read_bytes() + b"\n# another build\n")
    monkeypatch.setattr(template_cache, "module_file",
                        lambda module: str(changed) if module == render_module.__name__ else None)
    assert _next_run(templates, cache, monkeypatch) == ("Hello Shop", [SUBJECT])


def test_a_home_folder_that_does_not_exist_gets_no_cache_made_in_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's service user has ``HOME=/nonexistent`` (Debian's, Docker's ``nobody``): a
    run as root there made ``/nonexistent/.cache/cartrescue``, the folder that must not exist."""
    home = tmp_path / "nonexistent"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CARTRESCUE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_folder() is None
    Renderer(Config(source={"type": "csv", "carts": "c.csv"}, templates=_templates(tmp_path)))
    assert not home.exists()
