"""Print the latest pipeline figures and where to look next (run by `make repro`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from captcha_ocr.params import load_params_or_exit
from captcha_ocr.paths import MODEL_DIR, RUN_FILE
from captcha_ocr.tracking import resolve_tracking


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)
    evaluated = _load(Path("metrics/evaluate.json"))
    trained = _load(Path("metrics/train.json"))
    run = _load(MODEL_DIR / RUN_FILE)
    uri, _ = resolve_tracking(params.mlflow)
    if not evaluated:
        print("No metrics yet: run `make repro`.")
        return 1
    worst = sorted(evaluated.get("char_errors", {}).items(), key=lambda item: -item[1])[:5]
    print(
        "\n".join(
            [
                "",
                f"Test set: {evaluated['n_test']} captchas",
                f"  whole-captcha accuracy  {evaluated['sequence_accuracy']:.4f}",
                f"  character accuracy      {evaluated['character_accuracy']:.4f}",
                f"  character error rate    {evaluated['character_error_rate']:.4f}",
                f"  most misread            {', '.join(f'{c} x{n}' for c, n in worst if n)}",
                f"Training: {trained.get('epochs_run')} epochs, best {trained.get('best_epoch')}, "
                f"{trained.get('train_seconds')} s",
                "",
                "Where to look:",
                "  metrics   metrics/evaluate.json, metrics/train.json   (dvc metrics show)",
                "  plots     plots/                                      (make plots)",
                f"  MLflow    run {run.get('run_id', '?')} in {uri}",
                "            make ui  ->  http://127.0.0.1:5000",
            ]
        )
    )
    name = params.mlflow.registered_model
    if name and params.mlflow.log_model:
        print(f"  model     models:/{name}@champion reads image files (README, MLflow)")
        print("            make serve  ->  POST them to http://127.0.0.1:5002/invocations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
