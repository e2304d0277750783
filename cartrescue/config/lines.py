"""Where the file writes each key: the line numbers that errors and warnings end with.

Apart from :mod:`cartrescue.config.errors` because ``Config`` reads them too (its warnings name
the line), and the error messages read ``Config``: here neither imports the other.
"""

import re
from typing import Any


def line_of(key: str, key_lines: "dict[tuple[str | int, ...], int]") -> str:
    """`` (line N)``: where the file writes ``key`` (``priority.tiers[1].budget``), or the nearest
    section holding it (an error about a key the file leaves out); ``""`` where none is known."""
    path: tuple[str | int, ...] = tuple(int(part) if part.isdigit() and index else part for part, index in
                                        ((m.group(1) or m.group(2), m.group(2) is not None)
                                         for m in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", key)))
    while path and path not in key_lines:
        path = path[:-1]
    return f" (line {key_lines[path]})" if path else ""


def lines_of_keys(root: Any) -> "dict[tuple[str | int, ...], int]":
    """The line (1-based) of every key and list item of the composed YAML ``root``, by its path
    (``("priority", "tiers", 1, "budget")``); what a ``<<`` merge brings counts where it is merged."""
    import yaml

    lines: dict[tuple[str | int, ...], int] = {}

    def walk(node: Any, path: tuple[str | int, ...], merged: bool) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":
                    for source in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                        walk(source, path, True)
                elif isinstance(key, yaml.ScalarNode):
                    here = (*path, key.value)
                    if not merged or here not in lines:
                        lines[here] = key.start_mark.line + 1
                    walk(value, here, merged)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                walk(item, (*path, index), merged)

    walk(root, (), False)
    return lines
