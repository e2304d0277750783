"""The messages of a config that does not validate: each names the file, the key and its line,
"did you mean" a close key, and never a secret's value.

Apart from the loading because they turn pydantic's errors into words, and read ``Config`` for it.
"""

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from cartrescue.config.lines import line_of
from cartrescue.config.root import Config
from cartrescue.config.secret_keys import SECRET_KEY


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "json-or-python")):
            continue
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(top level)"


UNKNOWN_KEY = "unknown key (check the spelling; see config.example.yaml)"


#: Keys that moved, and where to: the error names the new place instead of "unknown key".
MOVED_KEYS = {"doctor.export_stale_after": "source.export_stale_after (it now also holds back sending runs)"}


def format_validation_error(file: str, error: ValidationError,
                            key_lines: "dict[tuple[str | int, ...], int] | None" = None) -> str:
    """One line per error, ``file: key: what was expected``; with ``key_lines`` (:func:`lines_of_keys`)
    ending in `` (line N)``, the line of the key (or of the nearest section holding it)."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and _location(item["loc"]) in MOVED_KEYS:
            message = f"moved to {MOVED_KEYS[_location(item['loc'])]}"
        elif item["type"] == "extra_forbidden":
            close = _near_key(item["loc"]) or _key_elsewhere(item["loc"])
            message = f"unknown key (did you mean {close}? see config.example.yaml)" if close else UNKNOWN_KEY
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "invalid_key" or item["loc"][-1:] == ("[key]",):
            message = key_not_text(item["input"])
        elif item["input"] is None and item["type"].endswith("_type"):  # all the keys under it commented out?
            message = f"{_SECTION if item['type'] in _SECTION_TYPES else message}, got null"
        elif item["type"] in _SECTION_TYPES:  # "... or instance of ShopConfig" named a class, not the cause
            message = _SECTION + (" (got a list)" if isinstance(item["input"], list) else _got(item))
        else:
            message += _got(item)
        where = _location(_key_owner(item))
        inner = re.match(r"^((?:\[\d+\]|[a-z_][a-z0-9_]*)(?:\.[a-z_][a-z0-9_]*|\[\d+\])*): (.*)$", message, re.S)
        if where == "(top level)" and re.match(r"^[a-z_]+(\.|\[|:)", message):
            lines.append(f"{file}: {message}")  # a whole-file check names its key in the message
        elif inner and item["type"] == "value_error":  # a section's check names the key inside it
            dot = "" if inner.group(1).startswith("[") else "."
            lines.append(f"{file}: {where}{dot}{inner.group(1)}: {inner.group(2)}")
        else:
            lines.append(f"{file}: {where}: {message}")
        lines[-1] += line_of(lines[-1][len(file) + 2:].split(": ", 1)[0], key_lines or {})
    return "\n".join(lines)


def _key_owner(item: Any) -> tuple[int | str, ...]:
    """The ``loc`` an error names: for a key that is not text, the mapping holding it. Pydantic
    puts such a key (``no:``, ``1:``) in ``loc`` as an index, and ``[key]`` after it:
    ``survey.words[0].[key]`` named no key a file has."""
    loc: tuple[int | str, ...] = item["loc"]
    if loc[-1:] == ("[key]",):
        return loc[:-2]
    return loc[:-1] if item["type"] == "invalid_key" else loc


def key_not_text(key: Any) -> str:
    """Why a key of the file that YAML read as a number or true/false is refused, and the fix."""
    if isinstance(key, bool):
        return f"key {str(key).lower()}: YAML reads an unquoted yes, no, on or off as true or false: quote the key"
    return f"key {key!r} is not text: quote it (\"{key}\")"


#: Pydantic's errors for a section that is not a mapping, and what they say instead.
_SECTION_TYPES = ("model_type", "model_attributes_type", "dict_type")


_SECTION = "expected a mapping of keys (key: value)"


#: Config fields :func:`load_config` sets itself: never keys of the file.
INTERNAL_KEYS = ("base_dir", "config_file", "unset_env")


def _near_key(loc: tuple[int | str, ...]) -> str | None:
    """The key of the section at ``loc[:-1]`` closest to the unknown ``loc[-1]`` (``cutoff`` for
    ``cut_off``), found by walking the models the way ``loc`` went; None if none is near."""
    import typing
    from difflib import get_close_matches

    def unwrapped(kind: Any) -> Any:
        """``Annotated[X, ...]`` and ``X | None`` as ``X``."""
        while typing.get_origin(kind) not in (None, list, dict):
            kind = next((arg for arg in typing.get_args(kind) if arg is not type(None)), None)
        return kind

    kind: Any = Config
    for part in loc[:-1]:
        kind = unwrapped(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return None
            kind = field.annotation
        elif typing.get_origin(kind) in (list, dict):
            kind = typing.get_args(kind)[-1]  # a list's items, a dict's values: part is an index or a name
        else:
            return None
    kind = unwrapped(kind)
    if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return None
    names = [name for name in kind.model_fields if kind is not Config or name not in INTERNAL_KEYS]
    close = get_close_matches(str(loc[-1]), names, n=1, cutoff=0.7)
    return close[0] if close else None


def _key_elsewhere(loc: tuple[int | str, ...]) -> str | None:
    """The sections that do have the unknown key ``loc[-1]`` (``eligibility.cutoff`` for a
    ``cutoff:`` written at the top level, not indented under ``eligibility:``), as
    ``a, b or c``; None if no section has it. Only sections, not lists of them (tiers, steps)."""
    name, found = str(loc[-1]), []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for field, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, f"{prefix}{field}.")
            elif field == name and prefix:
                found.append(prefix + field)

    walk(Config, "")
    if not found:
        return None
    return found[0] if len(found) == 1 else f"{', '.join(found[:-1])} or {found[-1]}"


def _got(item: Any) -> str:
    """`` (got 'abc')``: the value an error is about, where :func:`_shows_input` lets it be shown."""
    if not _shows_input(item):
        return ""
    from cartrescue.text import printable

    if isinstance(item["input"], bool):  # consent: no, meant as the word (none)
        return f" (got {str(item['input']).lower()}: YAML reads an unquoted yes, no, on or off as true or false)"
    if item["type"] == "string_type":  # sender: +46701234567 is an integer to YAML, its + gone
        return (f" (got {item['input']}: YAML reads an unquoted number as a number, without a leading + or 0: "
                "quote the value as written, e.g. '+46701234567')")
    return f" (got {printable(repr(item['input']))[:60]})"


def _shows_input(item: Any) -> bool:
    """A value of the wrong type or out of range is quoted in its error (``smtp.port: Input
    should be a valid integer ... (got 'abc')``); a secret's never, nor a section's."""
    scalar = isinstance(item.get("input"), (str, int, float, bool)) and item["type"] != "value_error"
    last = str(item["loc"][-1]) if item["loc"] else ""
    return scalar and not SECRET_KEY.search(last)
