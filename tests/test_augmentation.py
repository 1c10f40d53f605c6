"""Training-time augmentation: whole-pixel shifts on by default, each knob off at 0,
images kept in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from captcha_ocr.augmentation import augmenter
from captcha_ocr.params import AugmentParams

# Eight 32x128 images of distinct pixel values: a blended pixel would be a new value.
IMAGES = (
    np.random.default_rng(0).permutation(8 * 32 * 128).reshape(8, 32, 128, 1) / (8 * 32 * 128)
).astype(np.float32)


def test_all_knobs_at_zero_is_no_augmentation_and_the_default_shifts():
    assert augmenter(AugmentParams(translate=0.0)) is None
    assert AugmentParams().translate > 0 and augmenter(AugmentParams()) is not None


def test_translation_moves_whole_pixels():
    augment = augmenter(AugmentParams(translate=0.1), seed=0)
    shifted = np.asarray(augment(IMAGES))
    assert shifted.shape == IMAGES.shape
    # Some images moved ...
    assert not np.array_equal(shifted, IMAGES)
    # ... by whole pixels: every value is one of the image's own (the border repeats),
    # none a blend of neighbours, which would blur the strokes
    for before, after in zip(IMAGES, shifted, strict=True):
        assert set(np.unique(after)) <= set(np.unique(before))


@pytest.mark.parametrize(
    "knobs", [{"rotate": 10.0}, {"zoom": 0.2}, {"noise": 0.1}, {"translate": 0.05, "noise": 0.3}]
)
def test_every_knob_changes_images_and_keeps_them_in_range(knobs):
    augmented = np.asarray(augmenter(AugmentParams(**knobs), seed=0)(IMAGES))
    assert augmented.shape == IMAGES.shape
    assert not np.allclose(augmented, IMAGES)
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0
