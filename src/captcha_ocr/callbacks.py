"""Keras callbacks of our own: whole-captcha accuracy, epoch timing, MLflow logging.

Keras runs callbacks in list order and they share one `logs` dict per epoch,
so the ones that add entries (accuracy, timing, learning rate) must come
before the ones that read them (EarlyStopping, checkpoints, CSV, MLflow).
"""

from __future__ import annotations

import time
from typing import Any

import keras
import tensorflow as tf

from captcha_ocr.charsets import Charset
from captcha_ocr.metrics import evaluate_texts
from captcha_ocr.prediction import predict_batches


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


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs every numeric entry of the epoch's logs to the active MLflow run.

    Steps are 1-based epochs, as in the CSV log and the console.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import mlflow

        from captcha_ocr.tracking import finite_metrics

        mlflow.log_metrics(finite_metrics(logs or {}), step=epoch + 1)
