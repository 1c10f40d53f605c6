"""Write a raw dataset (images + labels.csv + dataset.json) as sharded TFRecords.

Each example holds the encoded image bytes as they are on disk (no re-encoding:
decoding happens once, in the tf.data reader), the text, its label ids and
length, and the image id. The reading side is captcha_ocr.data.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from pathlib import Path

import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from captcha_ocr.atomic import atomic_dir, write_json
from captcha_ocr.charsets import Charset
from captcha_ocr.dataset_info import (
    DATA_INFO,
    MANIFEST,
    SCHEMA_VERSION,
    SPLITS,
    DataInfo,
    RawInfo,
    SplitInfo,
    hash_files,
    read_manifest,
    read_raw_info,
)
from captcha_ocr.params import TFRecordParams
from captcha_ocr.progress import progress

# Feature layout of SCHEMA_VERSION 1; captcha_ocr.data parses exactly this.
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "text": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.VarLenFeature(tf.int64),
    "length": tf.io.FixedLenFeature([], tf.int64),
    "id": tf.io.FixedLenFeature([], tf.string),
    "source": tf.io.FixedLenFeature([], tf.string),  # generated or imported
}


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def compression_type(compression: str) -> str:
    """The name tf.io uses: '' for none, 'GZIP' for gzip."""
    return {"none": "", "gzip": "GZIP"}[compression]


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def encode_example(
    image: bytes, text: str, label: list[int], image_id: str, source: str = "generated"
) -> bytes:
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": _bytes(image),
                "text": _bytes(text.encode("utf-8")),
                "label": _ints(label),
                "length": _ints([len(label)]),
                "id": _bytes(image_id.encode("utf-8")),
                "source": _bytes(source.encode("utf-8")),
            }
        )
    )
    # deterministic: protobuf writes a map's entries in an order that depends on the
    # process's hash seed, so the same data gave different shard bytes (and a new
    # DVC hash) on every run.
    return example.SerializeToString(deterministic=True)


class BadSampleError(ValueError):
    """A raw sample that cannot become a training example; the message names its path."""


def _check_image(path: Path) -> None:
    """Cheap check that the file is an image PIL can open (header and format)."""
    try:
        with Image.open(path) as image:
            image.verify()
    except FileNotFoundError:
        raise BadSampleError(f"{path}: listed in the manifest but missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise BadSampleError(f"{path}: not a readable image ({error})") from None


def merge_infos(infos: list[RawInfo]) -> RawInfo:
    """One description of several raw datasets (generated and imported)."""
    charsets = {info.charset for info in infos}
    if len(charsets) > 1:
        raise ValueError(f"the raw datasets disagree on the charset: {sorted(charsets)}")
    return RawInfo(
        source=infos[0].source if len(infos) == 1 else "mixed",
        charset=infos[0].charset,
        min_length=min(info.min_length for info in infos),
        max_length=max(info.max_length for info in infos),
        # The first (generated, when mixed) sets the nominal size models default to.
        image_width=infos[0].image_width,
        image_height=infos[0].image_height,
        counts={split: sum(info.counts.get(split, 0) for info in infos) for split in SPLITS},
    )


def convert(raw_dirs: list[Path | str], out_dir: Path | str, params: TFRecordParams) -> DataInfo:
    """Write out_dir/<split>-NNNNN-of-NNNNN.tfrecord and out_dir/data_info.json from
    one or more raw datasets (labels.csv + dataset.json + images)."""
    raw_dirs, out_dir = [Path(folder) for folder in raw_dirs], Path(out_dir)
    if not raw_dirs:
        raise ValueError("no raw dataset to convert")
    raw_info = merge_infos([read_raw_info(folder) for folder in raw_dirs])
    charset = Charset(raw_info.charset)
    rows_by_split: dict[str, list[tuple[Path, dict[str, str]]]] = defaultdict(list)
    for folder in raw_dirs:
        for row in read_manifest(folder):
            if row["split"] not in SPLITS:
                raise BadSampleError(f"{folder / row['path']}: unknown split {row['split']!r}")
            rows_by_split[row["split"]].append((folder, row))

    options = tf.io.TFRecordOptions(compression_type=compression_type(params.compression))
    splits: dict[str, SplitInfo] = {}
    started = time.perf_counter()
    with atomic_dir(out_dir) as scratch:
        for split in SPLITS:
            rows = rows_by_split[split]
            if not rows:
                folders = ", ".join(str(folder / MANIFEST) for folder in raw_dirs)
                raise BadSampleError(f"{folders}: split {split!r} has no images")
            total = math.ceil(len(rows) / params.shard_size)
            names = [shard_name(split, index, total) for index in range(total)]
            examples = progress(rows, total=len(rows), desc=f"convert {split}", unit="img")
            for name in names:
                with tf.io.TFRecordWriter(str(scratch / name), options) as writer:
                    for folder, row in itertools.islice(examples, params.shard_size):
                        writer.write(_example_from_row(folder, row, charset))
            splits[split] = SplitInfo(shards=names, sha256=hash_files(scratch, names))
        info = DataInfo(
            **raw_info.model_dump(),
            schema_version=SCHEMA_VERSION,
            compression=params.compression,
            splits=splits,
        )
        write_json(scratch / DATA_INFO, info.model_dump())
    seconds = time.perf_counter() - started
    total_examples = sum(info.counts.values())
    print(
        f"tfrecord-convert: {total_examples} examples in {seconds:.1f} s "
        f"({total_examples / seconds:.0f} examples/s)"
    )
    return info


def _example_from_row(raw_dir: Path, row: dict[str, str], charset: Charset) -> bytes:
    path = raw_dir / row["path"]
    try:
        label = charset.encode(row["text"])
    except ValueError as error:
        raise BadSampleError(f"{path}: {error}") from None
    if not label:
        raise BadSampleError(f"{path}: empty label")
    _check_image(path)
    return encode_example(path.read_bytes(), row["text"], label, row["id"], row["source"])
