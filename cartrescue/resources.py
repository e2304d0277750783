"""Files shipped beside the package rather than inside it: ``config.example.yaml`` and the sample
carts (``examples/carts.csv``) that ``init`` and ``templates check`` use.

Owns one lookup: a checkout has them at the repository's root; an installed wheel puts them under
``<data>/share/cartrescue`` (``[tool.setuptools.data-files]`` in pyproject.toml), where ``<data>``
is the folder pip installed into: the environment's prefix, the user's base for ``pip install
--user``, the target of ``pip install --target DIR``, or the prefix of ``--prefix DIR`` (as
Debian's own pip does with ``/usr/local`` while ``sys.prefix`` is ``/usr``).
"""

from __future__ import annotations

import site
import sys
from pathlib import Path


def shipped_file(name: str) -> Path | None:
    """The shipped file ``name`` (a path relative to the repository root), or None if missing."""
    root = Path(__file__).resolve().parent.parent  # a checkout's root, or the folder of packages
    candidates = [root / name]
    candidates += [Path(base) / "share" / "cartrescue" / name for base in _data_folders(root) if base]
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def _data_folders(packages: Path) -> list[str | Path | None]:
    """Where pip may have put the wheel's data files, nearest the installed package first: the
    folder of packages itself (``--target``), the prefix it lies in (``lib/pythonX.Y/site-packages``
    on POSIX, ``Lib/site-packages`` on Windows: two or three folders up), then the interpreter's
    prefix and the user's base, which a ``--prefix`` or ``--target`` install does not share."""
    return [packages, *packages.parents[:3], sys.prefix, site.USER_BASE]
