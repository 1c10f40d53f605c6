"""MLflow: where runs go, how a run starts and ends, and what is logged on the way.

One run per pipeline execution: train starts it and writes a reference
(RUN_FILE) into its outputs; evaluate reopens the same run, logs the test
figures and ends it. Whichever stage holds the run ends it on the way out:
FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM, so a crashed
stage never leaves a run RUNNING.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import signal
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from captcha_ocr.atomic import write_json
from captcha_ocr.params import MLflowParams

RUN_FILE = "mlflow_run.json"
DEFAULT_STORE = "mlruns"

# Tag names, in one place so that tests and the `compare` tooling agree.
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_DIRTY = "git_dirty"
TAG_DVC_EXPERIMENT = "dvc_experiment"
TAG_DATA_HASH = "data_sha256"
TAG_MODEL_FAMILY = "model_family"
TAG_PIPELINE_STAGE = "pipeline_stage"
TAG_TRAIN_RUN = "train_run_id"


def project_root() -> Path:
    """The DVC workspace the pipeline belongs to.

    A queued experiment (`dvc exp run --queue`) runs in a temporary copy under
    .dvc/tmp/exps, which is deleted afterwards; DVC_ROOT still names the real
    workspace, so the default store is resolved there and survives.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def default_store(root: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of the project's own store, absolute:
    MLflow caches a relative SQLite URI, which breaks after a chdir."""
    store = root / DEFAULT_STORE
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri()


def resolve_tracking(params: MLflowParams, root: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact location or None for the server's default).

    The environment wins over params.yaml, so that CI or a user's shell can
    point any checkout at a tracking server without editing tracked files.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.tracking_uri
    if uri:
        return uri, None
    return default_store(root or project_root())


def configure(params: MLflowParams) -> str:
    """Point MLflow at the store; create the experiment if needed; return its id."""
    import mlflow

    uri, artifact_location = resolve_tracking(params)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(params.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(params.experiment_name, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another process (a parallel queued experiment) created it first.
        experiment = mlflow.get_experiment_by_name(params.experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id


class StageInterrupted(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the run is closed as KILLED."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """Yields the signals received so far (empty until SIGTERM comes)."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        raise StageInterrupted(f"stopped by signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def run_context(
    experiment_id: str, run_id: str | None = None, run_name: str | None = None
) -> Iterator[Any]:
    """Start (or, with run_id, reopen) a run and always end it with an honest status."""
    import mlflow

    with _sigterm_as_interrupt() as signals:
        run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name)
        try:
            yield run
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise
        except BaseException as error:
            if signals:
                # The signal's exception can reach us as another one: code it lands in
                # may catch it and raise its own, or fail cleaning up what it cut short.
                # The run was still stopped, not crashed, and resumes like one.
                mlflow.end_run("KILLED")
                raise StageInterrupted(f"stopped by signal {signals[0]}") from error
            mlflow.end_run("FAILED")
            raise
        mlflow.end_run("FINISHED")


def run_name(model_family: str) -> str:
    """The DVC experiment's name under `dvc exp run`, else `<model family>-<UTC time>`.

    Not MLflow's random names: the stages seed Python's `random` for
    reproducible training, which would give every run the same "random" name.
    """
    now = datetime.datetime.now(datetime.UTC)
    return os.environ.get("DVC_EXP_NAME") or f"{model_family}-{now:%Y%m%d-%H%M%S}-{now:%f}"[:-3]


def git_tags(root: Path) -> dict[str, str]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    # Only tracked files count: DVC outputs and the store are git-ignored.
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {TAG_GIT_COMMIT: commit, TAG_GIT_DIRTY: str(bool(dirty)).lower()}


def run_tags(data_hash: str, model_family: str) -> dict[str, str]:
    tags = {TAG_DATA_HASH: data_hash, TAG_MODEL_FAMILY: model_family, **git_tags(project_root())}
    if experiment := os.environ.get("DVC_EXP_NAME"):
        tags[TAG_DVC_EXPERIMENT] = experiment
    return tags


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries: MLflow rejects None and NaN is useless in the UI."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def log_dataset(info: Any, tfrecord_dir: Path, context: str) -> None:
    """The data as an MLflow dataset input: name, content hash, where it lies, counts."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        # MLflow registers its local-file source twice and warns that a path matches both.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(str(Path(tfrecord_dir).resolve()))
    dataset = MetaDataset(
        source=source,
        name=f"captchas-{info.source}-{len(info.charset)}sym-"
        + (
            f"{info.min_length}"
            if info.min_length == info.max_length
            else f"{info.min_length}to{info.max_length}"
        )
        + f"ch-{info.image_width}x{info.image_height}",
        digest=info.content_hash()[:16],
    )
    counts = {f"n_{split}": str(count) for split, count in info.counts.items()}
    mlflow.log_input(dataset, context=context, tags={**counts, "charset": info.charset})


CHAMPION = "champion"
CHAMPION_METRIC = "test_sequence_accuracy"


def register_champion(model_uri: str, registered_name: str, accuracy: float) -> dict[str, Any]:
    """Register a logged model (once per run) and move the `champion` alias to it only
    when its test accuracy beats the current champion's; return what happened."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run_id = mlflow.models.get_model_info(model_uri).run_id
    # One version per run: evaluating a run again (same settings) registers nothing new.
    existing = client.search_model_versions(f"name = '{registered_name}' and run_id = '{run_id}'")
    version = existing[0] if existing else mlflow.register_model(model_uri, registered_name)
    client.set_model_version_tag(registered_name, version.version, CHAMPION_METRIC, str(accuracy))

    try:
        champion = client.get_model_version_by_alias(registered_name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        champion = None
    champion_accuracy = (
        float((champion.tags or {}).get(CHAMPION_METRIC, "-inf")) if champion else None
    )
    promoted = champion is None or (
        int(champion.version) != int(version.version) and accuracy > champion_accuracy
    )
    if promoted:
        client.set_registered_model_alias(registered_name, CHAMPION, version.version)
    outcome = {
        "version": int(version.version),
        "champion": int(version.version) if promoted else int(champion.version),
        "promoted": promoted,
        "previous_champion_accuracy": champion_accuracy,
    }
    if promoted:
        verdict = "it is the champion now"
    else:
        verdict = (
            f"version {champion.version} stays champion ({champion_accuracy:.4f} >= {accuracy:.4f})"
        )
    print(f"evaluate: registered {registered_name} version {version.version}; {verdict}")
    return outcome


def write_run_reference(path: Path, run: Any, tracking_uri: str) -> None:
    write_json(
        path,
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "run_name": run.info.run_name,
            "tracking_uri": tracking_uri,
        },
    )


def read_run_reference(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: run the train stage first") from None
