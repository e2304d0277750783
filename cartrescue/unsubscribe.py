"""Unsubscribe tokens: HMAC-signed, carrying the address (not the cart).

Owns making and checking tokens, so one click stops every stream for that address and a forged
or altered token is refused. It must not touch the ledger; callers record the suppression.
"""

from __future__ import annotations

import base64
import hmac

from cartrescue.contacts import normalize_email


class BadToken(ValueError):
    """The token is malformed, forged or altered."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(email: str, secret: str) -> bytes:
    # hmac.digest: the one-shot C path, same bytes as hmac.new(...).digest() (one per message).
    return hmac.digest(secret.encode("utf-8"), b"unsubscribe:" + email.encode("utf-8"), "sha256")[:18]


def make_token(email: str, secret: str) -> str:
    normalized = normalize_email(email)
    if not normalized or not secret:
        raise ValueError("an address and a secret are needed")
    return f"{_b64(normalized.encode('utf-8'))}.{_b64(_signature(normalized, secret))}"


def verify_token(token: str, secret: str) -> str:
    """The address the token was made for; raise BadToken if it was not made with ``secret``."""
    try:
        encoded, signature = token.strip().split(".")
        email = _unb64(encoded).decode("utf-8")
        given = _unb64(signature)
    except (ValueError, UnicodeDecodeError):
        raise BadToken("malformed unsubscribe token") from None
    if not secret or not hmac.compare_digest(given, _signature(email, secret)):
        raise BadToken("unsubscribe token signature does not match")
    return email
