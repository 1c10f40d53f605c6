"""Figures for MLflow and DVC image plots (PNG: they render offline, anywhere)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot

import matplotlib.pyplot as plt
import pandas as pd

from captcha_ocr.atomic import atomic_file


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
