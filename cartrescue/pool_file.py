"""Reading a code pool file: one code per line, as the shop exported them.

Owns what a pool file may hold. Two places read it: the config, when it loads, so that a missing
or malformed file is a config error naming its key (not a failure, cart by cart, of the first
delivering run); and :mod:`cartrescue.compose.incentives`, which imports the codes into the ledger.
Kept apart from both: the config must not import the ledger's machinery to read a text file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from cartrescue.errors import ConfigError


def read_pool_file(path: Path) -> list[str]:
    """One code per line, or a CSV's ``code`` column: the one its header names (``ID,Title,Code``:
    a discount export's first column is the discount's id, not a code), else its first, the
    quotes of a quoted cell taken off (``"SAVE-1","0"`` gave the code ``"SAVE-1"``); blank lines
    and ``#`` comments are skipped, before the header too (the header read from a blank first
    line was none: the word ``Code`` was handed out as a customer's code, a discount export's
    ids as codes)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the code pool: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        where = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{where}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}): save the code "
                          "pool as UTF-8") from None
    content = [(number, line) for number, line in enumerate(lines, 1)
               if line.strip() and not line.lstrip().startswith("#")]
    header = [cell.strip().lower() for cell in _cells(content[0][1])] if content else []
    column = header.index("code") if "code" in header else 0
    codes: list[str] = []
    for number, line in content[1:] if "code" in header else content:
        cells = _cells(line)
        code = cells[column].strip() if len(cells) > column else ""
        if not code:
            continue
        if len(code) > 64 or any(ch.isspace() for ch in code):
            raise ConfigError(f"{path}:{number}: not a code (at most 64 characters, no spaces): {code[:80]!r}")
        codes.append(code)
    return codes


def _cells(line: str) -> list[str]:
    """A line's CSV cells (none for a blank one)."""
    return next(csv.reader([line]), []) if line.strip() else []
