"""The CRNN: builds, trains a step with a finite loss, saves and reloads identically,
and refuses shapes CTC cannot train."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from captcha_ocr.data import InputSpec
from captcha_ocr.models import build_model
from captcha_ocr.params import ModelParams, TrainParams
from captcha_ocr.training import compile_model

TINY = ModelParams.model_validate(
    {
        "crnn_ctc": {
            "conv_filters": [4, 8],
            "pool_widths": [2, 1],
            "rnn_units": [8],
            "dense_units": 8,
        }
    }
)
SPEC = InputSpec(height=32, width=64, channels=1, max_length=4)


def test_output_has_a_time_step_per_column_and_a_blank_class():
    model = build_model(TINY, SPEC, num_symbols=36)
    assert model.output_shape == (None, 32, 37)  # width 64 pooled once; 36 symbols + blank


def test_one_training_step_has_a_finite_loss_and_reload_predicts_the_same(tmp_path: Path):
    keras.utils.set_random_seed(0)
    model = build_model(TINY, SPEC, num_symbols=10)
    compile_model(model, TrainParams())
    images = np.random.default_rng(0).random((8, 32, 64, 1), dtype=np.float32)
    labels = np.array([[1, 2, 3, 4], [5, 5, 0, 0]] * 4, dtype=np.int32)  # padded with 0
    loss = model.train_on_batch(images, labels)
    assert np.isfinite(loss)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # no custom objects needed
    np.testing.assert_allclose(
        reloaded.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-5, atol=1e-5
    )


def test_too_few_time_steps_for_the_label_length_is_refused():
    params = ModelParams.model_validate(
        {"crnn_ctc": {"conv_filters": [4, 8, 8], "pool_widths": [2, 2, 2]}}
    )
    with pytest.raises(
        ValueError, match=r"model.crnn_ctc.pool_widths: .* 8 time steps .* at least 9"
    ):
        build_model(params, SPEC, num_symbols=10)
