"""CTC decoding of hand-made logits: repeats merge unless a blank separates them."""

from __future__ import annotations

import numpy as np
import pytest

from captcha_ocr.decoding import ctc_beam_search, ctc_greedy, ctc_log_likelihood


def logits_for(paths: list[list[int]], classes: int = 4, peak: float = 10.0) -> np.ndarray:
    """Logits whose best class at each step follows `paths` (0 = blank)."""
    logits = np.zeros((len(paths), len(paths[0]), classes), dtype=np.float32)
    for sample, path in enumerate(paths):
        for step, label in enumerate(path):
            logits[sample, step, label] = peak
    return logits


def test_greedy_merges_repeats_and_drops_blanks():
    decoded = ctc_greedy(logits_for([[1, 1, 0, 2, 2, 0], [3, 0, 3, 3, 0, 0], [0, 0, 0, 0, 0, 0]]))
    # A doubled character survives only with a blank between its copies.
    assert decoded.ids == [[1, 2], [3, 3], []]


def test_greedy_confidence_is_the_best_path_probability():
    decoded = ctc_greedy(logits_for([[1, 0, 2]], classes=3, peak=0.0))  # uniform: 1/3 per step
    assert decoded.confidence[0] == pytest.approx((1 / 3) ** 3)
    confident = ctc_greedy(logits_for([[1, 0, 2]], peak=20.0))
    assert confident.confidence[0] == pytest.approx(1.0, abs=1e-6)


def test_beam_search_agrees_on_clear_logits():
    logits = logits_for([[1, 1, 0, 2, 2, 0], [3, 0, 3, 3, 0, 0]])
    assert ctc_beam_search(logits, beam_width=5).ids == [[1, 2], [3, 3]]


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="batch, time, classes"):
        ctc_greedy(np.zeros((4, 5)))


def test_ctc_log_likelihood_sums_every_alignment():
    # Two steps, uniform over blank and two symbols: [1] has three alignments
    # (1 blank, blank 1, 1 1) of probability 1/9 each; the empty label one (blank blank)
    logits = np.zeros((2, 2, 3), np.float32)
    assert np.exp(ctc_log_likelihood(logits, [[1], []])) == pytest.approx([3 / 9, 1 / 9])
    # A doubled symbol needs a blank between its copies: three steps at least
    assert np.exp(ctc_log_likelihood(logits[:1], [[1, 1]]))[0] == pytest.approx(0.0, abs=1e-6)


def test_ctc_log_likelihood_matches_the_dense_ctc_loss_empty_labels_included():
    import tensorflow as tf

    # Given logits and labels of every kind: empty, repeated symbols, full length
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(6, 9, 5)) * 3).astype(np.float32)
    labels = [[], [1], [2, 2], [1, 2, 3, 4], [], [4, 4, 4, 4]]
    # When scored through the C++ kernel (sparse labels, empty ones apart)
    fast = ctc_log_likelihood(logits, labels)
    # Then each is TensorFlow's dense CTC loss, negated, to float32's precision
    dense = np.zeros((6, 4), np.int32)
    for row, label in enumerate(labels):
        dense[row, : len(label)] = label
    reference = -tf.nn.ctc_loss(
        labels=dense, logits=logits, label_length=[len(label) for label in labels],
        logit_length=[9] * 6, logits_time_major=False, blank_index=0,
    ).numpy()  # fmt: skip
    assert fast == pytest.approx(reference, rel=1e-5, abs=0)
