"""What the team stack costs and saves, measured on this machine.

    python bench/team_stack.py logging --name logging_2026-12-07      # ~2 minutes
    python bench/team_stack.py pull --name pull_2026-12-07            # a full repro: 15-30 min

logging: --writers processes at once each log --runs runs (10 params, 20 steps of 5
metrics each through log_batch, as a training's epochs are logged, and one small
artifact), into (a) a SQLite file, the laptop default, and (b) `mlflow server` on
PostgreSQL with S3 artifacts and basic auth (captcha_ocr.stack). Reports runs/s,
metric values/s and the calls that failed.

pull: clones this repository's HEAD, times `dvc repro` of params.yaml there, pushes
to a fresh stack's DVC remote (MB/s), clones again, times `dvc pull` (MB/s) and
checks `dvc status` is clean: the pull-vs-repro ratio a new team member sees. The
repro clone's dvc.lock is left in --keep, for a commit that refreshes dvc.lock.

Writes bench/results/team_stack.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_json import record
from captcha_ocr.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "team_stack.json"
BIN = Path(sys.executable).parent
STEPS, METRICS_PER_STEP, PARAMS_PER_RUN = 20, 5, 10


def _writer(uri: str, env: dict[str, str], experiment_id: str, runs: int, queue: Any) -> None:
    os.environ.update(env)
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    artifact = Path(tempfile.mkdtemp()) / "note.txt"
    artifact.write_text("x" * 2000)
    done = failed = 0
    for _ in range(runs):
        try:
            run = client.create_run(experiment_id)
            run_id = run.info.run_id
            client.log_batch(run_id, params=[Param(f"p{i}", str(i)) for i in range(PARAMS_PER_RUN)])
            for step in range(STEPS):
                now = int(time.time() * 1000)
                values = [
                    Metric(f"m{i}", step * 0.1 + i, now, step) for i in range(METRICS_PER_STEP)
                ]
                client.log_batch(run_id, metrics=values)
            client.log_artifact(run_id, str(artifact))
            client.set_terminated(run_id, "FINISHED")
            done += 1
        except Exception as error:  # counted and reported: the point is how many fail
            failed += 1
            queue.put(("error", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"))
    queue.put(("done", done, failed))


def logging_throughput(uri: str, env: dict[str, str], writers: int, runs: int) -> dict[str, Any]:
    os.environ.update(env)
    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient(uri).create_experiment(f"bench-{time.time_ns()}")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_writer, args=(uri, env, experiment_id, runs, queue))
        for _ in range(writers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    finished, errors, done, failed = 0, [], 0, 0
    while finished < writers:
        message = queue.get(timeout=1800)
        if message[0] == "error":
            errors.append(message[1])
        else:
            finished += 1
            done += message[1]
            failed += message[2]
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
    return {
        "writers": writers,
        "runs_finished": done,
        "runs_failed": failed,
        "seconds": round(seconds, 2),
        "runs_per_s": round(done / seconds, 2),
        "metric_values_per_s": round(done * STEPS * METRICS_PER_STEP / seconds, 1),
        "first_errors": sorted(set(errors))[:5],
    }


def run(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return time.perf_counter() - started


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def run_output(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True).stdout


def pull_versus_repro(stack: Stack, work: Path, keep: Path | None, jobs: int) -> dict[str, Any]:
    env = {**os.environ, **stack.config.client_env(), "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    builder, clone = work / "builder", work / "clone"
    run(["git", "clone", "-q", str(ROOT), str(builder)], work, env)
    repro_s = run([str(BIN / "dvc"), "repro"], builder, {**env, "PYTHONPATH": str(builder / "src")})
    if keep is not None:  # what git tracks of the repro: dvc.lock, metrics, small plots
        tracked = run_output(["git", "ls-files", "dvc.lock", "metrics", "plots"], builder, env)
        for name in tracked.split():
            (keep / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(builder / name, keep / name)
    cache_mb = folder_mb(builder / ".dvc" / "cache")
    push_s = run([str(BIN / "dvc"), "push", "--jobs", str(jobs)], builder, env)
    # The clone must see the outputs the builder pushed: its dvc.lock, through git.
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit",
         "-q", "-am", "bench: the repro's dvc.lock"], builder, env)  # fmt: skip
    run(["git", "clone", "-q", str(builder), str(clone)], work, env)
    pull_s = run([str(BIN / "dvc"), "pull", "--jobs", str(jobs)], clone, env)
    status = subprocess.run(
        [str(BIN / "dvc"), "status"], cwd=clone, env=env, capture_output=True, text=True
    )
    return {
        "repro_s": round(repro_s, 1),
        "pull_s": round(pull_s, 1),
        "pull_over_repro": round(pull_s / repro_s, 4),
        "push_s": round(push_s, 1),
        "cache_mb": round(cache_mb, 1),
        "push_mb_per_s": round(cache_mb / push_s, 1),
        "pull_mb_per_s": round(cache_mb / pull_s, 1),
        "dvc_jobs": jobs,
        "status_after_pull": status.stdout.strip().splitlines()[-1] if status.stdout else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["logging", "pull"])
    parser.add_argument("--name", required=True, help="the entry's name in the results file")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10, help="runs per writer")
    parser.add_argument(
        "--keep", type=Path, help="pull: copy the repro's dvc.lock, metrics and plots here"
    )
    parser.add_argument("--jobs", type=int, default=32, help="pull: dvc push/pull --jobs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-team-", dir="/tmp"))
    work.chmod(0o755)  # PostgreSQL's own user (under root) must pass through it
    stack = Stack.create(work / "stack")
    try:
        stack.start()
        if args.what == "logging":
            sqlite = f"sqlite:///{work / 'mlflow.db'}"
            entry = {
                "sqlite_file": logging_throughput(sqlite, {}, args.writers, args.runs),
                "postgres_server": logging_throughput(
                    stack.config.tracking_uri, stack.config.client_env(), args.writers, args.runs
                ),
                "workload": f"{args.writers} processes x {args.runs} runs; a run: "
                f"{PARAMS_PER_RUN} params, {STEPS} log_batch of {METRICS_PER_STEP} metrics, "
                "one 2 kB artifact",
            }
        else:
            entry = pull_versus_repro(stack, work, args.keep, args.jobs)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    record(OUT, args.name, entry)
    print(entry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
