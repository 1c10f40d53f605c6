"""Would two or more trained CTC models read the test split better together?

    python bench/ctc_ensemble.py --data data/tfrecords --name default_3_seeds \\
        --models models/model.keras seed7/model.keras seed99/model.keras

Each model reads every test captcha (greedy decoding, as `evaluate` does). Then
every text any member read is scored under every member by its CTC likelihood
(all alignments summed, so members need not place their peaks on the same time
steps), and the text with the highest mean likelihood wins ("mixture"; "product"
sums the log-likelihoods instead). For comparison it also averages the members'
per-time-step probabilities before decoding ("frame average"), which assumes the
members align alike. Every subset of two or more members is scored, so a third
model shows what each pair gets. Writes bench/results/ctc_ensemble.json.
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
from captcha_ocr.data import inference_dataset
from captcha_ocr.dataset_info import DataInfo, read_data_info
from captcha_ocr.decoding import ctc_greedy, softmax
from captcha_ocr.decoding import ctc_log_likelihood as text_log_likelihood
from captcha_ocr.evaluation import model_input_spec
from captcha_ocr.models import kind_of
from captcha_ocr.prediction import predict_logits

RESULTS = Path(__file__).parent / "results"


def read_test_split(
    models: list[keras.Model], data: Path, info: DataInfo
) -> tuple[list[np.ndarray], list[str]]:
    """Each model's log-probabilities (batch, time, classes) and the true texts."""
    spec = model_input_spec(models[0], info.max_length)
    for model in models[1:]:
        if model_input_spec(model, info.max_length) != spec:
            raise SystemExit("--models: every model must take the same input size")
    outputs: list[list[np.ndarray]] = [[] for _ in models]
    truths: list[str] = []
    for batch in inference_dataset(data, info, "test", spec, batch_size=256):
        truths.extend(text.decode("utf-8") for text in batch["text"].numpy())
        for index, model in enumerate(models):
            logits = predict_logits(model, batch["image"]).astype(np.float64)
            outputs[index].append(np.log(softmax(logits)))
    return [np.concatenate(parts) for parts in outputs], truths


def greedy_texts(log_probs: np.ndarray, charset: Charset) -> list[str]:
    return [charset.decode(ids) for ids in ctc_greedy(log_probs).ids]


def ctc_log_likelihood(log_probs: np.ndarray, texts: list[str], charset: Charset) -> np.ndarray:
    """log p(text | image) under one model, for row i of log_probs and texts[i]."""
    return text_log_likelihood(log_probs, [charset.encode(text) for text in texts])


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
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--name", required=True, help="the entry's name in the results file")
    parser.add_argument("--out", type=Path, default=RESULTS / "ctc_ensemble.json")
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("--models: at least two")

    models = [keras.models.load_model(path, compile=False) for path in args.models]
    if any(kind_of(model) != "ctc" for model in models):
        parser.error("--models: CTC models only (crnn_ctc)")
    info = read_data_info(args.data)
    charset = info.charset_map()
    log_probs, truths = read_test_split(models, args.data, info)
    readings = [greedy_texts(member, charset) for member in log_probs]

    # Every text a member read, scored under every member.
    candidates = sorted({(row, member[row]) for member in readings for row in range(len(truths))})
    rows = np.array([row for row, _ in candidates])
    texts = [text for _, text in candidates]
    scores = np.stack([ctc_log_likelihood(member[rows], texts, charset) for member in log_probs])

    def combined(members: tuple[int, ...], rule: str) -> list[str]:
        proposed = [
            index
            for index, (row, text) in enumerate(candidates)
            if any(readings[m][row] == text for m in members)
        ]
        picked: dict[int, tuple[float, str]] = {}
        for index in proposed:
            member_scores = scores[list(members), index]
            score = (
                float(np.logaddexp.reduce(member_scores))
                if rule == "mixture"
                else float(member_scores.sum())
            )
            row = int(rows[index])
            if row not in picked or score > picked[row][0]:
                picked[row] = (score, texts[index])
        return [picked[row][1] for row in range(len(truths))]

    result: dict[str, Any] = {
        "data": str(args.data),
        "n_test": len(truths),
        "members": [
            {"model": str(path)} | summary(reading, truths)
            for path, reading in zip(args.models, readings, strict=True)
        ],
        "ensembles": [],
    }
    for size in range(2, len(models) + 1):
        for members in itertools.combinations(range(len(models)), size):
            entry: dict[str, Any] = {"members": list(members)}
            for rule in ("mixture", "product"):
                entry[rule] = summary(combined(members, rule), truths)
            if len({log_probs[m].shape[1] for m in members}) == 1:
                frame_average = np.log(np.mean([np.exp(log_probs[m]) for m in members], axis=0))
                entry["frame_average"] = summary(greedy_texts(frame_average, charset), truths)
            print(entry, flush=True)
            result["ensembles"].append(entry)
    record(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
