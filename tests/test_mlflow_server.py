"""The same pipeline run, logged through a real `mlflow server` process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from captcha_ocr import tracking
from stages import evaluate, train
from tests.test_train_evaluate import stage_args

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(
    subcommand: str, store_uri: str, log_path: Path, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """Start `mlflow server` or `mlflow ui` on a free 127.0.0.1 port, wait for /health,
    and stop it and its workers afterwards."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"), subcommand,
        "--backend-store-uri", store_uri, *extra,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log_path.open("w") as log:
        # Its own process group: the server forks workers, and stopping the parent
        # alone leaves them behind.
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mlflow {subcommand} did not start:\n{log_path.read_text()}"
                    )
                time.sleep(0.5)
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    artifacts = ("--artifacts-destination", str(tmp_path / "server-artifacts"))
    store = f"sqlite:///{tmp_path / 'server.db'}"
    with running_server("server", store, tmp_path / "server.log", artifacts) as url:
        yield url


def test_pipeline_run_through_a_tracking_server(
    tiny_dataset, isolated_mlflow, mlflow_server, monkeypatch
):
    # Given MLFLOW_TRACKING_URI pointing at the server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    root = isolated_mlflow
    args = stage_args(tiny_dataset, root)
    # When train and evaluate run
    assert train.main(args["train"]) == 0
    assert evaluate.main(args["evaluate"]) == 0
    # Then nothing went to a local store, and the server holds one finished run
    assert not (root / "mlruns").exists()
    reference = json.loads((root / "models" / tracking.RUN_FILE).read_text())
    assert reference["tracking_uri"] == mlflow_server
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("captcha-ocr")
    runs = client.search_runs([experiment.experiment_id])
    assert [run.info.status for run in runs] == ["FINISHED"]
    run = runs[0]
    assert run.info.run_id == reference["run_id"]
    assert "test/sequence_accuracy" in run.data.metrics and "errors/Z" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    # and artifacts went through the server's proxy into its destination
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    downloaded = client.download_artifacts(run.info.run_id, "evaluate/char_errors.csv", str(root))
    assert Path(downloaded).read_text().startswith("char,occurrences,errors,accuracy")
    models = client.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
    )
    assert len(models) == 1
