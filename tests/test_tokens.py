"""cartrescue.tokens: a Signer (the HMAC keyed once per secret) signs exactly as the one-shot path.

The property: for any secret (empty excepted; longer than SHA-256's 64-byte block, non-ASCII)
and any message, :meth:`Signer.digest` is ``hmac.new(key, message, sha256).digest()``, and a
Signer's token is :func:`sign`'s, byte for byte; :func:`b64` is ``base64.urlsafe_b64encode``
without its padding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cartrescue.contacts import fold_email
from cartrescue.tokens import BadToken, Signer, b64, sign, unb64, verify_link
from cartrescue.unsubscribe import TokenMaker, make_token, verify_token

secrets = st.text(min_size=1, max_size=200)


@settings(max_examples=1000, deadline=None)
@given(secrets, st.binary(max_size=300))
@example("k" * 64, b"")  # a key of exactly one block: padded, not hashed
@example("k" * 65, b"x")  # one byte more: hashed first
@example("é" * 32, b"x")  # 32 characters, 64 bytes
@example("é" * 33, b"x")  # 33 characters, 66 bytes: hashed first
@example("\x00", b"")
def test_a_signers_digest_is_the_hmac_of_the_message(secret: str, message: bytes) -> None:
    signer = Signer(secret)
    assert signer.digest(message) == hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    assert signer.digest(message) == signer.digest(message)  # the keyed states are copied, never advanced


@settings(max_examples=500, deadline=None)
@given(secrets, st.sampled_from(["unsubscribe", "survey"]), st.text(max_size=80), st.sampled_from(["", "s"]),
       st.booleans())
def test_a_signers_token_is_signs(secret: str, purpose: str, payload: str, tag: str, test: bool) -> None:
    token = Signer(secret).sign(purpose, payload, tag=tag, test=test)
    assert token == sign(purpose, payload, secret, tag=tag, test=test)
    assert verify_link(purpose, token, secret, tag=tag) == (payload, test)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=100))
def test_b64_is_urlsafe_base64_unpadded(data: bytes) -> None:
    assert b64(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    assert unb64(b64(data)) == data


@settings(max_examples=300, deadline=None)
@given(secrets, st.emails(), st.booleans())
def test_a_runs_token_maker_makes_make_tokens_token(secret: str, email: str, test: bool) -> None:
    email = f"  {email.upper()} "  # normalized the same way
    token = TokenMaker(secret)(email, test=test)
    assert token == make_token(email, secret, test=test)
    if not test:
        assert verify_token(token, secret) == fold_email(email.strip())  # the address's one spelling


@pytest.mark.parametrize(("secret", "email"), [("", "ann@example.com"), ("s", ""), ("s", "   ")])
def test_a_token_maker_needs_an_address_and_a_secret_as_make_token_does(secret: str, email: str) -> None:
    with pytest.raises(ValueError, match="an address and a secret are needed"):
        make_token(email, secret)
    with pytest.raises(ValueError, match="an address and a secret are needed"):
        TokenMaker(secret)(email)


@settings(max_examples=300, deadline=None)
@given(secrets, st.sampled_from(["unsubscribe", "survey"]), st.text(min_size=8, max_size=300), st.booleans())
def test_a_sealed_token_opens_to_its_payload_which_it_does_not_show(secret: str, purpose: str, payload: str,
                                                                   test: bool) -> None:
    token = Signer(secret).seal(purpose, payload, test=test)
    assert verify_link(purpose, token, secret) == (payload, test)
    assert unb64(token.split(".")[0]) != payload.encode("utf-8")  # (a byte may match its own: 1 in 256)
    assert token.split(".")[1] == sign(purpose, payload, secret, test=test).split(".")[1]  # the same signature


@settings(max_examples=300, deadline=None)
@given(secrets, st.emails(), st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_a_sealed_token_with_any_byte_altered_is_refused(secret: str, email: str, where: int, flip: int) -> None:
    sealed, signed = Signer(secret).seal("unsubscribe", email).split(".")
    data = bytearray(unb64(sealed) + unb64(signed))
    data[where % len(data)] ^= flip
    cut = len(unb64(sealed))
    with pytest.raises(BadToken):
        verify_link("unsubscribe", f"{b64(bytes(data[:cut]))}.{b64(bytes(data[cut:]))}", secret)
