"""Checks the train stage makes before it trains."""

from __future__ import annotations

import math

from captcha_ocr.params import TrainParams
from captcha_ocr.training import FEW_STEPS, too_few_steps


def test_too_few_steps_warns_only_below_the_threshold():
    # Given 1,000 training captchas in batches of 64 (16 steps an epoch)
    # Then 4 epochs (64 steps) draw a warning that names the knob to raise
    warning = too_few_steps(1_000, TrainParams(epochs=4, batch_size=64))
    assert warning is not None and "64 optimizer steps" in warning and "train.epochs" in warning
    # and enough epochs to pass FEW_STEPS, or the default's 80,000 captchas, draw none
    enough = math.ceil(FEW_STEPS / 16)
    assert too_few_steps(1_000, TrainParams(epochs=enough, batch_size=64)) is None
    assert too_few_steps(80_000, TrainParams(epochs=4, batch_size=64)) is None
