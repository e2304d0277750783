"""Signed tokens for links in messages: a payload and its HMAC-SHA256, URL-safe.

Owns making and checking them, so a link a customer clicks proves it came from one of our
messages and a forged or altered one is refused. Each kind of link signs under its own
``purpose`` (``unsubscribe``, ``survey``), so a token of one kind is never accepted as another.
A signed payload is readable (base64); a **sealed** one (:meth:`Signer.seal`, the unsubscribe
link's address) is encrypted too, since a link passes through web server logs, proxies and link
scanners. :func:`verify` takes either. It must not touch the ledger.

A token is ``<payload>.<signature>``; a ``tag`` in front (``s.<payload>.<signature>``) lets a
receiver that serves several kinds of link at one URL tell them apart before checking any.

The links of a ``preview`` or ``send-test`` message are **test links**: signed for
``<purpose>-test`` (``unsubscribe-test``, ``survey-test``), so a developer's click on one, or a
forwarded test mail, is recognised as such and never acts for the cart's real customer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re


class BadToken(ValueError):
    """The token is malformed, forged or altered."""


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64(data: bytes) -> str:
    # base64.urlsafe_b64encode's own steps (b2a_base64, then + and / translated), without its two
    # Python calls: one per token part, two per message.
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def unb64(text: str) -> bytes:
    """The bytes of ``text`` written as :func:`b64` writes them, else ValueError: the decoder
    alone skips characters base64 does not have and drops padding, so an altered token was taken."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64(data) != text:
        raise ValueError("not base64url as written")
    return data


def signature(purpose: str, payload: str, secret: str) -> bytes:
    # hmac.digest: the one-shot C path, same bytes as hmac.new(...).digest() (one per message).
    return hmac.digest(secret.encode("utf-8"), f"{purpose}:{payload}".encode("utf-8"), "sha256")[:18]


# HMAC's pads (RFC 2104), as the hmac module keys a digest: each key byte XOR 0x36 / 0x5C.
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


_SEAL_KEY = b"cartrescue seal key"  # what the key of a sealed payload's stream is derived for


def _stream(key: bytes, signed: bytes, size: int) -> bytes:
    """``size`` bytes of keystream for the token whose signature is ``signed``: BLAKE2b keyed with
    the seal key (a PRF) over the signature and a block number, 64 bytes a block (one for most
    addresses)."""
    if size <= 64:
        return hashlib.blake2b(signed + b"\0\0\0\0", key=key).digest()[:size]
    return b"".join(hashlib.blake2b(signed + block.to_bytes(4, "big"), key=key).digest()
                    for block in range((size + 63) // 64))[:size]


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


class Signer:
    """:func:`sign` under one secret, for a run that signs a token per message.

    HMAC-SHA256 hashes the key's inner and outer pads (a 64-byte block each) before the message;
    here they are hashed once, and each token continues from copies of those two SHA-256 states:
    the same digest as ``hmac.new(key, message, "sha256").digest()`` (tests/test_tokens.py), two
    compressions and OpenSSL's HMAC set-up fewer per token.
    """

    __slots__ = ("_inner", "_outer", "seal_key")

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a secret is needed to sign a token")
        key = secret.encode("utf-8")
        if len(key) > 64:  # SHA-256's block size: a longer key is hashed first (RFC 2104)
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))
        #: The key of sealed payloads' keystream (:func:`_stream`), derived from the secret.
        self.seal_key = self.digest(_SEAL_KEY)

    def digest(self, message: bytes) -> bytes:
        """The HMAC-SHA256 of ``message`` under the secret."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def sign(self, purpose: str, payload: str, *, tag: str = "", test: bool = False) -> str:
        """:func:`sign` ``(purpose, payload, secret, tag=tag, test=test)``."""
        if test:
            purpose += TEST
        signed = self.digest(f"{purpose}:{payload}".encode("utf-8"))[:18]
        token = f"{b64(payload.encode('utf-8'))}.{b64(signed)}"
        return f"{tag}.{token}" if tag else token

    def seal(self, purpose: str, payload: str, *, test: bool = False) -> str:
        """A token like :meth:`sign`'s whose payload is encrypted: ``<sealed>.<signature>``.

        The signature is :meth:`sign`'s, over the payload itself; it is also the synthetic IV of
        the keystream the payload is XORed with (SIV: the same payload seals the same way, and
        opening checks the signature of what it opened). Only the payload's length shows. For
        the unsubscribe link: its payload was the address in base64, kept by every log it
        passed."""
        if test:
            purpose += TEST
        data = payload.encode("utf-8")
        signed = self.digest(f"{purpose}:".encode("utf-8") + data)[:18]
        return f"{b64(_xor(data, _stream(self.seal_key, signed, len(data))))}.{b64(signed)}"


TEST = "-test"  # the suffix of the purpose a test link (preview, send-test) is signed for


def sign(purpose: str, payload: str, secret: str, *, tag: str = "", test: bool = False) -> str:
    """``[<tag>.]<payload>.<signature>``, payload and signature base64url without padding;
    ``test``: a preview's or send-test's link (signed for ``<purpose>-test``)."""
    return Signer(secret).sign(purpose, payload, tag=tag, test=test)


def tag_of(token: str) -> str:
    """The tag of ``token`` (``""`` for an untagged one); says nothing about its validity."""
    parts = token.strip().split(".")
    return parts[0] if len(parts) == 3 else ""


def unverified_payload(token: str) -> str | None:
    """What ``token`` claims to carry, unchecked: only for choosing the language of a refusal."""
    try:
        return unb64(token.strip().split(".")[-2]).decode("utf-8")
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def verify(purpose: str, token: str, secret: str, *, tag: str = "") -> str:
    """The payload ``token`` carries, readable or sealed (:meth:`Signer.seal`): the signature says
    which, since it is over the payload itself; raise :class:`BadToken` unless it was signed with
    ``secret`` for ``purpose`` (and carries ``tag``)."""
    parts = token.strip().split(".")
    if tag:
        if len(parts) != 3 or parts[0] != tag:
            raise BadToken(f"malformed {purpose} token")
        parts = parts[1:]
    try:
        encoded, given_text = parts
        data = unb64(encoded)
        given = unb64(given_text)
    except ValueError:
        raise BadToken(f"malformed {purpose} token") from None
    if secret:
        for payload in (data, _xor(data, _stream(Signer(secret).seal_key, given, len(data)))):  # signed, sealed
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if hmac.compare_digest(given, signature(purpose, text, secret)):
                return text
    raise BadToken(f"{purpose} token signature does not match")


def verify_link(purpose: str, token: str, secret: str, *, tag: str = "") -> tuple[str, bool]:
    """The payload of a customer's or a test link's token, and whether it is a test link's;
    :class:`BadToken` (the customer's purpose's refusal) when it is neither."""
    try:
        return verify(purpose, token, secret, tag=tag), False
    except BadToken as refused:
        try:
            return verify(purpose + TEST, token, secret, tag=tag), True
        except BadToken:
            raise refused from None
