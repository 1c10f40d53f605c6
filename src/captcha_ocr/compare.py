"""Which run is better: the experiment's runs with their key params and metrics, best first.

    python -m captcha_ocr.compare                 # a plain table
    python -m captcha_ocr.compare --markdown      # for a pull request or a notebook
    python -m captcha_ocr.compare --limit 5 --metric test/character_error_rate --ascending

Reads the store the pipeline writes to (params.yaml's mlflow section, or
MLFLOW_TRACKING_URI) through MLflow's search API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from captcha_ocr import tracking
from captcha_ocr.params import load_params_or_exit

METRICS = (
    "test/sequence_accuracy",
    "test/character_accuracy",
    "test/character_error_rate",
    "best_val_sequence_accuracy",
    "train_seconds",
)
PARAMS = (
    "model.arch",
    "model.input_height",
    "model.input_width",
    "train.epochs",
    "train.learning_rate",
    "train.batch_size",
    "data_info.n_train",
)
TAGS = (tracking.TAG_DVC_EXPERIMENT,)


def runs_table(
    experiment_name: str, metric: str, ascending: bool = False, limit: int = 20
) -> pd.DataFrame:
    """One row per finished run, best first by `metric`."""
    import mlflow

    order = f"metrics.`{metric}` {'ASC' if ascending else 'DESC'}"
    runs = mlflow.search_runs(
        experiment_names=[experiment_name],
        filter_string="attributes.status = 'FINISHED'",
        order_by=[order, "attributes.start_time DESC"],
        max_results=limit,
    )
    if runs.empty:
        return pd.DataFrame()
    table = pd.DataFrame(
        {
            "run": runs["tags.mlflow.runName"],
            "run_id": runs["run_id"].str[:8],
            "started": pd.to_datetime(runs["start_time"]).dt.strftime("%Y-%m-%d %H:%M"),
        }
    )
    for tag in TAGS:
        table[tag] = runs.get(f"tags.{tag}")
    for param in PARAMS:
        table[param] = runs.get(f"params.{param}")
    for name in dict.fromkeys((metric, *METRICS)):
        values = runs.get(f"metrics.{name}")
        table[name] = values.round(4) if values is not None else None
    return table.dropna(axis="columns", how="all")


def to_markdown(table: pd.DataFrame) -> str:
    cells = table.astype(object).where(table.notna(), "").astype(str)
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--metric", default="test/sequence_accuracy", help="rank by this metric")
    parser.add_argument("--ascending", action="store_true", help="lower is better (error rates)")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.params)
    tracking.configure(params.mlflow)
    table = runs_table(params.mlflow.experiment_name, args.metric, args.ascending, args.limit)
    if table.empty:
        print(f"no finished runs in experiment {params.mlflow.experiment_name!r} yet")
        return 1
    print(to_markdown(table) if args.markdown else table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
