"""Draw time-to-accuracy curves from bench/results/time_to_accuracy.json: validation
whole-captcha accuracy (the fixed 1,000-captcha sample time_to_accuracy.py probes)
against training minutes, one line per named entry.

    python bench/plot_time_to_accuracy.py --out bench/results/time_to_accuracy.png \
        --name default_32x128_80k_900s_dense128=default --name cnn_multihead_32x128_80k_900s

Each --name may carry a label for the legend: `--name entry=label`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines or servers
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"


def draw(results: dict, names: list[tuple[str, str]], out: Path) -> None:
    """One line per (entry, label), accuracy in percent against training minutes."""
    figure, axes = plt.subplots(figsize=(7, 5))
    for name, label in names:
        curve = results[name]["curve"]
        minutes = [0.0] + [point["seconds"] / 60 for point in curve]
        accuracy = [0.0] + [100 * point["val_sequence_accuracy"] for point in curve]
        axes.plot(minutes, accuracy, marker="o", markersize=3, label=label)
    axes.set_xlabel("training minutes (2 CPU cores)")
    axes.set_ylabel("whole-captcha accuracy, % (1,000 validation captchas)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    # Below the axes: any spot inside hides the end of some curve.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS / "time_to_accuracy.json")
    parser.add_argument("--name", action="append", required=True, dest="names")
    parser.add_argument("--out", type=Path, default=RESULTS / "time_to_accuracy.png")
    args = parser.parse_args(argv)
    names = [tuple(item.partition("=")[::2]) for item in args.names]
    names = [(name, label or name) for name, label in names]
    results = json.loads(args.results.read_text())
    for name, _ in names:
        if name not in results:
            parser.error(f"--name {name}: no such entry in {args.results}")
    draw(results, names, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
