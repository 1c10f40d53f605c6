"""DVC stage `tfrecord-convert`: raw datasets -> sharded TFRecords + data_info.json.

Reads the generated dataset, the imported one, or both, as data.source says."""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha_ocr.params import load_params_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="generated dataset")
    parser.add_argument("--imported", type=Path, default=Path("data/imported"), help="your own")
    parser.add_argument("--out", type=Path, default=Path("data/tfrecords"), help="shard folder")
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)  # before TensorFlow's import: a bad key fails fast

    from captcha_ocr.tfrecords import convert

    sources = [args.raw] if params.data.uses_generated else []
    sources += [args.imported] if params.data.uses_imported else []
    convert(sources, args.out, params.tfrecord)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
