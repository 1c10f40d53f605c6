"""MLflow pieces on a real SQLite store: the champion alias and the compare table."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from captcha_ocr import compare, tracking
from captcha_ocr.params import MLflowParams
from tests.conftest import REPO_ROOT, write_params


@contextlib.contextmanager
def mock_env(**variables: str):
    """Environment variables set for a block (MLflow reads them at call time)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in variables.items():
            patch.setenv(name, value)
        yield


def log_tiny_model() -> str:
    """A (tiny, untrained) Keras model logged into the active run; its model URI."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    return mlflow.keras.log_model(model, name="model", pip_requirements=["keras"]).model_uri


def logged_run(experiment_id: str, accuracy: float, name: str) -> str:
    """A finished run that logged a model and a test accuracy; the model's URI."""
    with tracking.run_context(experiment_id, run_name=name):
        model_uri = log_tiny_model()
        mlflow.log_metric("test/sequence_accuracy", accuracy)
        mlflow.log_params({"model.arch": "crnn_ctc", "train.epochs": 3})
    return model_uri


def test_champion_moves_only_when_test_accuracy_improves(isolated_mlflow):
    experiment_id = tracking.configure(MLflowParams())
    client = MlflowClient()
    first = logged_run(experiment_id, 0.5, "first")
    outcome = tracking.register_champion(first, "captchas", 0.5)
    assert outcome["promoted"] and outcome["version"] == 1

    worse = logged_run(experiment_id, 0.4, "worse")
    outcome = tracking.register_champion(worse, "captchas", 0.4)
    assert (outcome["version"], outcome["champion"], outcome["promoted"]) == (2, 1, False)
    assert int(client.get_model_version_by_alias("captchas", "champion").version) == 1

    better = logged_run(experiment_id, 0.7, "better")
    outcome = tracking.register_champion(better, "captchas", 0.7)
    assert (outcome["version"], outcome["promoted"]) == (3, True)
    champion = client.get_model_version_by_alias("captchas", "champion")
    assert int(champion.version) == 3 and champion.tags["test_sequence_accuracy"] == "0.7"

    # Evaluating the same run again logs its model again, but registers no new version
    run_id = mlflow.models.get_model_info(better).run_id
    with tracking.run_context(experiment_id, run_id=run_id):
        again = tracking.register_champion(log_tiny_model(), "captchas", 0.7)
    assert again["version"] == 3
    assert len(client.search_model_versions("name = 'captchas'")) == 3


def test_compare_lists_runs_best_first(isolated_mlflow, capsys):
    experiment_id = tracking.configure(MLflowParams())
    for name, accuracy in (("low", 0.2), ("high", 0.9), ("mid", 0.6)):
        logged_run(experiment_id, accuracy, name)
    params = write_params(isolated_mlflow / "params.yaml")
    assert compare.main(["--params", str(params), "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | run_id | started |")
    assert "test/sequence_accuracy" in lines[0] and "model.arch" in lines[0]
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["high", "mid", "low"]


def test_compare_says_so_when_there_are_no_runs(isolated_mlflow, capsys):
    params = write_params(isolated_mlflow / "params.yaml")
    assert compare.main(["--params", str(params)]) == 1
    assert "no finished runs" in capsys.readouterr().out


@pytest.mark.parametrize(("symbol", "key"), [("A", "errors/A"), ("@", "errors/U+0040")])
def test_metric_names_are_safe_for_any_symbol(symbol, key):
    from captcha_ocr.evaluation import metric_key

    assert metric_key("errors", symbol) == key


# Several processes on one store (issue 41): real processes, a real SQLite store.

WORKER = REPO_ROOT / "tests" / "store_worker.py"


def run_workers(tmp_path: Path, uri: str, *commands: list[str], delay: float = 8.0) -> list:
    """Start one worker process per command, all acting `delay` seconds from now (their
    imports take a few); their finished processes, output captured."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    start_at = str(time.time() + delay)
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), command[0], start_at, *command[1:]],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in commands
    ]
    for process in processes:
        process.output = process.communicate(timeout=180)[0]
    return processes


def test_processes_creating_a_new_store_at_once_all_succeed(tmp_path: Path):
    # Given four processes that open the same, not yet existing, SQLite store at once
    # (MLflow creates it with a schema migration that two must not run together)
    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    workers = run_workers(tmp_path, uri, *[["create"]] * 4)
    # Then all of them open the one experiment, and the store works afterwards
    outputs = [worker.output for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs
    assert len({output.split()[-1] for output in outputs}) == 1, outputs
    mlflow.set_tracking_uri(uri)
    assert MlflowClient().get_experiment_by_name("captcha-ocr") is not None


def test_two_evaluations_at_once_make_one_champion(tmp_path: Path):
    # Given two processes registering models of equal test accuracy at the same moment
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    workers = run_workers(tmp_path, uri, ["champion", "0.5"], ["champion", "0.5"])
    outputs = "".join(worker.output for worker in workers)
    assert all(worker.returncode == 0 for worker in workers), outputs
    # Then exactly one says it is the champion, and the other that the first stays:
    # equal accuracy does not take the alias
    assert outputs.count("it is the champion now") == 1, outputs
    assert outputs.count("stays champion (0.5000 >= 0.5000)") == 1, outputs
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    champion = client.get_model_version_by_alias("captchas", "champion")
    winner = next(line for line in outputs.splitlines() if "it is the champion now" in line)
    assert f"version {champion.version};" in winner


def test_a_run_whose_process_was_killed_is_ended_by_the_next_stage(tmp_path: Path, capsys):
    # Given a stage process that started a run and was killed with SIGKILL, which no
    # handler can catch (the out-of-memory killer sends it)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    [worker] = run_workers(tmp_path, uri, ["die"], delay=0)
    assert worker.returncode == -signal.SIGKILL and "run started" in worker.output
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name("captcha-ocr")
    [killed] = client.search_runs([experiment.experiment_id])
    assert killed.info.status == "RUNNING"
    # and a run of a live process (this one)
    with mock_env(MLFLOW_TRACKING_URI=uri):
        experiment_id = tracking.configure(MLflowParams())
        with tracking.run_context(experiment_id, run_name="alive") as alive:
            # When the next stage opens the experiment
            tracking.configure(MLflowParams())
            # Then the killed process's run is KILLED, the live one still RUNNING
            assert client.get_run(killed.info.run_id).info.status == "KILLED"
            assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert f"{killed.info.run_name} ({killed.info.run_id}) was left RUNNING" in (
        capsys.readouterr().out
    )


def test_an_unreachable_tracking_server_is_one_line_at_once(isolated_mlflow):
    # Given a tracking URI where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Then opening it fails with one line naming it, not minutes of retries
    with (
        mock_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}"),
        pytest.raises(tracking.TrackingUnavailable, match=f"127.0.0.1:{port}") as raised,
    ):
        tracking.configure(MLflowParams())
    assert "\n" not in str(raised.value) and "ConnectionError" in str(raised.value)


def test_a_sqlite_store_keeps_its_artifacts_beside_its_database(tmp_path: Path, monkeypatch):
    # Given a SQLite store named by the environment, opened from another folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    database = tmp_path / "team" / "mlflow.db"
    with mock_env(MLFLOW_TRACKING_URI=f"sqlite:///{database}"):
        experiment_id = tracking.configure(MLflowParams())
    # Then the experiment's artifacts go beside the database, not into that folder
    location = MlflowClient().get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "team" / "artifacts").as_uri()


def test_git_dirty_is_about_code_and_params_not_the_pipelines_outputs(tmp_path: Path):
    # Given a committed checkout with a pipeline
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    for name in ("dvc.lock", "params.yaml", "metrics/train.json", "plots/train/history.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("committed\n")
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    # When the pipeline rewrites its own tracked outputs, then the tree is not dirty
    for name in ("dvc.lock", "metrics/train.json", "plots/train/history.csv"):
        (tmp_path / name).write_text("rewritten by dvc repro\n")
    assert tracking.git_tags(tmp_path)[tracking.TAG_GIT_DIRTY] == "false"
    # and when params change, it is
    (tmp_path / "params.yaml").write_text("edited\n")
    assert tracking.git_tags(tmp_path)[tracking.TAG_GIT_DIRTY] == "true"
