"""VGG-style multi-label net: five VGG conv groups, fc6/fc7 with dropout 0.5, and one
classifier per position. `width` scales every layer so that it fits a CPU budget
(1.0 is VGG16's 64-128-256-512-512 and 4096-unit fc layers); `batch_norm` puts
BatchNorm after every conv and after fc6 and fc7.
"""

from __future__ import annotations

import keras
from keras import layers

from captcha_ocr.data import InputSpec
from captcha_ocr.models.heads import position_heads
from captcha_ocr.params import VGGMultiheadParams

VGG16_GROUPS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG16_FC_UNITS = 4096


def build_vgg_multihead(
    spec: InputSpec, params: VGGMultiheadParams, num_classes: int
) -> keras.Model:
    inputs = keras.Input(shape=spec.shape, name="image")
    x = inputs
    for group, (filters, convs) in enumerate(VGG16_GROUPS, start=1):
        width = max(4, round(filters * params.width))
        for conv in range(1, convs + 1):
            x = layers.Conv2D(width, 3, padding="same", name=f"conv{group}_{conv}")(x)
            if params.batch_norm:
                x = layers.BatchNormalization(name=f"bn{group}_{conv}")(x)
            x = layers.ReLU(name=f"relu{group}_{conv}")(x)
        # Pool only while the map is big enough: captchas are small next to ImageNet.
        if x.shape[1] >= 2 and x.shape[2] >= 2:
            x = layers.MaxPool2D(2, name=f"pool{group}")(x)
    x = layers.Flatten(name="flatten")(x)
    fc_units = max(8, round(VGG16_FC_UNITS * params.width))
    for name in ("fc6", "fc7"):
        if params.batch_norm:
            # BatchNorm on fc6/fc7 too, not only on the convs: without it here this
            # design sat at chance (1 character in 36 right) through 15 minutes on the
            # default's data with Adam at 2e-3, and read 95.4% of the test captchas
            # with it (bench/README.md), as cnn_multihead needs it after its dense layer.
            x = layers.Dense(fc_units, use_bias=False, name=name)(x)
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        else:
            x = layers.Dense(fc_units, activation="relu", name=name)(x)
        x = layers.Dropout(params.dropout, name=f"{name}_dropout")(x)
    logits = position_heads(x, spec.max_length, num_classes)
    return keras.Model(inputs, logits, name="vgg_multihead")
