"""DVC stage `train`: fit the model selected in params.yaml, tracked in a new MLflow run."""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha_ocr.params import load_params_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/tfrecords"))
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train.json"))
    parser.add_argument("--history", type=Path, default=Path("plots/train/history.csv"))
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)  # before TensorFlow's import: a bad key fails fast

    from captcha_ocr.training import TrainOutputs, train

    train(params, args.data, TrainOutputs(args.model_dir, args.metrics, args.history))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
