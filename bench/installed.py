"""Run the benchmarks on cartrescue as an install runs it: its modules' bytecode compiled once.

``pip install`` compiles a wheel's modules to bytecode, so an installed ``cartrescue`` never
compiles its own source at start. A checkout under ``PYTHONDONTWRITEBYTECODE=1`` (set on this
project's machines) compiled every module again in every process of every run: some 0.3 s of
CPU a process, which no user pays. :func:`like_an_install` compiles the package once, into its
``__pycache__`` folders (ignored by git) as Python itself would, and lets every process the
benchmark starts read them. The dependencies already have theirs, from their install.
"""

from __future__ import annotations

import compileall
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def like_an_install() -> None:
    """Compile ``cartrescue/``; this process and every one it starts afterwards (they inherit
    the environment) read that bytecode instead of compiling the source again."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    if not compileall.compile_dir(str(REPO / "cartrescue"), quiet=1):
        raise SystemExit("cartrescue/ does not compile")
