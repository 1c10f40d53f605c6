"""Figures for MLflow and DVC image plots (PNG: they render offline, anywhere)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot

import matplotlib.pyplot as plt
import pandas as pd

from captcha_ocr.atomic import atomic_file
from captcha_ocr.metrics import align


def _save(figure: plt.Figure, path: Path) -> None:
    with atomic_file(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def training_curves(history: pd.DataFrame, path: Path) -> None:
    """Loss, validation accuracy and learning rate per epoch, one panel each."""
    figure, (loss_axis, accuracy_axis, rate_axis) = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = history["epoch"]
    for column in ("loss", "val_loss"):
        if column in history:
            loss_axis.plot(epochs, history[column], marker="o", label=column)
    loss_axis.set(title="CTC loss", xlabel="epoch", yscale="log")
    loss_axis.legend()
    for column in ("val_sequence_accuracy", "val_character_accuracy"):
        if column in history:
            accuracy_axis.plot(epochs, history[column], marker="o", label=column)
    accuracy_axis.set(title="validation accuracy", xlabel="epoch", ylim=(0, 1.01))
    accuracy_axis.legend()
    if "learning_rate" in history:
        rate_axis.step(epochs, history["learning_rate"], where="mid", marker="o")
    rate_axis.set(title="learning rate", xlabel="epoch", yscale="log")
    for axis in (loss_axis, accuracy_axis, rate_axis):
        axis.grid(alpha=0.3)
    _save(figure, path)


def char_errors(per_char: pd.DataFrame, path: Path) -> None:
    """Errors per true character, the most misread first."""
    ordered = per_char.sort_values("errors", ascending=False)
    figure, axis = plt.subplots(figsize=(max(6, 0.22 * len(ordered)), 3.4))
    axis.bar(ordered.index.astype(str), ordered["errors"], color="tab:red")
    axis.set(title="test errors per true character", xlabel="character", ylabel="misread")
    axis.grid(axis="y", alpha=0.3)
    _save(figure, path)


def confusion_heatmap(matrix: pd.DataFrame, path: Path, missing_label: str = "∅") -> None:
    """Misreads only (the diagonal blanked), for the characters involved in any."""
    import numpy as np

    errors = matrix.to_numpy(dtype=float).copy()
    np.fill_diagonal(errors[:, : min(errors.shape)], 0.0)
    rows = errors.sum(axis=1) > 0
    cols = errors.sum(axis=0) > 0
    figure, axis = plt.subplots(figsize=(7, 6))
    if not rows.any():
        axis.text(0.5, 0.5, "no misreads", ha="center", va="center", fontsize=14)
        axis.set_axis_off()
    else:
        shown = errors[np.ix_(rows, cols)]
        image = axis.imshow(shown, cmap="Reds")
        labels = [str(label) or missing_label for label in matrix.index]
        columns = [str(label) or missing_label for label in matrix.columns]
        axis.set_xticks(
            range(shown.shape[1]), [c for c, keep in zip(columns, cols, strict=True) if keep]
        )
        axis.set_yticks(
            range(shown.shape[0]), [r for r, keep in zip(labels, rows, strict=True) if keep]
        )
        axis.set(xlabel="predicted", ylabel="actual", title="misread characters (count)")
        for (y, x), count in np.ndenumerate(shown):
            if count:
                axis.text(x, y, int(count), ha="center", va="center", fontsize=7)
        figure.colorbar(image, ax=axis, shrink=0.8)
    _save(figure, path)


def _spelled(symbol: str) -> str:
    """'digit 0', 'letter O', 'lower o', or ∅ for nothing."""
    if not symbol:
        return "∅"
    kind = "digit" if symbol.isdigit() else "lower" if symbol.islower() else "letter"
    return f"{kind} {symbol}" if symbol.isalnum() else symbol


def mistakes_gallery(images: list, rows: pd.DataFrame, path: Path, columns: int = 4) -> None:
    """The given mistakes as a grid: each image with truth, prediction and confidence.

    images: arrays (height, width, channels) in [0, 1] or uint8, one per row of `rows`.
    """
    count = max(1, len(images))
    grid_rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(
        grid_rows, columns, figsize=(3.2 * columns, 1.8 * grid_rows), squeeze=False
    )
    for axis in axes.flat:
        axis.set_axis_off()
    for axis, image, row in zip(axes.flat, images, rows.itertuples(), strict=False):
        axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        # Spell the misreads out: in most fonts 0/O or 1/I look alike in a title.
        misreads = ", ".join(
            f"{_spelled(actual)}→{_spelled(read)}"
            for actual, read in align(row.truth, row.predicted)
            if actual != read
        )
        axis.set_title(
            f"{row.truth} read {row.predicted or '∅'} ({row.confidence:.2f})\n{misreads}",
            fontsize=8,
            color="darkred",
            family="monospace",
        )
    if not images:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
    figure.suptitle("most confident mistakes: truth, reading (confidence), misreads", fontsize=10)
    _save(figure, path)
