"""import: your own captchas are validated file by file, split reproducibly, and feed
the same tfrecord-convert stage as generated ones."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from captcha_ocr.data import InputSpec, inference_dataset, read_examples
from captcha_ocr.dataset_info import read_manifest, read_raw_info
from captcha_ocr.importing import REPORT, ImportFailed, import_dataset
from captcha_ocr.metrics import evaluate_texts
from captcha_ocr.models import build_model
from captcha_ocr.params import Params, TFRecordParams, parse_params
from captcha_ocr.prediction import predict_batches
from captcha_ocr.tfrecords import convert
from stages import import_captchas
from tests.conftest import bomb_png, merge, tiny_params, write_params

_drawn = itertools.count()


def image_bytes(text: str, image_format: str, size=(120, 40), mode="RGB") -> bytes:
    """A picture of the text, different from every other one drawn (the import refuses
    a repeated picture)."""
    image = Image.new(mode, size, "white" if mode != "RGBA" else (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), text, fill="black")
    draw.text((4, 24), str(next(_drawn)), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def import_params(**import_overrides) -> Params:
    return parse_params(
        merge(tiny_params(), {"data": {"source": "imported"}, "import": import_overrides})
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Good files, duplicates of one text, and the five kinds of bad file."""
    folder = tmp_path / "captchas"
    (folder / "more").mkdir(parents=True)
    for text in ["AB12", "CD34", "EF56", "GH78", "JK90", "LM12", "NP34", "QR56"]:
        (folder / f"{text}.png").write_bytes(image_bytes(text, "PNG"))
    (folder / "AB12_2.png").write_bytes(image_bytes("AB12", "PNG"))  # same text, second captcha
    (folder / "more" / "ST78.gif").write_bytes(image_bytes("ST78", "GIF"))
    (folder / "TR99.png").write_bytes(image_bytes("TR99", "JPEG"))  # the extension lies
    (folder / "UV11.png").write_bytes(image_bytes("UV11", "PNG", mode="RGBA"))  # transparent
    (folder / "README.md").write_text("not a sample\n")
    return folder


def add_bad_files(folder: Path) -> dict[str, str]:
    truncated = image_bytes("XY12", "PNG", size=(300, 100))
    (folder / "XY12.png").write_bytes(truncated[: len(truncated) // 2])
    (folder / "ZZ99.png").write_text("this is text, not an image")
    (folder / "ab12.png").write_bytes(image_bytes("ab12", "PNG"))  # lower case: not in the charset
    return {
        "XY12.png": "unreadable image",
        "ZZ99.png": "not an image",
        "ab12.png": "outside the charset",
    }


def test_good_folder_imports_every_file(folder: Path, tmp_path: Path):
    params = import_params(val_fraction=0.2, test_fraction=0.2)
    stats = import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    assert stats == {"imported": 12, "skipped": 0, "candidates": 12}
    rows = read_manifest(tmp_path / "out")
    texts = sorted(row["text"] for row in rows)
    # duplicates are kept as separate samples; the _<n> suffix is not part of the label
    assert texts.count("AB12") == 2
    assert {"ST78", "TR99", "UV11"} <= set(texts)
    assert {row["split"] for row in rows} == {"train", "val", "test"}
    for row in rows:
        with Image.open(tmp_path / "out" / row["path"]) as image:
            assert image.format == "PNG" and image.mode == "RGB"
    # the JPEG that called itself .png is reported by its real format
    report = (tmp_path / "out" / REPORT).read_text()
    assert "TR99.png,imported,JPEG" in report
    # transparency became white, not black
    uv11 = next(row for row in rows if row["text"] == "UV11")
    with Image.open(tmp_path / "out" / uv11["path"]) as image:
        assert image.getpixel((0, 0)) == (255, 255, 255)
    info = read_raw_info(tmp_path / "out")
    assert (info.source, info.min_length, info.max_length) == ("imported", 4, 4)
    assert (info.image_width, info.image_height) == (120, 40)


def test_every_bad_file_is_reported_with_its_path_and_nothing_is_written(folder, tmp_path):
    expected = add_bad_files(folder)
    params = import_params()
    with pytest.raises(ImportFailed) as raised:
        import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    message = str(raised.value)
    assert "3 of 15 files cannot be imported" in message
    for name, reason in expected.items():
        line = next(line for line in message.splitlines() if str(folder / name) in line)
        assert reason in line, line
    # and the message ends with the charset that every label's symbols would fit
    labels = "AB12 CD34 EF56 GH78 JK90 LM12 NP34 QR56 ST78 TR99 UV11 XY12 ZZ99 ab12"
    used = "".join(sorted(set(labels.replace(" ", ""))))
    assert message.splitlines()[-1].endswith(f"data.custom_charset: {used}"), message
    assert "2 of them outside data.charset (ab)" in message
    assert not (tmp_path / "out").exists()


def test_skip_leaves_bad_files_out_and_lists_them(folder, tmp_path):
    expected = add_bad_files(folder)
    params = import_params(on_error="skip")
    stats = import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    assert (stats["imported"], stats["skipped"]) == (12, 3)
    report = (tmp_path / "out" / REPORT).read_text()
    for name, reason in expected.items():
        assert f"{folder / name},skipped," in report and reason in report


def test_labels_from_a_csv(tmp_path: Path):
    folder = tmp_path / "captchas"
    folder.mkdir()
    for index in range(6):
        (folder / f"img{index}.jpg").write_bytes(image_bytes("", "JPEG"))
    (folder / "labels.csv").write_text(
        "file,label\n" + "".join(f"img{index}.jpg,K{index}X{index}\n" for index in range(6))
    )
    params = import_params(labels="csv", csv="captchas/labels.csv")
    import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    assert sorted(row["text"] for row in read_manifest(tmp_path / "out")) == [
        f"K{index}X{index}" for index in range(6)
    ]


def test_split_is_reproducible_and_stable_when_files_are_added(folder: Path, tmp_path: Path):
    params = import_params(val_fraction=0.25, test_fraction=0.25)

    def splits(out: Path) -> dict[str, str]:
        import_dataset(params.data, params.import_, out, root=tmp_path)
        return {row["original"]: row["split"] for row in read_manifest(out)}

    first, again = splits(tmp_path / "a"), splits(tmp_path / "b")
    assert first == again
    for index in range(10):
        (folder / f"NEW{index}.png").write_bytes(image_bytes("", "PNG"))
    grown = splits(tmp_path / "c")
    assert {path: grown[path] for path in first} == first


def test_imported_and_generated_round_trip_through_convert(tiny_dataset, folder, tmp_path):
    params = import_params()
    import_dataset(params.data, params.import_, tmp_path / "imported", root=tmp_path)
    info = convert([tiny_dataset["raw"], tmp_path / "imported"], tmp_path / "tf", TFRecordParams())
    assert info.source == "mixed"
    assert sum(info.counts.values()) == 256 + 12
    spec = InputSpec(info.image_height, info.image_width, 1, info.max_length)
    texts = {
        (example["source"].numpy().decode(), example["text"].numpy().decode())
        for split in ("train", "val", "test")
        for example in read_examples(tmp_path / "tf", info, split, spec)
    }
    manifest = {
        (row["source"], row["text"])
        for folder_ in (tiny_dataset["raw"], tmp_path / "imported")
        for row in read_manifest(folder_)
    }
    assert texts == manifest


def test_import_stage_reports_a_missing_folder(tmp_path: Path):
    params = write_params(
        tmp_path / "params.yaml", {"data": {"source": "imported"}, "import": {"path": "nowhere"}}
    )
    with pytest.raises(SystemExit, match=r"import.path: .*nowhere is not a folder"):
        import_captchas.main(["--params", str(params), "--out", str(tmp_path / "out")])


def test_generated_source_imports_nothing(tmp_path: Path):
    params = parse_params(tiny_params())
    stats = import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    assert stats["imported"] == 0 and read_manifest(tmp_path / "out") == []


def test_reads_of_mixed_data_keep_each_captchas_source(tiny_dataset, folder, tmp_path):
    # Given generated and imported captchas converted together, a third of the
    # imported ones in the test split
    params = import_params(val_fraction=0.0, test_fraction=0.34)
    import_dataset(params.data, params.import_, tmp_path / "imported", root=tmp_path)
    info = convert([tiny_dataset["raw"], tmp_path / "imported"], tmp_path / "tf", TFRecordParams())
    spec = InputSpec(32, 64, 1, info.max_length)
    model = build_model(parse_params(tiny_params()).model, spec, len(info.charset), 4)
    # When a model reads the test split as evaluate does
    batches = inference_dataset(tmp_path / "tf", info, "test", spec, batch_size=16)
    predictions = predict_batches(model, batches, info.charset_map())
    # Then every read carries its captcha's source, and the scores split by it
    manifest = read_manifest(tmp_path / "imported")
    imported = {row["id"] for row in manifest if row["split"] == "test"}
    read_as_imported = {
        image_id
        for image_id, source in zip(predictions.ids, predictions.sources, strict=True)
        if source == "imported"
    }
    assert imported and read_as_imported == imported
    evaluation = evaluate_texts(predictions.truths, predictions.texts, sources=predictions.sources)
    counts = evaluation.summary
    assert counts["n_imported"] == len(imported)
    assert counts["n_generated"] + counts["n_imported"] == counts["n_test"]


# Hostile and careless inputs (issue 41): each is named with its reason, and the good
# files are still imported with on_error: skip.


def import_report(out: Path) -> str:
    return (out / REPORT).read_text(encoding="utf-8")


def test_a_bomb_among_good_files_is_named_and_the_rest_imported(folder: Path, tmp_path: Path):
    # Given a decompression bomb (a real PNG, ~110 KB, 100 million pixels) among the files
    (folder / "BOMB.png").write_bytes(bomb_png(10_000, 10_000))
    params = import_params(on_error="skip")
    # When they are imported
    stats = import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    # Then the twelve good ones are, and the bomb is listed with its size and the limit
    assert (stats["imported"], stats["skipped"]) == (12, 1)
    assert f'{folder / "BOMB.png"},skipped,"too large: 10000x10000 pixels is over import' in (
        import_report(tmp_path / "out")
    )
    # and with on_error: fail the stage names it and writes nothing
    with pytest.raises(ImportFailed, match=r"BOMB.png: too large: 10000x10000"):
        params = import_params()
        import_dataset(params.data, params.import_, tmp_path / "none", root=tmp_path)
    assert not (tmp_path / "none").exists()


def write_csv(folder: Path, rows: list[str], encoding: str = "utf-8") -> None:
    (folder / "labels.csv").write_bytes(("file,label\n" + "".join(rows)).encode(encoding))


def csv_import(tmp_path: Path, **overrides) -> tuple[dict, str]:
    params = import_params(labels="csv", csv="captchas/labels.csv", **overrides)
    stats = import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    return stats, import_report(tmp_path / "out")


def test_rows_and_links_that_lead_outside_the_folder_are_refused(folder: Path, tmp_path: Path):
    # Given an image outside import.path, reached by a relative row, an absolute row
    # and a symlink inside the folder: DVC tracks the folder, not what they point at
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(image_bytes("OUT1", "PNG"))
    (folder / "LINK1.png").symlink_to(outside)
    write_csv(
        folder,
        ["AB12.png,AB12\n", "../elsewhere.png,OUT1\n", f"{outside},OUT2\n", "LINK1.png,LINK\n"],
    )
    # When the CSV is imported, then only the file inside is, and each other row is named
    stats, report = csv_import(tmp_path, on_error="skip")
    assert (stats["imported"], stats["skipped"]) == (1, 3)
    for row in (3, 4, 5):
        assert f"row {row} (" in report
    assert report.count("outside import.path") == 3
    # and a folder of file-name labels leaves the symlink out the same way
    params = import_params(on_error="skip")
    import_dataset(params.data, params.import_, tmp_path / "named", root=tmp_path)
    assert f"{folder / 'LINK1.png'},skipped,outside import.path" in import_report(
        tmp_path / "named"
    )


def test_a_csv_with_a_byte_order_mark_is_read(folder: Path, tmp_path: Path):
    # Given the CSV a spreadsheet saves as "CSV UTF-8": a byte-order mark first
    write_csv(folder, ["AB12.png,AB12\n", "CD34.png,CD34\n"], encoding="utf-8-sig")
    stats, _ = csv_import(tmp_path)
    assert stats["imported"] == 2


def test_a_csv_that_is_not_utf8_is_refused_with_what_to_do(folder: Path, tmp_path: Path):
    write_csv(folder, ["AB12.png,AB12\n", "café.png,CAFE\n"], encoding="latin-1")
    with pytest.raises(ImportFailed, match=r"labels.csv: not UTF-8 text .*CSV UTF-8"):
        csv_import(tmp_path)


def test_a_file_listed_twice_with_two_labels_is_refused_naming_both_rows(
    folder: Path, tmp_path: Path
):
    write_csv(folder, ["AB12.png,AB12\n", "CD34.png,CD34\n", "AB12.png,AB13\n"])
    stats, report = csv_import(tmp_path, on_error="skip")
    assert (stats["imported"], stats["skipped"]) == (1, 2)
    assert report.count("listed with two labels: 'AB12' (row 2") == 2
    assert "'AB13' (row 4" in report


def test_the_same_picture_under_two_names_is_refused_naming_the_first(folder: Path, tmp_path: Path):
    # Given a copy of one captcha under another name: the split is drawn from the
    # name, so the two could land in training and test
    (folder / "AB12_3.png").write_bytes((folder / "AB12.png").read_bytes())
    params = import_params(on_error="skip")
    stats = import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    assert stats["skipped"] == 1
    assert f"{folder / 'AB12_3.png'},skipped,the same picture as {folder / 'AB12.png'}" in (
        import_report(tmp_path / "out")
    )


def test_a_label_longer_than_any_model_reads_is_refused_at_import(folder: Path, tmp_path: Path):
    # Given a label of 200 characters, which no model here can be built for
    long_label = "A" * 200
    (folder / f"{long_label}.png").write_bytes(image_bytes("long", "PNG"))
    with pytest.raises(ImportFailed, match="label of 200 characters is over the limit of 32"):
        params = import_params()
        import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)


def test_file_names_that_are_not_utf8_are_imported_or_reported(folder: Path, tmp_path: Path):
    # Given names in latin-1 bytes, as an old archive leaves them: a folder, and a
    # label whose byte is no symbol of any charset
    (folder / os.fsdecode(b"caf\xe9")).mkdir()
    (folder / os.fsdecode(b"caf\xe9") / "K7PX.png").write_bytes(image_bytes("K7PX", "PNG"))
    (folder / os.fsdecode(b"K7P\xe9.png")).write_bytes(image_bytes("K7P?", "PNG"))
    params = import_params(on_error="skip")
    stats = import_dataset(params.data, params.import_, tmp_path / "out", root=tmp_path)
    # Then the first is imported and the second skipped, each written with the byte
    # escaped (the report and manifest are UTF-8)
    assert (stats["imported"], stats["skipped"]) == (13, 1)
    rows = read_manifest(tmp_path / "out")
    assert any(row["original"].endswith("caf\\xe9/K7PX.png") for row in rows)
    assert "K7P\\xe9.png,skipped,label" in import_report(tmp_path / "out")
