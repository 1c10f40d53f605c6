"""MLflow: where runs go, how a run starts and ends, and what is logged on the way.

One run per pipeline execution: train starts it and writes a reference
(paths.RUN_FILE) into its outputs; evaluate reopens the same run, logs the test
figures and ends it. Whichever stage holds the run ends it on the way out:
FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM, so a crashed
stage never leaves a run RUNNING. A process killed outright (SIGKILL, the
out-of-memory killer) cannot end its run: every run is tagged with its host and
process, and the next stage that opens the experiment on that host ends the runs
whose process is gone as KILLED.

Several processes may share one store (`dvc queue start -j 2`, two checkouts, a
team's server): creating a SQLite store and moving the `champion` alias happen
under a file lock on one host; across hosts the alias converges (see
_converge_champion).

A tracking server that stops answering mid-run does not cost the stage its
outputs: the calls go through a Journal, which keeps what the server missed in a
file beside the outputs (paths.PENDING_FILE), and the next stage that opens the
store logs it into the run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from captcha_ocr.atomic import write_json
from captcha_ocr.params import MLflowParams
from captcha_ocr.paths import PENDING_FILE

DEFAULT_STORE = "mlruns"

# Tag names, in one place so that tests and the `compare` tooling agree.
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_DIRTY = "git_dirty"
TAG_DVC_EXPERIMENT = "dvc_experiment"
TAG_DATA_HASH = "data_sha256"
TAG_MODEL_FAMILY = "model_family"
TAG_PIPELINE_STAGE = "pipeline_stage"
TAG_TRAIN_RUN = "train_run_id"
# Which process holds a run, so that a run left RUNNING by a killed one can be ended.
TAG_HOST = "process.host"
TAG_PID = "process.pid"
# The hash of a pending file already logged into its run, so that it is logged once.
TAG_PENDING_LOGGED = "pending_logged"

# MLflow retries an unreachable server for minutes by default; a stage should say so
# within seconds. The environment still wins.
HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
REACHABLE_TIMEOUT_S = 5


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be used; the message says which and why, in one line."""


def project_root() -> Path:
    """The DVC workspace the pipeline belongs to.

    A queued experiment (`dvc exp run --queue`) runs in a temporary copy under
    .dvc/tmp/exps, which is deleted afterwards; DVC_ROOT still names the real
    workspace, so the default store is resolved there and survives.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def default_store(root: Path) -> str:
    """The tracking URI of the project's own store, absolute: MLflow caches a
    relative SQLite URI, which breaks after a chdir."""
    store = root / DEFAULT_STORE
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite: URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).resolve()


def resolve_tracking(params: MLflowParams, root: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact location or None for the server's default).

    The environment wins over params.yaml, so that CI or a user's shell can
    point any checkout at a tracking server without editing tracked files. A
    SQLite store keeps its artifacts beside its database: left to MLflow, they
    would go wherever the process that created the experiment was started.
    """
    uri = (
        os.environ.get("MLFLOW_TRACKING_URI")
        or params.tracking_uri
        or default_store(root or project_root())
    )
    database = sqlite_file(uri)
    return uri, (database.parent / "artifacts").as_uri() if database else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialize what two processes on this host must not do at once with one store:
    create and migrate a SQLite database (done twice at once, it is left unusable),
    or move the champion alias."""
    from filelock import FileLock

    database = sqlite_file(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        path = database.with_name(f"{database.name}.lock")
    else:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"captcha-ocr-tracking-{digest}.lock"
    with FileLock(path):
        yield


def check_reachable(uri: str) -> None:
    """Quick requests to a tracking server, so that a wrong or down server, or missing
    or wrong credentials, are a one-line error at once, not minutes of retries and a
    traceback."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    base = uri.rstrip("/")
    try:
        requests.get(f"{base}/health", timeout=REACHABLE_TIMEOUT_S)
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        answer = requests.get(
            f"{base}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            auth=(user, password or "") if user else None,
            timeout=REACHABLE_TIMEOUT_S,
        )
    except requests.RequestException as error:
        reason = type(error).__name__
        raise TrackingUnavailable(
            f"cannot reach the tracking server {uri} ({reason}); start it, or point "
            "MLFLOW_TRACKING_URI (or mlflow.tracking_uri) at one that answers"
        ) from None
    if answer.status_code == 401:
        if not user:
            problem = "MLFLOW_TRACKING_USERNAME is not set"
        elif not password:
            problem = "MLFLOW_TRACKING_PASSWORD is not set"
        else:
            problem = f"it refused user {user!r}: check MLFLOW_TRACKING_PASSWORD"
        raise TrackingUnavailable(
            f"the tracking server {uri} asks for an account and {problem}; set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to one of its accounts"
        )
    if answer.status_code == 403:
        raise TrackingUnavailable(
            f"the tracking server {uri} does not let user {user!r} read experiments "
            "(403); ask its admin for READ or EDIT permission"
        )


def configure(params: MLflowParams, pending_dir: Path | None = None) -> str:
    """Point MLflow at the store; create the experiment if needed; log what an earlier
    stage kept in pending_dir/PENDING_FILE when its server stopped answering; end the
    runs that killed processes of this host left RUNNING; return the experiment's id."""
    import mlflow

    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    uri, artifact_location = resolve_tracking(params)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        with store_lock(uri):
            experiment_id = _experiment_id(params.experiment_name, artifact_location)
        if pending_dir is not None:
            log_pending(pending_dir)
        end_orphaned_runs(experiment_id)
    except mlflow.exceptions.MlflowException as error:
        raise TrackingUnavailable(f"tracking store {uri}: {first_line(error)}") from None
    return experiment_id


def _experiment_id(name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it if needed. Two hosts may create it at once:
    the lock above is per host, so the loser of that race finds the winner's."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException as error:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise error from None
        return experiment.experiment_id


def first_line(error: Exception) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if "401" in text or "nauthorized" in text:
        first += (
            " (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account "
            "on the server)"
        )
    return first[:300]


def _process_alive(pid: int, run_start_ms: int) -> bool:
    """Whether the process that started a run still runs: a pid reused by a process
    started after the run does not count."""
    import psutil

    try:
        created_ms = psutil.Process(pid).create_time() * 1000
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
    return created_ms <= run_start_ms + 1000


def end_orphaned_runs(experiment_id: str) -> list[str]:
    """End as KILLED the RUNNING runs of this host whose process is gone; their ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"attributes.status = 'RUNNING' and tags.`{TAG_HOST}` = '{socket.gethostname()}'"
        ),
    )
    ended = []
    for run in runs:
        pid = run.data.tags.get(TAG_PID, "")
        if pid.isdigit() and _process_alive(int(pid), run.info.start_time):
            continue
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
        print(
            f"mlflow: run {run.info.run_name} ({run.info.run_id}) was left RUNNING by process "
            f"{pid or '?'}, which is gone (killed?); it is marked KILLED now"
        )
    return ended


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


def _server_errors() -> tuple[type[BaseException], ...]:
    """What a call raises when the tracking store does not answer (after MLflow's own
    retries): MLflow's wrapping of it, or the connection error itself."""
    import requests
    from mlflow.exceptions import MlflowException

    return (MlflowException, requests.RequestException, OSError)


class Journal:
    """The MLflow calls of one run, made while the tracking store answers and kept
    once it does not.

    The first failing call prints one warning and takes the server as gone for the
    rest of the stage (no minutes of retries per call); it and every later call are
    kept in order, and `write` puts them in a file in the stage's output folder,
    which `log_pending` logs into the run when the store answers again. Artifacts
    are files in that folder, kept by their paths relative to it.
    """

    def __init__(self, stage: str, folder: Path) -> None:
        self.stage = stage
        self.folder = Path(folder)
        self.run_id: str | None = None  # set by run_context
        self.pending: list[dict[str, Any]] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._call({"op": "metrics", "values": dict(metrics), "step": step or 0})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._call({"op": "params", "values": {k: str(v) for k, v in params.items()}})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._call({"op": "tags", "values": {k: str(v) for k, v in tags.items()}})

    def log_dict(self, data: Any, name: str) -> None:
        self._call({"op": "dict", "data": data, "name": name})

    def log_dataset(self, info: Any, tfrecord_dir: Path, context: str) -> None:
        self._call(dataset_call(info, tfrecord_dir, context))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """path: a file in the journal's folder."""
        relative = Path(path).relative_to(self.folder).as_posix()
        self._call({"op": "artifact", "path": relative, "artifact_path": artifact_path})

    def _call(self, op: dict[str, Any]) -> None:
        if self.run_id is None:
            raise RuntimeError("Journal used outside run_context")
        if self.pending:  # the server is gone: keep, do not wait on it again
            self.pending.append(op)
            return
        try:
            apply_call(op, self.run_id, self.folder)
        except _server_errors() as error:
            self.keep(op, error)

    def keep(self, op: dict[str, Any], error: BaseException) -> None:
        """Keep a call the server did not take; the first one kept says so."""
        if not self.pending:
            print(
                f"{self.stage}: warning: the tracking server stopped answering "
                f"({first_line(error)}); the stage goes on and writes its outputs, and "
                f"keeps what MLflow missed in {PENDING_FILE}, which the next stage logs",
                file=sys.stderr,
            )
        self.pending.append(op)

    def write(self) -> bool:
        """Write what is pending into the folder's PENDING_FILE; whether there was any."""
        if not self.pending:
            return False
        write_json(self.folder / PENDING_FILE, {"run_id": self.run_id, "calls": self.pending})
        return True


def apply_call(op: dict[str, Any], run_id: str, folder: Path) -> None:
    """Make one kept call against the store."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    kind = op["op"]
    if kind == "metrics":
        now = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
        metrics = [Metric(key, value, now, op["step"]) for key, value in op["values"].items()]
        client.log_batch(run_id, metrics=metrics)
    elif kind == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in op["values"].items()])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["values"].items()])
    elif kind == "dict":
        client.log_dict(run_id, op["data"], op["name"])
    elif kind == "artifact":
        client.log_artifact(run_id, str(folder / op["path"]), op["artifact_path"])
    elif kind == "dataset":
        _log_dataset(client, run_id, op)
    elif kind == "end":
        client.set_terminated(run_id, op["status"])
    else:
        raise ValueError(f"unknown kept call {kind!r}")


def log_pending(folder: Path) -> bool:
    """Log the calls a stage kept in folder/PENDING_FILE into their run, once (a tag
    on the run holds the file's hash); whether anything was logged now."""
    from mlflow.tracking import MlflowClient

    path = Path(folder) / PENDING_FILE
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    kept = json.loads(text)
    run_id = kept["run_id"]
    client = MlflowClient()
    if client.get_run(run_id).data.tags.get(TAG_PENDING_LOGGED) == digest:
        return False
    calls = kept["calls"]
    # The run's status last: a run marked FINISHED has everything it should have.
    for op in sorted(calls, key=lambda op: op["op"] == "end"):
        apply_call(op, run_id, Path(folder))
    client.set_tag(run_id, TAG_PENDING_LOGGED, digest)
    print(f"mlflow: logged the {len(calls)} calls kept in {path} into run {run_id}")
    return True


def _end_run(status: str, journal: Journal | None) -> None:
    import mlflow

    try:
        mlflow.end_run(status)  # MLflow forgets the run first: none stays active here
    except _server_errors() as error:
        if journal is None:
            raise
        journal.keep({"op": "end", "status": status}, error)


@contextmanager
def run_context(
    experiment_id: str,
    run_id: str | None = None,
    run_name: str | None = None,
    journal: Journal | None = None,
) -> Iterator[Any]:
    """Start (or, with run_id, reopen) a run and always end it with an honest status.
    With a journal, the status is set through it: kept, if the server is gone."""
    import mlflow

    with _sigterm_as_interrupt() as signals:
        run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name)
        if journal is not None:
            journal.run_id = run.info.run_id
        try:
            mlflow.set_tags({TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid())})
            yield run
        except KeyboardInterrupt:
            _end_run("KILLED", journal)
            raise
        except BaseException as error:
            if signals:
                # The signal's exception can reach us as another one: code it lands in
                # may catch it and raise its own, or fail cleaning up what it cut short.
                # The run was still stopped, not crashed, and resumes like one.
                _end_run("KILLED", journal)
                raise StageInterrupted(f"stopped by signal {signals[0]}") from error
            _end_run("FAILED", journal)
            raise
        _end_run("FINISHED", journal)


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
    # Tracked files but those the pipeline writes itself (dvc.lock, metrics, plots):
    # by the time train runs, a fresh clone's `dvc repro` has rewritten them, and
    # the tag is about whether code and params differ from the commit.
    excluded = [f":(exclude){path}" for path in pipeline_outputs(root)]
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)
    return {TAG_GIT_COMMIT: commit, TAG_GIT_DIRTY: str(bool(dirty)).lower()}


def pipeline_outputs(root: Path) -> list[str]:
    """dvc.lock and every out, metric and plot file dvc.yaml's stages write."""
    try:
        stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []
    paths = ["dvc.lock"]
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.extend(entry if isinstance(entry, dict) else [entry])
    return paths


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


def dataset_call(info: Any, tfrecord_dir: Path, context: str) -> dict[str, Any]:
    """The data as an MLflow dataset input (name, content hash, where it lies, counts),
    as a call that a Journal makes or keeps."""
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
    return {
        "op": "dataset",
        "dataset": dataset.to_dict(),  # name, digest, source and its type
        "context": context,
        "tags": {**counts, "charset": info.charset},
    }


def _log_dataset(client: Any, run_id: str, op: dict[str, Any]) -> None:
    """Log a dataset input. MLflow's store looks the dataset up, then inserts it: two
    runs logging the same new dataset at once (two hosts starting together) can both
    insert, and the later one fails on the table's key. By then the row exists, so the
    call is made once more, and finds it."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    tags = [InputTag(key, value) for key, value in op["tags"].items()]
    tags.append(InputTag(MLFLOW_DATASET_CONTEXT, op["context"]))
    inputs = [DatasetInput(Dataset(**op["dataset"]), tags)]
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException:
        time.sleep(0.5)
        client.log_inputs(run_id, datasets=inputs)


def log_dataset(info: Any, tfrecord_dir: Path, context: str) -> None:
    """Log the data into the active run (for a stage without a Journal)."""
    import mlflow

    apply_call(dataset_call(info, tfrecord_dir, context), mlflow.active_run().info.run_id, Path())


CHAMPION = "champion"
CHAMPION_METRIC = "test_sequence_accuracy"


def register_champion(model_uri: str, registered_name: str, accuracy: float) -> dict[str, Any]:
    """Register a logged model (once per run) and keep the `champion` alias on the
    version with the best test accuracy; return what happened."""
    import mlflow
    from mlflow.tracking import MlflowClient

    with store_lock(mlflow.get_tracking_uri()):
        return _register_champion(MlflowClient(), model_uri, registered_name, accuracy)


def _register_champion(
    client: Any, model_uri: str, registered_name: str, accuracy: float
) -> dict[str, Any]:
    import mlflow

    run_id = mlflow.models.get_model_info(model_uri).run_id
    # One version per run: evaluating a run again (same settings) registers nothing new.
    existing = client.search_model_versions(f"name = '{registered_name}' and run_id = '{run_id}'")
    version = existing[0] if existing else mlflow.register_model(model_uri, registered_name)
    version_number = int(version.version)
    client.set_model_version_tag(registered_name, version_number, CHAMPION_METRIC, str(accuracy))
    before, after = _converge_champion(client, registered_name)
    promoted = after == version_number and before != version_number
    if promoted:
        verdict = "it is the champion now"
    else:
        best = _version_accuracies(client, registered_name).get(after, float("nan"))
        verdict = f"version {after} stays champion ({best:.4f} >= {accuracy:.4f})"
    print(f"evaluate: registered {registered_name} version {version_number}; {verdict}")
    return {"version": version_number, "champion": after, "promoted": promoted}


def _version_accuracies(client: Any, registered_name: str) -> dict[int, float]:
    """Test accuracy of each version that has one (a version being registered right
    now has none yet: its evaluation converges the alias after tagging it)."""
    accuracies = {}
    for version in client.search_model_versions(f"name = '{registered_name}'"):
        value = (version.tags or {}).get(CHAMPION_METRIC)
        if value is not None:
            accuracies[int(version.version)] = float(value)
    return accuracies


def _current_champion(client: Any, registered_name: str) -> int | None:
    import mlflow

    try:
        return int(client.get_model_version_by_alias(registered_name, CHAMPION).version)
    except mlflow.exceptions.MlflowException:
        return None


def _converge_champion(client: Any, registered_name: str) -> tuple[int | None, int]:
    """Point the alias at the best version and check it stayed there; (before, after).

    The store has no compare-and-set, and evaluations on other hosts are outside any
    file lock here, so each evaluation reads, sets and reads again until a read shows
    the alias on the best version. Whichever evaluation writes last reads after its
    write, so the alias ends on the best version every evaluation has tagged. Ties
    keep the current champion (a rerun does not move it), else the oldest version.
    """
    before = _current_champion(client, registered_name)
    for _ in range(10):
        accuracies = _version_accuracies(client, registered_name)
        champion = _current_champion(client, registered_name)
        top = max(accuracies.values())
        if champion in accuracies and accuracies[champion] >= top:
            return before, champion
        best = min(number for number, value in accuracies.items() if value == top)
        client.set_registered_model_alias(registered_name, CHAMPION, best)
    raise RuntimeError(f"the {CHAMPION} alias of {registered_name} kept moving under this host")


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
