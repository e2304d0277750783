"""Reading a config file: bounded YAML (no alias bombs, no key written twice), hints for YAML
mistakes (tabs, unclosed quotes), then ``${ENV}`` and validation into :class:`Config`.

Apart from the models: the only module that touches the file and PyYAML.
"""

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cartrescue.config.env import interpolate
from cartrescue.config.errors import (
    INTERNAL_KEYS,
    UNKNOWN_KEY,
    key_not_text,
    format_validation_error,
)
from cartrescue.config.lines import lines_of_keys, line_of
from cartrescue.config.root import DEFAULT_CONFIG, Config
from cartrescue.config.secret_keys import scrub, secret_values
from cartrescue.errors import ConfigError

MAX_YAML_DEPTH = 32


MAX_YAML_ALIASES = 100


MAX_YAML_NODES = 100_000


def _expanded_size(root: Any, limit: int) -> int:
    """How many values the YAML node graph ``root`` holds with every alias written out, counted
    once per node (aliased nodes are shared) and no further than just past ``limit``; a node
    that contains itself counts as past it."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key] if sizes[key] >= 0 else limit + 1  # -1: being counted: recursive
        sizes[key] = -1
        total = 1
        value = node.value
        if isinstance(value, list):
            for item in value:
                total += sum(size(part) for part in item) if isinstance(item, tuple) else size(item)
                if total > limit:
                    break
        sizes[key] = total = min(total, limit + 1)
        return total

    return size(root)


class _OneKeyOnce:
    """A loader's mapping constructor that refuses a key written twice in one mapping (two
    ``shop:`` sections, two ``host:`` lines): YAML would keep the last one silently. Keys a ``<<``
    merge brings may be overridden, as YAML means them to be. ``file``: named in the error."""

    file: Path

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        import yaml

        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, _value in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    line = key_node.start_mark.line + 1
                    if key_node.value in seen:
                        raise ConfigError(f"{self.file}:{line}: {key_node.value!r} is given twice in one mapping "
                                          f"(first on line {seen[key_node.value]}): YAML would silently keep "
                                          "the last; remove one")
                    seen[key_node.value] = line
        return super().construct_mapping(node, deep)  # type: ignore[misc]


def safe_yaml(text: str, file: Path, key_lines: "dict[tuple[str | int, ...], int] | None" = None) -> Any:
    """``yaml.safe_load`` with bounds: an alias bomb or absurd nesting is refused, not expanded.
    ``key_lines``: filled with the line of each key (:func:`lines_of_keys`), for the errors.

    PyYAML shares aliased nodes, but everything that walks the result afterwards (interpolation,
    validation) would expand a "billion laughs" document exponentially.

    Read by libyaml where PyYAML has it (:func:`_fast_yaml`: a tenth of the time; a config of
    ``cartrescue init`` took 40 ms of every command's start in pure Python); a document it
    refuses, or one past a bound, is read again by PyYAML's own reader, whose errors name the
    line and the problem as every message and test here knows them.
    """
    fast = _fast_yaml(text, file)
    if fast is not None:
        node, loader = fast
        try:
            return _document(node, loader, key_lines)
        finally:
            loader.dispose()
    import yaml

    class Loader(_OneKeyOnce, yaml.SafeLoader):
        depth = 0
        aliases = 0
        nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    mark = self.peek_event().start_mark
                    raise ConfigError(f"{file}:{mark.line + 1}: more than {MAX_YAML_ALIASES} YAML aliases "
                                      "(refused: it could expand without end)")
            self.nodes += 1
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH or self.nodes > MAX_YAML_NODES:
                    mark = self.peek_event().start_mark
                    what = f"nested deeper than {MAX_YAML_DEPTH} levels" if self.depth > MAX_YAML_DEPTH \
                        else f"more than {MAX_YAML_NODES} values"
                    raise ConfigError(f"{file}:{mark.line + 1}: {what} (refused: not a cartrescue config)")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def compose_document(self) -> Any:
            """The document, refused when its aliases would expand past :data:`MAX_YAML_NODES`
            values: 30 aliases that each name the one before twice are a billion values (counting
            them alone would not stop it), and a recursive one never ends."""
            node = super().compose_document()
            if self.aliases and _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
                raise ConfigError(f"{file}: its YAML aliases expand to more than {MAX_YAML_NODES} values "
                                  "(refused: it could expand without end)")
            return node

    loader = Loader(text)
    loader.file = file
    try:
        return _document(loader.get_single_node(), loader, key_lines)
    finally:
        loader.dispose()


def _document(node: Any, loader: Any, key_lines: "dict[tuple[str | int, ...], int] | None") -> Any:
    """The Python value of the composed ``node`` (None for an empty file), its keys' lines in ``key_lines``."""
    if node is None:
        return None
    if key_lines is not None:
        key_lines.update(lines_of_keys(node))
    return loader.construct_document(node)


def _fast_yaml(text: str, file: Path) -> "tuple[Any, Any] | None":
    """The document's node graph composed by libyaml, and the loader that constructs it; None
    where PyYAML has no libyaml, libyaml refuses the text, or the text is past a bound (nesting,
    values, aliases, their expansion): :func:`safe_yaml` then reads it with PyYAML's reader,
    which says why. The bounds are checked on libyaml's events before the graph is composed
    (its composer cannot be stopped midway as PyYAML's can)."""
    import yaml

    if not getattr(yaml, "__with_libyaml__", False):
        return None

    class FastLoader(_OneKeyOnce, yaml.CSafeLoader):  # type: ignore[misc,name-defined]
        pass

    depth = nodes = aliases = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)):
                nodes += 1
                aliases += isinstance(event, yaml.AliasEvent)
                if depth + 1 > MAX_YAML_DEPTH or nodes > MAX_YAML_NODES or aliases > MAX_YAML_ALIASES:
                    return None
                depth += isinstance(event, yaml.CollectionStartEvent)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        loader = FastLoader(text)
        loader.file = file
        node = loader.get_single_node()
    except yaml.YAMLError:
        return None
    if aliases and node is not None and _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
        loader.dispose()
        return None
    return node, loader


def _yaml_problem(exc: Any) -> str:
    """PyYAML's account of ``exc``, with what a shop owner needs to find the cause: where the
    quote or list it could not close began (its own line is the file's end), and what a
    "mapping values are not allowed here" (named on the line after a key without ':') means."""
    problem = getattr(exc, "problem", None) or "syntax error"
    if "'\\t'" in problem or "tab character" in problem:  # PyYAML's words told a shop owner nothing
        return "a tab character: YAML indents with spaces, never tabs (replace it with spaces)"
    if problem == "mapping values are not allowed here":
        return problem + " (a key on a line above without ':', or this key indented deeper than the one before it?)"
    context, began = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    mark = getattr(exc, "problem_mark", None)
    if context and began is not None and (mark is None or began.line != mark.line):
        problem += f" ({context}, from line {began.line + 1})"
    return problem


def _where_looked() -> str:
    """Where the default config was looked for. Cron starts a job in the home folder: a crontab
    line without ``cd /srv/shop &&`` must say which folder it searched, not only the name."""
    try:
        folder = os.getcwd()
    except OSError:  # the working folder was removed
        return " (create one with `cartrescue init`)"
    return (f" in {folder} (the working folder: cd to the shop's folder first, or give --config FILE; "
            "create one with `cartrescue init`)")


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file; raise ConfigError naming file and key.

    No message ever shows the value of a secret key (passwords, tokens, the unsubscribe secret,
    a password inside a database URL), whatever went wrong.
    """
    import yaml

    file = Path(path or DEFAULT_CONFIG)
    try:
        found = file.exists()
    except OSError:  # in a folder this user may not search: reading it says so (exists() raised: exit 70)
        found = True
    if not found:
        raise ConfigError(f"{file}: config file not found{_where_looked() if path is None else ''}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        key_lines: dict[tuple[str | int, ...], int] = {}
        raw = safe_yaml(text, file, key_lines)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = _yaml_problem(exc)
        raise ConfigError(f"{file}{where}: not valid YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of keys at the top level")
    if any(not isinstance(key, str) for key in raw):
        raise ConfigError(f"{file}: {key_not_text(next(k for k in raw if not isinstance(k, str)))}")
    written = next((key for key in INTERNAL_KEYS if key in raw), None)
    if written is not None:  # it would be replaced below, unnoticed: base_dir: /srv/shop moved no path
        raise ConfigError(f"{file}: {written}: {UNKNOWN_KEY}{line_of(written, key_lines)}")
    unset: dict[str, str] = {}
    try:
        raw = interpolate(raw, "", dict(os.environ if env is None else env), str(file), unset)
    except ConfigError as exc:  # "file: key: ...": the key's line too
        raise ConfigError(f"{exc}{line_of(str(exc)[len(str(file)) + 2:].split(': ', 1)[0], key_lines)}") from None
    secrets = list(secret_values(raw))
    raw["base_dir"] = file.resolve().parent
    raw["config_file"] = file
    raw["unset_env"] = unset
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(scrub(format_validation_error(str(file), exc, key_lines), secrets)) from None
    config._key_lines = key_lines
    return config
