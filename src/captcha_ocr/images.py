"""Loading one captcha image from outside the pipeline: a file to import or read, or
a request row sent to the served reader. The one place that opens such bytes.

The size is checked from the header, before a pixel is decoded: a PNG of one colour
compresses 30000x30000 pixels into under a megabyte, and decoding it would take
gigabytes. Captchas are a few thousand pixels, so the limit (import.max_image_pixels)
can sit far below Pillow's own (~89 million pixels, an error only above twice that).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

# The params schema's default for import.max_image_pixels: 4 million pixels, e.g.
# 2000x2000, over 400 times a 160x60 captcha.
DEFAULT_MAX_PIXELS = 4_000_000


class ImageRefused(ValueError):
    """The bytes are not an image this project reads; the message is the reason."""


def load_image(
    source: Path | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[bytes, tuple[int, int], str]:
    """(PNG bytes, size, the format the content really has) of a file or a stream of
    its bytes; ImageRefused with the reason. Transparency is flattened onto white."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; ours is far lower anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRefused(
                        f"too large: {width}x{height} pixels is over "
                        f"import.max_image_pixels ({max_pixels:,})"
                    )
                image.load()  # decodes every pixel: a truncated file fails here
                original_format = image.format or "unknown"
                flat = _flatten(image)
    except ImageRefused:
        raise
    except FileNotFoundError:
        raise ImageRefused("listed but missing") from None
    except IsADirectoryError:
        raise ImageRefused("a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageRefused("not an image (no known image format in its content)") from None
    except Image.DecompressionBombError as error:
        # Pillow refuses past its own limit while it opens, before our check can run.
        raise ImageRefused(
            f"too large: {error} (import.max_image_pixels is {max_pixels:,})"
        ) from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as error:
        raise ImageRefused(f"unreadable image: {error}") from None
    buffer = io.BytesIO()
    flat.save(buffer, format="PNG")
    return buffer.getvalue(), flat.size, original_format


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # A transparent background would otherwise turn black in grayscale.
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def shown(path: Path | str) -> str:
    """A path as text that any report or terminal can hold: a file name that is not
    UTF-8 keeps its bytes as \\x escapes instead of failing to encode."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")
