"""`python -m captcha_ocr.read`: a trained model reads image files as evaluate read them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from captcha_ocr import read
from stages import evaluate, train
from tests.conftest import bomb_png, write_params
from tests.test_train_evaluate import stage_args

pytestmark = pytest.mark.integration


def train_and_evaluate(dataset: dict[str, Path], root: Path) -> Path:
    """Train a model on `dataset` with its params and evaluate it, in root (its own
    MLflow store)."""
    args = stage_args(dataset, root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns.db'}")
        patch.delenv("DVC_ROOT", raising=False)
        patch.chdir(root)
        assert train.main(args["train"]) == 0
        assert evaluate.main(args["evaluate"]) == 0
    return root


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory) -> Path:
    """A tiny model trained and evaluated once for this module."""
    return train_and_evaluate(tiny_dataset, tmp_path_factory.mktemp("read"))


def read_csv(text: str) -> pd.DataFrame:
    return pd.read_csv(
        pd.io.common.StringIO(text), dtype={"text": str}, keep_default_na=False
    ).set_index("path")


def test_read_gives_what_evaluate_predicted(trained, tiny_dataset, capsys):
    # Given the test split's PNGs, as generate wrote them
    test_images = tiny_dataset["raw"] / "test"
    # When the trained model reads the folder
    code = read.main(
        [str(test_images), "--model", str(trained / "models" / "model.keras"),
         "--data", str(tiny_dataset["tfrecords"]), "--params", str(tiny_dataset["params"])]
    )  # fmt: skip
    assert code == 0
    readings = read_csv(capsys.readouterr().out)
    # Then every image has the text and confidence evaluate gave it from the TFRecords
    evaluated = pd.read_csv(
        trained / "plots" / "evaluate" / "predictions.csv", dtype={"predicted": str},
        keep_default_na=False,
    ).set_index("id")  # fmt: skip
    assert len(readings) == len(evaluated) == 48
    by_id = {Path(path).stem: row for path, row in readings.iterrows()}
    assert by_id.keys() == set(evaluated.index)
    for image_id, row in evaluated.iterrows():
        assert by_id[image_id]["text"] == row["predicted"], image_id
        assert by_id[image_id]["confidence"] == pytest.approx(row["confidence"], rel=1e-3, abs=0)
    # A two-epoch model mostly reads nothing yet, but its confidence differs from image
    # to image: equal confidences mean equal pixels in and equal logits out
    assert evaluated["confidence"].nunique() == 48


def test_shifted_reads_agree_between_read_and_evaluate(trained, tiny_dataset, tmp_path, capsys):
    model = str(trained / "models" / "model.keras")
    predictions: dict[int, pd.DataFrame] = {}
    params: dict[int, Path] = {}
    for shifts in (0, 2):
        # Given evaluate run with one read per captcha, and with five (evaluate.tta_shifts)
        params[shifts] = write_params(
            tmp_path / f"params-{shifts}.yaml", {"evaluate": {"tta_shifts": shifts}}
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained / 'mlruns.db'}")
            patch.chdir(trained)
            code = evaluate.main(
                ["--params", str(params[shifts]), "--data", str(tiny_dataset["tfrecords"]),
                 "--model-dir", str(trained / "models"),
                 "--metrics", str(tmp_path / f"evaluate-{shifts}.json"),
                 "--plots", str(tmp_path / f"plots-{shifts}")]
            )  # fmt: skip
        assert code == 0
        capsys.readouterr()  # evaluate's summary
        predictions[shifts] = pd.read_csv(
            tmp_path / f"plots-{shifts}" / "predictions.csv",
            dtype={"predicted": str},
            keep_default_na=False,
        ).set_index("id")
    for shifts, other in ((0, 2), (2, 0)):
        # When read reads the test PNGs with that params file, or with --tta-shifts
        # overriding the other one
        for options in (["--params", str(params[shifts])],
                        ["--params", str(params[other]), "--tta-shifts", str(shifts)]):  # fmt: skip
            code = read.main(
                [str(tiny_dataset["raw"] / "test"), "--model", model,
                 "--data", str(tiny_dataset["tfrecords"]), *options]
            )  # fmt: skip
            assert code == 0
            reading = read_csv(capsys.readouterr().out)
            # Then it reads every captcha as that evaluate did
            by_id = {Path(path).stem: row for path, row in reading.iterrows()}
            assert len(by_id) == len(predictions[shifts]) == 48
            for image_id, row in predictions[shifts].iterrows():
                assert by_id[image_id]["text"] == row["predicted"], (options, image_id)
                confidence = pytest.approx(row["confidence"], rel=1e-3, abs=0)
                assert by_id[image_id]["confidence"] == confidence
    # and the two settings differ: a shifted read's confidence is its text's mean likelihood
    # over the copies, not the probability of one copy's best path
    assert not np.allclose(
        predictions[2]["confidence"], predictions[0].loc[predictions[2].index, "confidence"],
        rtol=1e-3, atol=0,
    )  # fmt: skip


def test_a_multihead_model_reads_shifted_copies_as_evaluate_did(
    tiny_fixed_length_dataset, tmp_path, capsys
):
    tiny_dataset = tiny_fixed_length_dataset
    # Given a tiny multi-head model trained and evaluated with three reads per captcha
    params = write_params(
        tmp_path / "params.yaml",
        {"generate": {"train_lengths": None},
         "model": {"arch": "cnn_multihead",
                   "cnn_multihead": {"conv_filters": [4, 8], "dense_units": 16}},
         "train": {"epochs": 1}, "evaluate": {"tta_shifts": 1}},
    )  # fmt: skip
    train_and_evaluate({**tiny_dataset, "params": params}, tmp_path)
    capsys.readouterr()
    evaluated = pd.read_csv(
        tmp_path / "plots" / "evaluate" / "predictions.csv", dtype={"predicted": str},
        keep_default_na=False,
    ).set_index("id")  # fmt: skip
    # When read reads the test PNGs with the same params
    code = read.main(
        [str(tiny_dataset["raw"] / "test"), "--model", str(tmp_path / "models" / "model.keras"),
         "--data", str(tiny_dataset["tfrecords"]), "--params", str(params)]
    )  # fmt: skip
    assert code == 0
    reading = read_csv(capsys.readouterr().out)
    # Then every captcha gets the text and confidence evaluate gave it: the copies'
    # probabilities averaged per position
    by_id = {Path(path).stem: row for path, row in reading.iterrows()}
    assert len(by_id) == len(evaluated) == 48
    for image_id, row in evaluated.iterrows():
        assert by_id[image_id]["text"] == row["predicted"], image_id
        assert by_id[image_id]["confidence"] == pytest.approx(row["confidence"], rel=1e-3, abs=0)
    # and one read per captcha (--tta-shifts 0) gives other confidences
    code = read.main(
        [str(tiny_dataset["raw"] / "test"), "--model", str(tmp_path / "models" / "model.keras"),
         "--data", str(tiny_dataset["tfrecords"]), "--params", str(params), "--tta-shifts", "0"]
    )  # fmt: skip
    assert code == 0
    once = read_csv(capsys.readouterr().out).loc[reading.index]
    assert not np.allclose(once["confidence"], reading["confidence"], rtol=1e-3, atol=0)


def test_files_become_the_pixels_the_tfrecord_reader_gives(tiny_dataset):
    from captcha_ocr.data import InputSpec, inference_dataset
    from captcha_ocr.dataset_info import read_data_info

    # Given the test split as PNG files and as TFRecords, and an input size that
    # resizes them (the tiny data is 32x96)
    info = read_data_info(tiny_dataset["tfrecords"])
    spec = InputSpec(height=24, width=128, channels=1, max_length=info.max_length)
    paths = sorted((tiny_dataset["raw"] / "test").glob("*.png"))
    # When both are prepared for the model
    readable, images, failures = read.prepare(paths, spec)
    batch = next(
        iter(inference_dataset(tiny_dataset["tfrecords"], info, "test", spec, batch_size=64))
    )
    # Then the pixels are the same, image for image
    assert failures == [] and readable == paths
    expected = dict(
        zip((i.decode() for i in batch["id"].numpy()), batch["image"].numpy(), strict=True)
    )
    assert images.shape == (48, 24, 128, 1)
    for path, image in zip(readable, images, strict=True):
        assert np.array_equal(image, expected[path.stem]), path.name


def test_unreadable_files_are_named_and_the_rest_still_read(
    trained, tiny_dataset, tmp_path, capsys
):
    # Given a folder with two captchas, a broken file, a truncated PNG and a README
    for image in sorted((tiny_dataset["raw"] / "test").glob("*.png"))[:2]:
        shutil.copy(image, tmp_path / image.name)
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    good = sorted(tmp_path.glob("test-*.png"))[0].read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "README.md").write_text("notes about these captchas\n")
    # When they are read
    code = read.main(
        [str(tmp_path), "--model", str(trained / "models" / "model.keras"),
         "--data", str(tiny_dataset["tfrecords"])]
    )  # fmt: skip
    captured = capsys.readouterr()
    # Then the two captchas are read, each bad file is named with its reason, and
    # the exit status says something failed
    assert code == 1
    readings = read_csv(captured.out)
    assert sorted(Path(path).name for path in readings.index) == sorted(
        path.name for path in tmp_path.glob("test-*.png")
    )
    assert f"{tmp_path / 'broken.png'}: not an image" in captured.err
    assert f"{tmp_path / 'truncated.png'}: unreadable image" in captured.err
    assert "README" not in captured.err
    assert "2 file(s) could not be read" in captured.err


def test_a_charset_unlike_the_models_is_refused(trained, tiny_dataset, tmp_path, capsys):
    # Given data info whose charset is not the one the model was trained on
    info = json.loads((tiny_dataset["tfrecords"] / "data_info.json").read_text())
    info["charset"] = "0123456789"
    (tmp_path / "data_info.json").write_text(json.dumps(info))
    image = sorted((tiny_dataset["raw"] / "test").glob("*.png"))[0]
    # When a file is read with it
    code = read.main(
        [str(image), "--model", str(trained / "models" / "model.keras"), "--data", str(tmp_path)]
    )
    # Then nothing is read and the error says why
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "has 37 output classes" in captured.err and "10 symbols" in captured.err


def read_in_a_fresh_process(args: list[str]) -> subprocess.CompletedProcess:
    """read.main in a process of its own, printing whether TensorFlow was imported."""
    script = (
        "import sys\nfrom captcha_ocr import read\ntry:\n    read.main(sys.argv[1:])\n"
        "except SystemExit as stop:\n    print('exit', stop.code)\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules)"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )


def test_a_missing_model_fails_before_tensorflow_loads(tmp_path):
    done = read_in_a_fresh_process(
        [str(tmp_path), "--model", str(tmp_path / "none.keras"), "--data", str(tmp_path)]
    )
    assert done.stdout.splitlines() == ["exit 2", "tensorflow imported: False"], done.stdout
    assert f"model {tmp_path / 'none.keras'} not found" in done.stderr


def test_bad_reading_options_are_refused_before_tensorflow_loads(tmp_path):
    for options, message in (
        (["--tta-shifts", "-1"], "--tta-shifts: Input should be greater than or equal to 0"),
        (["--params", str(tmp_path / "none.yaml")], f"params {tmp_path / 'none.yaml'} not found"),
    ):
        done = read_in_a_fresh_process([str(tmp_path), *options])
        assert done.stdout.splitlines() == ["exit 2", "tensorflow imported: False"], done.stdout
        assert message in done.stderr


def test_a_bomb_among_files_is_named_and_the_others_still_read(
    trained, tiny_dataset, tmp_path, capsys
):
    # Given a decompression bomb between two captchas, as the files to read
    good = sorted((tiny_dataset["raw"] / "test").glob("*.png"))[:2]
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(14_000, 14_000))
    # When they are read
    code = read.main(
        [str(good[0]), str(bomb), str(good[1]), "--model", str(trained / "models" / "model.keras"),
         "--data", str(tiny_dataset["tfrecords"])]
    )  # fmt: skip
    captured = capsys.readouterr()
    # Then both captchas are read, and the bomb is named with the reason
    assert code == 1
    assert [Path(path).name for path in read_csv(captured.out).index] == [p.name for p in good]
    assert f"{bomb}: too large" in captured.err


@pytest.fixture(scope="module")
def reader(trained):
    """The registered reader of the module's trained run, as `mlflow models serve` loads it."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{trained / 'mlruns.db'}")
    return mlflow.pyfunc.load_model("models:/captcha-ocr@champion")


def test_the_reader_names_bad_rows_and_still_reads_the_good_ones(reader, tiny_dataset):
    # Given a request of captchas, garbage, a bomb, text where bytes belong
    captchas = [path.read_bytes() for path in sorted((tiny_dataset["raw"] / "test").glob("*.png"))]
    rows = [captchas[0], b"GIF? no", bomb_png(10_000, 10_000), "a string", captchas[1]]
    # When it is read
    read_rows = reader.predict(pd.DataFrame({"image": rows}), params={"tta_shifts": 0})
    # Then each bad row has its reason and an empty text, the good ones their reading
    errors = read_rows["error"].tolist()
    assert errors[0] == errors[4] == ""
    assert errors[1].startswith("not an image")
    assert errors[2].startswith("too large: 10000x10000 pixels")
    assert errors[3] == "not image bytes but str"
    assert read_rows["text"][1:4].tolist() == ["", "", ""]
    alone = reader.predict(pd.DataFrame({"image": captchas[:2]}), params={"tta_shifts": 0})
    assert read_rows["text"][[0, 4]].tolist() == alone["text"].tolist()


def test_the_reader_bounds_what_one_request_costs(reader, tiny_dataset):
    import mlflow

    from captcha_ocr.mlflow_reader import MAX_ROWS

    captcha = sorted((tiny_dataset["raw"] / "test").glob("*.png"))[0].read_bytes()
    # Given a request of more rows than one request reads
    read_rows = reader.predict(
        pd.DataFrame({"image": [captcha] * (MAX_ROWS + 2)}), params={"tta_shifts": 0}
    )
    # Then the first MAX_ROWS are read and the rest named as not read
    assert (read_rows["error"][:MAX_ROWS] == "").all()
    assert read_rows["error"][MAX_ROWS:].str.contains(f"at most {MAX_ROWS} images").all()
    # and settings past their bounds are refused, naming the setting
    for params, name in (({"beam_width": 100_000}, "beam_width"), ({"tta_shifts": 99}, "tta")):
        with pytest.raises(mlflow.exceptions.MlflowException, match=name):
            reader.predict(pd.DataFrame({"image": [captcha]}), params=params)
