"""The console script ``cartrescue``: a stop is the command's from the first instant.

Importing the command line (typer, rich, the commands) takes a tenth of a second and more. A
SIGTERM in that time (a cron ``timeout``, a container stop, a script that gives up at once)
met Python's default action: exit 143, and no ``--json`` document at all. The handlers go in
here first; a stop during the imports ends like any other stop before a command began.
"""

from __future__ import annotations

import os
import sys


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
        os.write(1, b'{"error": {"code": "interrupted", "exit_code": 130, "message": "interrupted"}}\n')
    os.write(2, b"interrupted\n")
    os._exit(130)
