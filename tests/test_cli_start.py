"""What every start of the command line pays: typer reads each command's annotations."""

from __future__ import annotations

from typing import Any

import typer.main

from cartrescue import cli


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
    import pydantic

    from cartrescue import config

    models = [model for model in vars(config).values()
              if isinstance(model, type) and issubclass(model, pydantic.BaseModel) and model.__module__ == config.__name__]
    assert config.Config in models
    written_as_text = [f"{model.__name__}.{name}" for model in models
                       for name, annotation in vars(model).get("__annotations__", {}).items() if isinstance(annotation, str)]
    assert written_as_text == []
