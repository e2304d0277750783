"""What every start of the command line pays: typer reads each command's annotations."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from cartrescue import cli

NAMES = sorted(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]


def _callbacks(app: typer.Typer) -> list[Any]:
    found: list[Any] = [app.registered_callback.callback] if app.registered_callback else []
    found += [command.callback for command in app.registered_commands]
    for group in app.registered_groups:
        assert group.typer_instance is not None
        found += _callbacks(group.typer_instance)
    return found


def test_typer_reads_every_commands_annotations_as_objects_not_text_to_evaluate() -> None:
    callbacks = _callbacks(cli.app)
    assert len(callbacks) > 20
    written_as_text = [f"{callback.__module__}.{callback.__qualname__}: {name}" for callback in callbacks
                       for name, annotation in callback.__annotations__.items() if isinstance(annotation, str)]
    assert written_as_text == []
    assert typer.main.get_command(cli.app).name == "cartrescue"


def test_the_config_models_fields_are_objects_not_text_for_pydantic_to_evaluate() -> None:
    import importlib
    import pkgutil

    import pydantic

    from cartrescue import config

    modules = [importlib.import_module(f"{config.__name__}.{info.name}") for info in pkgutil.iter_modules(config.__path__)]
    models = [model for module in modules for model in vars(module).values()
              if isinstance(model, type) and issubclass(model, pydantic.BaseModel) and model.__module__ == module.__name__]
    assert config.Config in models and config.SourceConfig in models
    written_as_text = [f"{model.__name__}.{name}" for model in models
                       for name, annotation in vars(model).get("__annotations__", {}).items() if isinstance(annotation, str)]
    assert written_as_text == []


@pytest.mark.parametrize("name", NAMES)
def test_a_line_naming_a_command_builds_that_command_alone_with_the_same_help_and_errors(name: str) -> None:
    alone = cli._app_for([name, "--json"])
    assert sorted(typer.main.get_command(alone).commands) == [name]  # type: ignore[attr-defined]
    for args in ([name, "--help"], [name, "--no-such-option", "--json"]):
        whole = CliRunner().invoke(cli.app, args, env={"COLUMNS": "120"})
        result = CliRunner().invoke(alone, args, env={"COLUMNS": "120"})
        assert (result.exit_code, result.output) == (whole.exit_code, whole.output)


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"], ["rn"], ["--json", "run"], ["RUN"], ["run_all"]])
def test_any_other_line_runs_the_whole_app(args: list[str]) -> None:
    assert cli._app_for(args) is cli.app
