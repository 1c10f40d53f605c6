"""How much reading each captcha also shifted left and right (evaluate.tta_shifts)
buys a trained model, and what it costs.

    python bench/tta_shifts.py --model models/model.keras --data data/tfrecords \\
        --name full_profile --split test --max-shift 3

Reads the split once per horizontal offset (-max_shift..max_shift pixels at the
model's input size) and once a pixel up and a pixel down, scoring each read alone;
then combines the offsets 0, +-1, ..., +-n for every n up to --max-shift as
evaluate does (captcha_ocr.tta: the text with the highest mean CTC likelihood, or
the averaged probabilities of a multi-head model), with the images/s of each.
Writes bench/results/tta_shifts.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from ctc_ensemble import summary
from results_json import record

from captcha_ocr.data import inference_dataset, model_input_spec
from captcha_ocr.dataset_info import read_data_info
from captcha_ocr.decoding import decode
from captcha_ocr.models import kind_of
from captcha_ocr.prediction import predict_logits
from captcha_ocr.tta import combine_reads, shift_images, shift_offsets

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/tfrecords"))
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--max-shift", type=int, default=3)
    parser.add_argument("--name", required=True, help="the entry's name in the results file")
    parser.add_argument("--note", default="", help="free text kept with the entry")
    parser.add_argument("--out", type=Path, default=RESULTS / "tta_shifts.json")
    args = parser.parse_args(argv)

    model = keras.models.load_model(args.model, compile=False)
    kind = kind_of(model)
    info = read_data_info(args.data)
    charset = info.charset_map()
    spec = model_input_spec(model, info.max_length)
    offsets = shift_offsets(args.max_shift)
    logits: dict[str, list[np.ndarray]] = {}
    truths: list[str] = []
    seconds_per_read = 0.0
    for batch in inference_dataset(args.data, info, args.split, spec, batch_size=256):
        truths.extend(text.decode("utf-8") for text in batch["text"].numpy())
        images = batch["image"].numpy()
        for dx in offsets:
            start = time.perf_counter()
            logits.setdefault(f"dx{dx:+d}", []).append(
                predict_logits(model, shift_images(images, dx))
            )
            seconds_per_read += (time.perf_counter() - start) / len(offsets)
        for dy in (-1, 1):
            up_or_down = predict_logits(model, shift_images(images, dy, axis=1))
            logits.setdefault(f"dy{dy:+d}", []).append(up_or_down)

    def texts(decoded) -> list[str]:
        return [charset.decode(ids) for ids in decoded.ids]

    joined = {key: np.concatenate(parts) for key, parts in logits.items()}
    single = {key: summary(texts(decode(value, kind)), truths) for key, value in joined.items()}
    combined: dict[str, Any] = {}
    for shifts in range(1, args.max_shift + 1):
        start = time.perf_counter()
        reads = combine_reads([joined[f"dx{dx:+d}"] for dx in shift_offsets(shifts)], kind)
        combining = time.perf_counter() - start
        reads_per_image = 2 * shifts + 1
        combined[str(shifts)] = summary(texts(reads), truths) | {
            "reads_per_image": reads_per_image,
            "images_per_second": round(
                len(truths) / (seconds_per_read * reads_per_image + combining), 1
            ),
        }
        print(f"tta_shifts={shifts}: {combined[str(shifts)]}", flush=True)
    one_read = len(truths) / seconds_per_read
    result = {
        "model": str(args.model),
        "split": args.split,
        "n": len(truths),
        "note": args.note,
        "one_read": single["dx+0"] | {"images_per_second": round(one_read, 1)},
        "single_reads": single,
        "combined": combined,
    }
    print(f"one read: {result['one_read']}", flush=True)
    record(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
