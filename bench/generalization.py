"""How a trained model reads captchas drawn unlike its training data: other fonts,
other lengths, smaller or larger glyphs, more or no noise, no distortion, shifted.

    python bench/generalization.py --model models/model.keras --data data/tfrecords --name default
    python bench/generalization.py --model general.keras --data /tmp/general/data/tfrecords \\
        --name general --set 'generate.fonts=[DroidSansMono,DejaVuSans]' --set generate.max_length=6

Each variant changes one thing of the params' generate section (the one the model
was trained with: pass its overrides with --set) and draws --count captchas from
random streams no split uses, so none was seen in training. Images are decoded
and resized as the TFRecord reader does. Fonts the model was trained on are marked
`trained`; lengths beyond what its CTC time steps hold are skipped. Writes
bench/results/generalization.json (one entry per --name).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from results_json import record
from time_to_accuracy import apply_overrides

from captcha_ocr.data import decode_image, model_input_spec, normalize
from captcha_ocr.dataset_info import read_data_info
from captcha_ocr.fonts import available
from captcha_ocr.generate import CaptchaDrawer, CaptchaSpec
from captcha_ocr.metrics import evaluate_texts
from captcha_ocr.params import GenerateParams, load_params, parse_params
from captcha_ocr.prediction import predict_batches

RESULTS = Path(__file__).parent / "results"
# Fonts of different families, weights and slants (the package's and matplotlib's).
FONTS = (
    "DroidSansMono",
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSansMono",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "STIXGeneral",
    "STIXGeneralBol",
    "cmss10",
    "cmtt10",
)
# One nuisance changed at a time, on top of the trained generate section.
NUISANCES: dict[str, dict[str, Any]] = {
    "no noise": {"noise_dots": 0, "noise_curves": 0},
    "heavy noise (90 dots, 3 curves)": {"noise_dots": 90, "noise_curves": 3},
    "no rotation or warp": {"rotation": [0, 0], "warp_x": [0, 0], "warp_y": [0, 0]},
    "smaller glyphs (200x70 image)": {"image_width": 200, "image_height": 70},
    "larger glyphs (font sizes x1.15)": {"font_sizes": [48, 58, 64]},
}
# The package centres every glyph vertically; other captchas do not. Pixels of the
# drawn image (60 rows by default), filled with the background colour.
SHIFTS: dict[str, tuple[int, int]] = {
    "shifted 3 px down": (0, 3),
    "shifted 3 px up": (0, -3),
    "shifted 6 px right": (6, 0),
}


def shifted(png: bytes, dx: int, dy: int) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        canvas = Image.new(image.mode, image.size, image.getpixel((0, 0)))
        canvas.paste(image, (dx, dy))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def variants(generate: dict[str, Any], max_length: int) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {"as trained": {}}
    shortest, longest = GenerateParams.model_validate(generate).lengths("train")
    for length in range(3, max_length + 1):
        tag = " (trained)" if shortest <= length <= longest else ""
        found[f"length {length}{tag}"] = {
            "min_length": length,
            "max_length": length,
            "train_lengths": None,
        }
    names = set(available())
    for font in FONTS:
        if font in names:
            tag = " (trained)" if font in generate["fonts"] else ""
            found[f"font {font}{tag}"] = {"fonts": [font]}
    found.update(NUISANCES)
    found.update({name: {} for name in SHIFTS})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="its TFRecords (charset)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--count", type=int, default=500, help="captchas per variant")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, default=RESULTS / "generalization.json")
    args = parser.parse_args(argv)

    raw = apply_overrides(load_params(args.params).model_dump(), args.overrides)
    charset = read_data_info(args.data).charset_map()
    model = keras.models.load_model(args.model)
    spec = model_input_spec(model, max_length=raw["generate"]["max_length"])
    # CTC needs 2L + 1 steps for L characters; multi-head models read their heads' count.
    steps = model.output_shape[1]
    longest = (steps - 1) // 2 if model.name == "crnn_ctc" else steps
    results: dict[str, Any] = {}
    for name, change in variants(raw["generate"], min(longest, 7)).items():
        varied = {**raw, "generate": {**raw["generate"], **change}}
        params = parse_params(varied)
        drawer = CaptchaDrawer(CaptchaSpec.from_params(params.data, params.generate, Path(".")))
        started = time.perf_counter()
        texts, images = [], []
        for index in range(args.count):
            text, _, png = drawer.draw("generalization", index)
            if name in SHIFTS:
                png = shifted(png, *SHIFTS[name])
            texts.append(text)
            images.append(normalize(decode_image(tf.constant(png), spec)))
        # The true texts are kept here; predict_batches gets empty labels.
        batch = {"image": tf.stack(images), "label": tf.zeros((len(images), 0), tf.int32)}
        read = predict_batches(model, [batch], charset)
        scores = evaluate_texts(texts, read.texts, charset=charset.symbols)
        results[name] = {
            "whole_captcha": scores.summary["sequence_accuracy"],
            "character": scores.summary["character_accuracy"],
            "length": scores.summary["length_accuracy"],
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{name:40s} {results[name]}", flush=True)
    untrained = [
        result["whole_captcha"]
        for name, result in results.items()
        if name.startswith("font") and "trained" not in name
    ]
    entry = {
        "model": str(args.model),
        "overrides": args.overrides,
        "count": args.count,
        "mean_whole_captcha_untrained_fonts": round(float(np.mean(untrained)), 4),
        "variants": results,
    }
    record(args.out, args.name, entry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
