"""A sender-side address (``shop.from_email`` and the others) is read as email-validator reads
it; a plain one is taken without importing email-validator (config/types.py, ``_plain_address``)."""

from __future__ import annotations

import subprocess
import sys

import email_validator
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from cartrescue.config.types import _SPECIAL_USE, _email_address, _plain_address
from conftest import REPO


def _validator(value: str) -> str | None:
    """What email-validator makes of ``value`` (None: refused), as the config asks it."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


#: Addresses near the plain form (most of them in it: the lengths and names at its edges), and others.
_NEAR_PLAIN = st.builds(
    lambda local, labels, top: f"{local}@{'.'.join([*labels, top])}",
    st.from_regex(r"[A-Za-z0-9]{1,66}(?:[._+-][A-Za-z0-9]{1,3}){0,2}", fullmatch=True),
    st.lists(st.from_regex(r"[a-z0-9]{1,64}(?:-[a-z0-9]{1,3})?", fullmatch=True), min_size=1, max_size=5),
    st.one_of(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.sampled_from(sorted(_SPECIAL_USE))),
)
_ADDRESSES = st.one_of(
    _NEAR_PLAIN,
    st.from_regex(r"[A-Za-z0-9._+-]{1,70}@[A-Za-z0-9.-]{1,30}\.[A-Za-z0-9-]{1,8}", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(_ADDRESSES)
def test_a_plain_address_is_one_email_validator_takes_as_written(value: str) -> None:
    if _plain_address(value):
        assert _validator(value) == value


@pytest.mark.parametrize("value", [
    "shop@example.com", "a.b-c_d+e@mail.shop-1.example.co.uk", "x@1.example.museum",
    f"{'l' * 64}@example.com", f"a@{'d' * 63}.com", "a@" + ".".join(["d" * 60] * 4) + ".com"])
def test_plain_addresses_skip_the_validator_with_its_answer(value: str) -> None:
    assert _plain_address(value)
    assert _email_address(value) == _validator(value) == value


@pytest.mark.parametrize("value", [
    "Shop@Example.com", "shop@xn--bcher-kva.example", "a..b@example.com", "a@ex--ample.com", "a@example.c0m",
    "a@example", "a@shop.test", "a@printer.local", "a@x.onion", "a@in-addr.arpa", f"{'l' * 65}@example.com",
    f"a@{'d' * 64}.com", "a@" + ".".join(["d" * 63] * 4) + ".com", "shop@bücher.example", "-a@example.com"])
def test_other_addresses_go_to_the_validator(value: str) -> None:
    assert not _plain_address(value)
    expected = _validator(value)
    if expected is None:
        with pytest.raises(ValueError, match="not a valid e-mail address"):
            _email_address(value)
    else:
        assert _email_address(value) == expected


def test_the_special_use_names_are_email_validators() -> None:
    assert _SPECIAL_USE == set(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def test_a_config_with_plain_sender_addresses_is_read_without_email_validator(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "cartrescue.yaml"
    config.write_text("source: {type: csv, carts: c.csv}\nshop: {from_email: shop@example.com, "
                      "reply_to: help@shop.example.org}\n", encoding="utf-8")
    probe = ("import sys; from cartrescue.config import load_config; "
             f"config = load_config({str(config)!r}); "
             "assert config.shop.from_email == 'shop@example.com', config.shop.from_email; "
             "print('email_validator' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
