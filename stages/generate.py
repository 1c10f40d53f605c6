"""DVC stage `generate`: draw the captcha images and their manifest.

With data.source `imported` it writes an empty dataset (the stage stays in the graph)."""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha_ocr.generate import generate_dataset
from captcha_ocr.params import load_params_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/raw"), help="raw dataset folder")
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)
    stats = generate_dataset(params.data, params.generate, args.out, root=args.params.parent)
    print(
        f"generate: {stats['images']} images with {stats['workers']} workers in "
        f"{stats['seconds']:.1f} s ({stats['images_per_second']:.0f} images/s) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
