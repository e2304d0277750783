"""Test helper: run the real command line in a pseudo-terminal, as a person at a terminal would.

``run_in_terminal([...])`` starts ``python -m cartrescue.cli ...`` with a pty as its stdin,
stdout and stderr (so rich sees a terminal of the given size) and returns the exit code and
everything it wrote, escape sequences and all.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(args: list[str], *, cwd: Path, columns: int = 100, timeout: float = 120) -> tuple[int, str]:
    """Run ``cartrescue ARGS`` in a ``columns``-wide pseudo-terminal; (exit code, output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", *args], stdin=slave, stdout=slave,
                               stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=timeout)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return code, b"".join(chunks).decode("utf-8", "replace")


def plain(output: str) -> list[str]:
    """The screen lines of ``output``: escape sequences removed, carriage returns as new lines."""
    return [line for line in _ESCAPE.sub("", output).replace("\r\n", "\n").replace("\r", "\n").split("\n")]
