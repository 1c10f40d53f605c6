"""params.yaml: the repository's file is valid and complete; bad keys and values
are refused before any work, naming the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from captcha_ocr.params import Params, ParamsError, flatten, load_params, parse_params
from stages import generate
from tests.conftest import REPO_ROOT, write_params


def test_repository_params_load_and_list_every_knob():
    # Given the committed params.yaml
    params = load_params(REPO_ROOT / "params.yaml")
    # Then the file itself names every field of the schema: DVC tracks params by the
    # keys in the file, so a knob left to a code default would change silently.
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert set(dotted_keys(raw)) == set(flatten(Params()))
    # and its values are the schema's defaults, so the two never tell different stories
    assert params == Params()


def dotted_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        nested = isinstance(value, dict) and value  # `{}` is a value, as in flatten
        keys += dotted_keys(value, f"{name}.") if nested else [name]
    return keys


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"train": {"learning_rate": 0}}, "train.learning_rate: Input should be greater than 0"),
        ({"train": {"learnig_rate": 0.1}}, "train.learnig_rate: Extra inputs are not permitted"),
        ({"trian": {}}, "trian: Extra inputs are not permitted"),
        (
            {"generate": {"splits": {"val": "many"}}},
            "generate.splits.val: Input should be a valid integer",
        ),
        ({"data": {"charset": "hex"}}, "data.charset: unknown charset 'hex'"),
        ({"data": {"charset": "custom"}}, "data.custom_charset: charset `custom` needs"),
        (
            {"generate": {"min_length": 5, "max_length": 4}},
            "generate.max_length: must be >= min_length",
        ),
        ({"generate": {"rotation": [10, -10]}}, "generate.rotation: the first bound"),
        (
            {"generate": {"min_length": 8, "max_length": 8}},
            "generate.train_lengths: [3, 6] must take in the lengths min_length..max_length (8-8)",
        ),
        ({"generate": {"train_lengths": [5, 2]}}, "generate.train_lengths: needs 1 <= shortest"),
        (
            {"model": {"arch": "cnn_multihead"}},
            "generate.train_lengths: model.arch cnn_multihead reads one length, not 3-6",
        ),
        (
            {"model": {"arch": "vgg_multihead"}, "generate": {"max_length": 5}},
            "generate.max_length: model.arch vgg_multihead reads one length, not 4-5",
        ),
        ({"import": {"labels": "csv"}}, "import.csv: labels: csv needs the path"),
        ({"data": {"source": "web"}}, "data.source: Input should be 'generated'"),
        ({"model": {"crnn_ctc": {"pool_widths": [2]}}}, "model.crnn_ctc.pool_widths: needs one"),
        (
            {"model": {"crnn_ctc": {"convs_per_block": [1, 2]}}},
            "model.crnn_ctc.convs_per_block: needs one",
        ),
        (
            {"generate": {"oversample": {"symbols": "0o"}}},
            "generate.oversample.symbols: ['o'] not in the charset",
        ),
        (
            {"generate": {"oversample": {"symbols": "00"}}},
            "generate.oversample.symbols: ['0'] given",
        ),
        (
            {"generate": {"oversample": {"symbols": 10}}},
            "generate.oversample.symbols: write the symbols as quoted text",
        ),
        (
            {"generate": {"oversample": {"factor": 0}}},
            "generate.oversample.factor: Input should be",
        ),
        ({"generate": {"oversample": {"O": 4}}}, "generate.oversample.O: Extra inputs"),
        (
            {"generate": {"oversample": {"doubled": 1}}},
            "generate.oversample.doubled: Input should be less than 1",
        ),
        ({"train": {"early_stopping": {"patience": -1}}}, "train.early_stopping.patience:"),
        ({"train": {"optimizer": "adagrad"}}, "train.optimizer: Input should be 'adam'"),
        (
            {"evaluate": {"tta_shifts": -1}},
            "evaluate.tta_shifts: Input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_key_or_value_names_the_dotted_key(overrides, expected):
    base = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        if isinstance(base.get(section), dict) and isinstance(values, dict):
            base[section] = {**base[section], **values}
        else:
            base[section] = values
    with pytest.raises(ParamsError) as raised:
        parse_params(base)
    assert expected in str(raised.value)


def test_exponent_without_a_dot_is_accepted():
    # YAML 1.1 reads `1e-3` as a string; the schema takes it as the number meant.
    assert parse_params({"train": {"learning_rate": "1e-3"}}).train.learning_rate == 0.001


def test_missing_and_malformed_files_are_reported(tmp_path: Path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)


def test_params_are_frozen():
    params = Params()
    with pytest.raises(ValueError, match="frozen"):
        params.train.epochs = 3  # type: ignore[misc]


def test_stage_refuses_bad_params_before_any_work(tmp_path: Path):
    # Given params with a misspelt key
    params = write_params(tmp_path / "params.yaml", {"generate": {"imagewidth": 100}})
    out = tmp_path / "raw"
    # When the generate stage runs
    with pytest.raises(SystemExit) as raised:
        generate.main(["--params", str(params), "--out", str(out)])
    # Then it stops with the key in the message and has written nothing
    assert "generate.imagewidth: Extra inputs are not permitted" in str(raised.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [params]
