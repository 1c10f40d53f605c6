"""DVC stage `evaluate`: score the model on the test split; log into train's MLflow run."""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha_ocr.params import load_params_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/tfrecords"))
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/evaluate.json"))
    parser.add_argument("--plots", type=Path, default=Path("plots/evaluate"))
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)  # before TensorFlow's import: a bad key fails fast

    from captcha_ocr.dataset_info import DataCorrupted
    from captcha_ocr.evaluation import EvaluateOutputs, evaluate
    from captcha_ocr.tracking import TrackingUnavailable

    try:
        evaluate(params, args.data, args.model_dir, EvaluateOutputs(args.metrics, args.plots))
    except (TrackingUnavailable, DataCorrupted) as error:
        raise SystemExit(f"evaluate: error: {error}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
