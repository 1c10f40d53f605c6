"""The evaluate stage: read the test split with the trained model, score it, log it.

Writes metrics for `dvc metrics`, tables for `dvc plots`, and logs the same
figures into the MLflow run that train started, then ends that run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from captcha_ocr import plots, tracking
from captcha_ocr.atomic import atomic_dir, write_json
from captcha_ocr.data import (
    InputSpec,
    inference_dataset,
    model_input_spec,
    read_examples,
    stored_images,
)
from captcha_ocr.dataset_info import DATA_INFO, DataInfo, read_data_info
from captcha_ocr.metrics import MISSING, Evaluation, evaluate_texts
from captcha_ocr.params import Params
from captcha_ocr.paths import MODEL_FILE, RUN_FILE
from captcha_ocr.prediction import predict_batches

NONE_SYMBOL = "∅"  # how tables show the missing side of an insertion or deletion
GALLERY_SIZE = 16


@dataclass(frozen=True)
class EvaluateOutputs:
    """Where the evaluate stage writes; dvc.yaml names these paths."""

    metrics: Path  # JSON for `dvc metrics`
    plots_dir: Path  # CSV tables and PNG images for `dvc plots`


def metric_key(prefix: str, symbol: str) -> str:
    """An MLflow-safe metric name for a symbol: `errors/A`, or `errors/U+0040` for '@'."""
    if re.fullmatch(r"[A-Za-z0-9_\-.]", symbol):
        return f"{prefix}/{symbol}"
    return f"{prefix}/U+{ord(symbol):04X}"


def metrics_payload(evaluation: Evaluation) -> dict[str, Any]:
    """evaluate.json: the summary and errors per true character (NaN as null)."""
    summary = {
        key: (None if isinstance(value, float) and value != value else value)
        for key, value in evaluation.summary.items()
    }
    return {
        **summary,
        "position_accuracy": {
            str(position): round(float(accuracy), 6)
            for position, accuracy in evaluation.per_position["accuracy"].items()
        },
        "char_errors": evaluation.per_char["errors"].astype(int).to_dict(),
    }


def write_reports(
    evaluation: Evaluation, plots_dir: Path, gallery: list[np.ndarray]
) -> dict[str, str]:
    """Tables (CSV) and images (PNG) for `dvc plots` and MLflow, written whole or not at
    all; returns the file names by kind."""
    files = {
        "char_errors": "char_errors.csv",
        "confusions": "confusions.csv",
        "misreads": "misreads.csv",
        "confusion_matrix": "confusion_matrix.csv",
        "per_position": "per_position.csv",
        "per_length": "per_length.csv",
        "predictions": "predictions.csv",
        "char_errors_png": "char_errors.png",
        "confusion_png": "confusion_heatmap.png",
        "mistakes_png": "mistakes.png",
    }
    confusions = evaluation.confusions.replace({MISSING: NONE_SYMBOL})
    # DVC's confusion template counts rows: one row per misread character.
    misreads = confusions.loc[confusions.index.repeat(confusions["count"]), ["actual", "predicted"]]
    matrix = evaluation.confusion_matrix.rename(
        index={MISSING: NONE_SYMBOL}, columns={MISSING: NONE_SYMBOL}
    )
    tables = {
        "char_errors": evaluation.per_char.reset_index(),
        "confusions": confusions,
        "misreads": misreads,
        "confusion_matrix": matrix.reset_index(),
        "per_position": evaluation.per_position.reset_index(),
        "per_length": evaluation.per_length.reset_index(),
        "predictions": evaluation.samples,
    }
    with atomic_dir(plots_dir) as scratch:
        for name, frame in tables.items():
            frame.to_csv(scratch / files[name], index=False)
        plots.char_errors(evaluation.per_char, scratch / files["char_errors_png"])
        plots.confusion_heatmap(evaluation.confusion_matrix, scratch / files["confusion_png"])
        plots.mistakes_gallery(gallery, worst_mistakes(evaluation), scratch / files["mistakes_png"])
    return files


def worst_mistakes(evaluation: Evaluation, count: int = GALLERY_SIZE) -> pd.DataFrame:
    """The wrong answers the model was surest of: what a user should look at first."""
    wrong = evaluation.samples[~evaluation.samples["correct"]]
    return wrong.sort_values(["confidence", "id"], ascending=[False, True]).head(count)


def gallery_images(
    tfrecord_dir: Path, info: DataInfo, spec: InputSpec, ids: list[str]
) -> list[np.ndarray]:
    """The test images with these ids, in that order."""
    wanted = set(ids)
    found: dict[str, np.ndarray] = {}
    if wanted:
        for example in read_examples(tfrecord_dir, info, "test", spec):
            image_id = example["id"].numpy().decode("utf-8")
            if image_id in wanted:
                found[image_id] = example["image"].numpy()
                if len(found) == len(wanted):
                    break
    return [found[image_id] for image_id in ids]


def evaluate(
    params: Params, tfrecord_dir: Path | str, model_dir: Path | str, outputs: EvaluateOutputs
) -> dict[str, Any]:
    import mlflow

    from captcha_ocr import mlflow_reader

    tfrecord_dir, model_dir = Path(tfrecord_dir), Path(model_dir)
    info = read_data_info(tfrecord_dir, verify=True)
    reference = tracking.read_run_reference(model_dir / RUN_FILE)
    # Logs first what train kept when its tracking server stopped answering.
    experiment_id = tracking.configure(params.mlflow, pending_dir=model_dir)
    evaluate_params = {f"evaluate.{k}": v for k, v in params.evaluate.model_dump().items()}
    train_run = _find_run(reference["run_id"])
    reopen = train_run is not None and _params_agree(train_run.data.params, evaluate_params)
    if not reopen:
        # MLflow params are immutable: an evaluation with other settings (or of a
        # run this store has never seen) gets a run of its own, linked to train's.
        print(f"evaluate: logging to a new run, linked to train run {reference['run_id']}")
    with tracking.run_context(
        experiment_id,
        run_id=reference["run_id"] if reopen else None,
        run_name=None if reopen else tracking.run_name(params.model.arch),
    ):
        model = keras.models.load_model(model_dir / MODEL_FILE)
        spec = model_input_spec(model, info.max_length)
        batches = inference_dataset(
            tfrecord_dir, info, "test", spec, batch_size=params.evaluate.batch_size
        )
        predictions = predict_batches(
            model,
            batches,
            info.charset_map(),
            params.evaluate.decoder,
            params.evaluate.beam_width,
            params.evaluate.tta_shifts,
        )
        evaluation = evaluate_texts(
            predictions.truths,
            predictions.texts,
            predictions.confidence,
            charset=info.charset,
            ids=predictions.ids,
            sources=predictions.sources or None,
        )
        gallery = gallery_images(
            tfrecord_dir, info, spec, worst_mistakes(evaluation)["id"].tolist()
        )
        files = write_reports(evaluation, outputs.plots_dir, gallery)
        payload = metrics_payload(evaluation)
        write_json(outputs.metrics, payload)

        if not reopen:
            mlflow.set_tag(tracking.TAG_TRAIN_RUN, reference["run_id"])
            if train_run is not None:
                mlflow.log_params(_without_evaluate(train_run.data.params))
                mlflow.set_tags(_user_tags(train_run.data.tags))
        mlflow.set_tag(tracking.TAG_PIPELINE_STAGE, "evaluate")
        mlflow.log_params(evaluate_params)
        if not reopen:  # the train run logged the dataset already
            tracking.log_dataset(info, tfrecord_dir, context="evaluation")
        log_evaluation(evaluation, payload, outputs, files)
        if params.mlflow.log_model:
            # The model with its charset and these reading settings, so that what is
            # logged and registered reads as this evaluation read (mlflow_reader).
            _, example = next(stored_images(tfrecord_dir, info, "test"))
            model_uri = mlflow_reader.log_reader(
                model_dir / MODEL_FILE,
                tfrecord_dir / DATA_INFO,
                params.evaluate,
                example,
                params.import_.max_image_pixels,
            )
            if params.mlflow.registered_model:
                tracking.register_champion(
                    model_uri,
                    params.mlflow.registered_model,
                    evaluation.summary["sequence_accuracy"],
                )
    _print_summary(evaluation)
    return payload


def log_evaluation(
    evaluation: Evaluation, payload: dict[str, Any], outputs: EvaluateOutputs, files: dict[str, str]
) -> None:
    """Test figures as metrics, tables as artifacts (evaluate/), images under plots/."""
    import mlflow

    mlflow.log_metrics(
        tracking.finite_metrics({f"test/{k}": v for k, v in evaluation.summary.items()})
    )
    mlflow.log_metrics(
        {metric_key("errors", char): float(n) for char, n in payload["char_errors"].items()}
    )
    mlflow.log_metrics(
        tracking.finite_metrics(
            {
                f"test/position_{position}_accuracy": accuracy
                for position, accuracy in evaluation.per_position["accuracy"].items()
            }
        )
    )
    mlflow.log_artifact(str(outputs.metrics), artifact_path="evaluate")
    for file in files.values():
        folder = "plots" if file.endswith(".png") else "evaluate"
        mlflow.log_artifact(str(outputs.plots_dir / file), artifact_path=folder)


def _find_run(run_id: str) -> Any | None:
    """Train's run, or None where this store has never seen it. A store that fails to
    answer is an error, not a new run: the evaluation would leave train's run."""
    import mlflow

    try:
        return mlflow.get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise tracking.TrackingUnavailable(
            f"tracking store {mlflow.get_tracking_uri()}: cannot look up train run "
            f"{run_id}: {tracking.first_line(error)}"
        ) from None


def _params_agree(logged: dict[str, str], wanted: dict[str, Any]) -> bool:
    """True when no param in `wanted` was logged with another value."""
    return all(logged.get(key, str(value)) == str(value) for key, value in wanted.items())


def _without_evaluate(logged: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in logged.items() if not key.startswith("evaluate.")}


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The train run's own tags, without MLflow's per-run ones (name, user, source)."""
    return {
        key: value
        for key, value in tags.items()
        if not key.startswith("mlflow.") or key == tracking.TAG_GIT_COMMIT
    }


def _print_summary(evaluation: Evaluation) -> None:
    summary = evaluation.summary
    top = evaluation.confusions.head(5)
    pairs = ", ".join(
        f"{row.actual or NONE_SYMBOL}->{row.predicted or NONE_SYMBOL} x{row.count}"
        for row in top.itertuples()
    )
    print(
        f"evaluate: {summary['n_test']} test captchas: sequence accuracy "
        f"{summary['sequence_accuracy']:.4f}, character accuracy "
        f"{summary['character_accuracy']:.4f}, CER {summary['character_error_rate']:.4f}"
        + (f"; top confusions: {pairs}" if pairs else "")
    )
    for source in ("imported", "generated"):
        if f"n_{source}" in summary:
            print(
                f"evaluate: {summary[f'n_{source}']} {source}: sequence accuracy "
                f"{summary[f'{source}_sequence_accuracy']:.4f}"
            )
