"""Text from shop data, made safe for a person's terminal and for logs.

Owns one rule: a value that came from a cart, a file or a server is shown as text, never as
markup or as terminal control. Escape sequences in a customer's name must not move the
operator's cursor, retitle the window or hide a line; ``[/]`` in an address must not reach
rich's markup parser. Callers print the result with rich ``Text`` (or ``markup=False``).
The same rule for a spreadsheet: a CSV cell a person opens in one (the call list, the survey
export) is shown as text, never run as a formula (:func:`spreadsheet_text`).
"""

from __future__ import annotations

import re

# C0 (with ESC), DEL, C1 (with CSI), line/paragraph separators, bidi overrides and isolates.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_NO_NEWLINES = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# A whole escape sequence (CSI ... final byte, OSC ... BEL/ST), so its parameters go too.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x9b[0-?]*[ -/]*[@-~]")


def printable(value: object, *, keep_newlines: bool = False) -> str:
    """``value`` as text with escape sequences and control characters removed.

    Tabs become spaces; newlines are kept only with ``keep_newlines`` (multi-line messages).
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    text = _ESCAPE.sub("", text).replace("\t", " ")
    return (_CONTROL if keep_newlines else _CONTROL_NO_NEWLINES).sub("", text)


#: What makes a spreadsheet read a CSV cell as a formula (CSV injection, OWASP): ``=``, ``+``,
#: ``-``, ``@``, and a leading tab or CR, which some imports drop before reading the rest.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """``text`` as a CSV cell that Excel, LibreOffice or Sheets shows as text, never runs as a
    formula: one starting with a formula character, also behind spaces, tabs or CRs (an import
    that trims them, LibreOffice's "Trim spaces", reads the rest as the cell; a tab in the call
    list's data is a space by then), gets a leading apostrophe, which spreadsheets hide and
    treat as "this is text". The one rule of every CSV a person opens (:func:`spreadsheet_value`
    undoes it)."""
    if text.startswith(FORMULA_START) or text.lstrip(" \t\r").startswith(FORMULA_START):
        return "'" + text
    return text


def spreadsheet_value(cell: str) -> str:
    """The value :func:`spreadsheet_text` wrote as ``cell``: without the apostrophe it put in
    front (one a spreadsheet kept when staff re-saved the file)."""
    if cell.startswith("'") and spreadsheet_text(cell[1:]) != cell[1:]:
        return cell[1:]
    return cell


def path_text(path: object) -> str:
    r"""A file's path as text that every stream and database column takes: the bytes of a name
    that are not UTF-8 (a folder unpacked from a Windows zip, ``caf\xe9``) shown as ``\xe9``.
    Python holds them as lone surrogates, which no UTF-8 writer accepts: the ledger refused the
    outcome of a message written there (exit 70). Also a message that names such a path: a
    surrogate no file name holds (a server's answer) is written ``\ud83d``."""
    text = str(path)
    if text.isascii():  # nearly always: nothing more to pay per message
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``1 problem``, ``2 problems``: the count with its noun in the right number."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is a whole number as a shop, a config or a protocol writes one (an id, a
    setting, ``Retry-After``): ASCII digits only. ``str.isdigit()`` also takes ``²`` (which
    ``int()`` refuses: the run stopped, exit 70) and other scripts' digits (``١٢``, id 12)."""
    return text.isascii() and text.isdigit()


def clipped(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with "…": a 100 KB cell quoted
    in a warning would bury the lines around it (and cron's mail)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


#: Query parameters of a database URL that carry a secret (libpq's ``password``/``sslpassword``,
#: drivers' ``token``, ``api_key``, ...): shown as ``***`` like the URL's own password.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|credential", re.IGNORECASE)


def masked_url(raw_url: str) -> str:
    """A database URL for a message: its password, and every query parameter that may hold one
    (``?password=…``), as ``***``."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(raw_url)
        if url.query:
            url = url.update_query_dict({name: "***" if _SECRET_PARAM.search(name) else value
                                         for name, value in url.query.items()})
        return url.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:  # noqa: BLE001 - only for messages
        return "(unparsable URL)"
