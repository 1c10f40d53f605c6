"""Training speed under train.distribute: none, mirrored and multi_worker.

    python bench/distribute.py --name distribute_2026-12-07              # ~5 min, 2 cores
    python bench/distribute.py --name gpu_host --modes none mirrored     # on a GPU host

Generates one data set (params.yaml's model and image size, --train captchas), then
runs the train stage on it once per mode, each in a fresh process and folder:
`none` (one device), `mirrored` (this host's GPUs, or train.cpu_replicas logical CPU
devices where it has none) and `multi_worker` (--workers processes on 127.0.0.1,
TF_CONFIG set for each). Reports the median samples/s over the epochs after the
first (which builds the cache and traces the graphs) and the final loss.

Writes bench/results/distribute.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import yaml

from bench.results_json import record
from captcha_ocr.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "distribute.json"
TRAIN = "import sys; from stages import train; sys.exit(train.main(sys.argv[1:]))"


def write_params(path: Path, args: argparse.Namespace, mode: str) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"]["splits"] = {"train": args.train, "val": 256, "test": 64}
    params["train"].update(
        epochs=args.epochs, min_steps_per_epoch=0, distribute=mode, batch_size=args.batch_size
    )
    params["train"]["early_stopping"]["enabled"] = False
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def make_data(folder: Path, args: argparse.Namespace) -> Path:
    params = write_params(folder / "params.yaml", args, "none")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for stage, extra in (
        ("generate", ["--out", str(folder / "raw")]),
        ("tfrecord_convert", ["--raw", str(folder / "raw"), "--out", str(folder / "tfrecords")]),
    ):
        subprocess.run(
            [sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--params", str(params), *extra],
            check=True, env=env, cwd=folder, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return folder / "tfrecords"


def train(folder: Path, data: Path, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    processes = args.workers if mode == "multi_worker" else 1
    addresses = [f"127.0.0.1:{port}" for port in (free_port("127.0.0.1") for _ in range(processes))]
    started = time.perf_counter()
    running = []
    for index in range(processes):
        host = folder / f"{mode}-{index}"
        host.mkdir()
        params = write_params(host / "params.yaml", args, mode)
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TF_CONFIG")}
        env["PYTHONPATH"] = str(ROOT)
        if mode == "multi_worker":
            cluster = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            env["TF_CONFIG"] = json.dumps(cluster)
        command = [sys.executable, "-c", TRAIN, "--params", str(params), "--data", str(data)]
        for flag, path in (
            ("--model-dir", "models"),
            ("--checkpoints", "checkpoints"),
            ("--metrics", "train.json"),
            ("--history", "history.csv"),
        ):
            command += [flag, str(host / path)]
        log = (host / "train.log").open("w")
        running.append(subprocess.Popen(command, cwd=host, env=env, stdout=log, stderr=log))
    codes = [process.wait() for process in running]
    seconds = time.perf_counter() - started
    chief = folder / f"{mode}-0"
    if any(codes):
        raise SystemExit(f"{mode}: exit codes {codes}; see {chief / 'train.log'}")
    history = pd.read_csv(chief / "history.csv")
    steady = history["train_samples_per_second"].iloc[1:] if len(history) > 1 else history
    return {
        "processes": processes,
        "samples_per_second": round(statistics.median(steady), 1),
        "first_epoch_samples_per_second": round(float(history["train_samples_per_second"][0]), 1),
        "final_loss": round(float(history["loss"].iloc[-1]), 4),
        "wall_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the entry's name in the JSON")
    parser.add_argument("--modes", nargs="+", default=["none", "mirrored", "multi_worker"])
    parser.add_argument("--train", type=int, default=2048, help="training captchas")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch")
    parser.add_argument("--workers", type=int, default=2, help="multi_worker processes")
    args = parser.parse_args()
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    with tempfile.TemporaryDirectory(prefix="bench-distribute-") as scratch:
        folder = Path(scratch)
        data = make_data(folder, args)
        results = {}
        for mode in args.modes:
            results[mode] = train(folder, data, args, mode)
            print(f"{mode}: {results[mode]}", flush=True)
    base = results.get("none", {}).get("samples_per_second")
    for result in results.values():
        if base:
            result["speedup"] = round(result["samples_per_second"] / base, 2)
    entry = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python bench/distribute.py " + " ".join(sys.argv[1:]),
        "gpus": gpus,
        "train_captchas": args.train,
        "global_batch": args.batch_size,
        "epochs": args.epochs,
        "modes": results,
    }
    record(OUT, args.name, entry)
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
