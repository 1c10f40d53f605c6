"""Fonts for generated captchas, all available offline: the one the `captcha` package
ships (DroidSansMono) and the DejaVu, STIX and Computer Modern families matplotlib
ships; or any .ttf/.otf file the user names."""

from __future__ import annotations

from pathlib import Path

import captcha.image
import matplotlib
from fontTools.ttLib import TTFont

CAPTCHA_FONTS = Path(captcha.image.DATA_DIR)
MATPLOTLIB_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def available() -> list[str]:
    """Names that resolve without a path."""
    names = {
        path.stem for folder in (CAPTCHA_FONTS, MATPLOTLIB_FONTS) for path in folder.glob("*.ttf")
    }
    return sorted(names)


def resolve(name: str, root: Path | None = None) -> Path:
    """A font name (`DejaVuSans-Bold`) or a path (absolute, or relative to root)."""
    for folder in (CAPTCHA_FONTS, MATPLOTLIB_FONTS):
        candidate = folder / f"{name}.ttf"
        if candidate.is_file():
            return candidate
    path = Path(name)
    if not path.is_absolute() and root is not None:
        path = root / path
    if path.is_file():
        return path
    raise ValueError(
        f"font {name!r} is neither a file nor one of the bundled fonts: {', '.join(available())}"
    )


def missing_glyphs(path: Path, symbols: str) -> list[str]:
    """Symbols the font has no glyph for (they would be drawn as empty boxes)."""
    with TTFont(path, lazy=True) as font:
        covered = font.getBestCmap() or {}
    return [symbol for symbol in symbols if ord(symbol) not in covered]


def resolve_all(names: tuple[str, ...], symbols: str, root: Path | None = None) -> list[Path]:
    """Every font, checked to draw every symbol; ValueError naming the first that cannot."""
    paths = []
    for name in names:
        path = resolve(name, root)
        missing = missing_glyphs(path, symbols)
        if missing:
            raise ValueError(f"font {name!r} has no glyph for {missing}; drop it or the symbols")
        paths.append(path)
    return paths
