"""Generate captcha images with the `captcha` package, reproducibly and in parallel.

`captcha` (>= 0.7.1) draws all its randomness from the `secrets` module, so
seeding `random` does nothing. Each image therefore gets its own random stream,
derived from (seed, split, index), which stands in for `secrets` while that one
image is drawn. The text comes from the same stream. An image depends on
nothing else, so the output is byte-identical whatever the number of worker
processes and whichever worker draws it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import captcha.image
from captcha.image import ImageCaptcha

from captcha_ocr.atomic import atomic_dir
from captcha_ocr.dataset_info import RawInfo, write_raw_info
from captcha_ocr.params import DataParams
from captcha_ocr.progress import progress

SPLITS = ("train", "val", "test")
MANIFEST = "labels.csv"
MANIFEST_COLUMNS = ("id", "split", "path", "text", "length", "font")
DEFAULT_FONT = Path(captcha.image.DEFAULT_FONTS[0])


class _SeededSecrets:
    """The three functions captcha.image calls on `secrets`, drawn from one seeded stream."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def randbelow(self, exclusive_upper_bound: int) -> int:
        return self._rng.randrange(exclusive_upper_bound)

    def choice(self, sequence):
        return self._rng.choice(sequence)

    def randbits(self, k: int) -> int:
        return self._rng.getrandbits(k)


@contextmanager
def _captcha_randomness(rng: random.Random) -> Iterator[None]:
    original = captcha.image.secrets
    captcha.image.secrets = _SeededSecrets(rng)
    try:
        yield
    finally:
        captcha.image.secrets = original


def image_rng(seed: int, split: str, index: int) -> random.Random:
    """The random stream of one image: a hash, so neighbouring seeds share nothing."""
    digest = hashlib.sha256(f"captcha-ocr:{seed}:{split}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


@dataclass(frozen=True)
class CaptchaSpec:
    """What decides an image's content; pickled once into each worker."""

    seed: int
    symbols: str
    min_length: int
    max_length: int
    width: int
    height: int
    font: Path = DEFAULT_FONT

    @classmethod
    def from_params(cls, params: DataParams) -> CaptchaSpec:
        return cls(
            seed=params.seed,
            symbols=params.symbols,
            min_length=params.min_length,
            max_length=params.max_length,
            width=params.image_width,
            height=params.image_height,
        )


class CaptchaDrawer:
    def __init__(self, spec: CaptchaSpec) -> None:
        self.spec = spec
        self._captcha = ImageCaptcha(width=spec.width, height=spec.height, fonts=[str(spec.font)])

    def draw(self, split: str, index: int) -> tuple[str, bytes]:
        """(text, PNG bytes) of image `index` of `split`."""
        rng = image_rng(self.spec.seed, split, index)
        length = rng.randint(self.spec.min_length, self.spec.max_length)
        # Uniform, with replacement: doubled characters occur as in real captchas.
        text = "".join(rng.choice(self.spec.symbols) for _ in range(length))
        with _captcha_randomness(rng):
            image = self._captcha.generate_image(text)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return text, buffer.getvalue()


# Per-process state of the worker pool, set once by _init_worker.
_worker: tuple[CaptchaDrawer, Path] | None = None


def _init_worker(spec: CaptchaSpec, out_dir: Path) -> None:
    global _worker
    _worker = (CaptchaDrawer(spec), out_dir)


def _draw_one(task: tuple[str, int]) -> dict[str, object]:
    if _worker is None:
        raise RuntimeError("_draw_one called before _init_worker")
    drawer, out_dir = _worker
    split, index = task
    text, png = drawer.draw(split, index)
    image_id = f"{split}-{index:06d}"
    relative = Path(split) / f"{image_id}.png"
    (out_dir / relative).write_bytes(png)
    return {
        "id": image_id,
        "split": split,
        "path": relative.as_posix(),
        "text": text,
        "length": len(text),
        "font": drawer.spec.font.name,
    }


def resolve_workers(requested: int) -> int:
    return requested or len(os.sched_getaffinity(0))


def generate_dataset(params: DataParams, out_dir: Path | str) -> dict[str, object]:
    """Write out_dir/<split>/<id>.png and out_dir/labels.csv; return timing figures."""
    out_dir = Path(out_dir)
    spec = CaptchaSpec.from_params(params)
    counts = params.splits.model_dump()
    tasks = [(split, index) for split in SPLITS for index in range(counts[split])]
    workers = min(resolve_workers(params.workers), len(tasks))
    started = time.perf_counter()
    with atomic_dir(out_dir) as scratch:
        for split in SPLITS:
            (scratch / split).mkdir()
        rows = list(
            progress(
                _draw_all(tasks, spec, scratch, workers),
                total=len(tasks),
                desc=f"generate ({workers} worker{'s' if workers > 1 else ''})",
                unit="img",
            )
        )
        _write_manifest(scratch / MANIFEST, rows)
        write_raw_info(
            scratch,
            RawInfo(
                source="generated",
                charset=spec.symbols,
                min_length=spec.min_length,
                max_length=spec.max_length,
                image_width=spec.width,
                image_height=spec.height,
                counts=counts,
            ),
        )
    seconds = time.perf_counter() - started
    return {
        "images": len(rows),
        "workers": workers,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(rows) / seconds, 1),
    }


def _draw_all(
    tasks: list[tuple[str, int]], spec: CaptchaSpec, out_dir: Path, workers: int
) -> Iterator[dict[str, object]]:
    if workers == 1:
        _init_worker(spec, out_dir)
        yield from map(_draw_one, tasks)
        return
    # spawn, not fork: the caller may have TensorFlow's threads running, and a
    # forked copy of a multithreaded process can deadlock.
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(256, len(tasks) // (workers * 16)))
    with context.Pool(workers, initializer=_init_worker, initargs=(spec, out_dir)) as pool:
        # imap keeps task order, so the manifest is the same for any worker count.
        yield from pool.imap(_draw_one, tasks, chunksize=chunksize)


def _write_manifest(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(raw_dir: Path | str) -> list[dict[str, str]]:
    with (Path(raw_dir) / MANIFEST).open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))
