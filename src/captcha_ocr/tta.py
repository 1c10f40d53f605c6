"""Test-time augmentation: read each image at a few horizontal shifts and combine the
reads into one.

A model reads the same captcha a pixel to the left or right a little differently,
and where one read is a near miss (an O read as 0), the shifted reads often are
not: five reads made 18% fewer mistakes than one on the default's test captchas,
and 23-44% fewer on full-profile runs' (README, "Test-time shifts"). Only
horizontal shifts: a model trained without `train.augment.translate` has seen
every captcha at the height the generator draws it, and misreads many shifted a
pixel up or down.

CTC models: every text that any shifted copy reads is scored under every copy by
its CTC likelihood (all alignments summed, so the copies need not put their peaks
on the same time steps), and the text with the highest mean likelihood wins; its
confidence is that mean likelihood. Multi-head models: the copies' probabilities
are averaged per position, then read as one.
"""

from __future__ import annotations

import numpy as np

from captcha_ocr.decoding import Decoded, ctc_log_likelihood, decode, softmax


def shift_offsets(max_shift: int) -> list[int]:
    """0, -1, 1, -2, 2, ...: the unshifted read first, so ties keep it."""
    offsets = [0]
    for step in range(1, max_shift + 1):
        offsets += [-step, step]
    return offsets


def shift_images(images: np.ndarray, shift: int, axis: int = 2) -> np.ndarray:
    """(batch, height, width, channels) images moved `shift` pixels right (left when
    negative), or down with axis=1, the edge column or row repeated into the gap:
    captcha backgrounds are flat, so no seam appears (as train.augment.translate
    fills its shifts)."""
    if shift == 0:
        return images
    size = images.shape[axis]
    if abs(shift) >= size:
        raise ValueError(f"a shift of {shift} pixels moves the whole {size}-pixel image out")
    pad = abs(shift)
    padding = [(0, 0)] * images.ndim
    padding[axis] = (pad, pad)
    padded = np.pad(images, padding, mode="edge")
    return np.take(padded, np.arange(pad - shift, pad - shift + size), axis=axis)


def combine_reads(
    logits: list[np.ndarray], kind: str, strategy: str = "greedy", beam_width: int = 10
) -> Decoded:
    """One read per image from the logits of its shifted copies (the same images, in
    the same order, per entry)."""
    if kind == "per_position":
        mean = np.mean([softmax(part.astype(np.float64)) for part in logits], axis=0)
        return decode(np.log(mean), kind)
    reads = [decode(part, kind, strategy, beam_width) for part in logits]
    batch = len(reads[0].ids)
    # Every distinct text any copy read, per image, in copy order.
    rows: list[int] = []
    candidates: list[list[int]] = []
    for row in range(batch):
        for ids in dict.fromkeys(tuple(read.ids[row]) for read in reads):
            rows.append(row)
            candidates.append(list(ids))
    if not candidates:
        return Decoded(ids=[], confidence=np.zeros(0))
    picked = np.array(rows)
    scores = np.stack([ctc_log_likelihood(part[picked], candidates) for part in logits])
    mean_log_likelihood = np.logaddexp.reduce(scores, axis=0) - np.log(len(logits))
    best: dict[int, int] = {}
    for index, row in enumerate(rows):
        if row not in best or mean_log_likelihood[index] > mean_log_likelihood[best[row]]:
            best[row] = index
    chosen = [best[row] for row in range(batch)]
    return Decoded(
        ids=[candidates[index] for index in chosen],
        confidence=np.exp(mean_log_likelihood[chosen]),
    )
