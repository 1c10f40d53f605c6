"""Every architecture: builds, trains a step with a finite loss, saves and reloads with
identical predictions; shapes a design cannot train are refused with the key to change."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from captcha_ocr.data import InputSpec
from captcha_ocr.models import KINDS, build_model, kind_of
from captcha_ocr.params import ModelParams, TrainParams
from captcha_ocr.training import compile_model

SPEC = InputSpec(height=32, width=64, channels=1, max_length=4)
# Each architecture at its smallest: seconds per test on two cores.
TINY = {
    "crnn_ctc": {
        "crnn_ctc": {
            "conv_filters": [4, 8],
            "pool_widths": [2, 1],
            "rnn_units": [8],
            "dense_units": 8,
        }
    },
    "cnn_multihead": {"cnn_multihead": {"conv_filters": [4, 8], "dense_units": 16}},
    "vgg_multihead": {"vgg_multihead": {"width": 0.0625}},
    "resnet50_multihead": {},
}


def tiny_model(arch: str, spec: InputSpec = SPEC, num_symbols: int = 10) -> keras.Model:
    params = ModelParams.model_validate({"arch": arch, **TINY[arch]})
    return build_model(params, spec, num_symbols=num_symbols)


def test_every_architecture_is_covered():
    assert set(TINY) == set(KINDS)


@pytest.mark.parametrize("arch", sorted(KINDS))
def test_trains_a_step_saves_and_reloads(arch: str, tmp_path: Path):
    keras.utils.set_random_seed(0)
    spec = SPEC if arch != "resnet50_multihead" else InputSpec(32, 32, 1, 4)
    model = tiny_model(arch, spec)
    assert kind_of(model) == KINDS[arch]
    reloaded = train_a_step_save_and_reload(model, spec, tmp_path)
    assert kind_of(reloaded) == KINDS[arch]


def train_a_step_save_and_reload(model: keras.Model, spec: InputSpec, tmp_path: Path):
    """One training step with a finite loss, then the saved model predicts the same."""
    compile_model(model, TrainParams())
    images = np.random.default_rng(0).random((4, *spec.shape), dtype=np.float32)
    labels = np.array([[1, 2, 3, 4], [5, 5, 6, 7], [10, 9, 8, 7], [1, 1, 1, 1]], dtype=np.int32)
    loss = model.train_on_batch(images, labels)
    assert np.isfinite(loss), loss
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # no custom objects needed
    np.testing.assert_allclose(
        reloaded.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-5, atol=1e-5
    )
    return reloaded


def test_ctc_output_has_a_time_step_per_column_and_a_blank_class():
    assert tiny_model("crnn_ctc", num_symbols=36).output_shape == (None, 32, 37)


def test_crnn_stacks_convs_per_block_as_asked():
    def convs(convs_per_block) -> list[str]:
        params = ModelParams.model_validate(
            {"crnn_ctc": {**TINY["crnn_ctc"]["crnn_ctc"], "convs_per_block": convs_per_block}}
        )
        model = build_model(params, SPEC, num_symbols=10)
        return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]

    assert convs(1) == ["conv0", "conv1"]
    assert convs([1, 2]) == ["conv0", "conv1", "conv1_2"]
    assert convs(2) == ["conv0", "conv0_2", "conv1", "conv1_2"]


def test_crnn_separable_convs_replace_every_conv_but_the_one_on_the_pixels(tmp_path: Path):
    keras.utils.set_random_seed(0)
    crnn = {**TINY["crnn_ctc"]["crnn_ctc"], "convs_per_block": 2, "separable": True}
    model = build_model(ModelParams.model_validate({"crnn_ctc": crnn}), SPEC, num_symbols=10)
    convs = {layer.name: type(layer).__name__ for layer in model.layers if "conv" in layer.name}
    assert convs == {
        "conv0": "Conv2D",  # one input channel: nothing to separate
        "conv0_2": "SeparableConv2D",
        "conv1": "SeparableConv2D",
        "conv1_2": "SeparableConv2D",
    }
    train_a_step_save_and_reload(model, SPEC, tmp_path)


def test_multihead_output_has_one_step_per_position():
    assert tiny_model("cnn_multihead", num_symbols=36).output_shape == (None, 4, 37)
    heads = [layer.name for layer in tiny_model("cnn_multihead").layers if layer.name[:1] == "c"]
    assert {"c1", "c2", "c3", "c4"} <= set(heads)


@pytest.mark.parametrize("arch", ["cnn_multihead", "vgg_multihead", "resnet50_multihead"])
def test_multihead_refuses_variable_length_data(arch: str):
    params = ModelParams.model_validate({"arch": arch, **TINY[arch]})
    with pytest.raises(ValueError, match=rf"model.arch: {arch} .* lengths 3-4.*use crnn_ctc"):
        build_model(params, SPEC, num_symbols=10, min_length=3)


def test_too_few_time_steps_for_the_label_length_is_refused():
    params = ModelParams.model_validate(
        {"crnn_ctc": {"conv_filters": [4, 8, 8], "pool_widths": [2, 2, 2]}}
    )
    with pytest.raises(
        ValueError, match=r"model.crnn_ctc.pool_widths: .* 8 time steps .* at least 9"
    ):
        build_model(params, SPEC, num_symbols=10)


def test_resnet_refuses_a_missing_weights_file():
    params = ModelParams.model_validate(
        {"arch": "resnet50_multihead", "resnet50_multihead": {"weights": "nowhere.h5"}}
    )
    with pytest.raises(
        ValueError, match=r"model.resnet50_multihead.weights: nowhere\.h5 is not a file"
    ):
        build_model(params, InputSpec(32, 32, 3, 4), num_symbols=10)
