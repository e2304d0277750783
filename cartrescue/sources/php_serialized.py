"""PHP ``serialize()`` data as plain Python values, parsed with :mod:`phpserialize`.

Owns reading the serialized PHP that WordPress plugins keep in database columns (CartFlows'
``cart_contents`` and ``other_fields``). It only parses: nothing is ever evaluated, no PHP class
is instantiated, objects become dictionaries of their properties. Data it cannot parse raises
:class:`PhpDataError` with a short reason; the source reports the row and skips it.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any


class PhpDataError(ValueError):
    """Serialized PHP that cannot be read."""


def loads(data: str | bytes | None) -> Any:
    """Parse one serialized PHP value into dicts, lists, str, int, Decimal, bool and None.

    Arrays become dicts with string keys (PHP arrays are ordered maps), objects become dicts of
    their properties (``__class__`` holds the class name; protected and private property names
    lose their ``\\0*\\0`` / ``\\0Class\\0`` prefixes), floats become :class:`~decimal.Decimal`.
    """
    import phpserialize

    if data is None:
        raise PhpDataError("missing")
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if not raw.strip():
        raise PhpDataError("empty")
    try:
        value = phpserialize.loads(raw, object_hook=phpserialize.phpobject)  # strings as bytes: see _text
    except Exception as exc:  # phpserialize raises ValueError, but also IndexError on truncation
        restored = _with_nuls(raw)
        if restored is None:
            detail = " ".join(str(exc).split())[:80] or type(exc).__name__
            raise PhpDataError(f"not valid serialized PHP ({detail})") from None
        return loads(restored)
    return _plain(value)


#: A protected property's name as a copy without NUL bytes keeps it: ``s:5:"*id"``, written
#: ``s:5:"\0*\0id"`` by PHP.
_PROTECTED = re.compile(rb's:(\d+):"\*([A-Za-z_][A-Za-z0-9_]*)";')


def _with_nuls(raw: bytes) -> bytes | None:
    """``raw`` with the NUL bytes of its protected property names put back, or None when it has
    none to put back. PHP writes a protected property ``\\0*\\0id`` (every WooCommerce cart
    item's product object has one); PostgreSQL text cannot hold a NUL, so a copy of the shop's
    database there (pgloader's ``remove-null-characters``) kept ``*id`` under its length of 5, and
    every cart of the copy was "not valid serialized PHP"."""
    if b"\0" in raw:
        return None

    def put_back(match: re.Match[bytes]) -> bytes:
        length, name = int(match.group(1)), match.group(2)
        return b's:%d:"\0*\0%s";' % (length, name) if length == len(name) + 3 else match.group(0)

    restored = _PROTECTED.sub(put_back, raw)
    return restored if restored != raw else None


def _plain(value: Any) -> Any:
    import phpserialize

    if isinstance(value, dict):
        return {_key(key): _plain(element) for key, element in value.items()}
    if isinstance(value, phpserialize.phpobject):
        properties = {_property(_key(key)): _plain(element) for key, element in value.__php_vars__.items()}
        name = value.__name__
        properties["__class__"] = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        return properties
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, bytes):
        return _text(value)
    return value


def _text(raw: bytes) -> str:
    """A PHP string's bytes as text: UTF-8, else Windows-1252. A site on WordPress's old
    ``latin1`` connection (``DB_CHARSET``) wrote ``Åsa`` as the byte C5, as a binary column
    (``LONGBLOB``, ``bytea``) gives it back; phpserialize made such a byte a lone surrogate, which a
    reminder showed as ``?sa`` and ``preview --json`` could not write."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _key(key: Any) -> str:
    if isinstance(key, bytes):
        return _text(key)
    return str(key)


def _property(name: str) -> str:
    """``\\0*\\0id`` (protected) and ``\\0Class\\0id`` (private) -> ``id``."""
    if name.startswith("\0"):
        return name.rsplit("\0", 1)[-1]
    return name
