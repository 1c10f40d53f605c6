"""Turn a CTC model's logits into label ids and a confidence per sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from captcha_ocr.charsets import BLANK_ID


@dataclass(frozen=True)
class Decoded:
    ids: list[list[int]]  # label ids per sample, blanks and repeats removed
    confidence: np.ndarray  # probability of the decoded path, per sample


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def ctc_greedy(logits: np.ndarray) -> Decoded:
    """Best class per time step, then merge repeats and drop blanks.

    logits: (batch, time, classes) with class 0 the blank. The confidence is the
    product of the winning probabilities, the probability of the best path.
    """
    if logits.ndim != 3:
        raise ValueError(f"expected logits of shape (batch, time, classes), got {logits.shape}")
    probabilities = softmax(logits.astype(np.float64))
    best = probabilities.argmax(axis=-1)
    confidence = np.exp(np.log(probabilities.max(axis=-1)).sum(axis=-1))
    # Keep a step when it is not a blank and differs from the step before it.
    previous = np.concatenate([np.full((best.shape[0], 1), -1), best[:, :-1]], axis=1)
    keep = (best != BLANK_ID) & (best != previous)
    ids = [row[mask].tolist() for row, mask in zip(best, keep, strict=True)]
    return Decoded(ids=ids, confidence=confidence)


def ctc_beam_search(logits: np.ndarray, beam_width: int) -> Decoded:
    """Beam search through keras.ops (TensorFlow's implementation)."""
    import keras

    batch, steps, _ = logits.shape
    decoded, log_probability = keras.ops.ctc_decode(
        logits,
        np.full((batch,), steps, dtype=np.int32),
        strategy="beam_search",
        beam_width=beam_width,
        top_paths=1,
        mask_index=BLANK_ID,
    )
    paths = keras.ops.convert_to_numpy(decoded)[0]
    ids = [[int(i) for i in row if i > 0] for row in paths]  # -1 pads, 0 is the blank
    confidence = np.exp(keras.ops.convert_to_numpy(log_probability)[:, 0])
    return Decoded(ids=ids, confidence=confidence)


def per_position(logits: np.ndarray) -> Decoded:
    """Multi-head models: the best class at each position; 0 (padding) reads as nothing."""
    if logits.ndim != 3:
        raise ValueError(
            f"expected logits of shape (batch, positions, classes), got {logits.shape}"
        )
    probabilities = softmax(logits.astype(np.float64))
    best = probabilities.argmax(axis=-1)
    confidence = np.exp(np.log(probabilities.max(axis=-1)).sum(axis=-1))
    ids = [[int(i) for i in row if i != BLANK_ID] for row in best]
    return Decoded(ids=ids, confidence=confidence)


def decode(
    logits: np.ndarray, kind: str = "ctc", strategy: str = "greedy", beam_width: int = 10
) -> Decoded:
    """kind: "ctc" (greedy or beam search) or "per_position" (models.KINDS)."""
    if kind == "per_position":
        return per_position(logits)
    if kind != "ctc":
        raise ValueError(f"unknown output kind {kind!r}")
    if strategy == "greedy":
        return ctc_greedy(logits)
    if strategy == "beam_search":
        return ctc_beam_search(logits, beam_width)
    raise ValueError(f"unknown CTC decoding strategy {strategy!r}")


def ctc_log_likelihood(logits: np.ndarray, labels: list[list[int]]) -> np.ndarray:
    """log p(labels[i] | image i) for row i of (batch, time, classes) logits: the
    negative CTC loss, which sums over every alignment of the label, not one path.

    Through TensorFlow's C++ CTC kernel (sparse labels): its dense-label path runs a
    Python loop per time step in eager mode, ~50 ms a call whatever the batch,
    which a served reader pays on every request. The kernel refuses empty labels,
    whose likelihood is that of a blank at every step."""
    import tensorflow as tf

    logits = np.asarray(logits, np.float32)
    likelihood = np.empty(len(labels), np.float64)
    empty = np.array([not label for label in labels], bool)
    if empty.any():
        steps = logits[empty].astype(np.float64)
        log_blank = steps[..., BLANK_ID] - np.logaddexp.reduce(steps, axis=-1)
        likelihood[empty] = log_blank.sum(axis=-1)
    if not empty.all():
        written = [label for label in labels if label]
        indices = [
            (row, position) for row, label in enumerate(written) for position in range(len(label))
        ]
        sparse = tf.SparseTensor(
            np.array(indices, np.int64),
            np.array([symbol for label in written for symbol in label], np.int32),
            (len(written), max(len(label) for label in written)),
        )
        loss = tf.nn.ctc_loss(
            labels=sparse,
            logits=tf.constant(logits[~empty]),
            label_length=None,
            logit_length=tf.fill([len(written)], logits.shape[1]),
            logits_time_major=False,
            blank_index=BLANK_ID,
        )
        likelihood[~empty] = -loss.numpy().astype(np.float64)
    return likelihood
