"""Time to accuracy: train one configuration on prepared TFRecords under a wall-clock
budget, recording validation whole-captcha accuracy against seconds, then score the
best epoch on the test split.

    python bench/time_to_accuracy.py --data data/tfrecords --budget 600 \\
        --name small_input --set model.input_height=32 --set model.input_width=96

Uses the pipeline's own training code (captcha_ocr.training.fit), so the curve is
what `dvc repro` would do with those params. Appends to
bench/results/time_to_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import yaml
from results_json import record

from captcha_ocr.checkpoints import Checkpoints
from captcha_ocr.data import inference_dataset, input_spec
from captcha_ocr.dataset_info import read_data_info
from captcha_ocr.metrics import evaluate_texts
from captcha_ocr.models import build_model
from captcha_ocr.params import load_params, parse_params
from captcha_ocr.prediction import predict_batches
from captcha_ocr.training import fit, make_reproducible

RESULTS = Path(__file__).parent / "results"


class WallClock(keras.callbacks.Callback):
    """A point of the curve every `interval` training seconds (and at each epoch end):
    whole-captcha accuracy on a fixed validation sample. The clock stops while it
    measures, so the curve's seconds are training seconds; training stops once the
    budget is spent, mid-epoch if need be."""

    def __init__(
        self, budget: float, interval: float, probe: Any, charset: Any, batch_size: int
    ) -> None:
        super().__init__()
        self.budget = budget
        self.batch_size = batch_size
        self._epoch = 0
        self.interval = interval
        self.probe = probe  # batches of a fixed validation sample (inference_dataset)
        self.charset = charset
        self.curve: list[dict[str, float]] = []
        self._trained = 0.0
        self._since: float | None = None
        self._samples = 0

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._since is not None:
            self._trained += now - self._since
        self._since = now

    def _point(self, epoch: int) -> None:
        self._tick()
        predictions = predict_batches(self.model, self.probe, self.charset)
        accuracy = evaluate_texts(predictions.truths, predictions.texts).summary
        self.curve.append(
            {
                "seconds": round(self._trained, 1),
                "samples": self._samples,
                "epoch": epoch + 1,
                "val_sequence_accuracy": round(accuracy["sequence_accuracy"], 4),
                "learning_rate": float(
                    keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
                ),
            }
        )
        print(f"  {self.curve[-1]}", flush=True)
        self._since = time.perf_counter()  # measuring is not training

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._since = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._samples += self.batch_size
        self._tick()
        if self._trained >= self.interval * (len(self.curve) + 1):
            self._point(self._epoch)
        if self._trained > self.budget:
            self.model.stop_training = True

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._tick()  # Keras's own validation pass is not training either

    def on_test_end(self, logs: dict | None = None) -> None:
        self._since = time.perf_counter()

    def on_train_end(self, logs: dict | None = None) -> None:
        if not self.curve or self.curve[-1]["samples"] != self._samples:
            self._point(self._epoch)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`section.key=value` as `dvc exp run -S` takes them; values parsed as YAML."""
    for item in overrides:
        key, _, value = item.partition("=")
        node = raw
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    return raw


def main(argv: list[str] | None = None, extra: dict[str, Any] | None = None) -> int:
    """`extra`: fields added to the recorded entry (a caller's own settings)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="TFRecord folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between points")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, default=RESULTS / "time_to_accuracy.json")
    parser.add_argument(
        "--save-model",
        type=Path,
        default=None,
        help="keep the best model (.keras) to read other captchas",
    )
    args = parser.parse_args(argv)

    raw = load_params(args.params).model_dump()
    params = parse_params(apply_overrides(raw, args.overrides))
    info = read_data_info(args.data)
    spec = input_spec(info, params.model)
    make_reproducible(params.train)
    model = build_model(params.model, spec, len(info.charset), min_length=info.min_length)
    probe = inference_dataset(args.data, info, "val", spec, batch_size=250).take(4)  # 1000
    clock = WallClock(
        args.budget, args.interval, probe.cache(), info.charset_map(), params.train.batch_size
    )
    print(f"{args.name}: {model.count_params()} parameters, input {spec.shape}", flush=True)
    with tempfile.TemporaryDirectory() as work_dir:
        checkpoints = Checkpoints(work_dir, fingerprint="bench")
        checkpoints.prepare(resume=False, run_id="")
        result = fit(model, params.train, args.data, info, spec, checkpoints, [clock])
    if args.save_model:
        result.model.save(args.save_model)
    batches = inference_dataset(args.data, info, "test", spec, batch_size=256)
    predictions = predict_batches(result.model, batches, info.charset_map())
    scores = evaluate_texts(predictions.truths, predictions.texts, charset=info.charset)
    top = scores.confusions.head(8)
    entry = {
        "overrides": args.overrides,
        "parameters": int(model.count_params()),
        "input": list(spec.shape),
        "n_train": info.counts["train"],
        "budget_seconds": args.budget,
        "train_seconds": round(result.seconds, 1),
        "best_epoch": result.callbacks.get("checkpoint", {}).get("best_epoch"),
        "test_sequence_accuracy": scores.summary["sequence_accuracy"],
        "test_character_accuracy": scores.summary["character_accuracy"],
        "test_length_accuracy": scores.summary["length_accuracy"],
        "n_test": scores.summary["n_test"],
        "top_confusions": [
            f"{r.actual or '-'}>{r.predicted or '-'} x{r.count}" for r in top.itertuples()
        ],
        **(extra or {}),
        "curve": clock.curve,
    }
    print(json.dumps({k: v for k, v in entry.items() if k != "curve"}, indent=1))
    record(args.out, args.name, entry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
