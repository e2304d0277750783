"""Files shipped beside the package rather than inside it: ``config.example.yaml`` and the sample
carts (``examples/carts.csv``) that ``init`` and ``templates check`` use.

Owns one lookup: a checkout has them at the repository's root; an installed wheel puts them under
``<prefix>/share/cartrescue`` (``[tool.setuptools.data-files]`` in pyproject.toml), the prefix
being the environment's, or the user's for ``pip install --user``.
"""

from __future__ import annotations

import site
import sys
from pathlib import Path


def shipped_file(name: str) -> Path | None:
    """The shipped file ``name`` (a path relative to the repository root), or None if missing."""
    root = Path(__file__).resolve().parent.parent
    candidates = [root / name]
    candidates += [Path(base) / "share" / "cartrescue" / name for base in (sys.prefix, site.USER_BASE) if base]
    return next((candidate for candidate in candidates if candidate.is_file()), None)
