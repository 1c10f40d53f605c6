"""Import your own labelled captchas into the raw-dataset layout that generate writes.

Every file is decoded in full (a truncated file fails here, not mid-training),
its format is read from its content (not its extension), and its label is
checked against the charset. Bad files are either all reported, each with its
path and reason, before anything is written (on_error: fail), or left out and
listed in import_report.csv (on_error: skip).

Images are stored re-encoded as PNG (RGB, transparency flattened onto white),
so the TFRecord reader sees one format whatever the user had.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from captcha_ocr.atomic import atomic_dir
from captcha_ocr.charsets import Charset
from captcha_ocr.dataset_info import MANIFEST, SPLITS, RawInfo, write_manifest, write_raw_info
from captcha_ocr.params import DataParams, ImportParams

REPORT = "import_report.csv"
# Files in the folder that are not samples: documentation and hidden files.
IGNORED = re.compile(r"^(\..*|readme(\..*)?|license(\..*)?)$", re.IGNORECASE)
# <label>.<ext> or <label>_<n>.<ext>: the _<n> suffix tells apart captchas of one text.
FILENAME_LABEL = re.compile(r"^(?P<label>.+?)(?:_\d+)?$")


class ImportFailed(ValueError):
    """Bad files in an import; the message lists each path with its reason."""


@dataclass(frozen=True)
class Candidate:
    path: Path
    label: str


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    png: bytes
    size: tuple[int, int]
    original_format: str


def sample_files(folder: Path) -> list[Path]:
    """Every file under folder, sorted, but hidden files, READMEs and licences."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not IGNORED.match(path.name)
    ]


def candidates_from_filenames(folder: Path) -> list[Candidate]:
    found = []
    for path in sample_files(folder):
        match = FILENAME_LABEL.match(path.stem)
        found.append(Candidate(path, match["label"] if match else path.stem))
    return found


def candidates_from_csv(csv_path: Path) -> list[Candidate]:
    """Rows of `file,label` (a header row with those names); files relative to the CSV."""
    with csv_path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise ImportFailed(f"{csv_path}: needs a header with the columns file,label")
        return [Candidate(csv_path.parent / row["file"], row["label"] or "") for row in reader]


def load_image(source: Path | BinaryIO) -> tuple[bytes, tuple[int, int], str]:
    """(PNG bytes, size, the format the content really has) of a file or a stream of
    its bytes; ValueError with the reason."""
    try:
        with Image.open(source) as image:
            image.load()  # decodes every pixel: a truncated file fails here
            original_format = image.format or "unknown"
            if image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info
            ):
                # Flatten transparency onto white: a transparent background would
                # otherwise turn black in grayscale.
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, "white")
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = image.convert("RGB")
    except FileNotFoundError:
        raise ValueError("listed but missing") from None
    except UnidentifiedImageError:
        raise ValueError("not an image (no known image format in its content)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"unreadable image: {error}") from None
    buffer = io.BytesIO()
    flat.save(buffer, format="PNG")
    return buffer.getvalue(), flat.size, original_format


def validate(
    candidates: list[Candidate], charset: Charset
) -> tuple[list[Sample], list[tuple[Path, str]]]:
    samples: list[Sample] = []
    rejected: list[tuple[Path, str]] = []
    for candidate in candidates:
        unknown = charset.unknown_symbols(candidate.label)
        if not candidate.label:
            rejected.append((candidate.path, "empty label"))
            continue
        if unknown:
            rejected.append(
                (
                    candidate.path,
                    f"label {candidate.label!r} has symbols outside the charset: {unknown}",
                )
            )
            continue
        try:
            png, size, original_format = load_image(candidate.path)
        except ValueError as error:
            rejected.append((candidate.path, str(error)))
            continue
        samples.append(Sample(candidate.path, candidate.label, png, size, original_format))
    return samples, rejected


def split_of(samples: list[Sample], folder: Path, seed: int, params: ImportParams) -> list[str]:
    """Reproducible split: a seeded hash of each file's relative path, read as a number
    in [0, 1), against the fractions. A file keeps its split when others are added;
    only an empty val or test split takes the training sample nearest to it."""

    def position(sample: Sample) -> float:
        path = sample.path
        relative = path.relative_to(folder) if path.is_relative_to(folder) else path
        digest = hashlib.sha256(f"{seed}:{relative.as_posix()}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    positions = [position(sample) for sample in samples]
    val_end = params.val_fraction
    test_end = params.val_fraction + params.test_fraction
    splits = [
        "val" if value < val_end else "test" if value < test_end else "train" for value in positions
    ]
    for split, fraction in (("val", params.val_fraction), ("test", params.test_fraction)):
        training = [index for index, name in enumerate(splits) if name == "train"]
        if fraction and split not in splits and len(training) >= 2:
            splits[min(training, key=lambda index: positions[index])] = split
    return splits


def charset_hint(candidates: list[Candidate], charset: Charset) -> str:
    """When labels use symbols outside the charset, the charset that all of them use:
    what to set if the labels are right, as with a first import of one's own set."""
    labels = [candidate.label for candidate in candidates]
    outside = sorted({symbol for label in labels for symbol in charset.unknown_symbols(label)})
    if not outside:
        return ""
    used = "".join(sorted({symbol for label in labels for symbol in label}))
    return (
        f"\nThe labels use {len(used)} symbols, {len(outside)} of them outside "
        f"data.charset ({''.join(outside)}). If the labels are right, set "
        f"data.charset: custom and data.custom_charset: {used}"
    )


def import_dataset(
    data: DataParams, params: ImportParams, out_dir: Path | str, root: Path | None = None
) -> dict[str, object]:
    """Write out_dir/<split>/<id>.png, labels.csv, dataset.json and import_report.csv."""
    out_dir = Path(out_dir)
    charset = Charset(data.symbols)
    root = root or Path.cwd()
    folder = root / params.path
    if not data.uses_imported:
        candidates: list[Candidate] = []
    elif params.labels == "csv":
        csv_path = root / str(params.csv)
        if not csv_path.is_file():
            raise ImportFailed(f"import.csv: {csv_path} does not exist")
        candidates = candidates_from_csv(csv_path)
        folder = csv_path.parent
    else:
        if not folder.is_dir():
            raise ImportFailed(f"import.path: {folder} is not a folder")
        candidates = candidates_from_filenames(folder)

    samples, rejected = validate(candidates, charset)
    if rejected and params.on_error == "fail":
        lines = "\n".join(f"  {path}: {reason}" for path, reason in rejected)
        raise ImportFailed(
            f"{len(rejected)} of {len(candidates)} files cannot be imported "
            f"(set import.on_error: skip to leave them out):\n{lines}"
            f"{charset_hint(candidates, charset)}"
        )
    if data.uses_imported and not samples:
        raise ImportFailed(f"import.path: no usable images in {folder}")

    splits = split_of(samples, folder, data.seed, params)
    rows = []
    with atomic_dir(out_dir) as scratch:
        for split in SPLITS:
            (scratch / split).mkdir()
        for index, (sample, split) in enumerate(zip(samples, splits, strict=True)):
            image_id = f"imported-{index:06d}"
            relative = Path(split) / f"{image_id}.png"
            (scratch / relative).write_bytes(sample.png)
            rows.append(
                {
                    "id": image_id,
                    "split": split,
                    "path": relative.as_posix(),
                    "text": sample.label,
                    "length": len(sample.label),
                    "font": "",
                    "source": "imported",
                    "original": sample.path.as_posix(),
                }
            )
        write_manifest(scratch / MANIFEST, rows)
        _write_report(scratch / REPORT, samples, rejected)
        lengths = [len(sample.label) for sample in samples] or [1]
        width, height = _most_common_size(samples)
        write_raw_info(
            scratch,
            RawInfo(
                source="imported",
                charset=charset.symbols,
                min_length=min(lengths),
                max_length=max(lengths),
                image_width=width,
                image_height=height,
                counts={split: splits.count(split) for split in SPLITS},
            ),
        )
    return {"imported": len(samples), "skipped": len(rejected), "candidates": len(candidates)}


def _most_common_size(samples: list[Sample]) -> tuple[int, int]:
    """The nominal size of the import: the model's input when it names none."""
    if not samples:
        return (160, 60)
    return Counter(sample.size for sample in samples).most_common(1)[0][0]


def _write_report(path: Path, samples: list[Sample], rejected: list[tuple[Path, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["file", "status", "detail"])
        for sample in samples:
            writer.writerow([sample.path.as_posix(), "imported", sample.original_format])
        for bad, reason in rejected:
            writer.writerow([bad.as_posix(), "skipped", reason])
