"""Write a raw dataset (images + labels.csv + dataset.json) as sharded TFRecords.

Each example holds the encoded image bytes as they are on disk (no re-encoding:
decoding happens once, in the tf.data reader), the text, its label ids and
length, and the image id. The reading side is captcha_ocr.data.
"""

from __future__ import annotations

import hashlib
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
    SCHEMA_VERSION,
    DataInfo,
    SplitInfo,
    read_raw_info,
)
from captcha_ocr.generate import SPLITS, read_manifest
from captcha_ocr.params import TFRecordParams
from captcha_ocr.progress import progress

# Feature layout of SCHEMA_VERSION 1; captcha_ocr.data parses exactly this.
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "text": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.VarLenFeature(tf.int64),
    "length": tf.io.FixedLenFeature([], tf.int64),
    "id": tf.io.FixedLenFeature([], tf.string),
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


def encode_example(image: bytes, text: str, label: list[int], image_id: str) -> bytes:
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": _bytes(image),
                "text": _bytes(text.encode("utf-8")),
                "label": _ints(label),
                "length": _ints([len(label)]),
                "id": _bytes(image_id.encode("utf-8")),
            }
        )
    )
    return example.SerializeToString()


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


def convert(raw_dir: Path | str, out_dir: Path | str, params: TFRecordParams) -> DataInfo:
    """Write out_dir/<split>-NNNNN-of-NNNNN.tfrecord and out_dir/data_info.json."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    raw_info = read_raw_info(raw_dir)
    charset = Charset(raw_info.charset)
    rows_by_split: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in read_manifest(raw_dir):
        if row["split"] not in SPLITS:
            raise BadSampleError(f"{raw_dir / row['path']}: unknown split {row['split']!r}")
        rows_by_split[row["split"]].append(row)

    options = tf.io.TFRecordOptions(compression_type=compression_type(params.compression))
    splits: dict[str, SplitInfo] = {}
    started = time.perf_counter()
    with atomic_dir(out_dir) as scratch:
        for split in SPLITS:
            rows = rows_by_split[split]
            if not rows:
                raise BadSampleError(f"{raw_dir / 'labels.csv'}: split {split!r} has no images")
            total = math.ceil(len(rows) / params.shard_size)
            names = [shard_name(split, index, total) for index in range(total)]
            examples = progress(rows, total=len(rows), desc=f"convert {split}", unit="img")
            for name in names:
                with tf.io.TFRecordWriter(str(scratch / name), options) as writer:
                    for row in itertools.islice(examples, params.shard_size):
                        writer.write(_example_from_row(raw_dir, row, charset))
            splits[split] = SplitInfo(shards=names, sha256=_hash_files(scratch, names))
        info = DataInfo(
            **raw_info.model_dump(exclude={"counts"}),
            counts={split: len(rows_by_split[split]) for split in SPLITS},
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
    return encode_example(path.read_bytes(), row["text"], label, row["id"])


def _hash_files(folder: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        with (folder / name).open("rb") as stream:
            for block in iter(lambda stream=stream: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
