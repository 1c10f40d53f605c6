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
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from captcha_ocr.atomic import atomic_dir
from captcha_ocr.charsets import Charset
from captcha_ocr.dataset_info import MANIFEST, SPLITS, RawInfo, write_manifest, write_raw_info
from captcha_ocr.images import ImageRefused, load_image, shown
from captcha_ocr.params import MAX_LABEL_LENGTH, DataParams, ImportParams

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
    row: int | None = None  # the CSV row it came from (the header is row 1)

    @property
    def name(self) -> str:
        """How reports name it: the CSV row too, since its path may be what is wrong."""
        return shown(self.path) if self.row is None else f"row {self.row} ({shown(self.path)})"


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
    """Rows of `file,label` (a header row with those names); files relative to the CSV.
    UTF-8, with or without the byte-order mark spreadsheets write ("CSV UTF-8")."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
                found = ",".join(reader.fieldnames or [])
                raise ImportFailed(
                    f"{shown(csv_path)}: needs a header with the columns file,label "
                    f"(its first line is {found!r})"
                )
            return [
                Candidate(csv_path.parent / (row["file"] or ""), row["label"] or "", row=number)
                for number, row in enumerate(reader, start=2)
            ]
    except UnicodeDecodeError as error:
        raise ImportFailed(
            f"{shown(csv_path)}: not UTF-8 text (byte {error.start}): save it as "
            '"CSV UTF-8", or convert it, e.g. iconv -f latin1 -t utf-8'
        ) from None
    except csv.Error as error:
        raise ImportFailed(f"{shown(csv_path)}: not a readable CSV: {error}") from None


def validate(
    candidates: list[Candidate], charset: Charset, folder: Path, max_pixels: int
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The samples that can be imported, and (name, reason) of every other candidate.

    Besides each file's own faults: a file that resolves outside `folder` (a CSV row
    like ../../x.png, an absolute path, a symlink out) is refused, as DVC does not
    track it; so is a file listed twice with two labels, and a picture that repeats
    one already taken, which would otherwise land in two splits and leak test
    captchas into training."""
    inside = folder.resolve()
    samples: list[Sample] = []
    rejected: list[tuple[str, str]] = []
    labels_of: dict[Path, list[Candidate]] = {}
    for candidate in candidates:
        labels_of.setdefault(candidate.path.resolve(), []).append(candidate)
    taken_files: set[Path] = set()
    taken_pictures: dict[str, Candidate] = {}
    for candidate in candidates:
        resolved = candidate.path.resolve()
        unknown = charset.unknown_symbols(candidate.label)
        listings = labels_of[resolved]
        reason = None
        if not resolved.is_relative_to(inside):
            reason = f"outside import.path ({shown(folder)}): DVC does not track it"
        elif len({listed.label for listed in listings}) > 1:
            reason = "listed with two labels: " + ", ".join(
                f"{listed.label!r} ({listed.name})" for listed in listings
            )
        elif resolved in taken_files:
            reason = f"listed again: {listings[0].name} already imports it"
        elif not candidate.label:
            reason = "empty label"
        elif len(candidate.label) > MAX_LABEL_LENGTH:
            reason = (
                f"label of {len(candidate.label)} characters is over the limit of "
                f"{MAX_LABEL_LENGTH}"
            )
        elif unknown:
            reason = f"label {candidate.label!r} has symbols outside the charset: {unknown}"
        if reason:
            rejected.append((candidate.name, reason))
            continue
        taken_files.add(resolved)
        try:
            png, size, original_format = load_image(candidate.path, max_pixels)
        except ImageRefused as error:
            rejected.append((candidate.name, str(error)))
            continue
        picture = hashlib.sha256(png).hexdigest()
        if first := taken_pictures.get(picture):
            rejected.append(
                (
                    candidate.name,
                    f"the same picture as {first.name} (labels {first.label!r} and "
                    f"{candidate.label!r}): importing both could put one in training and "
                    "the other in test",
                )
            )
            continue
        taken_pictures[picture] = candidate
        samples.append(Sample(candidate.path, candidate.label, png, size, original_format))
    return samples, rejected


def split_of(samples: list[Sample], folder: Path, seed: int, params: ImportParams) -> list[str]:
    """Reproducible split: a seeded hash of each file's relative path, read as a number
    in [0, 1), against the fractions. A file keeps its split when others are added;
    only an empty val or test split takes the training sample nearest to it."""

    def position(sample: Sample) -> float:
        path = sample.path
        relative = path.relative_to(folder) if path.is_relative_to(folder) else path
        # fsencode: the name's own bytes, also when they are not UTF-8
        digest = hashlib.sha256(f"{seed}:".encode() + os.fsencode(relative.as_posix())).digest()
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
    inside = folder
    if not data.uses_imported:
        candidates: list[Candidate] = []
    elif params.labels == "csv":
        csv_path = root / str(params.csv)
        if not csv_path.is_file():
            raise ImportFailed(f"import.csv: {shown(csv_path)} does not exist")
        if not csv_path.resolve().is_relative_to(folder.resolve()):
            raise ImportFailed(
                f"import.csv: {shown(csv_path)} is outside import.path ({shown(folder)}); "
                "keep it in that folder, which DVC tracks"
            )
        candidates = candidates_from_csv(csv_path)
        folder = csv_path.parent
    else:
        if not folder.is_dir():
            raise ImportFailed(f"import.path: {shown(folder)} is not a folder")
        candidates = candidates_from_filenames(folder)

    samples, rejected = validate(candidates, charset, inside, params.max_image_pixels)
    if rejected and params.on_error == "fail":
        lines = "\n".join(f"  {name}: {reason}" for name, reason in rejected)
        raise ImportFailed(
            f"{len(rejected)} of {len(candidates)} files cannot be imported "
            f"(set import.on_error: skip to leave them out):\n{lines}"
            f"{charset_hint(candidates, charset)}"
        )
    if data.uses_imported and not samples:
        raise ImportFailed(f"import.path: no usable images in {shown(folder)}")

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
                    "original": shown(sample.path.as_posix()),
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


def _write_report(path: Path, samples: list[Sample], rejected: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["file", "status", "detail"])
        for sample in samples:
            writer.writerow([shown(sample.path.as_posix()), "imported", sample.original_format])
        for name, reason in rejected:
            writer.writerow([name, "skipped", reason])
