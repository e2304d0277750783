"""Unsubscribe tokens: sealed (:mod:`cartrescue.tokens`: encrypted and signed), carrying the
address (not the cart). A link in mail sent before they were sealed carries the address only
signed; it is verified the same way and keeps working.

Owns what an unsubscribe token says, so one click stops every stream for that address and a
forged or altered token is refused. It must not touch the ledger; callers record the suppression.

A preview's, send-test's or dry-run's (``run --eml``) link carries a test token (:data:`cartrescue.tokens.TEST`): it is
checked like any, then refused as :class:`PreviewToken` (a :class:`BadToken`, so every caller
that unsubscribes refuses it unchanged), which the webhook answers with a "preview link" page.
"""

from __future__ import annotations

from cartrescue.contacts import normalize_email
from cartrescue.tokens import BadToken, Signer, verify_link

PURPOSE = "unsubscribe"

__all__ = ["BadToken", "PreviewToken", "TokenMaker", "make_token", "verify_token"]


class PreviewToken(BadToken):
    """A genuine token of a preview's or send-test's link: it unsubscribes nobody."""


def make_token(email: str, secret: str, *, test: bool = False) -> str:
    """``test``: the link of a preview or send-test message, which unsubscribes nobody."""
    return TokenMaker(secret)(email, test=test)


class TokenMaker:
    """:func:`make_token` under one secret, for the messages of a run: its HMAC keyed once
    (:class:`cartrescue.tokens.Signer`), not once per message."""

    __slots__ = ("_signer",)

    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret) if secret else None

    def __call__(self, email: str, *, test: bool = False) -> str:
        normalized = normalize_email(email)
        if not normalized or self._signer is None:
            raise ValueError("an address and a secret are needed")
        return self._signer.seal(PURPOSE, normalized, test=test)


def verify_token(token: str, secret: str) -> str:
    """The address the token was made for; raise BadToken if it was not made with ``secret``,
    :class:`PreviewToken` if it is a preview's or send-test's (a developer's click, a forwarded
    test mail: never the customer's wish)."""
    address, test = verify_link(PURPOSE, token, secret)
    if test:  # without the address: a refusal is recorded (suppress mailbox), an address must not be
        raise PreviewToken("a link from a preview, send-test or dry-run message: it unsubscribes nobody")
    return address
