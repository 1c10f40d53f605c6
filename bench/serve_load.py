"""A bounded load test of the served reader on 127.0.0.1: good requests' latency
alone and while hostile ones arrive, the server's memory high-water mark, and how
many answers were 2xx, 4xx and 5xx.

    python bench/serve_load.py --name serve_2026-12-07 --requests 200

It starts `mlflow models serve` of --model (default: the registered champion in
the project's store) in its own process group, sends --requests good requests (one
test captcha each, from --data) from --clients threads, then the same again while
one more thread sends hostile requests (decompression bombs, garbage, a beam width
past its bound, more rows than a request reads, a request of text) as fast as they
are answered, and stops the server. Every loop is bounded in count and time.
Writes bench/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_json import record
from captcha_ocr.data import stored_images
from captcha_ocr.dataset_info import read_data_info
from captcha_ocr.mlflow_reader import MAX_ROWS
from tests.conftest import bomb_png
from tests.test_mlflow_server import free_port, serving

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "serve_load.json"
TIMEOUT_S = 120  # one request; a phase stops at its request count or 10 minutes


def body(images: list[bytes], params: dict[str, Any] | None = None) -> bytes:
    rows = [[base64.b64encode(image).decode("ascii")] for image in images]
    request: dict[str, Any] = {"dataframe_split": {"columns": ["image"], "data": rows}}
    if params:
        request["params"] = params
    return json.dumps(request).encode()


def post(url: str, payload: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    request = urllib.request.Request(url, payload, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0  # no answer
    return status, time.perf_counter() - started


class MemoryWatch(threading.Thread):
    """The resident memory of a process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                family = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in family))
            except psutil.Error:
                pass


def phase(url: str, good: list[bytes], requests: int, clients: int, hostile: bool) -> dict:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    hostile_statuses: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + 600
    counter = iter(range(requests))
    done = threading.Event()

    def good_client() -> None:
        for index in counter:
            if time.monotonic() > deadline:
                return
            status, seconds = post(url, body([good[index % len(good)]]))
            with lock:
                latencies.append(seconds)
                statuses[f"{status // 100}xx" if status else "no answer"] += 1

    bad_bodies = [
        body([bomb_png(10_000, 10_000)]),
        body([bomb_png(30_000, 30_000)]),
        body([b"\x89PNG garbage" * 1000]),
        body([good[0]], {"beam_width": 100_000}),
        body([good[0]] * (MAX_ROWS + 50)),
        json.dumps({"dataframe_split": {"columns": ["image"], "data": [["not base64!"]]}}).encode(),
        b"{ not json",
    ]

    def hostile_client() -> None:
        index = 0
        while not done.is_set() and time.monotonic() < deadline:
            status, _ = post(url, bad_bodies[index % len(bad_bodies)])
            with lock:
                hostile_statuses[f"{status // 100}xx" if status else "no answer"] += 1
            index += 1

    threads = [threading.Thread(target=good_client) for _ in range(clients)]
    bad = threading.Thread(target=hostile_client) if hostile else None
    if bad:
        bad.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    if bad:
        bad.join()
    ordered = sorted(latencies)
    return {
        "good_requests": len(latencies),
        "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)
        if ordered
        else None,
        "good_statuses": dict(statuses),
        "hostile_statuses": dict(hostile_statuses),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="serve_load")
    parser.add_argument("--model", default="models:/captcha-ocr@champion")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "tfrecords")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    info = read_data_info(args.data)
    good = [image for _, image in itertools.islice(stored_images(args.data, info, "test"), 50)]
    port = free_port()
    env = {
        **os.environ,
        # mlflow models serve starts uvicorn from PATH: this environment's first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}",
    }
    command = [
        str(Path(sys.executable).parent / "mlflow"), "models", "serve", "--model-uri",
        args.model, "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log_path = args.out.parent / f"{args.name}.server.log.tmp"
    # The tests' server runner: waits for /ping, stops the process group afterwards.
    with serving(command, f"{url}/ping", log_path, env) as server:
        watch = MemoryWatch(server.pid)
        watch.start()
        idle = watch.process.memory_info().rss
        alone = phase(f"{url}/invocations", good, args.requests, args.clients, hostile=False)
        peak_alone = watch.peak
        mixed = phase(f"{url}/invocations", good, args.requests, args.clients, hostile=True)
        watch.stop.set()
    entry = {
        "model": args.model,
        "clients": args.clients,
        "good_alone": alone,
        "good_with_hostile": mixed,
        "server_rss_mb": {
            "after_start": round(idle / 2**20),
            "peak_good_alone": round(peak_alone / 2**20),
            "peak_with_hostile": round(watch.peak / 2**20),
        },
    }
    print(json.dumps(entry, indent=2))
    record(args.out, args.name, entry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
