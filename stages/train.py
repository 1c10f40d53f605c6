"""DVC stage `train`: fit the model selected in params.yaml, tracked in a new MLflow run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from captcha_ocr.params import cluster_problem, load_params_or_exit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/tfrecords"))
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=Path(".checkpoints/train"),
        help="state kept between epochs, so an interrupted run resumes",
    )
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train.json"))
    parser.add_argument("--history", type=Path, default=Path("plots/train/history.csv"))
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)  # before TensorFlow's import: a bad key fails fast
    problem = cluster_problem(params.train)
    if problem:
        raise SystemExit(f"train: error: {problem}")

    from captcha_ocr.dataset_info import DataCorrupted
    from captcha_ocr.tracking import TrackingUnavailable
    from captcha_ocr.training import TrainingDiverged, TrainOutputs, train

    outputs = TrainOutputs(args.model_dir, args.metrics, args.history, args.checkpoints)
    try:
        train(params, args.data, outputs)
    except (TrainingDiverged, TrackingUnavailable, DataCorrupted) as error:
        raise SystemExit(f"train: error: {error}") from None
    except KeyboardInterrupt:
        print(
            f"train: interrupted; run it again to resume after the last finished epoch "
            f"(state in {args.checkpoints})",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
