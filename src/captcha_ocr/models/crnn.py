"""CRNN with CTC: conv blocks, the feature map read left to right, bidirectional RNNs.

The output is logits over the charset plus the CTC blank (index 0) at every
time step; `keras.losses.CTC` trains it on labels padded with 0, so one model
reads captchas of any length up to what its time steps allow.
"""

from __future__ import annotations

import keras
from keras import layers

from captcha_ocr.data import InputSpec
from captcha_ocr.params import CRNNParams


def build_crnn(spec: InputSpec, params: CRNNParams, num_classes: int) -> keras.Model:
    """num_classes counts the blank: len(charset) + 1."""
    params.check_fits(spec.width, spec.height, spec.max_length)
    inputs = keras.Input(shape=spec.shape, name="image")
    x = inputs
    if params.stem_filters:
        # A strided conv reads the full-resolution pixels and halves both sides:
        # cheaper than resizing the input down, and it keeps fine shape (0 vs O).
        x = layers.Conv2D(
            params.stem_filters, 3, strides=2, padding="same", use_bias=False, name="stem"
        )(x)
        x = layers.BatchNormalization(name="bn_stem")(x)
        x = layers.ReLU(name="relu_stem")(x)
    for block, (filters, convs, pool_width) in enumerate(
        zip(params.conv_filters, params.block_convs, params.pool_widths, strict=True)
    ):
        for conv in range(convs):
            # The first conv of a block keeps its old name, so saved models still load.
            suffix = f"{block}_{conv + 1}" if conv else f"{block}"
            conv_layer = (
                layers.SeparableConv2D if params.separable and x.shape[-1] > 1 else layers.Conv2D
            )
            x = conv_layer(filters, 3, padding="same", use_bias=False, name=f"conv{suffix}")(x)
            x = layers.BatchNormalization(name=f"bn{suffix}")(x)
            x = layers.ReLU(name=f"relu{suffix}")(x)
        # Always halve the height; halve the width only where pool_widths says,
        # so that enough time steps remain for CTC.
        x = layers.MaxPool2D(pool_size=(2, pool_width), name=f"pool{block}")(x)

    _, height, width, channels = x.shape
    # (batch, height, width, channels) -> (batch, width, height * channels):
    # each column of the feature map becomes one time step.
    x = layers.Permute((2, 1, 3), name="columns_first")(x)
    x = layers.Reshape((width, height * channels), name="sequence")(x)
    x = layers.Dense(params.dense_units, activation="relu", name="project")(x)
    x = layers.Dropout(params.dropout, name="dropout_project")(x)
    recurrent = {"gru": layers.GRU, "lstm": layers.LSTM}[params.rnn]
    for index, units in enumerate(params.rnn_units):
        x = layers.Bidirectional(
            recurrent(units, return_sequences=True), name=f"bi{params.rnn}{index}"
        )(x)
    x = layers.Dropout(params.dropout, name="dropout_rnn")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="crnn_ctc")
