"""The names of what the stages write and where, by default, it lies: one home for
them (dvc.yaml passes the same folders to the stages explicitly)."""

from __future__ import annotations

from pathlib import Path

PARAMS_FILE = Path("params.yaml")
TFRECORD_DIR = Path("data/tfrecords")
MODEL_DIR = Path("models")

MODEL_FILE = "model.keras"  # in MODEL_DIR: the best epoch's model
RUN_FILE = "mlflow_run.json"  # in MODEL_DIR: the MLflow run train started
PENDING_FILE = "mlflow_pending.json"  # in MODEL_DIR: what a gone tracking server missed
