"""Model families, selected by params.yaml `model.arch`; each has its own module."""

from __future__ import annotations

import keras

from captcha_ocr.data import InputSpec
from captcha_ocr.params import ModelParams


def build_model(params: ModelParams, spec: InputSpec, num_symbols: int) -> keras.Model:
    """An uncompiled model for `spec` over a charset of `num_symbols` symbols."""
    if params.arch == "crnn_ctc":
        from captcha_ocr.models.crnn import build_crnn

        return build_crnn(spec, params.crnn_ctc, num_classes=num_symbols + 1)
    raise ValueError(f"model.arch: unknown architecture {params.arch!r}")
