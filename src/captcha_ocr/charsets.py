"""Charsets: the symbols a captcha may contain, and the label ids a model sees.

Id 0 is reserved: it is the CTC blank and the padding of variable-length
labels, so symbol i of the charset has id i + 1.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

PRESETS: dict[str, str] = {
    "digits": string.digits,
    # The 36 symbols of the published captcha benchmarks.
    "digits_upper": string.digits + string.ascii_uppercase,
    # The alphabet of many real captchas on the web.
    "digits_lower": string.digits + string.ascii_lowercase,
    "digits_letters": string.digits + string.ascii_uppercase + string.ascii_lowercase,
}
CUSTOM = "custom"
BLANK_ID = 0


def resolve(name: str, custom: str | None = None) -> str:
    """The symbols of a preset, or of a custom charset; ValueError if unusable."""
    if name == CUSTOM:
        if not custom:
            raise ValueError("charset `custom` needs custom_charset, the symbols themselves")
        validate_symbols(custom)
        return custom
    if custom:
        raise ValueError(f"custom_charset is set but charset is {name!r}; set charset: custom")
    if name not in PRESETS:
        raise ValueError(f"unknown charset {name!r}; use one of {[*PRESETS, CUSTOM]}")
    return PRESETS[name]


def validate_symbols(symbols: str) -> None:
    duplicates = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
    if duplicates:
        raise ValueError(f"charset repeats symbols {duplicates}")
    if any(symbol.isspace() or not symbol.isprintable() for symbol in symbols):
        raise ValueError("charset symbols must be printable and not whitespace")


class Charset:
    """Maps text to label ids (1..n) and back."""

    def __init__(self, symbols: str) -> None:
        validate_symbols(symbols)
        self.symbols = symbols
        self._ids = {symbol: index + 1 for index, symbol in enumerate(symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def num_classes(self) -> int:
        """Classes of a CTC output layer: every symbol plus the blank."""
        return len(self.symbols) + 1

    def unknown_symbols(self, text: str) -> list[str]:
        return sorted({symbol for symbol in text if symbol not in self._ids})

    def encode(self, text: str) -> list[int]:
        unknown = self.unknown_symbols(text)
        if unknown:
            raise ValueError(f"label {text!r} has symbols outside the charset: {unknown}")
        return [self._ids[symbol] for symbol in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text; the blank and padding (0) and negative ids are skipped."""
        return "".join(self.symbols[i - 1] for i in ids if 0 < i <= len(self.symbols))
