"""Which keys hold secrets, and taking their values out of any message.

Apart because the errors, the loading and the unread-keys warnings all leave secrets out.
"""

import re
from collections.abc import Iterator
from typing import Any

#: Keys whose values are secrets: never shown in an error, whatever went wrong.
SECRET_KEY = re.compile(r"(password|secret|token|api_?key|auth)$", re.IGNORECASE)


def secret_key(name: str) -> bool:
    """Is the value under a key of this name a secret (never shown in any output)?"""
    return SECRET_KEY.search(name) is not None


def secret_values(node: Any, key: str = "") -> Iterator[str]:
    """Every secret value of a config: values of secret keys and passwords inside URLs."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from secret_values(value, str(name))
    elif isinstance(node, list):
        for value in node:
            yield from secret_values(value, key)
    elif isinstance(node, str):
        if SECRET_KEY.search(key) and len(node) >= 3:
            yield node
        for match in re.finditer(r"://[^/:@\s]*:([^@/\s]+)@", node):
            yield match.group(1)


def scrub(message: str, secrets: list[str]) -> str:
    """``message`` with each of ``secrets`` as ``***`` where it stands whole, not inside a longer
    word of the message: the piece of a password a URL gives before an unencoded ``@`` (``p`` of
    ``u:p@ss:w/rd@host``, ``pass`` of ``pass@word``) was replaced inside the message's own words,
    and the line that says how to write it read "its ***ort is not a number (… or ***assword must
    be written %40 …)"."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        before = r"(?<![A-Za-z0-9])" if secret[:1].isalnum() else ""
        after = r"(?![A-Za-z0-9])" if secret[-1:].isalnum() else ""
        message = re.sub(before + re.escape(secret) + after, "***", message)
    return message
