"""The team stack for real: PostgreSQL, SeaweedFS's S3 gateway and `mlflow server` with
basic auth (captcha_ocr.stack), the tiny pipeline logging to it and pushing to its DVC
remote, a fresh clone pulling, two hosts running experiments at once, and faults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from captcha_ocr import paths, tracking
from captcha_ocr.stack import BUCKET, TEAM_USER, Stack
from stages import evaluate, train
from tests.conftest import BIN, new_project, run, write_params
from tests.network import network
from tests.test_mlflow_server import TRAIN
from tests.test_train_evaluate import replace_params, stage_args

pytestmark = pytest.mark.integration
DVC = str(BIN / "dvc")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with started_stack("127.0.0.1") as team:
        yield team


class started_stack:
    """A stack in a folder of its own under /tmp: under root, PostgreSQL runs as an
    unprivileged user, which cannot enter pytest's private temp folders."""

    def __init__(self, host: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="captcha-stack-"))
        self.stack = Stack.create(self.folder, host)

    def __enter__(self) -> Stack:
        try:
            self.stack.start()
        except BaseException:
            self.__exit__()
            raise
        return self.stack

    def __exit__(self, *exc: object) -> None:
        self.stack.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def team_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process as a team member: the stack's client settings in the environment
    (list it after isolated_mlflow, which clears MLFLOW_TRACKING_URI)."""
    for name, value in stack.config.client_env().items():
        monkeypatch.setenv(name, value)
    return stack.config.client_env()


def object_keys(stack: Stack, prefix: str) -> list[str]:
    client = stack.s3_client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_a_client_without_an_account_can_neither_write_runs_nor_read_artifacts(stack):
    uri = stack.config.tracking_uri
    create = f"{uri}/api/2.0/mlflow/runs/create"
    artifacts = f"{uri}/api/2.0/mlflow-artifacts/artifacts"
    good = (TEAM_USER, stack.config.team_password)
    for auth in (None, (TEAM_USER, "wrong-password"), ("nobody", "x" * 16)):
        assert requests.post(create, json={"experiment_id": "0"}, auth=auth).status_code == 401
        assert requests.get(artifacts, auth=auth).status_code == 401
    assert requests.get(artifacts, auth=good).status_code == 200
    # and the object store refuses unsigned and wrongly signed requests
    assert requests.get(f"{stack.config.s3_endpoint}/{BUCKET}/").status_code == 403


@pytest.mark.parametrize(
    ("unset", "password", "named"),
    [
        ("MLFLOW_TRACKING_USERNAME", None, "MLFLOW_TRACKING_USERNAME is not set"),
        ("MLFLOW_TRACKING_PASSWORD", None, "MLFLOW_TRACKING_PASSWORD is not set"),
        (None, "wrong-password", "refused user 'team': check MLFLOW_TRACKING_PASSWORD"),
    ],
)
def test_missing_or_wrong_credentials_are_one_line_naming_the_variable(
    tiny_dataset, isolated_mlflow, stack, team_env, monkeypatch, unset, password, named
):
    if unset:
        monkeypatch.delenv(unset)
    if password:
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    with pytest.raises(SystemExit) as stopped:
        train.main(stage_args(tiny_dataset, isolated_mlflow)["train"])
    error = str(stopped.value.code)
    assert error.startswith("train: error: the tracking server"), error
    assert named in error and "\n" not in error, error
    assert not (isolated_mlflow / "models").exists()


def test_a_run_on_the_stack_is_pulled_by_a_fresh_clone(stack, team_env, tmp_path):
    # Given a project on a laptop, pointed at the team's stack by its environment only
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    env = {**new_project(laptop), **team_env}
    started = time.perf_counter()
    run([DVC, "repro"], laptop, env)
    repro_seconds = time.perf_counter() - started
    # Then its run, dataset, model and artifacts are on the server and in the object store
    client = MlflowClient()
    experiment = client.get_experiment_by_name("captcha-ocr")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    assert logged.inputs.dataset_inputs, "no dataset logged"
    assert "test/sequence_accuracy" in logged.data.metrics
    plots = {item.path for item in client.list_artifacts(logged.info.run_id, "plots")}
    assert "plots/training_curves.png" in plots
    keys = object_keys(stack, f"mlflow/{experiment.experiment_id}/{logged.info.run_id}/")
    assert any(key.endswith("training_curves.png") for key in keys), keys
    champion = client.get_model_version_by_alias("captcha-ocr", "champion")
    assert champion.run_id == logged.info.run_id
    # When it is committed and pushed: code to git, data and model to the DVC remote
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path, env)
    for command in (
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "a run"],
        ["git", "remote", "add", "origin", str(origin)],
        ["git", "push", "-q", "origin", "main"],
        [DVC, "push"],
    ):
        run(command, laptop, env)
    assert object_keys(stack, "dvc/"), "dvc push stored nothing"
    # Then a fresh clone pulls it, is up to date, and reads a captcha at once
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    clone_env = {**env, "PYTHONPATH": str(clone / "src")}
    started = time.perf_counter()
    run([DVC, "pull"], clone, clone_env)
    pull_seconds = time.perf_counter() - started
    status = run([DVC, "status"], clone, clone_env).stdout
    assert "Data and pipelines are up to date" in status, status
    image = next((clone / "data" / "raw").rglob("*.png"))
    read = run([sys.executable, "-m", "captcha_ocr.read", str(image)], clone, clone_env)
    assert image.name in read.stdout, read.stdout
    print(
        f"tiny pipeline: dvc repro {repro_seconds:.1f} s, a clone's dvc pull {pull_seconds:.1f} s"
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network namespaces need root and iproute2 (make test installs it as root)",
)
def test_two_hosts_run_experiments_at_once_and_a_third_sees_both(tmp_path):
    with network(2) as lan, started_stack(lan.bridge_address) as team:
        env_base = {**new_project(tmp_path / "seed"), **team.config.client_env()}
        origin = tmp_path / "origin.git"
        run(
            ["git", "clone", "-q", "--bare", str(tmp_path / "seed"), str(origin)],
            tmp_path,
            env_base,
        )
        # Given two hosts, each with its own clone, address and temp folder (so no file
        # lock is shared: only the server and the remote are)
        experiments = {"host-1": "train.learning_rate=0.001", "host-2": "train.learning_rate=0.004"}
        workers = []
        for host, (name, setting) in zip(lan.hosts, experiments.items(), strict=True):
            clone = tmp_path / name
            run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env_base)
            (clone / "tmp").mkdir()
            env = {**env_base, "PYTHONPATH": str(clone / "src"), "TMPDIR": str(clone / "tmp")}
            script = f"{DVC} exp run -n {name} -S {setting} && {DVC} exp push origin {name}"
            log = (tmp_path / f"{name}.log").open("w")
            workers.append(
                (name, subprocess.Popen(host.command(["sh", "-c", script]), cwd=clone, env=env,
                                        stdout=log, stderr=subprocess.STDOUT))
            )  # fmt: skip
        # When both run `dvc exp run` at the same time and push
        for name, worker in workers:
            assert worker.wait(timeout=900) == 0, (tmp_path / f"{name}.log").read_text()
        # Then a third clone sees both experiments, with their outputs from the remote
        third = tmp_path / "third"
        run(["git", "clone", "-q", str(origin), str(third)], tmp_path, env_base)
        env = {**env_base, "PYTHONPATH": str(third / "src")}
        run([DVC, "exp", "pull", "origin", *experiments], third, env)
        shown = json.loads(run([DVC, "exp", "show", "--json"], third, env).stdout)
        names = {exp["name"] for row in shown for exp in row.get("experiments") or []}
        assert set(experiments) <= names, names
        run([DVC, "exp", "apply", "host-2"], third, env)
        assert (third / "models" / paths.MODEL_FILE).is_file()
        # and the server holds both runs, with datasets, models and registered versions,
        # and the champion alias on the better one
        client = MlflowClient(team.config.tracking_uri)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in team.config.client_env().items():
                patch.setenv(key, value)
            experiment = client.get_experiment_by_name("captcha-ocr")
            runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
            assert set(runs) == set(experiments), set(runs)
            assert all(r.info.status == "FINISHED" for r in runs.values())
            assert all(r.inputs.dataset_inputs for r in runs.values())
            versions = client.search_model_versions("name = 'captcha-ocr'")
            assert {v.run_id for v in versions} == {r.info.run_id for r in runs.values()}
            accuracy = {int(v.version): float(v.tags[tracking.CHAMPION_METRIC]) for v in versions}
            champion = client.get_model_version_by_alias("captcha-ocr", "champion")
            assert accuracy[int(champion.version)] == max(accuracy.values()), accuracy
        print(
            f"third clone: dvc exp show lists {sorted(names)}; runs "
            f"{ {name: r.info.status for name, r in sorted(runs.items())} }; "
            f"versions' test accuracy {accuracy}; champion: version {champion.version}"
        )


def long_training(tiny_dataset, root: Path) -> list[str]:
    """Train's arguments for 6 epochs of 30 steps: long enough to fault in the middle."""
    params = write_params(
        root / "params.yaml",
        {"train": {"epochs": 6, "min_steps_per_epoch": 30, "early_stopping": {"enabled": False}}},
    )
    return replace_params(stage_args(tiny_dataset, root)["train"], params)


def start_training(args: list[str], root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN, *args],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_for_epoch(client: MlflowClient, training: subprocess.Popen, experiment: str) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and training.poll() is None:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
            return runs[0].info.run_id
        time.sleep(0.3)
    raise AssertionError(f"no epoch was logged:\n{training.communicate()[0]}")


def test_training_rides_out_a_postgres_restart(
    tiny_dataset, isolated_mlflow, stack, team_env, monkeypatch
):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "unused")  # the stage's own name wins
    args = long_training(tiny_dataset, isolated_mlflow)
    params = isolated_mlflow / "params.yaml"
    params.write_text(params.read_text().replace("name: captcha-ocr", "name: pg-restart"))
    client = MlflowClient()
    training = start_training(args, isolated_mlflow)
    # When PostgreSQL restarts once the first epoch is stored
    run_id = wait_for_epoch(client, training, "pg-restart")
    stack.stop_service("postgres")
    time.sleep(2)
    stack.start_service("postgres")
    output = training.communicate(timeout=300)[0]
    # Then training finishes with its outputs, and the run ends up complete and FINISHED
    assert training.returncode == 0, output
    assert (isolated_mlflow / "models" / paths.MODEL_FILE).is_file()
    assert "Traceback" not in output
    if (isolated_mlflow / "models" / paths.PENDING_FILE).exists():  # missed during the restart
        assert evaluate.main(stage_args(tiny_dataset, isolated_mlflow)["evaluate"]) == 0
    run_info = client.get_run(run_id)
    assert run_info.info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "loss")) == 6
    warnings = [line for line in output.splitlines() if "warning" in line]
    print(f"postgres restart: training's warnings: {warnings}")


def test_object_store_down_when_artifacts_are_logged(
    tiny_dataset, isolated_mlflow, stack, team_env, capsys
):
    # Given the object store down (the tracking server and PostgreSQL still up)
    stack.stop_service("s3")
    try:
        args = stage_args(tiny_dataset, isolated_mlflow)
        # When train logs its artifacts, it warns once, keeps them, and finishes
        assert train.main(args["train"]) == 0
        output = capsys.readouterr()
        assert output.err.count("the tracking server stopped answering") == 1, output.err
        print(f"object store down: {output.err.strip().splitlines()[-1]}")
        kept = json.loads((isolated_mlflow / "models" / paths.PENDING_FILE).read_text())
        assert any(call["op"] == "artifact" for call in kept["calls"])
        client = MlflowClient()
        assert client.get_run(kept["run_id"]).info.status != "RUNNING"
    finally:
        stack.start_service("s3")
    # Then with the store back, evaluate logs them into the run
    assert evaluate.main(args["evaluate"]) == 0
    names = {item.path for item in client.list_artifacts(kept["run_id"], "plots")}
    assert "plots/training_curves.png" in names
