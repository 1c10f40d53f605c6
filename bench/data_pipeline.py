"""The data layer's speed: generation with 1 worker and with every core (and the
scaling efficiency), PNG bytes per image, TFRecord writing, and tf.data read+decode
against what training consumes.

    python bench/data_pipeline.py [--images 4000] [--params params.yaml]

Writes bench/results/data_pipeline.json. Run it on an otherwise idle machine:
the figures are only as good as the cores are free.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from results_json import machine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--images", type=int, default=4000, help="images per generation run")
    parser.add_argument("--read-passes", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "data_pipeline.json")
    args = parser.parse_args(argv)

    from captcha_ocr.dataset_info import read_manifest
    from captcha_ocr.generate import generate_dataset, resolve_workers
    from captcha_ocr.params import load_params, parse_params

    base = load_params(args.params)
    cores = resolve_workers(0)
    splits = {
        "train": args.images - 2 * (args.images // 10),
        "val": args.images // 10,
        "test": args.images // 10,
    }
    results: dict[str, object] = {
        "machine": machine(),
        "images": args.images,
        "image_size": [base.generate.image_width, base.generate.image_height],
    }
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        generation = {}
        for workers in sorted({1, cores}):
            raw = base.model_dump(by_alias=True)
            raw["generate"].update(workers=workers, splits=splits)
            params = parse_params(raw)
            out = scratch / f"raw-{workers}"
            stats = generate_dataset(params.data, params.generate, out)
            generation[workers] = stats["images_per_second"]
            print(f"generate, {workers} worker(s): {stats['images_per_second']} images/s")
        raw_dir = scratch / f"raw-{cores}"
        rows = read_manifest(raw_dir)
        png_bytes = sum((raw_dir / row["path"]).stat().st_size for row in rows) / len(rows)
        efficiency = generation[cores] / (generation[1] * cores)
        results["generation"] = {
            "images_per_second_1_worker": generation[1],
            f"images_per_second_{cores}_workers": generation[cores],
            "scaling_efficiency": round(efficiency, 3),
            "png_bytes_per_image": round(png_bytes),
        }

        from captcha_ocr.data import input_spec, training_dataset
        from captcha_ocr.dataset_info import read_data_info
        from captcha_ocr.tfrecords import convert

        started = time.perf_counter()
        convert([raw_dir], scratch / "tfrecords", base.tfrecord)
        write_seconds = time.perf_counter() - started
        results["tfrecord_write_examples_per_second"] = round(len(rows) / write_seconds, 1)

        info = read_data_info(scratch / "tfrecords")
        spec = input_spec(info, base.model)
        read_rates = []
        for cached in (False, True):
            batches = training_dataset(
                scratch / "tfrecords",
                info,
                "train",
                spec,
                batch_size=base.train.batch_size,
                shuffle=True,
                seed=0,
                shuffle_buffer=base.train.shuffle_buffer,
                cache=cached,
            )
            for _ in range(1 if cached else 0):
                for _ in batches:  # fill the cache
                    pass
            for _ in range(args.read_passes):
                started = time.perf_counter()
                count = sum(int(images.shape[0]) for images, _ in batches)
                read_rates.append((cached, count / (time.perf_counter() - started)))
        # The median pass: on these machines some passes run at the speed of
        # one core (tf.data's autotuning, with the old and the new parser
        # alike), so the best pass overstates and every pass is kept.
        uncached_passes = [rate for cached, rate in read_rates if not cached]
        uncached = statistics.median(uncached_passes)
        cached_rate = statistics.median(rate for cached, rate in read_rates if cached)
        results["tf_data_images_per_second"] = {
            "decode_every_epoch": round(uncached, 1),
            "decode_every_epoch_passes": [round(rate) for rate in uncached_passes],
            "from_cache": round(cached_rate, 1),
            "input": list(spec.shape),
        }

    model_cost = RESULTS / "model_cost.json"
    if model_cost.exists():
        costs = json.loads(model_cost.read_text())
        default = costs.get("default")
        if default:
            consumed = default["train_samples_per_second"]
            results["training_consumes_samples_per_second"] = consumed
            results["input_over_training"] = round(uncached / consumed, 1)
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
