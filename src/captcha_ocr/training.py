"""Train a model on the TFRecord shards, with its callbacks, inside one MLflow run."""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from captcha_ocr import distribute, plots, tracking
from captcha_ocr.atomic import atomic_dir, atomic_file, write_json
from captcha_ocr.augmentation import augmenter
from captcha_ocr.callbacks import (
    CosineSchedule,
    EpochStats,
    ExtraStateBackup,
    MlflowEpochLogger,
    RecordedReduceLROnPlateau,
    ResumeState,
    SequenceAccuracy,
    StopOnNonFiniteLoss,
    monitor_mode,
)
from captcha_ocr.charsets import Charset
from captcha_ocr.checkpoints import CSV_LOG, Checkpoints, fingerprint
from captcha_ocr.data import InputSpec, inference_dataset, input_spec, training_dataset
from captcha_ocr.dataset_info import DataInfo, read_data_info
from captcha_ocr.models import build_model, kind_of
from captcha_ocr.params import Params, TrainParams, flatten
from captcha_ocr.paths import MODEL_FILE, RUN_FILE
from captcha_ocr.progress import interactive

# A CTC model first learns to output nothing but blanks: on the small sets of
# captchas/README.md ("Training on them") it read its first validation captcha after
# 396-564 optimizer steps. A run with fewer than this in all is almost surely too short.
FEW_STEPS = 1_000


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; nothing trained on is worth saving."""


@dataclass(frozen=True)
class TrainOutputs:
    """Where the train stage writes; dvc.yaml names these paths."""

    model_dir: Path  # model.keras (the best epoch), mlflow_run.json, training_log.csv
    metrics: Path  # JSON for `dvc metrics`
    history: Path  # CSV for `dvc plots`, one row per epoch
    checkpoints: Path = Path(".checkpoints/train")  # state for resuming; not a DVC output


def make_optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    common: dict[str, Any] = {"learning_rate": params.learning_rate}
    if params.clipnorm is not None:
        common["clipnorm"] = params.clipnorm
    if params.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if params.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=params.weight_decay, **common)
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=params.momentum, nesterov=True, **common)
    return keras.optimizers.RMSprop(**common)


def loss_for(model: keras.Model) -> keras.losses.Loss:
    """CTC over time steps, or cross-entropy per position (equal weights) for
    multi-head models; both take the same padded label ids."""
    if kind_of(model) == "ctc":
        return keras.losses.CTC()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_model(model: keras.Model, params: TrainParams) -> None:
    model.compile(optimizer=make_optimizer(params), loss=loss_for(model))


def passes_per_epoch(train_samples: int, params: TrainParams) -> int:
    """How many times an epoch goes through the training split: once, or as often as
    it takes to make params.min_steps_per_epoch optimizer steps.

    Epochs, and so the callbacks' patience and the checkpoints, then mean about the
    same amount of training whatever the split's size: the default's 4 epochs are
    2,400 steps or more, which a few hundred of one's own captchas need, where
    single passes over them would be a few dozen (captchas/README.md).
    """
    wanted = params.min_steps_per_epoch * params.batch_size
    return max(1, math.ceil(wanted / max(train_samples, 1)))


def steps_per_epoch(train_samples: int, params: TrainParams) -> int:
    """Optimizer steps in an epoch: batches run across the passes (data.training_dataset)."""
    samples = passes_per_epoch(train_samples, params) * train_samples
    return math.ceil(samples / params.batch_size)


def describe_passes(train_samples: int, params: TrainParams) -> str | None:
    """A line for the log when an epoch goes through the split more than once."""
    passes = passes_per_epoch(train_samples, params)
    if passes == 1:
        return None
    return (
        f"train: {train_samples} training captchas make "
        f"{math.ceil(train_samples / params.batch_size)} steps of {params.batch_size}; each "
        f"epoch goes through them {passes} times, {steps_per_epoch(train_samples, params)} "
        f"steps (train.min_steps_per_epoch: {params.min_steps_per_epoch})"
    )


def too_few_steps(train_samples: int, params: TrainParams) -> str | None:
    """A warning when the whole run takes fewer than FEW_STEPS optimizer steps, the
    usual reason a model trained on a small set of one's own captchas reads nothing."""
    per_epoch = steps_per_epoch(train_samples, params)
    if per_epoch * params.epochs >= FEW_STEPS:
        return None
    return (
        f"train: warning: {per_epoch * params.epochs} optimizer steps in all ({per_epoch} an "
        f"epoch x {params.epochs} epochs); models here read nothing before some 400. "
        "Raise train.epochs or train.min_steps_per_epoch (captchas/README.md, "
        "'Training on them')"
    )


def make_callbacks(
    params: TrainParams,
    val_batches: Any,
    charset: Charset,
    checkpoint_path: Path,
    csv_log_path: Path,
    samples_per_epoch: int,
) -> dict[str, keras.callbacks.Callback]:
    """The callbacks in the order Keras must run them (see callbacks.py)."""
    callbacks: dict[str, keras.callbacks.Callback] = {}
    if params.lr_schedule == "cosine":
        steps = math.ceil(samples_per_epoch / params.batch_size)
        callbacks["cosine_schedule"] = CosineSchedule(
            params.learning_rate,
            total_steps=params.epochs * steps,
            warmup_steps=round(params.warmup_epochs * steps),
        )
    callbacks["sequence_accuracy"] = SequenceAccuracy(val_batches, charset)
    callbacks["epoch_stats"] = EpochStats(samples_per_epoch)
    callbacks["terminate_on_nan"] = StopOnNonFiniteLoss()
    stopping = params.early_stopping
    if stopping.enabled:
        callbacks["early_stopping"] = keras.callbacks.EarlyStopping(
            monitor=stopping.monitor,
            mode=monitor_mode(stopping.monitor),
            patience=stopping.patience,
            min_delta=stopping.min_delta,
            restore_best_weights=stopping.restore_best_weights,
            verbose=1,
        )
    reduce = params.reduce_lr
    if reduce.enabled:
        callbacks["reduce_lr"] = RecordedReduceLROnPlateau(
            monitor=reduce.monitor,
            mode=monitor_mode(reduce.monitor),
            factor=reduce.factor,
            patience=reduce.patience,
            min_lr=reduce.min_lr,
            verbose=1,
        )
    callbacks["checkpoint"] = keras.callbacks.ModelCheckpoint(
        str(checkpoint_path),
        monitor=params.checkpoint.monitor,
        mode=monitor_mode(params.checkpoint.monitor),
        save_best_only=True,
        verbose=0,
    )
    # append: a resumed run continues the log of the epochs before the interruption.
    callbacks["csv_logger"] = keras.callbacks.CSVLogger(str(csv_log_path), append=True)
    return callbacks


def summarize_callbacks(
    params: TrainParams,
    history: pd.DataFrame,
    callbacks: dict[str, keras.callbacks.Callback],
    final_learning_rate: float,
) -> dict[str, Any]:
    """What each callback did, from the history and the callbacks' own state."""
    summary: dict[str, Any] = {"epochs_run": len(history)}

    monitor = params.checkpoint.monitor
    if monitor in history and history[monitor].notna().any():
        values = history[monitor].to_numpy(dtype=float)
        best = int(np.nanargmax(values) if monitor_mode(monitor) == "max" else np.nanargmin(values))
        summary["checkpoint"] = {
            "monitor": monitor,
            "best_epoch": int(history["epoch"].iloc[best]),
            "best_value": float(values[best]),
            "file": MODEL_FILE,
        }

    stopping = callbacks.get("early_stopping")
    if stopping is not None:
        summary["early_stopping"] = {
            "monitor": params.early_stopping.monitor,
            "stopped_early": bool(stopping.stopped_epoch > 0),
            # Keras counts from 0; everything we log counts epochs from 1.
            "stopped_epoch": int(stopping.stopped_epoch + 1) if stopping.stopped_epoch else None,
            "best_epoch": int(stopping.best_epoch + 1),
            "restored_best_weights": params.early_stopping.restore_best_weights,
        }

    if "reduce_lr" in callbacks:
        summary["reduce_lr"] = {
            "monitor": params.reduce_lr.monitor,
            "reductions": callbacks["reduce_lr"].reductions,
        }
    summary["final_learning_rate"] = final_learning_rate
    return summary


@dataclass
class FitResult:
    model: keras.Model  # the best epoch's model, reloaded from its checkpoint
    history: pd.DataFrame  # one row per epoch, epoch counted from 1
    callbacks: dict[str, Any]  # summarize_callbacks
    seconds: float
    samples_per_epoch: int  # the training split times passes_per_epoch


def fit(
    model: keras.Model,
    params: TrainParams,
    tfrecord_dir: Path,
    info: DataInfo,
    spec: InputSpec,
    checkpoints: Checkpoints,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    placement: distribute.Placement | None = None,
) -> FitResult:
    """Fit with every callback; the result's model is the best epoch's.

    checkpoints must be prepared (Checkpoints.prepare); when it holds finished
    epochs, training resumes after them. extra_callbacks run last, when the
    epoch's logs are complete (MLflow logging). With a placement, the model must
    have been built in its strategy's scope.
    """
    charset = info.charset_map()
    passes = passes_per_epoch(info.counts["train"], params)
    train_batches = training_dataset(
        tfrecord_dir,
        info,
        "train",
        spec,
        batch_size=params.batch_size,
        shuffle=True,
        seed=params.seed,
        shuffle_buffer=params.shuffle_buffer,
        cache=params.cache,
        augment=augmenter(params.augment, seed=params.seed),
        passes=passes,
    )
    val_batches = training_dataset(
        tfrecord_dir,
        info,
        "val",
        spec,
        batch_size=params.batch_size,
        shuffle=False,
        cache=params.cache,
    )
    if placement is not None and placement.kind == "multi_worker":
        train_batches = distribute.shard_by_data(train_batches)
        val_batches = distribute.shard_by_data(val_batches)
    val_inference = inference_dataset(tfrecord_dir, info, "val", spec, batch_size=256)
    callbacks = make_callbacks(
        params,
        val_inference,
        charset,
        checkpoints.best_model,
        checkpoints.csv_log,
        passes * info.counts["train"],
    )
    earlier = checkpoints.history()
    resume = []
    if len(earlier):
        monitored = [
            callbacks[name]
            for name in ("early_stopping", "reduce_lr", "checkpoint")
            if name in callbacks
        ]
        resume = [ResumeState(earlier, monitored)]
        print(f"train: resuming after epoch {len(earlier)} from {checkpoints.folder}")
        skip_epochs(train_batches, len(earlier))
    with (placement.strategy if placement else tf.distribute.get_strategy()).scope():
        compile_model(model, params)
    started = time.perf_counter()
    model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=params.epochs,
        shuffle=False,  # the tf.data pipeline shuffles
        # BackupAndRestore last: an epoch counts as done once everything else saw it.
        callbacks=[
            *callbacks.values(),
            *resume,
            *(extra_callbacks or []),
            ExtraStateBackup(
                checkpoints.extra_state,
                resume_after=len(earlier),
                reduce_lr=callbacks.get("reduce_lr"),
            ),
            keras.callbacks.BackupAndRestore(str(checkpoints.backup_dir)),
        ],
        verbose="auto" if interactive() else 2,
    )
    seconds = time.perf_counter() - started
    if stopped := callbacks["terminate_on_nan"].stopped_at:
        epoch, step, loss = stopped
        raise TrainingDiverged(
            f"the loss became {loss} at epoch {epoch}, step {step}: training diverged and "
            f"nothing is saved; lower train.learning_rate ({params.learning_rate}) or set "
            "train.clipnorm"
        )
    history = checkpoints.history()
    history["epoch"] = history["epoch"] + 1  # Keras counts from 0; everything we log from 1
    if not checkpoints.best_model.exists():
        raise RuntimeError(
            f"no checkpoint was written: train.checkpoint.monitor "
            f"({params.checkpoint.monitor}) was never a finite number; see {checkpoints.csv_log}"
        )
    final_rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    summary = summarize_callbacks(params, history, callbacks, final_rate)
    best_model = keras.models.load_model(checkpoints.best_model)
    return FitResult(
        model=best_model,
        history=history,
        callbacks=summary,
        seconds=seconds,
        samples_per_epoch=passes * info.counts["train"],
    )


def skip_epochs(batches: tf.data.Dataset, epochs: int) -> None:
    """Draw `epochs` epochs of training batches and drop them.

    The shuffle order and the augmentation of each epoch come from random
    streams that advance with every epoch drawn and restart with the process.
    Drawing the finished epochs again puts them where an uninterrupted run has
    them, so a resumed run trains on the same batches (with train.deterministic,
    to the bit). It costs a pass of the input pipeline per finished epoch: on
    the default's data 25-41 s for the first, which decodes the images into the
    cache, then ~4 s each (an epoch of training takes ~130 s).
    """
    started = time.perf_counter()
    for _ in range(epochs):
        for _ in batches:
            pass
        # Each iterator opened draws a new shuffle order, and Keras (3.15) opens
        # two per epoch boundary: one as an epoch ends, unused, then one as the
        # next begins. tests/test_train_evaluate.py checks that this matches.
        iter(batches)
    print(
        f"train: drew the {epochs} finished epochs' batches again in "
        f"{time.perf_counter() - started:.1f} s"
    )


def make_reproducible(params: TrainParams) -> None:
    """Seed Python, NumPy and TensorFlow from `seed`; with `deterministic`, also run
    TensorFlow's ops and tf.data in a fixed order.

    Seeds alone leave multi-threaded ops and parallel tf.data maps free to order
    their work (and the augmentation's random draws) differently each run: two runs
    of a small CRNN on 4,000 captchas ended with weights up to 0.5 apart. Op
    determinism is process-wide (once on, it stays on in that process); on two CPU
    cores it cost the default no measurable time.
    """
    keras.utils.set_random_seed(params.seed)
    if params.deterministic:
        tf.config.experimental.enable_op_determinism()


def train(params: Params, tfrecord_dir: Path | str, outputs: TrainOutputs) -> dict[str, Any]:
    """The train stage: fit, then write the model, metrics and history, all logged to MLflow."""
    import mlflow

    # First: logical devices and the multi-worker runtime must exist before any op runs.
    placement = distribute.placement(params.train)
    tfrecord_dir = Path(tfrecord_dir)
    info = read_data_info(tfrecord_dir, verify=True)  # once, before a step is trained
    spec = input_spec(info, params.model)
    make_reproducible(params.train)
    with placement.strategy.scope():
        model = build_model(
            params.model, spec, num_symbols=len(info.charset), min_length=info.min_length
        )
    if placement.replicas > 1:
        distribute.synchronize_batch_norm(model)

    for line in (
        placement.describe(params.train.batch_size),
        describe_passes(info.counts["train"], params.train),
    ):
        if line:
            print(line)
    warning = too_few_steps(info.counts["train"], params.train)
    if warning:
        print(warning, file=sys.stderr)
    if not placement.is_chief:
        return _train_as_worker(params, tfrecord_dir, info, spec, model, outputs, placement)
    experiment_id = tracking.configure(params.mlflow)
    run_name = tracking.run_name(params.model.arch)
    with atomic_dir(outputs.model_dir) as work_dir:
        # Every MLflow call after the run starts goes through the journal: a tracking
        # server that stops answering costs the run some records for a while, never
        # the training's outputs (tracking.Journal).
        journal = tracking.Journal("train", work_dir)
        with tracking.run_context(experiment_id, run_name=run_name, journal=journal) as run:
            journal.log_dataset(info, tfrecord_dir, context="training")
            journal.set_tags(
                {
                    **tracking.run_tags(info.content_hash(), params.model.arch),
                    tracking.TAG_PIPELINE_STAGE: "train",
                }
            )
            # evaluate.* params are logged by the evaluate stage, which may change
            # them without retraining (MLflow params cannot change once logged).
            journal.log_params(
                {
                    **{k: v for k, v in flatten(params).items() if not k.startswith("evaluate.")},
                    **data_params(info),
                    "model.parameters": model.count_params(),
                    "train.passes_per_epoch": passes_per_epoch(info.counts["train"], params.train),
                    "train.steps_per_epoch": steps_per_epoch(info.counts["train"], params.train),
                    "train.replicas": placement.replicas,
                    "train.workers": placement.role.workers,
                }
            )

            checkpoints = Checkpoints(
                outputs.checkpoints,
                fingerprint(params.model, params.train, info.content_hash()),
            )
            done, interrupted_run = checkpoints.prepare(params.train.resume, run.info.run_id)
            if done:
                journal.set_tags(
                    {"resumed_after_epoch": str(done), "resumed_from_run": str(interrupted_run)}
                )
                log_history(journal, checkpoints.history())  # the new run shows the whole curve
            result = fit(
                model,
                params.train,
                tfrecord_dir,
                info,
                spec,
                checkpoints,
                [MlflowEpochLogger(journal)],
                placement,
            )
            shutil.copy2(checkpoints.best_model, work_dir / MODEL_FILE)
            shutil.copy2(checkpoints.csv_log, work_dir / CSV_LOG)
            plots.training_curves(result.history, work_dir / "training_curves.png")

            metrics = train_metrics(result, info)
            journal.log_metrics(
                {**tracking.finite_metrics(metrics), **callback_metrics(result.callbacks)}
            )
            journal.log_dict(result.callbacks, "callbacks.json")
            journal.log_artifact(work_dir / CSV_LOG)
            journal.log_artifact(work_dir / "training_curves.png", "plots")

            write_json(outputs.metrics, {**metrics, "callbacks": result.callbacks})
            with atomic_file(outputs.history, "w", encoding="utf-8", newline="") as stream:
                result.history.to_csv(stream, index=False)
            tracking.write_run_reference(work_dir / RUN_FILE, run, mlflow.get_tracking_uri())
        journal.write()  # what the server missed, the run's status included
    checkpoints.clear()  # finished: nothing left to resume
    _print_summary(metrics, result.callbacks)
    return metrics


def _train_as_worker(
    params: Params,
    tfrecord_dir: Path,
    info: DataInfo,
    spec: InputSpec,
    model: keras.Model,
    outputs: TrainOutputs,
    placement: distribute.Placement,
) -> dict[str, Any]:
    """A multi-worker process other than the chief: it trains its share of every step
    and keeps what resuming needs in its own checkpoint folder, and writes nothing
    else: the model, metrics, history and MLflow run are the chief's."""
    checkpoints = Checkpoints(
        outputs.checkpoints, fingerprint(params.model, params.train, info.content_hash())
    )
    checkpoints.prepare(params.train.resume, run_id=f"worker-{placement.role.index}")
    result = fit(model, params.train, tfrecord_dir, info, spec, checkpoints, None, placement)
    checkpoints.clear()
    metrics = train_metrics(result, info)
    print(
        f"train: worker {placement.role.index} of {placement.role.workers} done: "
        f"{metrics['epochs_run']} epochs in {metrics['train_seconds']:.0f} s, best epoch's "
        f"weights {distribute.weights_digest(result.model)}; the chief wrote the outputs"
    )
    return metrics


def log_history(journal: tracking.Journal, history: pd.DataFrame) -> None:
    """Log epochs of a CSV log (epoch from 0) as MLflow metrics at steps from 1."""
    for row in history.to_dict("records"):
        epoch = int(row.pop("epoch"))
        journal.log_metrics(tracking.finite_metrics(row), step=epoch + 1)


def data_params(info: DataInfo) -> dict[str, Any]:
    """What the model was trained on, as read from data_info.json."""
    return {
        "data_info.charset": info.charset,
        "data_info.num_symbols": len(info.charset),
        "data_info.length": (
            str(info.min_length) if info.fixed_length else f"{info.min_length}-{info.max_length}"
        ),
        "data_info.image_size": f"{info.image_width}x{info.image_height}",
        **{f"data_info.n_{split}": count for split, count in info.counts.items()},
    }


def train_metrics(result: FitResult, info: DataInfo) -> dict[str, Any]:
    history = result.history
    best_epoch = result.callbacks.get("checkpoint", {}).get("best_epoch", len(history))
    best = history[history["epoch"] == best_epoch].iloc[0]
    samples = result.samples_per_epoch * len(history)
    return {
        "best_epoch": int(best_epoch),
        "epochs_run": len(history),
        "best_val_loss": float(best.get("val_loss", np.nan)),
        "best_val_sequence_accuracy": float(best.get("val_sequence_accuracy", np.nan)),
        "train_seconds": round(result.seconds, 2),
        "train_samples_per_second": round(float(history["train_samples_per_second"].median()), 1),
        "samples_seen": int(samples),
    }


def callback_metrics(callbacks: dict[str, Any]) -> dict[str, float]:
    """What the callbacks did, as metrics one can sort and compare runs by."""
    metrics: dict[str, float] = {"callbacks/final_learning_rate": callbacks["final_learning_rate"]}
    if "checkpoint" in callbacks:
        metrics["callbacks/checkpoint_best_epoch"] = callbacks["checkpoint"]["best_epoch"]
    if "early_stopping" in callbacks:
        stopping = callbacks["early_stopping"]
        metrics["callbacks/early_stopping_best_epoch"] = stopping["best_epoch"]
        metrics["callbacks/stopped_epoch"] = stopping["stopped_epoch"] or 0
    if "reduce_lr" in callbacks:
        metrics["callbacks/lr_reductions"] = len(callbacks["reduce_lr"]["reductions"])
    return {key: float(value) for key, value in metrics.items()}


def _print_summary(metrics: dict[str, Any], callbacks: dict[str, Any]) -> None:
    stopping = callbacks.get("early_stopping", {})
    reductions = callbacks.get("reduce_lr", {}).get("reductions", [])
    print(
        f"train: {metrics['epochs_run']} epochs in {metrics['train_seconds']:.0f} s "
        f"({metrics['train_samples_per_second']:.0f} samples/s); best epoch "
        f"{metrics['best_epoch']}: val_loss {metrics['best_val_loss']:.4f}, "
        f"val sequence accuracy {metrics['best_val_sequence_accuracy']:.4f}; "
        f"stopped early: {stopping.get('stopped_early', False)}; "
        f"learning-rate reductions: {len(reductions)}"
    )
