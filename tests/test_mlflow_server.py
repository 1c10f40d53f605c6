"""The same pipeline run, logged through a real `mlflow server` process on 127.0.0.1, and
its registered model served by a real `mlflow models serve` process."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from captcha_ocr import paths
from captcha_ocr.data import stored_images
from captcha_ocr.dataset_info import read_data_info
from stages import evaluate, train
from tests.conftest import REPO_ROOT, write_params
from tests.test_train_evaluate import replace_params, stage_args

pytestmark = pytest.mark.integration
MLFLOW = str(Path(sys.executable).parent / "mlflow")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(command: list[str], health_url: str, log_path: Path, env: dict[str, str]):
    """Start a server process, wait until health_url answers 200, and stop it and its
    workers afterwards."""
    with log_path.open("w") as log:
        # Its own process group: the server forks workers, and stopping the parent
        # alone leaves them behind.
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(health_url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[1:3]} did not start:\n{log_path.read_text()}")
                time.sleep(0.5)
            yield server
        finally:
            # The group may be gone already: killed by a test, or failed to start.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)


@contextmanager
def running_server(
    subcommand: str,
    store_uri: str,
    log_path: Path,
    extra: tuple[str, ...] = (),
    started: list[subprocess.Popen] | None = None,
) -> Iterator[str]:
    """Start `mlflow server` or `mlflow ui` on a free 127.0.0.1 port and wait for /health;
    the process is appended to `started`, for a test that kills it."""
    port = free_port()
    command = [
        MLFLOW, subcommand,
        "--backend-store-uri", store_uri, *extra,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    url = f"http://127.0.0.1:{port}"
    with serving(command, f"{url}/health", log_path, env) as server:
        if started is not None:
            started.append(server)
        yield url


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
    reference = json.loads((root / "models" / paths.RUN_FILE).read_text())
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

    # When `mlflow models serve` serves the registered champion, fetched from the server
    port = free_port()
    command = [
        MLFLOW, "models", "serve", "--model-uri", "models:/captcha-ocr@champion",
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    # It starts uvicorn by name: the environment's bin on PATH, as `make` has it.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    info = read_data_info(tiny_dataset["tfrecords"])
    ids, images = zip(*stored_images(tiny_dataset["tfrecords"], info, "test"), strict=True)
    request = {
        "dataframe_split": {
            "columns": ["image"],
            "data": [[base64.b64encode(image).decode("ascii")] for image in images],
        }
    }
    with serving(command, f"http://127.0.0.1:{port}/ping", root / "serve.log", env):
        answer = post_json(f"http://127.0.0.1:{port}/invocations", request)
        not_image = post_json(
            f"http://127.0.0.1:{port}/invocations",
            {"dataframe_split": {"columns": ["image"], "data": [["bm8gaW1hZ2U="]]}},
        )
        too_wide = post_json(
            f"http://127.0.0.1:{port}/invocations",
            {**request, "params": {"beam_width": 100_000}},
        )
    # Then it reads the test captchas' stored bytes, sent as base64 JSON, as evaluate did
    evaluated = pd.read_csv(root / "plots" / "evaluate" / "predictions.csv", keep_default_na=False)
    assert list(ids) == evaluated["id"].tolist()
    assert [row["text"] for row in answer["predictions"]] == evaluated["predicted"].tolist()
    assert [row["confidence"] for row in answer["predictions"]] == pytest.approx(
        evaluated["confidence"].tolist(), rel=1e-3, abs=0
    )
    # and a row that is no image is read as nothing, with the reason
    [row] = not_image["predictions"]
    assert row["text"] == "" and row["error"].startswith("not an image"), row
    # while settings past their bounds are a client error that names the setting and
    # carries no stack trace of the server's
    assert too_wide["status"] == 400 and "beam_width" in too_wide["message"], too_wide
    assert "stack_trace" not in too_wide and "Traceback" not in too_wide["message"]


def post_json(url: str, body: dict) -> dict:
    """The JSON answer to a POST; for an HTTP error, its status and message."""
    request = urllib.request.Request(
        url, json.dumps(body).encode("utf-8"), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return {"status": error.code, **json.loads(error.read())}


def test_training_outlives_its_tracking_server(tiny_dataset, isolated_mlflow, tmp_path):
    root = isolated_mlflow
    store = f"sqlite:///{tmp_path / 'server.db'}"
    server_args = ("--artifacts-destination", str(tmp_path / "server-artifacts"))
    client = MlflowClient(store)  # the server's own store, read directly
    # Given a training long enough to outlive its server (6 epochs of 30 steps)
    params = write_params(
        root / "params.yaml",
        {"train": {"epochs": 6, "min_steps_per_epoch": 30, "early_stopping": {"enabled": False}}},
    )
    args = {
        stage: replace_params(stage_args(tiny_dataset, root)[stage], params)
        for stage in ("train", "evaluate")
    }
    started: list[subprocess.Popen] = []
    with running_server("server", store, tmp_path / "server.log", server_args, started) as url:
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "PYTHONPATH": str(REPO_ROOT)}
        training = subprocess.Popen(
            [sys.executable, "-c", TRAIN, *args["train"]],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # When the server is killed once the first epoch is logged
        run_id = wait_for_logged_epoch(client, training)
        os.killpg(started[0].pid, signal.SIGKILL)
    output = training.communicate(timeout=300)[0]
    # Then training finishes and writes its outputs, saying once what happened
    assert training.returncode == 0, output
    assert (root / "models" / "model.keras").is_file()
    assert output.count("the tracking server stopped answering") == 1, output
    assert "Traceback" not in output
    kept = json.loads((root / "models" / paths.PENDING_FILE).read_text())
    assert kept["run_id"] == run_id
    assert kept["calls"][-1] == {"op": "end", "status": "FINISHED"}
    assert client.get_run(run_id).info.status == "RUNNING"  # the server never heard more
    # and when the server is back, the next stage logs what it missed, once
    with running_server("server", store, tmp_path / "server2.log", server_args) as url:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", url)
            assert evaluate.main(args["evaluate"]) == 0
            assert evaluate.main(args["evaluate"]) == 0
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run_id, "loss")) == 6
        assert "train_seconds" in run.data.metrics
        names = {artifact.path for artifact in MlflowClient(url).list_artifacts(run_id, "plots")}
        assert "plots/training_curves.png" in names


TRAIN = "import sys; from stages import train; sys.exit(train.main(sys.argv[1:]))"


def wait_for_logged_epoch(client: MlflowClient, training: subprocess.Popen) -> str:
    """The id of the run once the server has stored its first epoch's loss."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and training.poll() is None:
        experiment = client.get_experiment_by_name("captcha-ocr")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
            return runs[0].info.run_id
        time.sleep(0.2)
    raise AssertionError(f"no epoch was logged:\n{training.communicate()[0]}")
