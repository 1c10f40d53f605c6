"""Pieces every multi-head model shares: one classifier per character position,
stacked into one (batch, positions, classes) output.

Class 0 is the padding/blank id, never a target of a fixed-length label, so the
labels the CTC models train on serve these models unchanged.
"""

from __future__ import annotations

import keras
from keras import layers

from captcha_ocr.data import InputSpec


def check_fixed_length(spec: InputSpec, min_length: int, arch: str) -> None:
    if min_length != spec.max_length:
        raise ValueError(
            f"model.arch: {arch} has one head per character position and needs captchas of "
            f"one length, but the data has lengths {min_length}-{spec.max_length}; "
            "use crnn_ctc for variable-length captchas"
        )


def position_heads(
    features: keras.KerasTensor, positions: int, num_classes: int
) -> keras.KerasTensor:
    """`c1`..`cN`: a softmax classifier (as logits) per position, stacked on axis 1."""
    heads = [
        layers.Reshape((1, num_classes), name=f"c{index + 1}_position")(
            layers.Dense(num_classes, name=f"c{index + 1}")(features)
        )
        for index in range(positions)
    ]
    if positions == 1:
        return heads[0]
    return layers.Concatenate(axis=1, name="logits")(heads)
