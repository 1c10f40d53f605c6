"""Does a focal CTC loss read 0 and O better? time_to_accuracy.py with the CRNN's
CTC loss weighted by (1 - p)^gamma, p = exp(-CTC loss) the likelihood of the
right text (Feng et al., "Focal CTC loss for Chinese optical character
recognition", 2019): captchas the model already reads count less, the hard
ones (0 against O) more, at no extra compute.

    python bench/focal_ctc.py --gamma 2 --data data/tfrecords --budget 1500 \\
        --name default_focal_ctc_gamma2_80k_e4

Every other argument is time_to_accuracy.py's; the entry lands in its JSON, its
`loss` naming the gamma. The pipeline keeps plain CTC (bench/README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras
import time_to_accuracy
from keras import ops

from captcha_ocr import training


@keras.saving.register_keras_serializable(package="bench")
class FocalCTC(keras.losses.CTC):
    def __init__(self, gamma: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gamma = gamma

    def call(self, y_true, y_pred):
        ctc = super().call(y_true, y_pred)
        return ops.power(1.0 - ops.exp(-ctc), self.gamma) * ctc

    def get_config(self) -> dict:
        return {**super().get_config(), "gamma": self.gamma}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, add_help=False)
    parser.add_argument("--gamma", type=float, default=2.0)
    parser.add_argument("--name", required=True)
    parser.add_argument(
        "--out", type=Path, default=time_to_accuracy.RESULTS / "time_to_accuracy.json"
    )
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        # This script's own options, then time_to_accuracy.py's (it exits after them).
        print(parser.format_usage().replace("usage: ", "this script's own options: "))
        return time_to_accuracy.main(["--help"])
    args, rest = parser.parse_known_args(argv)
    plain_loss = training.loss_for

    def focal_for_ctc(model: keras.Model) -> keras.losses.Loss:
        return FocalCTC(args.gamma) if training.kind_of(model) == "ctc" else plain_loss(model)

    training.loss_for = focal_for_ctc  # compile_model looks it up when it runs
    return time_to_accuracy.main(
        [*rest, "--name", args.name, "--out", str(args.out)],
        extra={"loss": f"focal CTC, gamma {args.gamma:g}"},
    )


if __name__ == "__main__":
    raise SystemExit(main())
