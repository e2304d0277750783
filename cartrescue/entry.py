"""The console script ``cartrescue``: a stop is the command's from the first instant.

Importing the command line (typer, rich, the commands) takes a tenth of a second and more. A
SIGTERM in that time (a cron ``timeout``, a container stop, a script that gives up at once)
met Python's default action: exit 143, and no ``--json`` document at all. The handlers go in
here first; a stop during the imports ends like any other stop before a command began. So this
module imports nothing but ``os`` and ``sys`` (built in) before they are: json and typing took a
few milliseconds more, a tenth of a second on a busy host, in which a stop met the default action.
"""

from __future__ import annotations

import os
import sys

#: The ``error`` that ends the ``--json`` document of a command stopped by Ctrl-C or SIGTERM.
INTERRUPTED = {"code": "interrupted", "exit_code": 130, "message": "interrupted"}

#: ``pipeline.Counts().as_dict()`` (tests/test_interrupt_json.py holds them equal), written out:
#: a stop may come while the run's modules are half imported, and importing them again then fails.
NO_COUNTS = {"carts": 0, "send": 0, "skip": 0, "defer": 0, "holdout": 0, "sent": 0, "failed": 0, "problems": 0,
             "reasons": {}, "deliveries": {}, "failures": {}}


def main() -> None:
    from cartrescue import stops

    stops.install()
    try:
        from cartrescue.cli import main as command_line
    except KeyboardInterrupt:
        stopped_before_start()
    command_line()


def stopped_before_start() -> None:
    """Exit 130, with the one ``--json`` document of an interrupted command where one was asked for."""
    if "--json" in sys.argv[1:]:
        import json

        os.write(1, json.dumps(stopped_document(sys.argv[1:])).encode() + b"\n")
    os.write(2, b"interrupted\n")
    os._exit(130)


def stopped_document(args: list[str]) -> dict[str, object]:
    """The ``--json`` document of a command stopped before it began: the ``error``, and a run's
    ``counts``, all zero, as every run's document has them (the console script's had none)."""
    document: dict[str, object] = {"error": INTERRUPTED}
    if command_of(args) == "run":
        document["counts"] = NO_COUNTS
    return document


def command_of(args: list[str]) -> str | None:
    """The command a command line names (``run``, ``run-all`` …): its first word not an option.
    For what must be known before, or without, the parsed arguments (an early stop, an error)."""
    return next((arg for arg in args if not arg.startswith("-")), None)
