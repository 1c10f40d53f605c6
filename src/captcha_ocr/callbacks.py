"""Keras callbacks of our own: whole-captcha accuracy, epoch timing, MLflow logging.

Keras runs callbacks in list order and they share one `logs` dict per epoch,
so the ones that add entries (accuracy, timing, learning rate) must come
before the ones that read them (EarlyStopping, checkpoints, CSV, MLflow).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from captcha_ocr.atomic import write_json
from captcha_ocr.charsets import Charset
from captcha_ocr.metrics import evaluate_texts
from captcha_ocr.prediction import predict_batches


def monitor_mode(monitor: str) -> str:
    """'max' for accuracies, 'min' for losses and error rates; set explicitly on
    every callback so that they all agree on what "better" means."""
    return "max" if "acc" in monitor else "min"


class SequenceAccuracy(keras.callbacks.Callback):
    """Adds val_sequence_accuracy (whole captcha right) and val_character_accuracy."""

    def __init__(self, batches: tf.data.Dataset, charset: Charset) -> None:
        super().__init__()
        self.batches = batches  # dicts with image and label, as data.inference_dataset gives
        self.charset = charset

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        predictions = predict_batches(self.model, self.batches, self.charset)
        scores = evaluate_texts(predictions.truths, predictions.texts).summary
        if logs is not None:
            logs["val_sequence_accuracy"] = scores["sequence_accuracy"]
            logs["val_character_accuracy"] = scores["character_accuracy"]


class EpochStats(keras.callbacks.Callback):
    """Adds the learning rate the epoch trained with, its wall time and throughput.

    Placed before ReduceLROnPlateau, so the rate logged for an epoch is the
    one used during it, not the reduced one the next epoch starts with.
    Throughput counts the training part only, up to the validation pass.
    """

    def __init__(self, samples_per_epoch: int) -> None:
        super().__init__()
        self.samples_per_epoch = samples_per_epoch
        self._started = 0.0
        self._trained: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()
        self._trained = None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._trained is None:
            self._trained = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        now = time.perf_counter()
        train_seconds = (self._trained or now) - self._started
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        logs["epoch_seconds"] = now - self._started
        logs["train_samples_per_second"] = self.samples_per_epoch / train_seconds


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers where the loss stopped being a number, so that
    the stage fails with that, instead of saving what came out of it."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.stopped_at: tuple[int, int, float] | None = None  # epoch, step (from 1), loss
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_batch_end(batch, logs)
        loss = (logs or {}).get("loss")
        if self.stopped_at is None and loss is not None and not math.isfinite(float(loss)):
            self.stopped_at = (self._epoch + 1, batch + 1, float(loss))


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs every numeric entry of the epoch's logs to the run, through the run's
    journal (tracking.Journal), so that a tracking server that goes away does not
    stop training.

    Steps are 1-based epochs, as in the CSV log and the console.
    """

    def __init__(self, journal: Any) -> None:
        super().__init__()
        self.journal = journal

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from captcha_ocr.tracking import finite_metrics

        self.journal.log_metrics(finite_metrics(logs or {}), step=epoch + 1)


class CosineSchedule(keras.callbacks.Callback):
    """Learning rate by step: linear warmup to the peak, then cosine decay to 1% of it.

    It sets the rate before every batch, and composes with ReduceLROnPlateau: when
    that callback has lowered the rate since the last batch, the lowering is kept
    as a factor on the rest of the schedule. (A keras LearningRateSchedule would
    refuse ReduceLROnPlateau's changes.)
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0) -> None:
        super().__init__()
        self.peak = peak
        self.total_steps = max(1, total_steps)
        self.warmup_steps = warmup_steps
        self.scale = 1.0
        self._last: float | None = None

    def rate(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        progress = min(
            1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        )
        return self.peak * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.model.optimizer
        current = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        if self._last is None and step > 0:
            # A resumed run: the restored rate carries every lowering made before
            # the interruption; compare it with the schedule's rate at the last step.
            self._last = self.rate(step - 1)
        if self._last is not None and current < self._last * (1 - 1e-6):
            self.scale *= current / self._last  # ReduceLROnPlateau stepped in
        self._last = self.scale * self.rate(step)
        optimizer.learning_rate = self._last


class RecordedReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that keeps a record of each reduction (epoch from 1, from, to):
    the learning-rate history alone cannot tell them from a schedule's decay."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reductions: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        before = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        super().on_epoch_end(epoch, logs)
        after = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if after < before:
            self.reductions.append({"after_epoch": epoch + 1, "from": before, "to": after})


class ResumeState(keras.callbacks.Callback):
    """After a resume, puts back what the earlier epochs taught the monitoring
    callbacks (best value, best epoch, patience used up), which their own
    on_train_begin resets. Must come after them in the callback list.

    history: the CSV log of the finished epochs, `epoch` counted from 0.
    """

    def __init__(self, history: pd.DataFrame, monitored: list[keras.callbacks.Callback]) -> None:
        super().__init__()
        self.history = history
        self.monitored = monitored

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        last = int(self.history["epoch"].max())
        for callback in self.monitored:
            values = self.history.get(callback.monitor)
            if values is None or values.isna().all():
                continue
            higher_is_better = monitor_mode(callback.monitor) == "max"
            best_row = int(values.idxmax() if higher_is_better else values.idxmin())
            best_epoch = int(self.history["epoch"].iloc[best_row])
            callback.best = float(values.iloc[best_row])
            if isinstance(callback, keras.callbacks.EarlyStopping):
                callback.best_epoch = best_epoch
                callback.wait = last - best_epoch
            elif isinstance(callback, keras.callbacks.ReduceLROnPlateau):
                # Patience restarts at each improvement and at each reduction.
                rates = self.history["learning_rate"].to_numpy()
                changes = [
                    int(self.history["epoch"].iloc[i]) - 1
                    for i in range(1, len(rates))
                    if rates[i] < rates[i - 1]
                ]
                callback.wait = last - max([best_epoch, *changes])


class ExtraStateBackup(keras.callbacks.Callback):
    """Keeps what BackupAndRestore leaves out with each epoch's backup, and puts it
    back when a run resumes: the model's random-number states (the seed generators
    of its dropout layers) and ReduceLROnPlateau's record of its reductions.

    Without the first, a resumed run would draw the dropout masks of the first
    epoch again and part from the run it continues; without the second, the run's
    summary would count only the reductions made after the resume. The state is
    kept per finished epoch, so a run stopped between this callback and the backup
    still finds the one its backup needs. Must come after ReduceLROnPlateau.

    resume_after: the epochs the backup holds (0 when the run starts afresh).
    """

    def __init__(
        self,
        path: Path,
        resume_after: int = 0,
        reduce_lr: RecordedReduceLROnPlateau | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.resume_after = resume_after
        self.reduce_lr = reduce_lr
        # Read once on resume; each epoch adds its entry and rewrites the file.
        self.saved: dict[str, dict[str, Any]] = {}

    def _seed_states(self) -> list[Any]:
        # Layer.variables adds the seed generators' states to the weights.
        weights = {id(weight) for weight in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.resume_after:
            return
        if self.path.exists():
            self.saved = json.loads(self.path.read_text())
        states = self._seed_states()
        saved = self.saved.get(str(self.resume_after))
        if saved is None or len(saved["seed_states"]) != len(states):
            print(
                f"train: no state saved after epoch {self.resume_after} in {self.path}; the "
                "resumed run's dropout and its record of learning-rate reductions will "
                "differ from an uninterrupted run's"
            )
            return
        for variable, value in zip(states, saved["seed_states"], strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        if self.reduce_lr is not None:
            self.reduce_lr.reductions = list(saved["lr_reductions"])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.saved[str(epoch + 1)] = {
            "seed_states": [
                keras.ops.convert_to_numpy(state).tolist() for state in self._seed_states()
            ],
            "lr_reductions": self.reduce_lr.reductions if self.reduce_lr is not None else [],
        }
        write_json(self.path, self.saved)
