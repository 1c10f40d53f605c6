"""Generate captcha images with the `captcha` package, reproducibly and in parallel.

`captcha` (>= 0.7.1) draws all its randomness from the `secrets` module, so
seeding `random` does nothing. Each image therefore gets its own random stream,
derived from (seed, split, index), which stands in for `secrets` while that one
image is drawn. The text comes from the same stream. An image depends on
nothing else, so the output is byte-identical whatever the number of worker
processes and whichever worker draws it.
"""

from __future__ import annotations

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
from PIL.ImageFilter import SMOOTH

from captcha_ocr.atomic import atomic_dir
from captcha_ocr.dataset_info import MANIFEST, SPLITS, RawInfo, write_manifest, write_raw_info
from captcha_ocr.fonts import resolve_all as resolve_fonts
from captcha_ocr.params import DataParams, GenerateParams
from captcha_ocr.progress import progress


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
    params: GenerateParams
    fonts: tuple[Path, ...]

    @classmethod
    def from_params(cls, data: DataParams, params: GenerateParams, root: Path) -> CaptchaSpec:
        fonts = tuple(resolve_fonts(params.fonts, data.symbols, root))
        return cls(seed=data.seed, symbols=data.symbols, params=params, fonts=fonts)


class TunedCaptcha(ImageCaptcha):
    """ImageCaptcha with its class-level drawing constants and noise made parameters.

    generate_image repeats the package's own, draw for draw, so that the default
    parameters give the package's images.
    """

    def __init__(self, params: GenerateParams, font: Path) -> None:
        super().__init__(
            width=params.image_width,
            height=params.image_height,
            fonts=[str(font)],
            font_sizes=params.font_sizes,
        )
        self.character_rotate = params.rotation
        self.character_warp_dx = params.warp_x
        self.character_warp_dy = params.warp_y
        self.character_offset_dx = params.offset_x
        self.character_offset_dy = params.offset_y
        self.word_space_probability = 1.0 - params.space_probability
        self.word_offset_dx = params.overlap
        self.noise_dots = params.noise_dots
        self.noise_dot_width = params.noise_dot_width
        self.noise_curves = params.noise_curves

    def generate_image(self, chars: str, bg_color=None, fg_color=None):
        # Read through the module so the seeded stand-in for `secrets` is used.
        background = captcha.image.random_color(238, 255)
        color = captcha.image.random_color(10, 200, captcha.image.secrets.randbelow(36) + 220)
        image = self.create_captcha_image(chars, color, background)
        if self.noise_dots:
            self.create_noise_dots(image, color, width=self.noise_dot_width, number=self.noise_dots)
        for _ in range(self.noise_curves):
            self.create_noise_curve(image, color)
        return image.filter(SMOOTH)


class CaptchaDrawer:
    def __init__(self, spec: CaptchaSpec) -> None:
        self.spec = spec
        self._captchas = [TunedCaptcha(spec.params, font) for font in spec.fonts]
        oversample = spec.params.oversample
        self._train_weights = (
            [oversample.factor if s in oversample.symbols else 1.0 for s in spec.symbols]
            if oversample.symbols
            else None
        )

    def draw(self, split: str, index: int) -> tuple[str, str, bytes]:
        """(text, font name, PNG bytes) of image `index` of `split`."""
        rng = image_rng(self.spec.seed, split, index)
        length = rng.randint(*self.spec.params.lengths(split))
        # With replacement: doubled characters occur as in real captchas. Uniform,
        # except that generate.oversample weights the train split (only: val and
        # test stay the task, so scores compare across settings).
        if split == "train" and self._train_weights:
            chosen = rng.choices(self.spec.symbols, weights=self._train_weights, k=length)
        else:
            chosen = [rng.choice(self.spec.symbols) for _ in range(length)]
        doubled = self.spec.params.oversample.doubled
        if split == "train" and doubled:
            # A doubled character is read right only if the model puts a CTC blank
            # between the two; uniform draws give few of them (3 in 36 captchas of 4).
            for position in range(1, length):
                if rng.random() < doubled:
                    chosen[position] = chosen[position - 1]
        text = "".join(chosen)
        font_index = rng.randrange(len(self._captchas))
        with _captcha_randomness(rng):
            image = self._captchas[font_index].generate_image(text)
        buffer = io.BytesIO()
        # zlib level 1: encoding took a third of each image's time at the default
        # level 6; level 1 makes generation ~15% faster for ~10% larger files.
        image.save(buffer, format="PNG", compress_level=1)
        return text, self.spec.fonts[font_index].stem, buffer.getvalue()


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
    text, font, png = drawer.draw(split, index)
    image_id = f"{split}-{index:06d}"
    relative = Path(split) / f"{image_id}.png"
    (out_dir / relative).write_bytes(png)
    return {
        "id": image_id,
        "split": split,
        "path": relative.as_posix(),
        "text": text,
        "length": len(text),
        "font": font,
        "source": "generated",
        "original": "",
    }


def resolve_workers(requested: int) -> int:
    return requested or len(os.sched_getaffinity(0))


def generate_dataset(
    data: DataParams, params: GenerateParams, out_dir: Path | str, root: Path | None = None
) -> dict[str, object]:
    """Write out_dir/<split>/<id>.png, labels.csv and dataset.json; return timing figures.

    With data.source `imported`, the dataset is empty: the stage still runs in
    the DVC graph, and tfrecord-convert reads only the imported images.
    root: where relative font paths start (the project).
    """
    out_dir = Path(out_dir)
    spec = CaptchaSpec.from_params(data, params, root or Path.cwd())  # bad fonts: before any work
    counts = params.splits.model_dump() if data.uses_generated else dict.fromkeys(SPLITS, 0)
    tasks = [(split, index) for split in SPLITS for index in range(counts[split])]
    workers = max(1, min(resolve_workers(params.workers), len(tasks)))
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
        write_manifest(scratch / MANIFEST, rows)
        write_raw_info(
            scratch,
            RawInfo(
                source="generated",
                charset=spec.symbols,
                min_length=min(params.lengths(split)[0] for split in SPLITS),
                max_length=max(params.lengths(split)[1] for split in SPLITS),
                image_width=params.image_width,
                image_height=params.image_height,
                counts=counts,
            ),
        )
    seconds = time.perf_counter() - started
    return {
        "images": len(rows),
        "workers": workers,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(rows) / seconds, 1) if rows else 0.0,
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
