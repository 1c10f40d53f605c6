"""Draw labelled captchas in a style the `captcha` package does not draw, as a stand-in
for a user's own set (the project cannot download real ones): 200x50 grey images, 5
characters from 19 symbols in a serif font (Computer Modern), each glyph nudged and
tilted, a line through the text, pixel noise and a slight blur: the look of many web
captchas.

    python bench/foreign_captchas.py --out /tmp/own/captchas --count 1000

--symbols, --length, --width and --font draw other sets in the same style, e.g.
six characters of 0-9A-Z in STIX: --symbols 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ
--length 6 --width 240 --font STIXGeneral.

Files are named by their label (`bx4m7.png`, `bx4m7_2.png` for a repeat), as the
`import` stage reads them, and the same --seed draws the same images. What training
on such a set needs is in bench/README.md ("Your own captchas: how long to train").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from captcha_ocr.fonts import resolve

SYMBOLS = "2345678bcdefgmnpwxy"  # the symbols of a widely used set of web captchas


def draw(
    text: str, font: ImageFont.FreeTypeFont, rng: np.random.Generator, width: int = 200
) -> Image.Image:
    height = 50
    image = Image.new("L", (width, height), int(rng.integers(200, 240)))
    canvas = ImageDraw.Draw(image)
    x = float(rng.uniform(20, 40))
    ink = int(rng.integers(20, 90))
    for symbol in text:
        glyph = Image.new("L", (40, 50), 0)
        ImageDraw.Draw(glyph).text((6, 4), symbol, fill=255, font=font)
        glyph = glyph.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
        y = int(rng.integers(-4, 5))
        image.paste(ink, (int(x), y), glyph)
        x += float(rng.uniform(22, 29))
    # A line through the text, as thick as a stroke: the cue a reader must look past.
    start = (int(rng.integers(5, 35)), int(rng.integers(15, 35)))
    end = (int(rng.integers(width - 40, width - 5)), int(rng.integers(15, 35)))
    canvas.line([start, end], fill=ink, width=int(rng.integers(2, 4)))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, (height, width))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.8))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--length", type=int, default=5)
    parser.add_argument("--symbols", default=SYMBOLS)
    parser.add_argument("--width", type=int, default=200)  # 200 fits 5 characters
    parser.add_argument("--font", default="cmr10")  # in none of the profiles' font lists
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    font = ImageFont.truetype(str(resolve(args.font)), 34)
    args.out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    for _ in range(args.count):
        text = "".join(rng.choice(list(args.symbols), size=args.length))
        seen[text] = seen.get(text, 0) + 1
        name = text if seen[text] == 1 else f"{text}_{seen[text]}"
        draw(text, font, rng, args.width).save(args.out / f"{name}.png")
    print(f"wrote {args.count} captchas to {args.out} (symbols {args.symbols})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
