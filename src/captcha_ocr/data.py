"""The one reader of the TFRecord shards, used by train, evaluate and any later tool.

Parse, decode, resize to the model's input size and normalize, all in parallel
map calls, with prefetch at the end, so that the input pipeline is never what
training waits on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tensorflow as tf

from captcha_ocr.dataset_info import DataInfo
from captcha_ocr.tfrecords import FEATURES, compression_type

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: image height, width and channels, and label length."""

    height: int
    width: int
    channels: int
    max_length: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


def input_spec(info: DataInfo, model_params) -> InputSpec:
    return InputSpec(
        height=model_params.input_height or info.image_height,
        width=model_params.input_width or info.image_width,
        channels=model_params.channels,
        max_length=info.max_length,
    )


def model_input_spec(model: keras.Model, max_length: int) -> InputSpec:
    """The input size a trained model was built for, so reading always matches training."""
    _, height, width, channels = model.input_shape
    return InputSpec(height=height, width=width, channels=channels, max_length=max_length)


def shard_paths(tfrecord_dir: Path | str, info: DataInfo, split: str) -> list[str]:
    if split not in info.splits:
        raise ValueError(f"split {split!r} is not in the data; it has {sorted(info.splits)}")
    return [str(Path(tfrecord_dir) / name) for name in info.splits[split].shards]


def stored_images(
    tfrecord_dir: Path | str, info: DataInfo, split: str
) -> Iterator[tuple[str, bytes]]:
    """(id, the image's bytes as the TFRecords hold them) of a split, in file order."""
    for path in shard_paths(tfrecord_dir, info, split):
        for record in tf.data.TFRecordDataset(path, compression_type(info.compression)):
            example = tf.io.parse_single_example(record, FEATURES)
            yield example["id"].numpy().decode("utf-8"), example["image"].numpy()


def decode_image(encoded: tf.Tensor, spec: InputSpec) -> tf.Tensor:
    """Encoded bytes (PNG, JPEG, GIF, BMP) -> uint8 [height, width, channels]."""
    image = tf.io.decode_image(encoded, channels=spec.channels, expand_animations=False)
    # "area" averages the source pixels each target pixel covers: a proper
    # filter for shrinking, a third cheaper than antialiased bilinear (measured
    # in bench/data_pipeline.py), and the identity at the image's own size.
    image = tf.image.resize(image, (spec.height, spec.width), method="area")
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def normalize(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(image, tf.float32) / 255.0


def read_examples(
    tfrecord_dir: Path | str,
    info: DataInfo,
    split: str,
    spec: InputSpec,
    *,
    shuffle_files: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Unbatched dicts: image (uint8), label (int32, padded with 0), text, id, source."""
    files = tf.data.Dataset.from_tensor_slices(shard_paths(tfrecord_dir, info, split))
    if shuffle_files:
        files = files.shuffle(len(info.splits[split].shards), seed=seed)
    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type(info.compression)),
        cycle_length=tf.data.AUTOTUNE,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )

    def parse(records: tf.Tensor) -> dict[str, tf.Tensor]:
        # One vectorized parse per batch of records: about 15% faster than a
        # parse per record. Decoding stays per image (sizes may differ).
        examples = tf.io.parse_example(records, FEATURES)
        # Pad with 0, the CTC blank: Keras's CTC loss counts the non-zero ids.
        labels = tf.cast(tf.sparse.to_dense(examples["label"]), tf.int32)
        labels = tf.pad(labels, [[0, 0], [0, spec.max_length - tf.shape(labels)[1]]])
        labels.set_shape([None, spec.max_length])
        return {**examples, "label": labels}

    def decode(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {
            "image": decode_image(example["image"], spec),
            "label": example["label"],
            "text": example["text"],
            "id": example["id"],
            "source": example["source"],
        }

    examples = (
        records.batch(256)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    )
    # TFRecord files do not say how many records they hold; data_info.json does.
    # Knowing it lets Keras size its epochs and progress bar from the start.
    return examples.apply(tf.data.experimental.assert_cardinality(info.counts[split]))


def training_dataset(
    tfrecord_dir: Path | str,
    info: DataInfo,
    split: str,
    spec: InputSpec,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int | None = None,
    shuffle_buffer: int = 10_000,
    cache: bool = False,
    augment: Callable[[tf.Tensor], tf.Tensor] | None = None,
    passes: int = 1,
) -> tf.data.Dataset:
    """Batches of (float image in [0, 1], padded label ids) for `Model.fit`.

    augment: a function of an image batch (captcha_ocr.augmentation), applied
    after the cache so that every epoch sees fresh variations.
    passes: how many times one iteration (an epoch) goes through the split, each
    time in a new order (training.passes_per_epoch).
    """
    examples = read_examples(tfrecord_dir, info, split, spec, shuffle_files=shuffle, seed=seed)
    pairs = examples.map(
        lambda example: (example["image"], example["label"]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if cache:
        # uint8 after decode: 60x160 grayscale is 9.6 kB an image, and decoding
        # is then paid once instead of every epoch.
        pairs = pairs.cache()
    if shuffle:
        pairs = pairs.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if passes > 1:
        # After the shuffle, so each pass has its own order; before the batch, so
        # batches run across the passes and only an epoch's last one is short.
        # One pass adds nothing: the pipeline, and so the weights, stay as they were.
        pairs = pairs.repeat(passes)
    pairs = pairs.batch(batch_size).map(
        lambda images, labels: (normalize(images), labels),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augment is not None:
        pairs = pairs.map(
            lambda images, labels: (augment(images), labels), num_parallel_calls=tf.data.AUTOTUNE
        )
    return pairs.prefetch(tf.data.AUTOTUNE)


def inference_dataset(
    tfrecord_dir: Path | str, info: DataInfo, split: str, spec: InputSpec, *, batch_size: int
) -> tf.data.Dataset:
    """Batches of dicts (normalized image, label, text, id) in file order, for evaluation."""
    examples = read_examples(tfrecord_dir, info, split, spec)
    return (
        examples.batch(batch_size)
        .map(
            lambda batch: {**batch, "image": normalize(batch["image"])},
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
