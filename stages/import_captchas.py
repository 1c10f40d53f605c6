"""DVC stage `import`: validate your own labelled captchas and lay them out as a dataset.

Reads import.path (labels in file names) or import.csv; see captcha_ocr.importing.
With data.source `generated` it writes an empty dataset (the stage stays in the graph).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha_ocr.importing import ImportFailed, import_dataset
from captcha_ocr.params import load_params_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/imported"))
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)
    try:
        stats = import_dataset(params.data, params.import_, args.out, root=args.params.parent)
    except ImportFailed as error:
        raise SystemExit(f"error: {error}") from None
    print(
        f"import: {stats['imported']} images imported, {stats['skipped']} skipped "
        f"of {stats['candidates']} files -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
