"""Read captcha images with a trained model: one CSV row per image, `path,text,confidence`.

    python -m captcha_ocr.read path/to/captcha.png more/captchas/ > readings.csv

Images are prepared as the pipeline prepares its own (images.load_image reads
any format Pillow knows and flattens transparency onto white; data.decode_image
resizes to the model's input), so a model reads a file exactly as it read its
test split. The charset comes from the data the model was trained on
(data/tfrecords/data_info.json), as in evaluate, and the decoder and test-time
shifts from params.yaml's evaluate section unless given. A file that is not a readable
image, or larger than import.max_image_pixels, is reported on stderr with its path
and reason; the others are still read, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from captcha_ocr.images import DEFAULT_MAX_PIXELS, ImageRefused, load_image, shown
from captcha_ocr.importing import sample_files
from captcha_ocr.params import EvaluateParams, Params, ParamsError, load_params
from captcha_ocr.paths import MODEL_DIR, MODEL_FILE, PARAMS_FILE, TFRECORD_DIR

if TYPE_CHECKING:
    import keras

    from captcha_ocr.charsets import Charset
    from captcha_ocr.data import InputSpec
    from captcha_ocr.prediction import Predictions

DEFAULT_PARAMS = PARAMS_FILE


def image_paths(targets: list[Path]) -> Iterator[Path]:
    """Files as given; folders searched recursively (hidden files, READMEs and
    licences left out, as an import leaves them out)."""
    for target in targets:
        if target.is_dir():
            yield from sample_files(target)
        else:
            yield target


def prepare(
    paths: Iterable[Path], spec: InputSpec, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[Path], np.ndarray, list[tuple[Path, str]]]:
    """(the readable paths, their images as the model takes them, (path, reason) of the
    others)."""
    readable: list[Path] = []
    pngs: list[bytes] = []
    failures: list[tuple[Path, str]] = []
    for path in paths:
        try:
            png, _, _ = load_image(path, max_pixels)
        except ImageRefused as error:
            failures.append((path, str(error)))
            continue
        readable.append(path)
        pngs.append(png)
    return readable, model_images(pngs, spec), failures


def model_images(pngs: Iterable[bytes], spec: InputSpec) -> np.ndarray:
    """Images as load_image gives them, as the model takes them: decoded, resized and
    scaled by the same functions as the TFRecord reader."""
    import tensorflow as tf

    from captcha_ocr.data import decode_image, normalize

    images = [normalize(decode_image(tf.constant(png), spec)).numpy() for png in pngs]
    return np.stack(images) if images else np.zeros((0, *spec.shape), np.float32)


def read_texts(
    model: keras.Model, images: np.ndarray, charset: Charset, settings: EvaluateParams
) -> Predictions:
    """The model's texts for prepared images, read in batches as evaluate reads."""
    import tensorflow as tf

    from captcha_ocr.prediction import predict_batches

    def batches() -> Iterator[dict]:
        for start in range(0, len(images), settings.batch_size):
            chunk = tf.constant(images[start : start + settings.batch_size])
            # No labels: an empty one per image keeps predict_batches' contract.
            yield {"image": chunk, "label": tf.zeros((len(chunk), 0), tf.int32)}

    return predict_batches(
        model,
        batches(),
        charset,
        settings.decoder,
        settings.beam_width,
        settings.tta_shifts,
    )


def reading_params(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Params:
    """The params file, or the schema's defaults when the default params.yaml is absent."""
    if args.params.exists():
        try:
            return load_params(args.params)
        except ParamsError as error:
            parser.error(str(error))
    if args.params != DEFAULT_PARAMS:
        parser.error(f"params {args.params} not found")
    return Params()


def reading_settings(
    args: argparse.Namespace, parser: argparse.ArgumentParser, params: Params
) -> EvaluateParams:
    """The decoder and shifts: the options given, else the params' evaluate section."""
    from pydantic import ValidationError

    settings = params.evaluate
    given = {
        "decoder": args.decoder,
        "beam_width": args.beam_width,
        "tta_shifts": args.tta_shifts,
    }
    try:
        return EvaluateParams.model_validate(
            settings.model_dump()
            | {key: value for key, value in given.items() if value is not None}
        )
    except ValidationError as error:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in error.errors()
        )
        parser.error(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--model", type=Path, default=MODEL_DIR / MODEL_FILE)
    parser.add_argument(
        "--data",
        type=Path,
        default=TFRECORD_DIR,
        help="the TFRecord folder the model was trained on (for its charset)",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=DEFAULT_PARAMS,
        help="the options below default to this file's evaluate section, so that images "
        "are read as evaluate read the test split (default: params.yaml, if there is one)",
    )
    parser.add_argument("--decoder", choices=("greedy", "beam_search"))
    parser.add_argument("--beam-width", type=int)
    parser.add_argument(
        "--tta-shifts",
        type=int,
        metavar="N",
        help="also read each image shifted 1..N pixels left and right and keep the "
        "likeliest text (evaluate.tta_shifts); 0: one read",
    )
    args = parser.parse_args(argv)
    params = reading_params(args, parser)
    settings = reading_settings(args, parser, params)

    # Before TensorFlow's import: a wrong path fails in a second, not in five.
    for path, what in ((args.model, "model"), (args.data / "data_info.json", "data info")):
        if not path.is_file():
            parser.error(
                f"{what} {path} not found (run `make repro` first, or pass --{what.split()[0]})"
            )

    import keras

    from captcha_ocr.data import model_input_spec
    from captcha_ocr.dataset_info import read_data_info

    charset = read_data_info(args.data).charset_map()
    model = keras.models.load_model(args.model)
    classes = model.output_shape[-1]
    if classes != charset.num_classes:
        print(
            f"error: {args.model} has {classes} output classes, but the charset in "
            f"{args.data} has {len(charset)} symbols (+1 blank = {charset.num_classes}): "
            "pass the --data the model was trained on",
            file=sys.stderr,
        )
        return 2
    spec = model_input_spec(model, max_length=1)  # max_length: unused when reading

    readable, images, failures = prepare(
        image_paths(args.images), spec, params.import_.max_image_pixels
    )
    for path, reason in failures:
        print(f"{shown(path)}: {reason}", file=sys.stderr)
    predictions = read_texts(model, images, charset, settings)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["path", "text", "confidence"])
    for path, text, confidence in zip(
        readable, predictions.texts, predictions.confidence, strict=True
    ):
        writer.writerow([shown(path), text, f"{confidence:.4g}"])
    if failures:
        print(f"{len(failures)} file(s) could not be read (listed above)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
