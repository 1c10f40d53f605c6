"""Scores of predicted texts against the truth, and where the errors fall.

Characters are compared through a minimal edit alignment (Levenshtein), so a
dropped character counts as one deletion instead of shifting every character
after it into a substitution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MISSING = ""  # the empty side of an insertion or a deletion in an alignment


def align(truth: str, predicted: str) -> list[tuple[str, str]]:
    """Pairs (true, predicted) of a minimal edit; MISSING marks an inserted or deleted side.

    Ties prefer a substitution, then a deletion, so that equal-length strings
    align position by position.
    """
    rows, cols = len(truth), len(predicted)
    cost = np.zeros((rows + 1, cols + 1), dtype=np.int32)
    cost[:, 0] = np.arange(rows + 1)
    cost[0, :] = np.arange(cols + 1)
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            substitution = cost[i - 1, j - 1] + (truth[i - 1] != predicted[j - 1])
            cost[i, j] = min(substitution, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    pairs: list[tuple[str, str]] = []
    i, j = rows, cols
    while i > 0 or j > 0:
        if (
            i > 0
            and j > 0
            and cost[i, j] == cost[i - 1, j - 1] + (truth[i - 1] != predicted[j - 1])
        ):
            pairs.append((truth[i - 1], predicted[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            pairs.append((truth[i - 1], MISSING))
            i -= 1
        else:
            pairs.append((MISSING, predicted[j - 1]))
            j -= 1
    return pairs[::-1]


@dataclass(frozen=True)
class Evaluation:
    summary: dict[str, float | int]
    per_char: pd.DataFrame  # index: true char; columns: occurrences, errors, accuracy
    confusions: pd.DataFrame  # columns: actual, predicted, count; most frequent first
    samples: pd.DataFrame  # one row per sample: truth, predicted, correct, confidence, distance


def evaluate_texts(
    truths: Sequence[str],
    predictions: Sequence[str],
    confidences: Sequence[float] | None = None,
    charset: str | None = None,
    ids: Sequence[str] | None = None,
) -> Evaluation:
    """Every score for aligned lists of true and predicted texts.

    charset, when given, lists every symbol in per_char, those never misread too.
    """
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} truths but {len(predictions)} predictions")
    if not truths:
        raise ValueError("nothing to evaluate: no samples")
    if confidences is None:
        confidences = [float("nan")] * len(truths)

    alignments = [
        align(truth, predicted) for truth, predicted in zip(truths, predictions, strict=True)
    ]
    pairs = pd.DataFrame(
        [pair for alignment in alignments for pair in alignment], columns=["actual", "predicted"]
    )
    samples = pd.DataFrame(
        {
            "id": list(ids) if ids is not None else list(range(len(truths))),
            "truth": list(truths),
            "predicted": list(predictions),
            "confidence": np.asarray(confidences, dtype=float),
            "distance": [sum(t != p for t, p in alignment) for alignment in alignments],
        }
    )
    samples["correct"] = samples["truth"] == samples["predicted"]

    read = pairs[pairs["actual"] != MISSING]
    occurrences = read.groupby("actual").size()
    errors = read[read["actual"] != read["predicted"]].groupby("actual").size()
    symbols = sorted(set(occurrences.index) | set(charset or ""))
    per_char = pd.DataFrame(
        {
            "occurrences": occurrences.reindex(symbols, fill_value=0),
            "errors": errors.reindex(symbols, fill_value=0),
        }
    )
    per_char.index.name = "char"
    per_char["accuracy"] = 1.0 - per_char["errors"] / per_char["occurrences"].where(
        per_char["occurrences"] > 0
    )

    wrong = pairs[pairs["actual"] != pairs["predicted"]]
    confusions = (
        wrong.groupby(["actual", "predicted"])
        .size()
        .rename("count")
        .reset_index()
        .sort_values(["count", "actual", "predicted"], ascending=[False, True, True])
        .reset_index(drop=True)
    )

    total_chars = int(occurrences.sum())
    correct = samples["correct"]
    summary: dict[str, float | int] = {
        "sequence_accuracy": float(correct.mean()),
        "character_accuracy": float(1.0 - errors.sum() / total_chars),
        "character_error_rate": float(samples["distance"].sum() / total_chars),
        "length_accuracy": float(
            (samples["truth"].str.len() == samples["predicted"].str.len()).mean()
        ),
        "n_test": len(samples),
        "n_wrong": int((~correct).sum()),
        "mean_confidence_correct": _mean_or_nan(samples.loc[correct, "confidence"]),
        "mean_confidence_wrong": _mean_or_nan(samples.loc[~correct, "confidence"]),
    }
    return Evaluation(summary=summary, per_char=per_char, confusions=confusions, samples=samples)


def _mean_or_nan(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")
