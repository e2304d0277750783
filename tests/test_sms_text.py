"""SMS text rules: segments as the network counts them, opt-out keywords, phone numbers in E.164."""

from __future__ import annotations

import pytest

from cartrescue.contacts import normalize_phone, phone_hash
from cartrescue.sms_text import GSM7, UCS2, OPT_OUT_WORDS, is_opt_out, measure, names_opt_out, one_line, problems


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("a" * 160, GSM7, 160, 1),
    ("a" * 161, GSM7, 161, 2),  # 153 + 8
    ("a" * 306, GSM7, 306, 2),
    ("a" * 307, GSM7, 307, 3),
    ("Hej Åsa, din varukorg är sparad", GSM7, 31, 1),  # Swedish letters are in GSM 03.38
    ("€" * 80, GSM7, 160, 1),  # extension characters cost two septets
    ("€" * 81, GSM7, 162, 2),  # 76 + 5: a two-septet € never straddles a part (76 x 2 = 152 of 153)
    ("a" + "€" * 80, GSM7, 161, 2),  # 1 + 76 x 2 fill 153 exactly; the 77th € starts part two
    ("я" * 70, UCS2, 70, 1),
    ("я" * 71, UCS2, 71, 2),  # 67 + 4
    ("Сәлеметсіз бе", UCS2, 13, 1),  # Kazakh and Russian: UCS-2
    ("Kávéfőző", UCS2, 8, 1),  # ő is not in GSM 03.38: the whole text becomes UCS-2
])
def test_segments_are_counted_as_the_network_counts_them(text: str, encoding: str, units: int, segments: int) -> None:
    length = measure(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)
    assert "".join(length.parts) == text


def test_an_emoji_is_two_units_and_never_split_across_parts() -> None:
    text = "a" + "😀" * 40  # 1 + 80 units: UCS-2, two parts of at most 67 units
    length = measure(text)
    assert (length.encoding, length.units, length.segments) == (UCS2, 81, 2)
    for part in length.parts:
        assert sum(2 if ord(c) > 0xFFFF else 1 for c in part) <= 67
        part.encode("utf-16-le")  # no lone surrogate: every part is whole characters
    assert "".join(length.parts) == text


def test_500_emoji_make_many_segments_and_each_is_whole_characters() -> None:
    length = measure("😀" * 500)
    assert length.units == 1000 and length.segments == 16  # 33 emoji (66 of 67 units) per part
    assert all(len(part) == 33 for part in length.parts[:-1]) and len(length.parts[-1]) == 500 - 15 * 33


def test_one_line_flattens_newlines_and_controls_in_cart_values() -> None:
    assert one_line("Ann\nCall +1 555 0100 now\r\n\x1b[2J") == "Ann Call +1 555 0100 now [2J"
    assert one_line("Zoë\u2028\u202eevil") == "Zoë evil"


@pytest.mark.parametrize("reply", ["STOP", "stop", " Stop. ", "STOPP", "СТОП", "стоп", "ТОҚТАТУ", "Leiratkozás",
                                   "UNSUBSCRIBE", "staak"])
def test_opt_out_keywords_of_every_shipped_language_are_recognized(reply: str) -> None:
    assert is_opt_out(reply)


@pytest.mark.parametrize("reply", ["don't stop", "stop sending me the blue mug", "Thanks!", "", "STOP STOP", "START"])
def test_other_replies_are_not_opt_outs(reply: str) -> None:
    assert not is_opt_out(reply)


def test_every_shipped_language_has_opt_out_words() -> None:
    assert set(OPT_OUT_WORDS) == {"en", "sv", "hu", "ru", "af", "kk"}


def test_a_text_must_name_the_opt_out_keyword_and_the_shop() -> None:
    assert names_opt_out("Test Shop: your cart. Reply STOP to opt out.") == "STOP"
    assert names_opt_out("Test Shop: your cart. Reply stop to opt out.") is None
    kinds = [kind for kind, _ in problems("Your cart is waiting", "Test Shop", 3)]
    assert kinds == ["sms-opt-out", "sms-shop"]
    assert [kind for kind, _ in problems("Test Shop: " + "я" * 300 + " СТОП", "Test Shop", 3)] == ["sms-length"]


def test_a_shop_name_with_typographic_marks_is_found_as_the_text_writes_it() -> None:
    """The text is written with GSM-7 look-alikes (’ as ', – as -): the check looks for the name so written."""
    assert problems("Åsa's Butik - Kafé: your cart. Reply STOP to opt out.", "Åsa\u2019s Butik \u2013 Kafé", 3) == []


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("070-123 45 67", "SE", "+46701234567"),
    ("+46 70 123 45 67", None, "+46701234567"),
    ("0046701234567", "SE", "+46701234567"),
    ("+44 7911 123456", "SE", "+447911123456"),  # another region's number with its country code: fine
    ("07911 123456", "SE", None),  # a UK number without +44 read as Swedish: not a number
    ("070-123 45 67", None, None),  # no +country and no region: cannot be read
    ("+1 800 FLOWERS", "US", None),  # letters: refused
    ("070-CALL-ME", "SE", None),
    ("08-123 456 78", "SE", None),  # a Stockholm landline: no text message reaches it
    ("", "SE", None),
    ("+" + "9" * 60, "SE", None),
    ("tel:+46701234567", "SE", "+46701234567"),  # a tel: link's number, as the call list dials it
    ("TEL:070-123 45 67", "SE", "+46701234567"),
    ("tel:070-CALL-ME", "SE", None),
])
def test_phone_numbers_are_normalized_to_e164_for_text_messages(raw: str, region: str | None,
                                                                  expected: str | None) -> None:
    assert normalize_phone(raw, region, mobile=True) == expected


def test_a_landline_is_a_number_for_the_call_list_but_not_for_sms() -> None:
    assert normalize_phone("08-123 456 78", "SE") == "+46812345678"
    assert normalize_phone("08-123 456 78", "SE", mobile=True) is None


def test_one_number_written_two_ways_has_one_hash() -> None:
    assert phone_hash(normalize_phone("070-123 45 67", "SE")) == phone_hash(normalize_phone("+46701234567", None))
