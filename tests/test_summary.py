"""What `make repro` prints at its end: the figures and where to look next."""

from __future__ import annotations

import json

import pytest

from captcha_ocr import summary
from tests.conftest import write_params


@pytest.mark.parametrize(("registered", "named"), [("captcha-ocr", True), (None, False)])
def test_summary_names_the_registered_reader_only_when_there_is_one(
    isolated_mlflow, capsys, registered, named
):
    # Given a finished pipeline's metrics in the working directory
    (isolated_mlflow / "metrics").mkdir()
    evaluated = {
        "n_test": 5000,
        "sequence_accuracy": 0.9686,
        "character_accuracy": 0.9921,
        "character_error_rate": 0.0079,
        "char_errors": {"0": 83, "O": 44, "N": 3},
    }
    (isolated_mlflow / "metrics" / "evaluate.json").write_text(json.dumps(evaluated))
    params = write_params(
        isolated_mlflow / "params.yaml", {"mlflow": {"registered_model": registered}}
    )
    # When the summary prints
    assert summary.main(["--params", str(params)]) == 0
    out = capsys.readouterr().out
    # Then it gives the figures, and the registered reader with the command that serves it
    assert "whole-captcha accuracy  0.9686" in out and "most misread            0 x83, O x44" in out
    assert ("models:/captcha-ocr@champion reads image files" in out) is named
    assert ("make serve" in out) is named
