"""`init [DIR]`: a commented config and the default templates to start a shop from."""

import shlex
from pathlib import Path
from typing import Annotated

import typer

from cartrescue.commands.common import JsonOption, err_console, fail, json_out, output_file, output_folder
from cartrescue.errors import CartrescueError, ConfigError


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write cartrescue.yaml and templates/.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a starting config (cartrescue.yaml) and the default templates into DIRECTORY.

    --json prints the paths it wrote (config, templates), or the error alone (exit 2).

    Example:

        cartrescue init /srv/shop && $EDITOR /srv/shop/cartrescue.yaml
    """
    import shutil

    from cartrescue.compose.render import shipped_templates

    try:
        shipped = shipped_templates()
        text = init_config(example_config())
    except CartrescueError as error:
        fail(error, as_json)
    config_file = directory / "cartrescue.yaml"
    templates = directory / "templates"
    try:
        output_folder("init", directory)
    except CartrescueError as error:
        fail(error, as_json)
    there = [str(path) for path in (config_file, templates) if path.exists()]
    if there and not force:
        fail(ConfigError(f"{' and '.join(there)} {'exist' if len(there) > 1 else 'exists'} already "
                         "(use --force to overwrite)"), as_json)
    # Templates first: a config is only written once everything it points at is there. What
    # cannot be written (a file where templates/ goes, a folder named cartrescue.yaml, a write
    # refused even to root) names the path, exit 2: it was "internal error", exit 70.
    try:
        with output_file("init", templates):
            shutil.copytree(shipped, templates, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "__init__.py"))
        with output_file("init", config_file):
            config_file.write_text(text, encoding="utf-8")
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"config": str(config_file), "templates": str(templates)})
        return
    here = directory.resolve() == Path.cwd().resolve()  # elsewhere, run needs to be told where the config is
    err_console().print(f"wrote {config_file} and {templates}/ — edit the shop: and source: sections, then run "
                        f"`cartrescue run{'' if here else f' --config {shlex.quote(str(config_file))}'}`",
                        markup=False, highlight=False, soft_wrap=True)


def init_config(example: str) -> str:
    """The example config as ``init`` writes it: it uses the templates written beside it, and the
    sender's name follows ``shop.name`` (an example ``from_name`` would outlive the shop's own)."""
    replacements = {
        "\ntemplates: null ": "\ntemplates: templates",
        "\n  from_name: Example Shop ": "\n  from_name: null        ",
    }
    for old, new in replacements.items():
        if old not in example:
            raise ConfigError(f"config.example.yaml: expected {old.strip()!r} in it (this installation is damaged)")
        example = example.replace(old, new, 1)
    return example


def example_config() -> str:
    """The annotated example config (config.example.yaml), from a checkout or the installed copy."""
    from cartrescue.resources import shipped_file

    path = shipped_file("config.example.yaml")
    if path is None:
        raise ConfigError("config.example.yaml is missing from this installation (reinstall cartrescue)")
    return path.read_text(encoding="utf-8")
