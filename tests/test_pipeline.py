"""End to end: the real `dvc repro` and `dvc exp run` in a temporary git repository,
on tiny params, with the MLflow store it fills."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from captcha_ocr import tracking
from tests.conftest import REPO_ROOT, write_params

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
# What a clone holds that the pipeline needs; outputs and the store are not copied.
PROJECT_FILES = [
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    "mlruns/.gitignore",
    "stages",
    "src",
]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh git repository holding the project, with tiny params, after `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        source, target = REPO_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, target)
    write_params(root / "params.yaml")
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
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@example.com"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "project"],
    ):
        run(command, root, env)
    started = time.perf_counter()
    first = run([str(BIN / "dvc"), "repro"], root, env)
    print(f"dvc repro on tiny params: {time.perf_counter() - started:.1f} s")
    for stage in ("generate", "tfrecord-convert", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first.stdout, first.stdout
    return root, env


def client_for(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def test_repro_writes_metrics_dvc_can_read(project):
    root, env = project
    scores = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert scores["n_test"] == 48
    assert 0.0 <= scores["sequence_accuracy"] <= 1.0
    assert 0.0 <= scores["character_accuracy"] <= 1.0
    assert scores["character_error_rate"] >= 0.0
    shown = json.loads(run([str(BIN / "dvc"), "metrics", "show", "--json"], root, env).stdout)
    flat = json.dumps(shown)
    assert "sequence_accuracy" in flat and "char_errors" in flat
    assert (root / "dvc.lock").is_file()


def test_plots_are_declared_and_render(project):
    root, env = project
    shown = json.loads(run([str(BIN / "dvc"), "plots", "show", "--json"], root, env).stdout)
    assert not shown.get("errors"), shown["errors"]
    rows = {
        plot_id: sum(
            len(entry.get("content", {}).get("data", {}).get("values", [])) for entry in entries
        )
        for plot_id, entries in shown["data"].items()
    }
    # Two epochs of history, 36 characters, and every declared plot has data
    assert rows["Loss"] == 4 and rows["Learning rate"] == 2
    assert rows["Errors per true character"] == 36
    assert "Misread characters (actual vs predicted)" in rows
    assert shown["data"]["plots/evaluate/char_errors.png"][0]["type"] == "image"


def test_second_repro_reruns_nothing(project):
    root, env = project
    started = time.perf_counter()
    again = run([str(BIN / "dvc"), "repro"], root, env)
    print(f"dvc repro no-op: {time.perf_counter() - started:.2f} s")
    assert "Running stage" not in again.stdout, again.stdout
    assert "Data and pipelines are up to date" in again.stdout


def test_one_changed_param_makes_only_its_stages_stale(project):
    root, env = project
    original = (root / "params.yaml").read_text()
    try:
        write_params(root / "params.yaml", {"evaluate": {"batch_size": 7}})
        stale = json.loads(run([str(BIN / "dvc"), "status", "--json"], root, env).stdout)
        assert set(stale) == {"evaluate"}, stale
        # `dvc status` names the stages whose own deps changed; the ones after
        # them rerun only if their inputs then change.
        write_params(root / "params.yaml", {"train": {"epochs": 3}})
        stale = json.loads(run([str(BIN / "dvc"), "status", "--json"], root, env).stdout)
        assert set(stale) == {"train"}, stale
        write_params(root / "params.yaml", {"tfrecord": {"compression": "gzip"}})
        stale = json.loads(run([str(BIN / "dvc"), "status", "--json"], root, env).stdout)
        assert set(stale) == {"tfrecord-convert"}, stale
    finally:
        (root / "params.yaml").write_text(original)


def test_store_holds_one_finished_run_with_everything(project):
    root, _ = project
    client = client_for(root)
    experiment = client.get_experiment_by_name("captcha-ocr")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    run_ = runs[0]
    assert (
        run_.info.run_id == json.loads((root / "models" / tracking.RUN_FILE).read_text())["run_id"]
    )
    assert run_.data.params["train.epochs"] == "2"
    assert run_.data.tags[tracking.TAG_GIT_COMMIT]  # the temporary repository's commit
    assert [m.step for m in client.get_metric_history(run_.info.run_id, "learning_rate")] == [1, 2]
    assert "errors/0" in run_.data.metrics and "test/sequence_accuracy" in run_.data.metrics
    models = client.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"source_run_id = '{run_.info.run_id}'",
    )
    assert len(models) == 1
    # Artifacts live in the project's store, not wherever the stage ran.
    assert run_.info.artifact_uri.startswith((root / "mlruns").as_uri())


def test_experiment_gets_its_own_run_named_after_it(project):
    root, env = project
    done = run([str(BIN / "dvc"), "exp", "run", "-S", "train.epochs=1"], root, env)
    names = json.loads(run([str(BIN / "dvc"), "exp", "show", "--json"], root, env).stdout)
    experiments = [exp for entry in names for exp in (entry.get("experiments") or [])]
    exp_names = {exp.get("name") for exp in experiments}
    assert exp_names, done.stdout
    client = client_for(root)
    experiment = client.get_experiment_by_name("captcha-ocr")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    assert len(runs) == 2
    newest = runs[0]
    assert newest.info.status == "FINISHED"
    assert newest.info.run_name in exp_names
    assert newest.data.tags[tracking.TAG_DVC_EXPERIMENT] == newest.info.run_name
    assert newest.data.params["train.epochs"] == "1"
