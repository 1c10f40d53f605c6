"""Test-time shifts: shifted copies of hand-made images, and hand-made logits of the
copies combined into one read."""

from __future__ import annotations

import numpy as np
import pytest

from captcha_ocr.decoding import ctc_greedy, softmax
from captcha_ocr.tta import combine_reads, shift_images, shift_offsets
from tests.test_decoding import logits_for


def test_offsets_start_unshifted_and_alternate():
    assert shift_offsets(0) == [0]
    assert shift_offsets(2) == [0, -1, 1, -2, 2]


def test_shifts_move_the_content_and_repeat_the_edge():
    images = np.arange(2 * 2 * 5, dtype=np.float32).reshape(2, 2, 5, 1)
    right = shift_images(images, 2)
    assert right.shape == images.shape
    # Columns 0-2 move to 2-4; the gap repeats column 0
    np.testing.assert_array_equal(right[:, :, 2:], images[:, :, :3])
    np.testing.assert_array_equal(right[:, :, :2], np.repeat(images[:, :, :1], 2, axis=2))
    left = shift_images(images, -1)
    np.testing.assert_array_equal(left[:, :, :4], images[:, :, 1:])
    np.testing.assert_array_equal(left[:, :, 4], images[:, :, 4])
    assert shift_images(images, 0) is images
    with pytest.raises(ValueError, match="whole 5-pixel image"):
        shift_images(images, 5)
    # Along the rows (axis=1): row 0 moves to row 1, the gap repeats it
    down = shift_images(images, 1, axis=1)
    np.testing.assert_array_equal(down[:, 1], images[:, 0])
    np.testing.assert_array_equal(down[:, 0], images[:, 0])
    np.testing.assert_array_equal(shift_images(images, -1, axis=1)[:, 0], images[:, 1])


def one_step_logits(scores: dict[int, float], classes: int = 4) -> np.ndarray:
    """A blank, then a step with these class scores, then a blank: one image, three
    steps. The only likely labels are one symbol long, so p([c]) is close to the
    middle step's probability of c."""
    logits = logits_for([[0, 0, 0]], classes=classes, peak=30.0)
    logits[0, 1, :] = 0.0
    for label, score in scores.items():
        logits[0, 1, label] = score
    return logits


def test_ctc_reads_keep_the_text_the_copies_find_likeliest():
    # Given the unshifted copy narrowly reads 1, and both shifted copies read 2
    copies = [
        one_step_logits({1: 2.0, 2: 1.8}),
        one_step_logits({1: 1.0, 2: 3.0}),
        one_step_logits({1: 0.5, 2: 2.5}),
    ]
    assert ctc_greedy(copies[0]).ids == [[1]]
    combined = combine_reads(copies, "ctc")
    # Then 2 wins, with the copies' mean likelihood of it as its confidence
    assert combined.ids == [[2]]
    expected = np.mean([softmax(copy[0, 1].astype(np.float64))[2] for copy in copies])
    assert combined.confidence[0] == pytest.approx(expected, rel=1e-3)


def test_ctc_copies_that_agree_give_their_common_read():
    paths = [[1, 1, 0, 2, 2, 0], [3, 0, 3, 3, 0, 0], [0, 0, 0, 0, 0, 0]]
    copies = [logits_for(paths, peak=peak) for peak in (6.0, 8.0, 10.0)]
    combined = combine_reads(copies, "ctc")
    # A doubled character and an empty read survive the combination
    assert combined.ids == ctc_greedy(copies[0]).ids == [[1, 2], [3, 3], []]
    assert np.all((combined.confidence > 0) & (combined.confidence <= 1))


def test_multihead_copies_are_averaged_per_position():
    # Two positions; position 0: copy 0 narrowly prefers 1, copy 1 strongly prefers 2
    copies = [
        np.array([[[0.0, 2.0, 1.9, 0.0], [0.0, 0.0, 0.0, 5.0]]]),
        np.array([[[0.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 5.0]]]),
    ]
    combined = combine_reads(copies, "per_position")
    assert combined.ids == [[2, 3]]
    mean = np.mean([softmax(copy) for copy in copies], axis=0)
    assert combined.confidence[0] == pytest.approx(mean[0, 0, 2] * mean[0, 1, 3])
