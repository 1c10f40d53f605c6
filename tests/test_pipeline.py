"""End to end: the real `dvc repro` and `dvc exp run` in a temporary git repository,
on tiny params, with the MLflow store it fills."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from captcha_ocr import paths, tracking
from tests.conftest import BIN, new_project, run, write_params

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh git repository holding the project, with tiny params, after `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    env = new_project(root)
    started = time.perf_counter()
    first = run([str(BIN / "dvc"), "repro"], root, env)
    print(f"dvc repro on tiny params: {time.perf_counter() - started:.1f} s")
    for stage in ("generate", "import", "tfrecord-convert", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first.stdout, first.stdout
    return root, env


def client_for(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def test_repro_writes_metrics_dvc_can_read(project):
    root, env = project
    scores = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert scores["n_test"] == 48
    # the figures are those of the predictions the stage wrote beside them
    predictions = pd.read_csv(root / "plots" / "evaluate" / "predictions.csv")
    assert scores["sequence_accuracy"] == pytest.approx(predictions["correct"].mean(), abs=0)
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
    # The pipeline's own runs: experiments that other tests run here are tagged.
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if tracking.TAG_DVC_EXPERIMENT not in r.data.tags
    ]
    assert [r.info.status for r in runs] == ["FINISHED"]
    run_ = runs[0]
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
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get(tracking.TAG_DVC_EXPERIMENT) in exp_names
        and r.data.params.get("train.epochs") == "1"
    ]
    assert len(runs) == 1, [r.info.run_name for r in runs]
    newest = runs[0]
    assert newest.info.status == "FINISHED"
    assert newest.info.run_name in exp_names
    assert newest.data.tags[tracking.TAG_DVC_EXPERIMENT] == newest.info.run_name
    assert newest.data.params["train.epochs"] == "1"


def test_oversample_can_be_set_with_dvc_exp_run(project):
    # DVC hashes a stage's params with sorted keys: a mapping keyed by symbol
    # ({0: 4, O: 4}: an int and a str key) failed before the stage ran.
    # --temp runs it in a copy of the project, and `generate` stops it there.
    root, env = project
    overrides = ["-S", "generate.oversample.symbols=0O", "-S", "generate.oversample.factor=4"]
    done = run([str(BIN / "dvc"), "exp", "run", "--temp", "generate", *overrides], root, env)
    assert "Running stage 'generate'" in done.stdout, done.stdout


def test_queued_experiments_each_log_a_run_in_the_workspace_store(project):
    # Given two experiments queued with different values
    root, env = project
    for rate in ("0.0025", "0.0035"):
        run(
            [str(BIN / "dvc"), "exp", "run", "--queue", "-S", f"train.learning_rate={rate}"],
            root,
            env,
        )
    # When the queue runs them (each in a temporary copy under .dvc/tmp/exps)
    run([str(BIN / "dvc"), "queue", "start", "--jobs", "1"], root, env)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        status = run([str(BIN / "dvc"), "queue", "status"], root, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Failed" not in status and "Queued" not in status and "Running" not in status, status
    # Then each has its own finished MLflow run, named after it, in the workspace's store
    names = set(run([str(BIN / "dvc"), "exp", "list", "--name-only"], root, env).stdout.split())
    client = client_for(root)
    experiment = client.get_experiment_by_name("captcha-ocr")
    queued = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.params.get("train.learning_rate") in ("0.0025", "0.0035")
    ]
    assert len(queued) == 2, [r.info.run_name for r in queued]
    for mlflow_run in queued:
        assert mlflow_run.info.status == "FINISHED"
        assert mlflow_run.info.run_name in names, (mlflow_run.info.run_name, names)
        assert mlflow_run.data.tags[tracking.TAG_DVC_EXPERIMENT] == mlflow_run.info.run_name
        assert "test/sequence_accuracy" in mlflow_run.data.metrics
    # and dvc exp show lists them side by side with their params and metrics
    table = run([str(BIN / "dvc"), "exp", "show", "--csv"], root, env).stdout
    assert "train.learning_rate" in table and "sequence_accuracy" in table
    for mlflow_run in queued:
        assert mlflow_run.info.run_name in table


def test_mlflow_ui_serves_the_run_its_metrics_and_artifacts(project):
    import urllib.parse
    import urllib.request

    from tests.test_mlflow_server import running_server

    root, _ = project
    run_id = json.loads((root / "models" / paths.RUN_FILE).read_text())["run_id"]
    store = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    with running_server("ui", store, root / "ui.log") as url:

        def get(endpoint: str, **query: str) -> bytes:
            address = f"{url}{endpoint}"
            if query:
                address += f"?{urllib.parse.urlencode(query)}"
            with urllib.request.urlopen(address, timeout=30) as response:
                assert response.status == 200, address
                return response.read()

        assert b"<html" in get("/").lower()  # the UI itself
        run_json = json.loads(get("/ajax-api/2.0/mlflow/runs/get", run_id=run_id))
        metrics = {m["key"]: m["value"] for m in run_json["run"]["data"]["metrics"]}
        assert {"test/sequence_accuracy", "val_loss", "learning_rate", "errors/A"} <= set(metrics)
        history = json.loads(
            get("/ajax-api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="val_loss")
        )
        epochs = int(metrics["epochs_run"])
        assert [m["step"] for m in history["metrics"]] == list(range(1, epochs + 1))
        listed = json.loads(get("/ajax-api/2.0/mlflow/artifacts/list", run_id=run_id, path="plots"))
        assert "plots/mistakes.png" in {f["path"] for f in listed["files"]}
        png = get("/get-artifact", path="plots/confusion_heatmap.png", run_uuid=run_id)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        table = get("/get-artifact", path="evaluate/char_errors.csv", run_uuid=run_id)
        assert table.startswith(b"char,occurrences,errors,accuracy")


def test_offline_plots_page_loads_no_remote_script(project, tmp_path):
    import re

    from captcha_ocr import plot_template

    root, env = project
    template = tmp_path / "offline.html"
    assert plot_template.main([str(template)]) == 0
    out = tmp_path / "plots"
    run(
        [str(BIN / "dvc"), "plots", "show", "--html-template", str(template), "-o", str(out)],
        root,
        env,
    )
    page = (out / "index.html").read_text()
    assert "vegaEmbed(" in page and "Errors per true character" in page
    # every <script> is inline: nothing to fetch from a CDN
    assert not re.findall(r"<script[^>]*\bsrc=", page), re.findall(r"<script[^>]*>", page)
    assert "cdn.jsdelivr" not in page
