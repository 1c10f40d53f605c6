"""train.distribute (captcha_ocr.distribute): TF_CONFIG checked before any work;
MirroredStrategy over two logical CPU devices; MultiWorkerMirroredStrategy over two
processes on 127.0.0.1, with only the chief writing; and the Keras fault worked around."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from captcha_ocr.params import cluster_role, load_params
from captcha_ocr.stack import free_port
from stages import train
from tests.conftest import REPO_ROOT, stop_after_first_epoch, write_params
from tests.test_mlflow_server import TRAIN
from tests.test_train_evaluate import replace_params, stage_args


def tf_config(workers: list[str], index: int, chief: str | None = None) -> str:
    cluster = {"worker": workers, **({"chief": [chief]} if chief else {})}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (None, "TF_CONFIG is not set"),
        ("{", "TF_CONFIG is not JSON"),
        ('{"cluster": {}}', 'no "cluster" and "task"'),
        ('{"cluster": {"worker": ["a"]}, "task": {}}', 'is not a list of "host:port"'),
        (tf_config(["a:1"], 0), "names 1 process; it takes 2 or more"),
        (tf_config(["a:1", "b:2"], 2), 'task "index" 2 is not one of its 2 worker addresses'),
    ],
)
def test_an_unusable_tf_config_is_named_with_the_reason(text, said):
    with pytest.raises(ValueError, match=said):
        cluster_role(text)


def test_the_chief_is_worker_0_or_the_chief_task():
    assert cluster_role(tf_config(["a:1", "b:2"], 0)).is_chief
    assert not cluster_role(tf_config(["a:1", "b:2"], 1)).is_chief
    with_chief = cluster_role(tf_config(["a:1"], 0, chief="c:3"))
    assert (with_chief.index, with_chief.workers, with_chief.is_chief) == (1, 2, False)


def test_multi_worker_without_tf_config_is_refused_before_any_work(
    tiny_dataset, isolated_mlflow, monkeypatch
):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    overrides = {"train": {"distribute": "multi_worker"}}
    params = write_params(isolated_mlflow / "params.yaml", overrides)
    args = replace_params(stage_args(tiny_dataset, isolated_mlflow)["train"], params)
    with pytest.raises(SystemExit) as stopped:
        train.main(args)
    error = str(stopped.value.code)
    assert error.startswith("train: error: train.distribute: multi_worker"), error
    assert "TF_CONFIG is not set" in error and "\n" not in error, error
    assert not (isolated_mlflow / "models").exists()


def test_other_stages_and_tools_read_multi_worker_params_without_tf_config(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    params = write_params(tmp_path / "params.yaml", {"train": {"distribute": "multi_worker"}})
    assert load_params(params).train.distribute == "multi_worker"


def start_training(root: Path, args: list[str], env_extra: dict[str, str]) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TF_CONFIG")},
        "PYTHONPATH": str(REPO_ROOT),
        **env_extra,
    }
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN, *args],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def train_in(tiny_dataset, root: Path, train_params: dict, env_extra=None) -> subprocess.Popen:
    """The train stage in its own process and folder (as on a host of its own), without
    dropout: each replica draws its own dropout masks, which one device draws otherwise."""
    root.mkdir(parents=True, exist_ok=True)
    overrides = {"train": train_params, "model": {"crnn_ctc": {"dropout": 0.0}}}
    params = write_params(root / "params.yaml", overrides)
    args = replace_params(stage_args(tiny_dataset, root)["train"], params)
    return start_training(root, args, env_extra or {})


def finished(training: subprocess.Popen) -> str:
    output = training.communicate(timeout=600)[0]
    assert training.returncode == 0, output
    assert "Traceback" not in output, output
    return output


def losses(root: Path) -> list[float]:
    return pd.read_csv(root / "plots" / "train" / "history.csv")["loss"].tolist()


def weights_digest(model_file: Path) -> str:
    import keras

    from captcha_ocr.distribute import weights_digest

    return weights_digest(keras.models.load_model(model_file))


# The same batches, steps and (synchronized) batch statistics; float sums run in other
# orders (16 images a replica, not 32 a device), which the steep first steps of CTC
# training amplify: the first epoch agrees to 0.01%, the second to under 1%.
LOSS_TOLERANCE = 0.01


@pytest.mark.integration
def test_mirrored_over_two_cpu_devices_trains_as_one_device(tiny_dataset, tmp_path):
    one = train_in(tiny_dataset, tmp_path / "one", {"distribute": "none"})
    two = train_in(tiny_dataset, tmp_path / "two", {"distribute": "mirrored", "cpu_replicas": 2})
    one_output, two_output = finished(one), finished(two)  # side by side: one a core
    assert "mirrored over 2 replicas, one process; the global batch of 32 is 16" in two_output
    assert "mirrored" not in one_output
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=LOSS_TOLERANCE)
    assert (tmp_path / "two" / "models" / "model.keras").is_file()


@pytest.mark.integration
def test_two_workers_train_as_one_and_only_the_chief_writes(tiny_dataset, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in (free_port("127.0.0.1") for _ in range(2))]
    hosts = [tmp_path / "worker-0", tmp_path / "worker-1"]
    trainings = [
        train_in(
            tiny_dataset,
            host,
            {"distribute": "multi_worker"},
            {"TF_CONFIG": tf_config(workers, index), "TF_NUM_INTEROP_THREADS": "1"},
        )
        for index, host in enumerate(hosts)
    ]
    chief_output, worker_output = (finished(training) for training in trainings)
    # Then the chief wrote the outputs and the run, and the worker nothing but its line
    assert "worker 0 of 2 (the chief" in chief_output, chief_output
    assert "train: worker 1 of 2 done" in worker_output, worker_output
    chief, worker = hosts
    assert (chief / "models" / "model.keras").is_file()
    for output in ("models", "metrics", "plots", "mlruns", ".checkpoints/train"):
        assert not (worker / output).exists(), output
    client = MlflowClient(f"sqlite:///{chief / 'mlruns' / 'mlflow.db'}")
    (logged,) = client.search_runs([client.get_experiment_by_name("captcha-ocr").experiment_id])
    assert logged.info.status == "FINISHED"
    assert (logged.data.params["train.workers"], logged.data.params["train.replicas"]) == ("2", "2")
    # with the same weights on both (the worker prints its digest) ...
    digest = weights_digest(chief / "models" / "model.keras")
    assert f"weights {digest}" in worker_output, (digest, worker_output)
    # ... and the same losses as one process, on the same global batches
    one = train_in(tiny_dataset, tmp_path / "one", {"distribute": "none"})
    finished(one)
    assert losses(chief) == pytest.approx(losses(tmp_path / "one"), rel=LOSS_TOLERANCE)


PLAIN_KERAS = """
import json, os, sys
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras
x = tf.zeros((64, 8)); y = tf.zeros((64, 1))
with strategy.scope():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)
print("fit worked")
"""


@pytest.mark.integration
def test_keras_multi_worker_fit_still_needs_the_workaround(tmp_path):
    """Plain Keras `fit` under MultiWorkerMirroredStrategy fails (keras#20585). When this
    test fails, Keras fixed it: drop distribute.keras_multi_worker_fixes."""
    workers = [f"127.0.0.1:{port}" for port in (free_port("127.0.0.1") for _ in range(2))]
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    processes = []
    for index in range(2):
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", PLAIN_KERAS],
                cwd=tmp_path, env={**env, "TF_CONFIG": tf_config(workers, index)},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
        )  # fmt: skip
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert all("fit worked" not in output for output in outputs), "Keras fixed keras#20585"
    assert any("PerReplica" in output for output in outputs), outputs[0][-3000:]


@pytest.mark.integration
def test_mirrored_training_resumes_after_an_interruption(tiny_dataset, tmp_path):
    root = tmp_path / "host"
    mirrored = {"distribute": "mirrored", "epochs": 4}
    # Given a mirrored train stage stopped by SIGTERM once it has finished an epoch
    training = train_in(tiny_dataset, root, mirrored)
    done = stop_after_first_epoch(training, root / ".checkpoints" / "train")
    # When it runs again, it resumes after the finished epochs, under the same strategy
    output = finished(train_in(tiny_dataset, root, mirrored))
    assert f"resuming after epoch {done}" in output, output
    history = pd.read_csv(root / "plots" / "train" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
