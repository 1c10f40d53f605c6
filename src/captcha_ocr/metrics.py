"""Scores of predicted texts against the truth, and where the errors fall.

Characters are compared through a minimal edit alignment (Levenshtein), so a
dropped character counts as one deletion instead of shifting every character
after it into a substitution.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sklearn.metrics

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
    per_char: pd.DataFrame  # index: true char; occurrences, errors, accuracy
    confusions: pd.DataFrame  # actual, predicted, count; most frequent first
    per_position: pd.DataFrame  # index: position (from 1); occurrences, errors, accuracy
    per_length: pd.DataFrame  # index: true length; samples, correct, sequence_accuracy
    confusion_matrix: pd.DataFrame  # rows actual, columns predicted, MISSING included
    samples: pd.DataFrame  # per sample: id, truth, predicted, confidence, distance, correct


def aligned_pairs(truths: Sequence[str], predictions: Sequence[str]) -> pd.DataFrame:
    """One row per aligned pair: sample index, position in the truth (from 1; 0 for
    an inserted character), actual, predicted."""
    rows = []
    for sample, (truth, predicted) in enumerate(zip(truths, predictions, strict=True)):
        position = 0
        for actual, read in align(truth, predicted):
            if actual != MISSING:
                position += 1
            rows.append((sample, position if actual != MISSING else 0, actual, read))
    return pd.DataFrame(rows, columns=["sample", "position", "actual", "predicted"])


def _accuracy_table(frame: pd.DataFrame, by: str, index: list | None = None) -> pd.DataFrame:
    """occurrences, errors and accuracy of the true characters in `frame`, grouped by `by`."""
    wrong = frame["actual"] != frame["predicted"]
    table = pd.DataFrame(
        {
            "occurrences": frame.groupby(by).size(),
            "errors": frame[wrong].groupby(by).size(),
        }
    )
    if index is not None:
        table = table.reindex(index)
    table = table.fillna(0).astype(int)
    table["accuracy"] = 1.0 - table["errors"] / table["occurrences"].where(table["occurrences"] > 0)
    return table


def evaluate_texts(
    truths: Sequence[str],
    predictions: Sequence[str],
    confidences: Sequence[float] | None = None,
    charset: str | None = None,
    ids: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> Evaluation:
    """Every score for aligned lists of true and predicted texts.

    charset, when given, lists every symbol in per_char and the confusion matrix,
    those never misread too. sources (generated, imported), when they are more than
    one, add each one's count and whole-captcha accuracy to the summary.
    """
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} truths but {len(predictions)} predictions")
    if not truths:
        raise ValueError("nothing to evaluate: no samples")
    if confidences is None:
        confidences = [float("nan")] * len(truths)

    pairs = aligned_pairs(truths, predictions)
    samples = pd.DataFrame(
        {
            "id": list(ids) if ids is not None else list(range(len(truths))),
            "truth": list(truths),
            "predicted": list(predictions),
            "confidence": np.asarray(confidences, dtype=float),
            "distance": (pairs["actual"] != pairs["predicted"])
            .groupby(pairs["sample"])
            .sum()
            .reindex(range(len(truths)), fill_value=0)
            .to_numpy(),
        }
    )
    samples["correct"] = samples["truth"] == samples["predicted"]
    if sources is not None:
        samples["source"] = list(sources)

    read = pairs[pairs["actual"] != MISSING]
    symbols = sorted(set(read["actual"]) | set(charset or ""))
    per_char = _accuracy_table(read, "actual", symbols)
    per_char.index.name = "char"
    per_position = _accuracy_table(read, "position")

    lengths = samples["truth"].str.len()
    per_length = pd.DataFrame(
        {
            "samples": lengths.groupby(lengths).size(),
            "correct": samples["correct"].groupby(lengths).sum(),
        }
    )
    per_length["sequence_accuracy"] = per_length["correct"] / per_length["samples"]
    per_length.index.name = "length"

    wrong = pairs[pairs["actual"] != pairs["predicted"]]
    confusions = (
        wrong.groupby(["actual", "predicted"])
        .size()
        .rename("count")
        .reset_index()
        .sort_values(["count", "actual", "predicted"], ascending=[False, True, True])
        .reset_index(drop=True)
    )
    labels = [*sorted(set(symbols) | set(pairs["predicted"]) - {MISSING}), MISSING]
    matrix = pd.DataFrame(
        sklearn.metrics.confusion_matrix(pairs["actual"], pairs["predicted"], labels=labels),
        index=pd.Index(labels, name="actual"),
        columns=pd.Index(labels, name="predicted"),
    )

    total_chars = int(per_char["occurrences"].sum())
    correct = samples["correct"]
    # Misreads that only change the case (a/A): telling them apart is the whole
    # difficulty of a 62-symbol charset.
    case_only = (wrong["actual"].str.lower() == wrong["predicted"].str.lower()) & (
        wrong["actual"] != MISSING
    )
    # Captchas with a character next to its copy: CTC reads them only if the model
    # learned to put a blank between the copies (generate.oversample.doubled).
    doubled = samples["truth"].map(lambda text: any(a == b for a, b in itertools.pairwise(text)))
    summary: dict[str, float | int] = {
        "sequence_accuracy": float(correct.mean()),
        "character_accuracy": float(1.0 - per_char["errors"].sum() / total_chars),
        "character_error_rate": float(samples["distance"].sum() / total_chars),
        "length_accuracy": float((lengths == samples["predicted"].str.len()).mean()),
        "n_test": len(samples),
        "n_wrong": int((~correct).sum()),
        "case_confusions": int(case_only.sum()),
        "n_doubled": int(doubled.sum()),
        "doubled_accuracy": _mean_or_nan(correct[doubled]),
        "mean_confidence_correct": _mean_or_nan(samples.loc[correct, "confidence"]),
        "mean_confidence_wrong": _mean_or_nan(samples.loc[~correct, "confidence"]),
    }
    # With data.source mixed, the figure a user wants is the one on their own captchas,
    # which the generated ones would otherwise swamp.
    if sources is not None and samples["source"].nunique() > 1:
        for source, group in samples.groupby("source"):
            summary[f"n_{source}"] = len(group)
            summary[f"{source}_sequence_accuracy"] = float(group["correct"].mean())
    return Evaluation(
        summary=summary,
        per_char=per_char,
        confusions=confusions,
        per_position=per_position,
        per_length=per_length,
        confusion_matrix=matrix,
        samples=samples,
    )


def _mean_or_nan(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")
