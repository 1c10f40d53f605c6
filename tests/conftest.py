"""Shared fixtures: tiny params, a tiny dataset built once, an isolated MLflow store."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What a clone holds that the pipeline needs; outputs and the store are not copied.
PROJECT_FILES = [
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    "mlruns/.gitignore",
    "captchas",
    "stages",
    "src",
]

# TensorFlow's C++ start-up notices drown test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tiny_params() -> dict[str, Any]:
    """The repository's params.yaml shrunk to seconds of work: a few hundred small
    images, a model with a few thousand weights, two epochs."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["generate"].update(
        image_width=96, image_height=32, splits={"train": 160, "val": 48, "test": 48}, workers=2
    )
    params["tfrecord"]["shard_size"] = 64
    params["model"]["crnn_ctc"].update(
        conv_filters=[8, 16], pool_widths=[2, 1], rnn_units=[16], dense_units=16
    )
    # min_steps_per_epoch 0: one pass an epoch (5 steps), not the 600 a small set gets
    params["train"].update(epochs=2, batch_size=32, shuffle_buffer=256, min_steps_per_epoch=0)
    params["evaluate"]["batch_size"] = 64
    return params


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_params(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump(merge(tiny_params(), overrides or {}), sort_keys=False))
    return path


def run(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run a command that must succeed; its output is the failure message if not."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def stop_after_first_epoch(training: subprocess.Popen, checkpoints: Path) -> int:
    """SIGTERM a train stage once its backup holds a finished epoch; that epoch count.
    The stage must have failed (stopped), whatever it printed."""
    metadata = checkpoints / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 120
    while not metadata.exists() and training.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metadata.exists(), training.communicate()[0]
    training.send_signal(signal.SIGTERM)
    output = training.communicate(timeout=60)[0]
    assert training.returncode != 0, output
    return json.loads(metadata.read_text())["epoch"]


def new_project(root: Path, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """A fresh git repository at root holding the project with tiny params, one commit;
    returns the environment its commands run in (this copy's code, no inherited store)."""
    for name in PROJECT_FILES:
        source, target = REPO_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, target)
    write_params(root / "params.yaml", overrides)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "PYTHONPATH")
    }
    # The stages run this copy's code, as they would in a clone.
    env.update(
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
        PYTHONPATH=str(root / "src"),
        TF_CPP_MIN_LOG_LEVEL="2",
        CI="1",
    )
    for command in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "test@example.com"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "project"],
    ):
        run(command, root, env)
    return env


@pytest.fixture(autouse=True)
def mlflow_tracking_uri_restored() -> Iterator[None]:
    """A stage run in-process calls mlflow.set_tracking_uri, which sets a process-wide
    URI that wins over MLFLOW_TRACKING_URI (and sets that variable too): left in place,
    a later test's MlflowClient() would read the earlier test's store. Put both back."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # back to the environment; unsets the variable
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run in tmp_path with no tracking URI or DVC root inherited from the caller:
    the project's default store is then tmp_path/mlruns."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated once per session: params.yaml, data/raw and data/tfrecords."""
    return build_dataset(tmp_path_factory.mktemp("tiny-dataset"))


@pytest.fixture(scope="session")
def tiny_fixed_length_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """As tiny_dataset, with 4 characters in the train split too: multi-head models
    read one length."""
    return build_dataset(
        tmp_path_factory.mktemp("tiny-fixed-length-dataset"),
        {"generate": {"train_lengths": None}},
    )


def build_dataset(root: Path, overrides: dict[str, Any] | None = None) -> dict[str, Path]:
    from stages import generate, tfrecord_convert

    params = write_params(root / "params.yaml", overrides)
    raw, tfrecords = root / "data" / "raw", root / "data" / "tfrecords"
    assert generate.main(["--params", str(params), "--out", str(raw)]) == 0
    assert (
        tfrecord_convert.main(["--params", str(params), "--raw", str(raw), "--out", str(tfrecords)])
        == 0
    )
    return {"root": root, "params": params, "raw": raw, "tfrecords": tfrecords}


def bomb_png(width: int, height: int) -> bytes:
    """A real grayscale PNG of one colour: width x height pixels in a few hundred
    kilobytes, as a decompression bomb is made. Rows are compressed as they are made,
    so building it needs no more memory than a row."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * width  # filter byte, then white pixels
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
