"""Run a model over batches of images and read out texts with a confidence."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from captcha_ocr.charsets import Charset
from captcha_ocr.decoding import Decoded, decode
from captcha_ocr.models import kind_of
from captcha_ocr.tta import combine_reads, shift_images, shift_offsets


@dataclass(frozen=True)
class Predictions:
    texts: list[str]
    confidence: np.ndarray
    truths: list[str]  # from the labels that came with the images
    ids: list[str]
    sources: list[str]  # generated or imported, where the batches say


def predict_logits(model: keras.Model, images: tf.Tensor | np.ndarray) -> np.ndarray:
    if model.distribute_strategy.num_replicas_in_sync > 1:
        # A model trained under tf.distribute (train.distribute): Keras's predict_on_batch
        # would run the whole batch on every replica and return the copies, concatenated.
        return np.asarray(model(images, training=False))
    # predict_on_batch reuses one compiled predict function across calls,
    # unlike an eager model(images) or a fresh model.predict per batch.
    return np.asarray(model.predict_on_batch(images))


def read_images(
    model: keras.Model,
    images: tf.Tensor | np.ndarray,
    kind: str,
    decoder: str = "greedy",
    beam_width: int = 10,
    tta_shifts: int = 0,
) -> Decoded:
    """One batch read; with tta_shifts > 0, also read shifted up to that many pixels
    left and right, and combined (captcha_ocr.tta)."""
    if not tta_shifts:
        return decode(predict_logits(model, images), kind, decoder, beam_width)
    images = np.asarray(images)
    logits = [predict_logits(model, shift_images(images, dx)) for dx in shift_offsets(tta_shifts)]
    return combine_reads(logits, kind, decoder, beam_width)


def predict_batches(
    model: keras.Model,
    batches: Iterable[dict[str, tf.Tensor]],
    charset: Charset,
    decoder: str = "greedy",
    beam_width: int = 10,
    tta_shifts: int = 0,
) -> Predictions:
    """Batches of dicts with `image` and `label` (ids), plus optional `id`."""
    kind = kind_of(model)
    texts: list[str] = []
    truths: list[str] = []
    ids: list[str] = []
    sources: list[str] = []
    confidences: list[np.ndarray] = []
    for batch in batches:
        decoded = read_images(model, batch["image"], kind, decoder, beam_width, tta_shifts)
        texts.extend(charset.decode(row) for row in decoded.ids)
        truths.extend(charset.decode(row) for row in batch["label"].numpy())
        confidences.append(decoded.confidence)
        if "id" in batch:
            ids.extend(value.decode("utf-8") for value in batch["id"].numpy())
        if "source" in batch:
            sources.extend(value.decode("utf-8") for value in batch["source"].numpy())
    return Predictions(
        texts=texts,
        confidence=np.concatenate(confidences) if confidences else np.zeros(0),
        truths=truths,
        ids=ids,
        sources=sources,
    )
