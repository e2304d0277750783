"""Unsubscribe tokens: signed (:mod:`cartrescue.tokens`), carrying the address (not the cart).

Owns what an unsubscribe token says, so one click stops every stream for that address and a
forged or altered token is refused. It must not touch the ledger; callers record the suppression.
"""

from __future__ import annotations

from cartrescue.contacts import normalize_email
from cartrescue.tokens import BadToken, sign, verify

PURPOSE = "unsubscribe"

__all__ = ["BadToken", "make_token", "verify_token"]


def make_token(email: str, secret: str) -> str:
    normalized = normalize_email(email)
    if not normalized or not secret:
        raise ValueError("an address and a secret are needed")
    return sign(PURPOSE, normalized, secret)


def verify_token(token: str, secret: str) -> str:
    """The address the token was made for; raise BadToken if it was not made with ``secret``."""
    return verify(PURPOSE, token, secret)
