"""Charsets: presets, custom symbols, and the id mapping with 0 kept for the CTC blank."""

from __future__ import annotations

import pytest

from captcha_ocr.charsets import PRESETS, Charset, resolve


def test_presets_have_the_published_sizes():
    sizes = {name: len(symbols) for name, symbols in PRESETS.items()}
    assert sizes == {"digits": 10, "digits_upper": 36, "digits_lower": 36, "digits_letters": 62}
    assert resolve("digits_lower") == "0123456789abcdefghijklmnopqrstuvwxyz"


def test_ids_start_at_one_and_round_trip():
    charset = Charset("AB0")
    assert charset.encode("B0AA") == [2, 3, 1, 1]
    assert charset.decode([2, 3, 1, 1]) == "B0AA"
    assert charset.num_classes == 4  # three symbols and the blank


def test_decode_skips_blank_padding_and_negative_ids():
    assert Charset("AB").decode([1, 0, 2, 0, -1, -1]) == "AB"


def test_unknown_symbol_is_named():
    with pytest.raises(ValueError, match=r"outside the charset: \['a'\]"):
        Charset("AB").encode("Aa")


@pytest.mark.parametrize(
    ("name", "custom", "message"),
    [
        ("custom", "ABA", "repeats symbols"),
        ("custom", "A B", "printable and not whitespace"),
        ("digits", "AB", "set charset: custom"),
        ("hex", None, "unknown charset"),
    ],
)
def test_bad_charsets_are_refused(name, custom, message):
    with pytest.raises(ValueError, match=message):
        resolve(name, custom)
