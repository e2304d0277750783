"""Signed HTTP bodies: the ``X-Cartrescue-Signature`` header, made and checked.

Owns one scheme, used both ways: the webhook channel signs every request it sends, and the
inbound endpoint of a generic SMS gateway checks the requests it receives. The header is
``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` under a shared secret (the scheme of
Stripe's and GitHub's webhooks): the receiver recomputes it, compares in constant time, and
refuses a timestamp further than ``tolerance`` seconds from its clock, so a captured request
cannot be replayed later; within the window the idempotency key (the message's id, the same on
every retry) drops repeats. docs/channels.md shows a receiver in ten lines.

It must not send or receive anything: callers hand it bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Cartrescue-Signature"
TOLERANCE = 300  # seconds a signed request stays valid
_NEVER = 10**12  # unix seconds beyond any clock (year 33658): no window reaches them


class BadSignature(ValueError):
    """The signature is missing, malformed, wrong, or its time is outside the window."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    return hmac.new(secret.encode("utf-8"), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``, signed now (or at ``timestamp``)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={signature(secret, moment, body)}"


def same(expected: str, given: str) -> bool:
    """``given`` is the ``expected`` signature, compared in constant time. As bytes: a header is
    anyone's text, and ``hmac.compare_digest`` raises TypeError on a non-ASCII str (a 500 where
    a forged signature must get its 403)."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


def verify(secret: str, header: str | None, body: bytes, *, now: float | None = None,
           tolerance: int = TOLERANCE) -> int:
    """Check ``header`` for ``body``; return its timestamp or raise :class:`BadSignature`."""
    if not secret:
        raise BadSignature("no secret configured: nothing can be verified")
    fields: dict[str, list[str]] = {}
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError, IndexError):
        raise BadSignature(f"no timestamp in the {HEADER} header") from None
    # A timestamp past any clock's is outside the window, and a float cannot hold it (OverflowError).
    if abs(timestamp) > _NEVER or abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise BadSignature(f"timestamp outside the {tolerance} s window (a replay, or a clock off)")
    expected = signature(secret, timestamp, body)
    if not any(same(expected, given) for given in fields.get("v1", [])):
        raise BadSignature("signature does not match")
    return timestamp
