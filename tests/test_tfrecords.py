"""tfrecord-convert and the tf.data reader: what goes in comes out; bad samples are named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captcha_ocr.data import InputSpec, inference_dataset, read_examples, training_dataset
from captcha_ocr.dataset_info import DATA_INFO, read_data_info, read_manifest
from captcha_ocr.params import TFRecordParams
from captcha_ocr.tfrecords import BadSampleError, convert


def spec_for(info, channels=1):
    return InputSpec(info.image_height, info.image_width, channels, info.max_length)


def test_shards_and_data_info(tiny_dataset):
    info = read_data_info(tiny_dataset["tfrecords"])
    # 160 training examples at 64 per shard: three shards
    assert info.splits["train"].shards == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert info.counts == {"train": 160, "val": 48, "test": 48}
    assert info.charset == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert len(info.content_hash()) == 64
    for split in info.splits.values():
        for shard in split.shards:
            assert (tiny_dataset["tfrecords"] / shard).stat().st_size > 0


def test_text_in_equals_text_out(tiny_dataset):
    info = read_data_info(tiny_dataset["tfrecords"])
    charset = info.charset_map()
    manifest = {row["id"]: row for row in read_manifest(tiny_dataset["raw"])}
    examples = list(read_examples(tiny_dataset["tfrecords"], info, "test", spec_for(info)))
    assert len(examples) == 48
    for example in examples:
        row = manifest[example["id"].numpy().decode()]
        text = example["text"].numpy().decode()
        assert text == row["text"]
        assert charset.decode(example["label"].numpy()) == text
        # and the decoded image is the file's pixels, in grayscale
        with Image.open(tiny_dataset["raw"] / row["path"]) as image:
            expected = np.asarray(image.convert("L"), dtype=np.int32)
        assert np.abs(example["image"].numpy()[..., 0].astype(np.int32) - expected).max() <= 1


def test_training_batches_are_normalized_and_padded(tiny_dataset):
    info = read_data_info(tiny_dataset["tfrecords"])
    spec = InputSpec(info.image_height, info.image_width * 2, 3, info.max_length + 2)
    batches = training_dataset(
        tiny_dataset["tfrecords"], info, "train", spec, batch_size=32, shuffle=True, seed=1
    )
    images, labels = next(iter(batches))
    assert images.shape == (32, info.image_height, info.image_width * 2, 3)  # resized, RGB
    assert float(images.numpy().min()) >= 0.0 and float(images.numpy().max()) <= 1.0
    assert labels.shape == (32, info.max_length + 2)
    assert (labels.numpy()[:, -2:] == 0).all()  # padded with the blank
    assert sum(1 for _ in batches) == 5  # the cardinality comes from data_info.json


def test_inference_keeps_file_order(tiny_dataset):
    info = read_data_info(tiny_dataset["tfrecords"])
    batches = inference_dataset(
        tiny_dataset["tfrecords"], info, "val", spec_for(info), batch_size=20
    )
    ids = [value.decode() for batch in batches for value in batch["id"].numpy()]
    expected = [row["id"] for row in read_manifest(tiny_dataset["raw"]) if row["split"] == "val"]
    assert ids == expected


def copy_raw(tiny_dataset, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_dataset["raw"], tmp_path / "raw"))


def test_label_outside_the_charset_is_reported_with_its_path(tiny_dataset, tmp_path):
    raw = copy_raw(tiny_dataset, tmp_path)
    manifest = raw / "labels.csv"
    lines = manifest.read_text().splitlines()
    first = lines[1].split(",")
    first[3] = "ab!c"
    lines[1] = ",".join(first)
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadSampleError) as raised:
        convert([raw], tmp_path / "out", TFRecordParams())
    assert str(raw / first[2]) in str(raised.value)
    assert "outside the charset" in str(raised.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_corrupt_image_is_reported_with_its_path(tiny_dataset, tmp_path):
    raw = copy_raw(tiny_dataset, tmp_path)
    victim = raw / read_manifest(raw)[7]["path"]
    victim.write_bytes(victim.read_bytes()[:50])  # truncated PNG
    with pytest.raises(BadSampleError, match=str(victim)):
        convert([raw], tmp_path / "out", TFRecordParams())
    assert not (tmp_path / "out").exists()


def test_gzip_shards_read_back(tiny_dataset, tmp_path):
    info = convert([tiny_dataset["raw"]], tmp_path / "gz", TFRecordParams(compression="gzip"))
    assert info.compression == "gzip"
    examples = list(read_examples(tmp_path / "gz", info, "val", spec_for(info)))
    assert len(examples) == 48


def test_schema_version_mismatch_is_a_clear_error(tiny_dataset, tmp_path):
    folder = Path(shutil.copytree(tiny_dataset["tfrecords"], tmp_path / "tfrecords"))
    info = json.loads((folder / DATA_INFO).read_text())
    info["schema_version"] = 99
    (folder / DATA_INFO).write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"schema version 99.*rerun the tfrecord-convert stage"):
        read_data_info(folder)


def test_the_same_raw_data_gives_the_same_shard_bytes_in_any_process(tiny_dataset, tmp_path):
    # Given the tiny raw data converted in two processes with different hash seeds
    # (protobuf orders an Example's feature map by the process's hashing)
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}"
        script = (
            "import sys; from pathlib import Path; from captcha_ocr.params import TFRecordParams;"
            "from captcha_ocr.tfrecords import convert;"
            "convert([Path(sys.argv[1])], Path(sys.argv[2]), TFRecordParams(shard_size=64))"
        )
        subprocess.run(
            [sys.executable, "-c", script, str(tiny_dataset["raw"]), str(out)],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.append(out)
    # Then every shard and data_info.json are byte for byte the same (one DVC hash)
    names = sorted(path.name for path in outputs[0].iterdir())
    assert names == sorted(path.name for path in outputs[1].iterdir())
    assert len(names) == 6  # 3 train shards, 1 val, 1 test, data_info.json
    for name in names:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
