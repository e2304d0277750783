"""Which addresses a cart may be sent to (``contacts.is_valid_email``): pragmatic, never a link."""

from __future__ import annotations

import hashlib
from datetime import timedelta
import unicodedata

import pytest

from cartrescue.contacts import email_forms, email_hash, email_hashes, fold_email, is_valid_email
from conftest import Shop, cart

COMPOSED = "ann@b\u00fccher.example"  # ü as one code point (NFC), as most keyboards write it
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)  # u + combining diaeresis, as some exports keep it


@pytest.mark.parametrize("address", ["ann@example.com", "a.b+tag@sub.example.co.uk", "user@bücher.example",
                                     "dörte@example.com", "o'brien@example.ie", "user@xn--bcher-kva.example"])
def test_an_address_a_relay_takes_is_valid(address: str) -> None:
    assert is_valid_email(address)


@pytest.mark.parametrize("address", ["mailto:ann@example.com", "ann:work@example.com",
                                     "ann@example", "ann@@example.com", "ann example@example.com",
                                     "ann@bü cher.example", "ann@bücher"])
def test_a_link_or_a_broken_domain_is_no_address(address: str) -> None:
    assert not is_valid_email(address)


@pytest.mark.parametrize(("address", "valid"), [
    ("ann@my-shop.example", True), ("ann@a--b.example", True), ("ann@x.y-z.example", True),
    ("ann@-shop.example", False), ("ann@shop-.example", False), ("ann@shop.example-", False),
    ("ann@shop..example", False), ("ann@.shop.example", False), ("ann@shop.-example", False),
])
def test_a_domain_label_has_hyphens_inside_only(address: str, valid: bool) -> None:
    """Letters and digits, hyphens between them (any number, as ``xn--`` has), never at a label's ends."""
    assert is_valid_email(address) is valid


def test_a_cart_with_an_international_domain_is_sent_to_its_idna_form(shop: Shop) -> None:
    """``user@bücher.example`` was dropped as "not a valid address" on every run."""
    shop.add(cart("idn", email="user@bücher.example"))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert [row["reason"] for row in result.json["decisions"]] == ["due"]
    (message,) = (shop.folder / "out").rglob("*.eml")
    assert "<user@xn--bcher-kva.example>" in message.read_text(encoding="utf-8")


@pytest.mark.parametrize(("suppressed", "carted"), [("ann@xn--bcher-kva.example", "ann@bücher.example"),
                                                    ("ann@bücher.example", "Ann@XN--BCHER-KVA.example")])
def test_a_suppression_covers_both_forms_of_an_international_domain(shop: Shop, suppressed: str, carted: str) -> None:
    """A relay's bounce and another tool's export name the domain's ASCII form, a cart may carry
    the other: the suppression was kept under one form's hash and the other form was mailed again."""
    shop.add(cart("idn", email=carted))
    assert shop.cli("unsubscribe", suppressed, now=None).exit_code == 0
    assert shop.decisions()["idn"]["reason"] == "suppressed"


def test_suppress_list_and_remove_find_a_suppression_by_either_form(shop: Shop) -> None:
    assert shop.cli("unsubscribe", "ann@bücher.example", now=None).exit_code == 0
    assert shop.cli("suppress", "list", "--email", "ann@xn--bcher-kva.example", now=None).exit_code == 0
    assert shop.cli("suppress", "remove", "ann@xn--bcher-kva.example", now=None).exit_code == 0
    assert shop.suppression("ann@bücher.example") is None


@pytest.mark.parametrize(("suppressed", "carted"), [(DECOMPOSED, COMPOSED), (COMPOSED, DECOMPOSED.upper())])
def test_a_suppression_covers_the_composed_and_decomposed_forms_of_an_address(shop: Shop, suppressed: str,
                                                                             carted: str) -> None:
    """``ü`` written as one character or as u + combining diaeresis is one address (IDNA gives
    both ``xn--bcher-kva``), but they hashed differently: an unsubscribe in one form did not stop
    the reminders of a cart in the other."""
    assert suppressed != carted.lower()
    shop.add(cart("idn", email=carted))
    assert shop.cli("unsubscribe", suppressed, now=None).exit_code == 0
    assert shop.decisions()["idn"]["reason"] == "suppressed"


def test_the_hashes_ledgers_already_hold_stay_and_a_decomposed_one_is_still_found() -> None:
    """Composing is the identity on ASCII and composed addresses: their hashes, kept in every
    ledger's suppressions, are SHA-256 of the lower-cased address as before. A suppression an
    older version kept under a decomposed address's own hash is still asked for."""
    def kept(address: str) -> str:  # how every version so far hashed an address
        return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()

    for address in (" Bob@Example.com ", "Ann@B\u00fccher.example"):
        assert email_hash(address) == kept(address)
    # An xn-- domain is its Unicode form's mailbox (fold_email): its hash is that form's, and the
    # hash an older version kept of the xn-- form is still asked for (below).
    assert email_hash("ann@xn--bcher-kva.example") == email_hash(COMPOSED) == email_hash(DECOMPOSED)
    assert kept(DECOMPOSED) != kept(COMPOSED)
    for asked in (COMPOSED, DECOMPOSED, "ann@xn--bcher-kva.example"):
        assert {kept(COMPOSED), kept(DECOMPOSED), kept("ann@xn--bcher-kva.example")} <= set(email_hashes(asked))
        assert set(email_forms(asked)) == {COMPOSED, DECOMPOSED, "ann@xn--bcher-kva.example"}
    assert email_forms("Bob@Example.com") == ("bob@example.com",)


@pytest.mark.parametrize("spelling", ["anna@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",  # full-width letters
                                      "anna@exa\u00admple.com",  # a soft hyphen, which IDNA drops
                                      "Anna@EXAMPLE.com"])
def test_every_spelling_of_a_domain_its_message_goes_to_is_one_address(spelling: str) -> None:
    """The message goes to the domain's IDNA form, the same mailbox for each of these: the
    planner took each for another address."""
    assert fold_email(spelling) == "anna@example.com"
    assert fold_email("ann@xn--bcher-kva.example") == fold_email(DECOMPOSED) == COMPOSED
    assert fold_email("x@xn--zz.example") == "x@xn--zz.example"  # no Unicode form: kept as it is


def test_one_mailbox_in_three_spellings_gets_one_reminder(shop: Shop) -> None:
    """One run, no workers: carts of ``anna@example.com``, its full-width and its soft-hyphen
    spellings each got their step 1, three messages the same day to one mailbox."""
    shop.add(cart("plain", email="anna@example.com", idle=timedelta(hours=3)),
             cart("wide", email="anna@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", idle=timedelta(hours=2)),
             cart("soft", email="anna@exa\u00admple.com", idle=timedelta(hours=1, minutes=30)))
    decisions = shop.decisions()
    assert [d["action"] for d in (decisions["plain"], decisions["wide"], decisions["soft"])] == ["skip", "skip", "send"]
    assert {decisions[c]["reason"] for c in ("plain", "wide")} == {"newer_cart_for_address"}
