"""images.load_image: the one door for image bytes from outside refuses what is too
large from its header, before decoding, and names every other fault."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from captcha_ocr.images import DEFAULT_MAX_PIXELS, ImageRefused, load_image, shown
from tests.conftest import bomb_png


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, 255).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path):
    # Given a 10000x10000 PNG of one colour: 100 million pixels in ~110 KB, under
    # Pillow's own error threshold (Pillow only warns), far over ours
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(10_000, 10_000))
    assert bomb.stat().st_size < 1_000_000
    # When it is loaded, then it is refused with its size and the limit's name
    with pytest.raises(ImageRefused, match=r"too large: 10000x10000 pixels is over import"):
        load_image(bomb)
    # and past Pillow's threshold, where Pillow raises DecompressionBombError (no
    # OSError) while opening, the refusal is the same kind, naming the limit
    bomb.write_bytes(bomb_png(14_000, 14_000))
    with pytest.raises(ImageRefused, match=r"too large: .*import.max_image_pixels is 4,000,000"):
        load_image(bomb)


def test_the_limit_is_a_setting_checked_before_decoding():
    # Given a 3000x2000 image (6 million pixels, over the default of 4 million)
    stream = io.BytesIO(png((3000, 2000)))
    assert DEFAULT_MAX_PIXELS < 3000 * 2000
    with pytest.raises(ImageRefused, match="3000x2000 pixels is over"):
        load_image(stream)
    # Then a higher limit reads it
    stream.seek(0)
    _, size, image_format = load_image(stream, max_pixels=6_000_000)
    assert size == (3000, 2000) and image_format == "PNG"


def noise_png() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((300, 100), 64).save(buffer, format="PNG")
    return buffer.getvalue()


NOISE = noise_png()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not an image"),
        (b"GIF89a", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
        (NOISE[: len(NOISE) // 2], "unreadable image"),
    ],
)
def test_garbage_is_refused_with_a_reason(content: bytes, reason: str):
    with pytest.raises(ImageRefused, match=reason):
        load_image(io.BytesIO(content))


def test_a_folder_or_a_missing_file_is_named(tmp_path: Path):
    with pytest.raises(ImageRefused, match="a folder"):
        load_image(tmp_path)
    with pytest.raises(ImageRefused, match="missing"):
        load_image(tmp_path / "absent.png")


def test_a_file_name_that_is_not_utf8_can_be_shown(tmp_path: Path):
    # Given a file name in latin-1 (a byte that is no UTF-8), as a Windows zip leaves it
    name = os.fsdecode(b"caf\xe9.png")
    # Then it is shown with the byte escaped, and the text encodes as UTF-8
    assert shown(tmp_path / name).endswith("caf\\xe9.png")
    shown(tmp_path / name).encode("utf-8")
