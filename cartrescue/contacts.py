"""Addresses: normalizing, validating and hashing them.

Owns the one definition of "the same address" (used for suppressions, per-address streams and
unsubscribe tokens) so that ``Bob@Example.com `` and ``bob@example.com`` are never two people.
"""

from __future__ import annotations

import hashlib
import re

# Deliberately pragmatic: one @, a dot in the domain, no spaces or control characters.
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


def normalize_email(email: str | None) -> str | None:
    """Lower-cased and stripped, or ``None`` for blank."""
    if email is None:
        return None
    email = email.strip().lower()
    return email or None


def is_valid_email(email: str) -> bool:
    return len(email) <= 254 and _EMAIL.match(email) is not None


def email_hash(email: str) -> str:
    """Stable hash of a normalized address: suppressions store this, not the address."""
    return hashlib.sha256(normalize_email(email).encode("utf-8")).hexdigest()  # type: ignore[union-attr]
