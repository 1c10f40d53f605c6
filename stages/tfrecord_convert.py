"""DVC stage `tfrecord-convert`: raw images + labels.csv -> sharded TFRecords + data_info.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha_ocr.params import load_params_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="raw dataset folder")
    parser.add_argument("--out", type=Path, default=Path("data/tfrecords"), help="shard folder")
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)  # before TensorFlow's import: a bad key fails fast

    from captcha_ocr.tfrecords import convert

    convert(args.raw, args.out, params.tfrecord)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
