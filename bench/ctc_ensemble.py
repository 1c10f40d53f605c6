"""Would two or more trained CTC models read a split better together, and
with shifted reads (evaluate.tta_shifts) on top?

    python bench/ctc_ensemble.py --data data/tfrecords --name default_3_seeds \\
        --models models/model.keras seed7/model.keras seed99/model.keras --max-shift 2

Each model reads every captcha of --split, unshifted and (with --max-shift n) shifted
up to n pixels left and right. Members are combined as `evaluate` combines one
model's shifted reads (captcha_ocr.tta): every text any read found is scored under
every read by its CTC likelihood (all alignments summed, so reads need not place
their peaks on the same time steps), and the text with the highest mean likelihood
wins ("mixture"). Unshifted, it also sums the log-likelihoods instead ("product")
and averages the members' per-time-step probabilities before decoding ("frame
average"), which assumes the members align alike. Every member alone and every
subset of two or more is scored at 1, 3, ... 2n+1 reads per model, with how many
of the subset's mistakes every one of its members makes alone ("made by every
member"): mistakes no member avoids are what adding members cannot fix. Writes
bench/results/ctc_ensemble.json.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from results_json import record

from captcha_ocr.charsets import Charset
from captcha_ocr.data import inference_dataset, model_input_spec
from captcha_ocr.dataset_info import DataInfo, read_data_info
from captcha_ocr.decoding import ctc_greedy, softmax
from captcha_ocr.decoding import ctc_log_likelihood as text_log_likelihood
from captcha_ocr.models import kind_of
from captcha_ocr.prediction import predict_logits
from captcha_ocr.tta import combine_reads, shift_images, shift_offsets

RESULTS = Path(__file__).parent / "results"
ROWS_PER_COMBINE = 1000  # bounds the memory of scoring every candidate under every read


def read_split(
    models: list[keras.Model], data: Path, info: DataInfo, split: str, offsets: list[int]
) -> tuple[list[list[np.ndarray]], list[str]]:
    """reads[m][k]: model m's log-probabilities (batch, time, classes) for the split's
    images moved offsets[k] pixels; and the true texts."""
    spec = model_input_spec(models[0], info.max_length)
    for model in models[1:]:
        if model_input_spec(model, info.max_length) != spec:
            raise SystemExit("--models: every model must take the same input size")
    parts: list[list[list[np.ndarray]]] = [[[] for _ in offsets] for _ in models]
    truths: list[str] = []
    for batch in inference_dataset(data, info, split, spec, batch_size=256):
        truths.extend(text.decode("utf-8") for text in batch["text"].numpy())
        images = batch["image"].numpy()
        for index, model in enumerate(models):
            for k, dx in enumerate(offsets):
                logits = predict_logits(model, shift_images(images, dx)).astype(np.float64)
                parts[index][k].append(np.log(softmax(logits)))
    return [[np.concatenate(shift) for shift in member] for member in parts], truths


def greedy_texts(log_probs: np.ndarray, charset: Charset) -> list[str]:
    return [charset.decode(ids) for ids in ctc_greedy(log_probs).ids]


def mixture_texts(reads: list[np.ndarray], charset: Charset) -> list[str]:
    """The reads (same images, same order) combined as evaluate combines shifted reads."""
    texts: list[str] = []
    for start in range(0, len(reads[0]), ROWS_PER_COMBINE):
        rows = slice(start, start + ROWS_PER_COMBINE)
        decoded = combine_reads([read[rows] for read in reads], "ctc")
        texts.extend(charset.decode(ids) for ids in decoded.ids)
    return texts


def product_texts(reads: list[np.ndarray], charset: Charset) -> list[str]:
    """Every text a read found, scored by the sum of its log-likelihoods under all."""
    readings = [greedy_texts(read, charset) for read in reads]
    candidates = sorted(
        {(row, reading[row]) for reading in readings for row in range(len(reading))}
    )
    rows = np.array([row for row, _ in candidates])
    encoded = [charset.encode(text) for _, text in candidates]
    scores = sum(text_log_likelihood(read[rows], encoded) for read in reads)
    best: dict[int, int] = {}
    for index, row in enumerate(rows.tolist()):
        if row not in best or scores[index] > scores[best[row]]:
            best[row] = index
    return [candidates[best[row]][1] for row in range(len(readings[0]))]


def summary(texts: list[str], truths: list[str]) -> dict[str, Any]:
    wrong = [(text, truth) for text, truth in zip(texts, truths, strict=True) if text != truth]
    only_zero_oh = sum(text.replace("O", "0") == truth.replace("O", "0") for text, truth in wrong)
    return {
        "sequence_accuracy": round(1 - len(wrong) / len(truths), 4),
        "n_wrong": len(wrong),
        "n_wrong_only_0O": only_zero_oh,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/tfrecords"))
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--max-shift", type=int, default=0, help="shifted reads per model")
    parser.add_argument("--name", required=True, help="the entry's name in the results file")
    parser.add_argument("--note", default="", help="free text kept with the entry")
    parser.add_argument("--out", type=Path, default=RESULTS / "ctc_ensemble.json")
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("--models: at least two")

    models = [keras.models.load_model(path, compile=False) for path in args.models]
    if any(kind_of(model) != "ctc" for model in models):
        parser.error("--models: CTC models only (crnn_ctc)")
    info = read_data_info(args.data)
    charset = info.charset_map()
    reads, truths = read_split(models, args.data, info, args.split, shift_offsets(args.max_shift))

    def wrong_rows(texts: list[str]) -> set[int]:
        pairs = zip(texts, truths, strict=True)
        return {row for row, (text, truth) in enumerate(pairs) if text != truth}

    result: dict[str, Any] = {
        "data": str(args.data),
        "split": args.split,
        "n": len(truths),
        "note": args.note,
        "members": [{"model": str(path)} for path in args.models],
        "ensembles": [],
    }
    for shifts in range(args.max_shift + 1):
        per_model = 2 * shifts + 1
        # Offsets 0, -1, 1, ...: a model's first 2n+1 reads are its reads with n shifts.
        alone = [mixture_texts(member[:per_model], charset) for member in reads]
        for member, texts in zip(result["members"], alone, strict=True):
            member[f"{per_model}_reads"] = summary(texts, truths)
        for size in range(2, len(models) + 1):
            for members in itertools.combinations(range(len(models)), size):
                texts = mixture_texts([r for m in members for r in reads[m][:per_model]], charset)
                every_member = set.intersection(*(wrong_rows(alone[m]) for m in members))
                entry: dict[str, Any] = {
                    "members": list(members),
                    "reads_per_model": per_model,
                    "mixture": summary(texts, truths)
                    | {"made_by_every_member": len(wrong_rows(texts) & every_member)},
                }
                if shifts == 0:
                    unshifted = [reads[m][0] for m in members]
                    entry["product"] = summary(product_texts(unshifted, charset), truths)
                    if len({read.shape[1] for read in unshifted}) == 1:
                        frame_average = np.log(np.mean(np.exp(unshifted), axis=0))
                        entry["frame_average"] = summary(
                            greedy_texts(frame_average, charset), truths
                        )
                print(entry, flush=True)
                result["ensembles"].append(entry)
    record(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
