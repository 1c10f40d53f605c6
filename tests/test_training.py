"""How the train stage sizes its epochs, and the checks it makes before it trains."""

from __future__ import annotations

import math

from captcha_ocr.params import TrainParams
from captcha_ocr.training import (
    FEW_STEPS,
    describe_passes,
    passes_per_epoch,
    steps_per_epoch,
    too_few_steps,
)


def test_a_small_training_split_is_gone_through_until_an_epoch_has_its_steps():
    params = TrainParams(batch_size=64, min_steps_per_epoch=600)
    # Given 705 training captchas (12 batches of 64)
    # Then an epoch goes through them 55 times: 38,775 captchas, 606 steps
    assert passes_per_epoch(705, params) == 55
    assert steps_per_epoch(705, params) == 606
    assert "55 times, 606 steps" in describe_passes(705, params)
    # and a split at the threshold, the default's 80,000, or a run with the knob at 0,
    # go through the split once
    assert passes_per_epoch(600 * 64, params) == 1
    assert passes_per_epoch(80_000, params) == 1 and steps_per_epoch(80_000, params) == 1_250
    assert describe_passes(80_000, params) is None
    unrepeated = TrainParams(batch_size=64, min_steps_per_epoch=0)
    assert passes_per_epoch(705, unrepeated) == 1 and steps_per_epoch(705, unrepeated) == 12


def test_too_few_steps_warns_only_below_the_threshold():
    # Given 1,000 training captchas in batches of 64 (16 steps an epoch) gone through once
    # Then 4 epochs (64 steps) draw a warning that names the knobs to raise
    once = {"batch_size": 64, "min_steps_per_epoch": 0}
    warning = too_few_steps(1_000, TrainParams(epochs=4, **once))
    assert warning is not None and "64 optimizer steps" in warning and "train.epochs" in warning
    assert "train.min_steps_per_epoch" in warning
    # and enough epochs to pass FEW_STEPS, the default's 80,000 captchas, or the
    # default's 600 steps an epoch, draw none
    enough = math.ceil(FEW_STEPS / 16)
    assert too_few_steps(1_000, TrainParams(epochs=enough, **once)) is None
    assert too_few_steps(80_000, TrainParams(epochs=4, **once)) is None
    assert too_few_steps(1_000, TrainParams(epochs=4, batch_size=64)) is None
