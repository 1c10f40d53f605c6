"""The description that travels with a dataset: charset, label lengths, image size.

The raw folder carries dataset.json (written by generate, or by an import);
the TFRecord folder carries data_info.json, the same fields plus the schema
version, the shards and a content hash per split. Train and evaluate read the
charset from data_info.json and nowhere else, so training and inference
cannot disagree about it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from captcha_ocr.atomic import write_json
from captcha_ocr.charsets import Charset

SPLITS = ("train", "val", "test")
MANIFEST = "labels.csv"
# source: generated or imported; original: an imported file's own path.
MANIFEST_COLUMNS = ("id", "split", "path", "text", "length", "font", "source", "original")
RAW_INFO = "dataset.json"
DATA_INFO = "data_info.json"
# Bump when the TFRecord feature layout changes; readers refuse other versions.
SCHEMA_VERSION = 1


class DataCorrupted(ValueError):
    """Shards that are not what data_info.json describes: changed or damaged since
    tfrecord-convert wrote them."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RawInfo(Frozen):
    """What generate (or an import) promises about data/raw."""

    source: str
    charset: str
    min_length: int
    max_length: int
    image_width: int
    image_height: int
    counts: dict[str, int]

    @property
    def fixed_length(self) -> bool:
        return self.min_length == self.max_length


class SplitInfo(Frozen):
    shards: list[str]
    sha256: str = Field(description="hash of the split's shards, in order")


class DataInfo(RawInfo):
    """What tfrecord-convert promises about data/tfrecords."""

    schema_version: int
    compression: str
    splits: dict[str, SplitInfo]

    def charset_map(self) -> Charset:
        return Charset(self.charset)

    def content_hash(self) -> str:
        """One hash for all splits: which data a run saw, exactly."""
        digest = hashlib.sha256()
        for split in sorted(self.splits):
            digest.update(f"{split}:{self.splits[split].sha256};".encode())
        return digest.hexdigest()


def write_manifest(path: Path, rows: list[dict[str, object]]) -> None:
    """labels.csv: one row per image; labels live here, never only in file names."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(raw_dir: Path | str) -> list[dict[str, str]]:
    with (Path(raw_dir) / MANIFEST).open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def write_raw_info(raw_dir: Path, info: RawInfo) -> None:
    write_json(raw_dir / RAW_INFO, info.model_dump())


def read_raw_info(raw_dir: Path | str) -> RawInfo:
    return RawInfo.model_validate(_read(Path(raw_dir) / RAW_INFO))


def hash_files(folder: Path, names: list[str]) -> str:
    """sha256 of the files' bytes, one after the other: a split's hash."""
    digest = hashlib.sha256()
    for name in names:
        with (folder / name).open("rb") as stream:
            for block in iter(lambda stream=stream: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def verify_splits(tfrecord_dir: Path | str, info: DataInfo) -> None:
    """Check every split's shards against the hash data_info.json holds, so that a run
    never trains on, or records the hash of, data other than it says (a shard swapped
    for other valid records, a damaged copy). Hashing reads each shard once: a
    fraction of a second for the default's data."""
    folder = Path(tfrecord_dir)
    for split, split_info in info.splits.items():
        missing = [name for name in split_info.shards if not (folder / name).is_file()]
        if missing:
            raise DataCorrupted(f"{folder}: split {split} lacks its shards {missing}")
        if hash_files(folder, split_info.shards) != split_info.sha256:
            raise DataCorrupted(
                f"{folder}: the shards of split {split} ({', '.join(split_info.shards)}) do "
                f"not hash to the sha256 in {DATA_INFO}: they were changed or damaged after "
                "tfrecord-convert; restore them (dvc checkout) or rebuild them (dvc repro)"
            )


def read_data_info(tfrecord_dir: Path | str, verify: bool = False) -> DataInfo:
    """data_info.json; with verify, also check the shards against its hashes."""
    path = Path(tfrecord_dir) / DATA_INFO
    raw = _read(path)
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: TFRecord schema version {version}, this code reads version "
            f"{SCHEMA_VERSION}; rerun the tfrecord-convert stage (dvc repro)"
        )
    info = DataInfo.model_validate(raw)
    if verify:
        verify_splits(tfrecord_dir, info)
    return info


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing; run the stage that writes it") from None
