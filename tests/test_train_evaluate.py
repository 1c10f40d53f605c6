"""train and evaluate stages on tiny data, logged to a real MLflow SQLite store."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from captcha_ocr import paths, tracking
from captcha_ocr.checkpoints import Checkpoints
from captcha_ocr.data import input_spec, stored_images
from captcha_ocr.dataset_info import hash_files, read_data_info
from captcha_ocr.models import build_model
from captcha_ocr.params import MLflowParams, parse_params
from captcha_ocr.training import TrainingDiverged, fit
from stages import evaluate, train
from tests.conftest import REPO_ROOT, stop_after_first_epoch, tiny_params, write_params

pytestmark = pytest.mark.integration


def stage_args(tiny_dataset, root: Path) -> dict[str, list[str]]:
    common = ["--params", str(tiny_dataset["params"]), "--data", str(tiny_dataset["tfrecords"])]
    return {
        "train": [
            *common,
            "--model-dir",
            str(root / "models"),
            "--checkpoints",
            str(root / ".checkpoints" / "train"),
            "--metrics",
            str(root / "metrics" / "train.json"),
            "--history",
            str(root / "plots" / "train" / "history.csv"),
        ],
        "evaluate": [
            *common,
            "--model-dir",
            str(root / "models"),
            "--metrics",
            str(root / "metrics" / "evaluate.json"),
            "--plots",
            str(root / "plots" / "evaluate"),
        ],
    }


def store_client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def only_run(client: MlflowClient):
    experiment = client.get_experiment_by_name("captcha-ocr")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [run.info.status for run in runs]
    return runs[0]


@dataclass
class Pipeline:
    """One tiny train + evaluate, shared by the tests that read what it left."""

    root: Path
    warning: str  # what train printed on stderr
    reference: dict[str, str]  # models/mlflow_run.json
    train_status: str  # the run's status between the two stages
    train_stage_tag: str
    client: MlflowClient

    @property
    def scores(self) -> dict:
        return json.loads((self.root / "metrics" / "evaluate.json").read_text())

    @property
    def evaluated(self) -> pd.DataFrame:
        path = self.root / "plots" / "evaluate" / "predictions.csv"
        return pd.read_csv(path, keep_default_na=False)


@pytest.fixture(scope="module")
def pipeline(tiny_dataset, tmp_path_factory) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("pipeline")
    args = stage_args(tiny_dataset, root)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
            patch.delenv(name, raising=False)
        patch.chdir(root)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            assert train.main(args["train"]) == 0
        reference = json.loads((root / "models" / paths.RUN_FILE).read_text())
        client = store_client(root)
        trained = client.get_run(reference["run_id"])
        assert evaluate.main(args["evaluate"]) == 0
        # The store as the reader tests load from it, by alias
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
        yield Pipeline(
            root,
            stderr.getvalue(),
            reference,
            trained.info.status,
            trained.data.tags[tracking.TAG_PIPELINE_STAGE],
            client,
        )


def test_train_warns_that_a_few_steps_are_too_few_naming_the_knob(pipeline):
    assert "optimizer steps in all" in pipeline.warning, pipeline.warning
    assert "Raise train.epochs" in pipeline.warning, pipeline.warning


def test_train_writes_its_model_run_reference_metrics_and_history_and_ends_its_run(pipeline):
    root = pipeline.root
    assert (root / "models" / "model.keras").is_file()
    history = pd.read_csv(root / "plots" / "train" / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert {"loss", "val_loss", "learning_rate", "val_sequence_accuracy"} <= set(history.columns)
    trained = json.loads((root / "metrics" / "train.json").read_text())
    assert trained["epochs_run"] == 2 and trained["best_epoch"] in (1, 2)
    assert trained["callbacks"]["early_stopping"]["stopped_early"] is False
    # train ends its run; evaluate reopens it
    assert (pipeline.train_status, pipeline.train_stage_tag) == ("FINISHED", "train")


def test_evaluate_writes_the_metrics_dvc_reads_and_its_tables(pipeline):
    scores = pipeline.scores
    expected = {"sequence_accuracy", "character_accuracy", "character_error_rate", "n_test"}
    assert expected <= set(scores)
    assert scores["n_test"] == 48
    assert scores["sequence_accuracy"] == pytest.approx(pipeline.evaluated["correct"].mean(), abs=0)
    assert len(scores["char_errors"]) == 36
    for name in ("char_errors.csv", "confusions.csv", "misreads.csv", "predictions.csv",
                 "char_errors.png"):  # fmt: skip
        assert (pipeline.root / "plots" / "evaluate" / name).is_file(), name


def test_one_finished_run_holds_params_tags_and_per_epoch_metrics(pipeline):
    client = pipeline.client
    run = only_run(client)
    assert run.info.run_id == pipeline.reference["run_id"]
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["train.learning_rate"] == "0.002"
    assert params["model.crnn_ctc.conv_filters"] == "[8, 16]"
    assert params["train.early_stopping.patience"] == "3"
    assert params["evaluate.decoder"] == "greedy"
    assert params["data_info.n_train"] == "160"
    assert (params["train.replicas"], params["train.workers"]) == ("1", "1")
    assert tags[tracking.TAG_DATA_HASH] and tags[tracking.TAG_MODEL_FAMILY] == "crnn_ctc"
    assert tags[tracking.TAG_PIPELINE_STAGE] == "evaluate"
    for key in ("loss", "val_loss", "learning_rate", "val_sequence_accuracy"):
        steps = [point.step for point in client.get_metric_history(run.info.run_id, key)]
        assert steps == [1, 2], key


def test_the_run_holds_test_figures_callbacks_tables_and_plots(pipeline):
    client, scores = pipeline.client, pipeline.scores
    run = only_run(client)
    metrics = run.data.metrics
    assert metrics["test/sequence_accuracy"] == scores["sequence_accuracy"]
    assert metrics["errors/A"] == scores["char_errors"]["A"]
    errors = sum(value for key, value in metrics.items() if key.startswith("errors/"))
    assert errors == sum(scores["char_errors"].values())
    assert metrics["test/position_1_accuracy"] == scores["position_accuracy"]["1"]
    assert "test/mean_confidence_wrong" in metrics and "test/case_confusions" in metrics
    trained = json.loads((pipeline.root / "metrics" / "train.json").read_text())
    assert metrics["callbacks/checkpoint_best_epoch"] == trained["best_epoch"]
    assert "callbacks/lr_reductions" in metrics and "callbacks/stopped_epoch" in metrics
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"callbacks.json", "training_log.csv", "plots", "evaluate"} <= artifacts
    evaluate_artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "evaluate")}
    for table in ("char_errors", "confusions", "confusion_matrix", "per_position", "per_length",
                  "predictions"):  # fmt: skip
        assert f"evaluate/{table}.csv" in evaluate_artifacts, table
    images = {item.path for item in client.list_artifacts(run.info.run_id, "plots")}
    assert images == {
        f"plots/{name}.png"
        for name in ("training_curves", "char_errors", "confusion_heatmap", "mistakes")
    }
    callbacks_json = client.download_artifacts(
        run.info.run_id, "callbacks.json", str(pipeline.root)
    )
    assert json.loads(Path(callbacks_json).read_text())["checkpoint"]["monitor"] == "val_loss"


def test_the_run_holds_the_data_as_a_dataset_input(pipeline, tiny_dataset):
    run = only_run(pipeline.client)
    inputs = run.inputs.dataset_inputs
    contexts = {
        tag.value for entry in inputs for tag in entry.tags if tag.key == "mlflow.data.context"
    }
    assert contexts == {"training"}
    # named for every length the data holds: the default train split draws 3 to 6
    assert inputs[0].dataset.name == "captchas-generated-36sym-3to6ch-96x32"
    assert any(tag.key == "n_train" and tag.value == "160" for tag in inputs[0].tags)
    assert run.data.tags[tracking.TAG_DATA_HASH].startswith(inputs[0].dataset.digest)
    info = json.loads((tiny_dataset["tfrecords"] / "data_info.json").read_text())
    assert info["splits"]["train"]["sha256"]


def test_the_reader_is_logged_with_its_signature_and_registered_as_champion(pipeline):
    client = pipeline.client
    run = only_run(client)
    champion = client.get_model_version_by_alias("captcha-ocr", "champion")
    assert champion.run_id == run.info.run_id  # the first version is the champion
    assert float(champion.tags["test_sequence_accuracy"]) == pipeline.scores["sequence_accuracy"]
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
    )
    assert len(models) == 1
    signature = mlflow.models.get_model_info(models[0].model_uri).signature
    assert signature.inputs.input_names() == ["image"]
    assert signature.outputs.input_names() == ["text", "confidence", "error"]
    defaults = {param.name: param.default for param in signature.params.params}
    assert defaults == {"decoder": "greedy", "beam_width": 10, "tta_shifts": 2}
    model_files = os.listdir(mlflow.artifacts.download_artifacts(models[0].model_uri))
    assert {"input_example.json", "MLmodel", "code", "artifacts"} <= set(model_files)


def test_the_champion_reads_the_test_images_bytes_as_evaluate_read_them(pipeline, tiny_dataset):
    reader = mlflow.pyfunc.load_model("models:/captcha-ocr@champion")
    info = read_data_info(tiny_dataset["tfrecords"])
    ids, images = zip(*stored_images(tiny_dataset["tfrecords"], info, "test"), strict=True)
    read = reader.predict(pd.DataFrame({"image": list(images)}))
    evaluated = pipeline.evaluated
    assert list(ids) == evaluated["id"].tolist()
    assert read["text"].tolist() == evaluated["predicted"].tolist()
    assert read["confidence"].to_numpy() == pytest.approx(evaluated["confidence"], rel=1e-3, abs=0)
    # A two-epoch model mostly reads nothing yet, but its confidence differs from image
    # to image: equal confidences mean equal pixels in and equal logits out
    assert evaluated["confidence"].nunique() == len(evaluated)
    assert reader.unwrap_python_model().charset.symbols == info.charset
    # one read when asked
    once = reader.predict(pd.DataFrame({"image": list(images[:3])}), params={"tta_shifts": 0})
    assert len(once) == 3 and once["error"].tolist() == ["", "", ""]


def test_the_champion_loads_where_captcha_ocr_is_not_installed(pipeline, tiny_dataset):
    info = read_data_info(tiny_dataset["tfrecords"])
    _, image = next(stored_images(tiny_dataset["tfrecords"], info, "test"))
    (pipeline.root / "one.png").write_bytes(image)
    script = f"""
import importlib.util, sys
sys.path = [path for path in sys.path if path != {str(REPO_ROOT / "src")!r}]
assert importlib.util.find_spec("captcha_ocr") is None, "captcha_ocr is still importable"
import mlflow, pandas as pd
reader = mlflow.pyfunc.load_model("models:/captcha-ocr@champion")
read = reader.predict(pd.DataFrame({{"image": [open("one.png", "rb").read()]}}))
print("text:", repr(read["text"][0]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=pipeline.root, env=dict(os.environ),
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == f"text: {pipeline.evaluated['predicted'][0]!r}"


def test_changed_evaluate_params_get_their_own_linked_run(tiny_dataset, isolated_mlflow):
    root = isolated_mlflow
    args = stage_args(tiny_dataset, root)
    assert train.main(args["train"]) == 0
    assert evaluate.main(args["evaluate"]) == 0
    first = json.loads((root / "models" / paths.RUN_FILE).read_text())["run_id"]
    # Given evaluate params changed without retraining (MLflow params are immutable)
    beam = root / "beam.yaml"
    beam.write_text(
        Path(tiny_dataset["params"]).read_text().replace("decoder: greedy", "decoder: beam_search")
    )
    assert evaluate.main(replace_params(args["evaluate"], beam)) == 0
    client = store_client(root)
    runs = client.search_runs([client.get_experiment_by_name("captcha-ocr").experiment_id])
    assert len(runs) == 2
    second = next(run for run in runs if run.info.run_id != first)
    assert second.info.status == "FINISHED"
    # Runs are named after the model and the time, never all alike
    names = [run.info.run_name for run in runs]
    assert len(set(names)) == 2 and all(name.startswith("crnn_ctc-2") for name in names), names
    assert second.data.tags[tracking.TAG_TRAIN_RUN] == first
    assert second.data.params["evaluate.decoder"] == "beam_search"
    assert second.data.params["train.learning_rate"] == "0.002"  # copied for comparison
    # and its reader, registered as a version of its own, reads with beam search
    version = client.search_model_versions(f"run_id = '{second.info.run_id}'")[0]
    signature = mlflow.models.get_model_info(f"models:/captcha-ocr/{version.version}").signature
    assert {param.name: param.default for param in signature.params.params}["decoder"] == (
        "beam_search"
    )
    assert len(client.search_model_versions("name = 'captcha-ocr'")) == 2


def test_two_runs_of_the_same_params_train_the_same_weights(tiny_dataset, isolated_mlflow):
    # Given the train stage run twice on the same params (train.deterministic, the
    # default) and data, shifts and shuffling included
    params = write_params(isolated_mlflow / "params.yaml", {"train": {"deterministic": True}})
    for run in ("first", "second"):
        args = replace_params(stage_args(tiny_dataset, isolated_mlflow / run)["train"], params)
        assert train.main(args) == 0
    # Then both end with the same weights, bit for bit
    assert_same_weights(isolated_mlflow / "first" / "models", isolated_mlflow / "second" / "models")


def replace_params(args: list[str], params: Path) -> list[str]:
    args = list(args)
    args[args.index("--params") + 1] = str(params)
    return args


def copied_data(tiny_dataset, root: Path) -> Path:
    return Path(shutil.copytree(tiny_dataset["tfrecords"], root / "tfrecords"))


def test_crashed_training_is_marked_failed_and_leaves_no_model(tiny_dataset, isolated_mlflow):
    root = isolated_mlflow
    # Given a validation shard that is corrupt, with data_info.json hashing it as it is
    # (as a faulty writer would leave it), so that only training finds it
    data = copied_data(tiny_dataset, root)
    shard = data / "val-00000-of-00001.tfrecord"
    shard.write_bytes(shard.read_bytes()[:1000])
    info = json.loads((data / "data_info.json").read_text())
    info["splits"]["val"]["sha256"] = hash_files(data, [shard.name])
    (data / "data_info.json").write_text(json.dumps(info))
    args = stage_args(tiny_dataset, root)["train"]
    args[args.index("--data") + 1] = str(data)
    # When train runs, it fails
    with pytest.raises(Exception, match=r"(?i)corrupted|truncated|data ?loss"):
        train.main(args)
    # Then the run is FAILED, not RUNNING, and there is no model a later stage could use
    run = only_run(store_client(root))
    assert run.info.status == "FAILED"
    assert not (root / "models").exists()
    assert not (root / "metrics" / "train.json").exists()


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_shards_unlike_their_hash_are_refused_before_any_work(tiny_dataset, isolated_mlflow, stage):
    root = isolated_mlflow
    # Given a train shard replaced by other valid records (the first shard's)
    data = copied_data(tiny_dataset, root)
    shards = sorted(data.glob("train-*.tfrecord"))
    shards[1].write_bytes(shards[0].read_bytes())
    args = stage_args(tiny_dataset, root)[stage]
    args[args.index("--data") + 1] = str(data)
    # When the stage runs, then it stops at once naming the split and its shards
    with pytest.raises(SystemExit) as stopped:
        {"train": train, "evaluate": evaluate}[stage].main(args)
    message = str(stopped.value)
    assert message.startswith(f"{stage}: error: ") and "\n" not in message
    assert f"the shards of split train ({shards[0].name}, {shards[1].name}" in message
    # and no run records the hash of data it did not see
    assert not (root / "mlruns").exists()
    assert not (root / "models").exists()


def test_an_unreachable_tracking_server_stops_train_in_one_line(
    tiny_dataset, isolated_mlflow, monkeypatch
):
    # Given a tracking URI where nothing listens
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    # When train runs, then it stops before training, in one line naming the server
    with pytest.raises(SystemExit) as stopped:
        train.main(stage_args(tiny_dataset, isolated_mlflow)["train"])
    message = str(stopped.value)
    assert message.startswith("train: error: cannot reach the tracking server "), message
    assert "http://127.0.0.1:9" in message and "\n" not in message
    assert not (isolated_mlflow / "models").exists()


def test_a_loss_that_stops_being_a_number_fails_training(tiny_dataset, tmp_path):
    # Given a model whose weights turn to NaN as its second epoch begins, as a
    # learning rate far too high leaves them
    info = read_data_info(tiny_dataset["tfrecords"])
    params = parse_params(tiny_params())
    spec = input_spec(info, params.model)
    model = build_model(params.model, spec, num_symbols=len(info.charset))

    class PoisonWeights(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                for weight in self.model.trainable_weights:
                    weight.assign(weight * float("nan"))

    checkpoints = Checkpoints(tmp_path / "checkpoints", "fingerprint")
    checkpoints.prepare(resume=False, run_id="run")
    # When it is fitted, then training stops and says where and what to change
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at epoch 2, step 1") as raised:
        fit(
            model, params.train, tiny_dataset["tfrecords"], info, spec, checkpoints,
            [PoisonWeights()],
        )  # fmt: skip
    assert "lower train.learning_rate (0.002)" in str(raised.value)


def test_sigterm_closes_the_run_as_killed(isolated_mlflow):
    experiment_id = tracking.configure(MLflowParams())
    with pytest.raises(KeyboardInterrupt), tracking.run_context(experiment_id) as run:
        os.kill(os.getpid(), signal.SIGTERM)
    assert store_client(isolated_mlflow).get_run(run.info.run_id).info.status == "KILLED"


def test_sigterm_that_surfaces_as_another_error_still_kills_the_run(isolated_mlflow):
    experiment_id = tracking.configure(MLflowParams())
    # Given code that turns the signal's exception into an error of its own
    with (
        pytest.raises(tracking.StageInterrupted) as raised,
        tracking.run_context(experiment_id) as run,
    ):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("a library's own error") from interrupt
    # Then the run is KILLED, not FAILED, and the stage sees an interruption (so it
    # says how to resume) with the error it came as attached
    assert store_client(isolated_mlflow).get_run(run.info.run_id).info.status == "KILLED"
    assert isinstance(raised.value.__cause__, RuntimeError)
    # and an error with no signal behind it still fails the run
    with pytest.raises(RuntimeError), tracking.run_context(experiment_id) as crashed:
        raise RuntimeError("a crash")
    assert store_client(isolated_mlflow).get_run(crashed.info.run_id).info.status == "FAILED"


def test_environment_tracking_uri_wins_over_params(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert tracking.resolve_tracking(MLflowParams(tracking_uri="sqlite:///x.db"), tmp_path) == (
        "http://127.0.0.1:9",
        None,
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri, artifacts = tracking.resolve_tracking(MLflowParams(), tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert artifacts == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()


# 160 training captchas in batches of 32: an epoch is one pass (5 steps), or, with
# min_steps_per_epoch 8, two passes in a new order each (10 steps)
@pytest.mark.parametrize("min_steps, passes", [(0, 1), (8, 2)], ids=["one pass", "two passes"])
def test_interrupted_training_resumes_from_its_last_epoch(
    tiny_dataset, isolated_mlflow, capsys, min_steps, passes
):
    root = isolated_mlflow
    params = write_params(
        root / "params.yaml", {"train": {"epochs": 6, "min_steps_per_epoch": min_steps}}
    )
    args = stage_args(tiny_dataset, root)["train"]
    args[args.index("--params") + 1] = str(params)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # Given a train stage stopped by SIGTERM once it has finished an epoch
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "stages" / "train.py"), *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    done = stop_after_first_epoch(process, root / ".checkpoints" / "train")
    assert 1 <= done < 6
    assert not (root / "models").exists()  # no half-written output
    client = store_client(root)
    experiment = client.get_experiment_by_name("captcha-ocr").experiment_id
    (killed,) = client.search_runs([experiment])
    assert killed.info.status == "KILLED"

    # When the stage runs again
    assert train.main(args) == 0
    # Then it resumed after the finished epochs and completed the rest
    history = pd.read_csv(root / "plots" / "train" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    # each epoch going through the split as often as min_steps_per_epoch asks
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert metrics["samples_seen"] == passes * 160 * 6
    assert (f"goes through them {passes} times" in capsys.readouterr().out) == (passes > 1)
    runs = client.search_runs([experiment], order_by=["attributes.start_time DESC"])
    resumed = runs[0]
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_after_epoch"] == str(done)
    assert resumed.data.tags["resumed_from_run"] == killed.info.run_id
    assert resumed.data.params["train.passes_per_epoch"] == str(passes)
    assert resumed.data.params["train.steps_per_epoch"] == str(5 * passes)
    # with the whole curve, the epochs before the interruption included
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "val_loss")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    # and the checkpoint state is gone once training has finished
    assert not (root / ".checkpoints" / "train").exists()
    # And it ends where an uninterrupted run of the same params ends, bit for bit:
    # the same batches, augmentation and dropout in every epoch after the resume
    uninterrupted = replace_params(
        stage_args(tiny_dataset, root / "uninterrupted")["train"], params
    )
    assert train.main(uninterrupted) == 0
    assert_same_weights(root / "models", root / "uninterrupted" / "models")


def assert_same_weights(first_dir: Path, second_dir: Path) -> None:
    import keras
    import numpy as np

    first, second = (
        keras.models.load_model(folder / "model.keras").get_weights()
        for folder in (first_dir, second_dir)
    )
    assert len(first) == len(second)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
