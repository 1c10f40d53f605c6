"""What each model design costs on this machine: parameters, forward FLOPs per image,
training samples/s and inference images/s, on random data of the model's input size.

    python bench/model_cost.py                     # the designs in DESIGNS
    python bench/model_cost.py --params params.yaml --name default
    python bench/model_cost.py --name default_threads_1_2 --threads 1 2   # thread pools

Writes bench/results/model_cost.json (one entry per design, each with the
machine it ran on). Timings are medians over several batches after warm-up;
expect +-20% between runs on shared machines, and 2-3x between two-core machines
with different CPUs (bench/results_json.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from results_json import machine

from captcha_ocr.data import InputSpec
from captcha_ocr.models import build_model
from captcha_ocr.params import Params, load_params, parse_params
from captcha_ocr.training import compile_model

RESULTS = Path(__file__).parent / "results"


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of one forward pass of one image, counted layer by layer.

    Counted analytically (convolutions, dense layers, recurrent gates), because
    TensorFlow's profiler cannot see inside the RNNs' while loops.
    """
    from keras import layers

    total = 0

    def walk(layer: keras.layers.Layer) -> None:
        nonlocal total
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                walk(inner)
            return
        if isinstance(layer, layers.Bidirectional):
            walk_rnn(layer.forward_layer, layer.input.shape)
            walk_rnn(layer.backward_layer, layer.input.shape)
            return
        if isinstance(layer, layers.GRU | layers.LSTM):
            walk_rnn(layer, layer.input.shape)
            return
        if isinstance(layer, layers.SeparableConv2D):
            _, height, width, channels = layer.output.shape
            in_channels = layer.input.shape[-1]
            kernel = int(np.prod(layer.kernel_size))
            total += 2 * height * width * in_channels * kernel * layer.depth_multiplier
            total += 2 * height * width * in_channels * layer.depth_multiplier * channels
        elif isinstance(layer, layers.DepthwiseConv2D):
            _, height, width, channels = layer.output.shape
            total += 2 * height * width * channels * int(np.prod(layer.kernel_size))
        elif isinstance(layer, layers.Conv2D | layers.Conv1D):
            out_shape = layer.output.shape[1:-1]
            in_channels = layer.input.shape[-1]
            kernel = int(np.prod(layer.kernel_size))
            total += 2 * int(np.prod(out_shape)) * kernel * in_channels * layer.filters
        elif isinstance(layer, layers.Dense):
            positions = int(np.prod(layer.output.shape[1:-1])) or 1
            total += 2 * positions * layer.input.shape[-1] * layer.units

    def walk_rnn(layer: keras.layers.Layer, input_shape: tuple) -> None:
        nonlocal total
        steps, features = input_shape[1], input_shape[-1]
        gates = 3 if isinstance(layer, layers.GRU) else 4
        total += 2 * steps * gates * (features * layer.units + layer.units * layer.units)

    walk(model)
    return int(total)


def measure(params: Params, spec: InputSpec, num_symbols: int, batch_size: int, steps: int) -> dict:
    keras.utils.set_random_seed(0)
    model = build_model(params.model, spec, num_symbols, min_length=spec.max_length)
    compile_model(model, params.train)
    rng = np.random.default_rng(0)
    images = rng.random((batch_size, *spec.shape), dtype=np.float32)
    lengths = rng.integers(spec.max_length // 2 + 1, spec.max_length + 1, size=batch_size)
    labels = np.zeros((batch_size, spec.max_length), dtype=np.int32)
    for row, length in enumerate(lengths):
        labels[row, :length] = rng.integers(1, num_symbols + 1, size=length)

    model.train_on_batch(images, labels)  # compile and warm up
    model.train_on_batch(images, labels)
    train_times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(images, labels)
        train_times.append(time.perf_counter() - started)
    model.predict_on_batch(images)
    infer_times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.predict_on_batch(images)
        infer_times.append(time.perf_counter() - started)
    flops = forward_flops(model)
    return {
        "input": list(spec.shape),
        "parameters": int(model.count_params()),
        "forward_mflops_per_image": round(flops / 1e6, 1),
        "train_samples_per_second": round(batch_size / float(np.median(train_times)), 1),
        "inference_images_per_second": round(batch_size / float(np.median(infer_times)), 1),
        "batch_size": batch_size,
    }


# Designs to compare: params.yaml overrides on top of the repository defaults.
def _crnn(height: int, width: int, **crnn: Any) -> dict[str, Any]:
    return {"model": {"input_height": height, "input_width": width, "crnn_ctc": crnn}}


def _multihead(arch: str, size: tuple[int, int] = (60, 160), **knobs: Any) -> dict[str, Any]:
    height, width = size
    return {
        "model": {"arch": arch, "input_height": height, "input_width": width, arch: knobs},
        "generate": {"train_lengths": None},  # one head per position: one length
    }


# The small CRNN's conv stack and projection, with the width pools of the default
# until Nov 2026 (24 time steps at 32x96); the current default pools the width once
# more (crnn_ctc_32x128_16-64_w8: the default until Nov 25 2026) and projects each
# time step to 128 features, not 64.
SMALL = {"conv_filters": [16, 32, 64, 64], "pool_widths": [2, 2, 1, 1], "dense_units": 64}

# The reference designs (DESIGN.md) at the data's full 60x160, then the cheaper
# inputs and widths tried for the default.
DESIGNS: dict[str, dict[str, Any]] = {
    "crnn_ctc_60x160_ref": _crnn(
        60,
        160,
        conv_filters=[32, 64, 128, 256],
        pool_widths=[2, 2, 1, 1],
        rnn_units=[128, 128],
        dense_units=64,
    ),
    "cnn_multihead_60x160_ref": _multihead("cnn_multihead"),
    "vgg_multihead_60x160_w0.25": _multihead("vgg_multihead", width=0.25),
    "resnet50_multihead_60x160": _multihead("resnet50_multihead"),
    "crnn_ctc_60x160_16-64": _crnn(60, 160, **SMALL),
    "crnn_ctc_48x128_16-64": _crnn(48, 128, **SMALL),
    "crnn_ctc_32x96_16-64": _crnn(32, 96, **SMALL),
    "crnn_ctc_32x96_16-64_gru64": _crnn(32, 96, **SMALL, rnn_units=[64]),
    "crnn_ctc_32x128_16-64_w8": _crnn(32, 128, **{**SMALL, "pool_widths": [2, 2, 2, 1]}),
    "cnn_multihead_32x96": _multihead("cnn_multihead", (32, 96)),
    # The default until Nov 25 2026, with depthwise-separable convs after the first
    # (bench/README.md).
    "crnn_ctc_32x128_separable": _crnn(32, 128, separable=True, dense_units=64),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--name", default=None, help="measure only this params file, under this name"
    )
    parser.add_argument("--design", action="append", default=[], help="only these DESIGNS")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "model_cost.json")
    parser.add_argument(
        "--threads",
        type=int,
        nargs=2,
        metavar=("INTRA_OP", "INTER_OP"),
        default=(0, 0),
        help="TensorFlow's thread pools (0 = its own choice, the pipeline's setting)",
    )
    args = parser.parse_args(argv)
    # Before the first op runs: TensorFlow fixes its thread pools then.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads[0])
    tf.config.threading.set_inter_op_parallelism_threads(args.threads[1])

    base = load_params(args.params)
    raw_base = base.model_dump(by_alias=True)
    designs = (
        {args.name: {}}
        if args.name
        else {
            name: overrides
            for name, overrides in DESIGNS.items()
            if not args.design or name in args.design
        }
    )
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name, overrides in designs.items():
        params = parse_params(_merge(raw_base, overrides))
        data = params.data
        spec = InputSpec(
            height=params.model.input_height or params.generate.image_height,
            width=params.model.input_width or params.generate.image_width,
            channels=params.model.channels,
            max_length=params.generate.max_length,
        )
        result = measure(params, spec, len(data.symbols), params.train.batch_size, args.steps)
        result["overrides"] = overrides
        result["threads"] = {"intra_op": args.threads[0], "inter_op": args.threads[1]}
        result["machine"] = {**machine(), "tensorflow": tf.__version__}
        results[name] = result
        print(f"{name:28s} {json.dumps({k: v for k, v in result.items() if k != 'overrides'})}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = (
            _merge(base[key], value)
            if isinstance(value, dict) and isinstance(base.get(key), dict)
            else value
        )
    return merged


if __name__ == "__main__":
    raise SystemExit(main())
