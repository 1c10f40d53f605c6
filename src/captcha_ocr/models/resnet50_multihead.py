"""ResNet50 multi-task: keras.applications.ResNet50 without its top, global average
pooling, one softmax head per position (`c1`..`cN`), equal loss weights.

No weights are downloaded: `weights` is None (random init) or the path of a local
weights file (ImageNet ones need 3 channels).
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from captcha_ocr.data import InputSpec
from captcha_ocr.models.heads import position_heads
from captcha_ocr.params import ResNet50MultiheadParams


def build_resnet50_multihead(
    spec: InputSpec, params: ResNet50MultiheadParams, num_classes: int
) -> keras.Model:
    weights = None
    if params.weights:
        weights = str(Path(params.weights))
        if not Path(weights).is_file():
            raise ValueError(f"model.resnet50_multihead.weights: {weights} is not a file")
        if spec.channels != 3:
            raise ValueError("model.channels: pretrained ResNet50 weights need 3 (RGB) channels")
    if min(spec.height, spec.width) < 32:
        raise ValueError("model.input_height: ResNet50 needs inputs of at least 32x32 pixels")
    inputs = keras.Input(shape=spec.shape, name="image")
    backbone = keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=spec.shape, pooling=None
    )
    x = backbone(inputs)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(params.dropout, name="dropout")(x)
    logits = position_heads(x, spec.max_length, num_classes)
    return keras.Model(inputs, logits, name="resnet50_multihead")
