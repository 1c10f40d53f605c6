"""Model families, selected by params.yaml `model.arch`; one module each.

Every model maps an image batch to logits of shape (batch, steps, classes) with
classes = charset + 1 (id 0: the CTC blank, or padding): CTC models read
`steps` time steps left to right; multi-head models have one step per
character position. So one training loop, one set of callbacks and one
evaluation path serve them all; only the loss and the decoding differ (KINDS).
"""

from __future__ import annotations

import keras

from captcha_ocr.data import InputSpec
from captcha_ocr.params import ModelParams

# The decoding (and loss) each architecture needs.
KINDS = {
    "crnn_ctc": "ctc",
    "cnn_multihead": "per_position",
    "vgg_multihead": "per_position",
    "resnet50_multihead": "per_position",
}


def kind_of(model: keras.Model) -> str:
    """A saved model's kind, from its name (each builder names it after its arch)."""
    if model.name not in KINDS:
        raise ValueError(f"model {model.name!r} is none of the architectures {sorted(KINDS)}")
    return KINDS[model.name]


def build_model(
    params: ModelParams, spec: InputSpec, num_symbols: int, min_length: int | None = None
) -> keras.Model:
    """An uncompiled model for `spec` over a charset of `num_symbols` symbols.

    min_length: the data's shortest label; multi-head models refuse data whose
    labels vary in length.
    """
    num_classes = num_symbols + 1
    if KINDS[params.arch] == "per_position":
        from captcha_ocr.models.heads import check_fixed_length

        check_fixed_length(spec, spec.max_length if min_length is None else min_length, params.arch)
    if params.arch == "crnn_ctc":
        from captcha_ocr.models.crnn import build_crnn

        return build_crnn(spec, params.crnn_ctc, num_classes)
    if params.arch == "cnn_multihead":
        from captcha_ocr.models.cnn_multihead import build_cnn_multihead

        return build_cnn_multihead(spec, params.cnn_multihead, num_classes)
    if params.arch == "vgg_multihead":
        from captcha_ocr.models.vgg_multihead import build_vgg_multihead

        return build_vgg_multihead(spec, params.vgg_multihead, num_classes)
    if params.arch == "resnet50_multihead":
        from captcha_ocr.models.resnet50_multihead import build_resnet50_multihead

        return build_resnet50_multihead(spec, params.resnet50_multihead, num_classes)
    raise ValueError(f"model.arch: unknown architecture {params.arch!r}")
