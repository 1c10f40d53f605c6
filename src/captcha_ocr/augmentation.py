"""Random changes to training images (shifts, rotation, zoom, pixel noise), applied in
the tf.data pipeline to training batches only, so saved models carry none of it."""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf
from keras import layers

from captcha_ocr.params import AugmentParams


def augmenter(
    params: AugmentParams, seed: int | None = None
) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """A function of a batch of [0, 1] images, or None when every knob is 0."""
    # "nearest" repeats the border: captcha backgrounds are flat, so no frame appears.
    transforms = []
    if params.translate:
        # Whole-pixel shifts ("nearest"): a bilinear shift by a fraction of a pixel
        # blurs the strokes, which no test image has.
        transforms.append(
            layers.RandomTranslation(
                params.translate,
                params.translate,
                fill_mode="nearest",
                interpolation="nearest",
                seed=seed,
            )
        )
    if params.rotate:
        transforms.append(
            layers.RandomRotation(params.rotate / 360.0, fill_mode="nearest", seed=seed)
        )
    if params.zoom:
        transforms.append(layers.RandomZoom(params.zoom, fill_mode="nearest", seed=seed))
    if not transforms and not params.noise:
        return None
    geometry = keras.Sequential(transforms, name="augment") if transforms else None

    def augment(images: tf.Tensor) -> tf.Tensor:
        if geometry is not None:
            images = geometry(images, training=True)
        if params.noise:
            images = images + tf.random.normal(tf.shape(images), stddev=params.noise, seed=seed)
        return tf.clip_by_value(images, 0.0, 1.0)

    return augment
