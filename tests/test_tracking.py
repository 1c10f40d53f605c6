"""MLflow pieces on a real SQLite store: the champion alias and the compare table."""

from __future__ import annotations

import keras
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from captcha_ocr import compare, tracking
from captcha_ocr.params import MLflowParams
from tests.conftest import write_params


def log_tiny_model() -> str:
    """A (tiny, untrained) Keras model logged into the active run; its model URI."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    return mlflow.keras.log_model(model, name="model", pip_requirements=["keras"]).model_uri


def logged_run(experiment_id: str, accuracy: float, name: str) -> str:
    """A finished run that logged a model and a test accuracy; the model's URI."""
    with tracking.run_context(experiment_id, run_name=name):
        model_uri = log_tiny_model()
        mlflow.log_metric("test/sequence_accuracy", accuracy)
        mlflow.log_params({"model.arch": "crnn_ctc", "train.epochs": 3})
    return model_uri


def test_champion_moves_only_when_test_accuracy_improves(isolated_mlflow):
    experiment_id = tracking.configure(MLflowParams())
    client = MlflowClient()
    first = logged_run(experiment_id, 0.5, "first")
    outcome = tracking.register_champion(first, "captchas", 0.5)
    assert outcome["promoted"] and outcome["version"] == 1

    worse = logged_run(experiment_id, 0.4, "worse")
    outcome = tracking.register_champion(worse, "captchas", 0.4)
    assert (outcome["version"], outcome["champion"], outcome["promoted"]) == (2, 1, False)
    assert int(client.get_model_version_by_alias("captchas", "champion").version) == 1

    better = logged_run(experiment_id, 0.7, "better")
    outcome = tracking.register_champion(better, "captchas", 0.7)
    assert (outcome["version"], outcome["promoted"]) == (3, True)
    champion = client.get_model_version_by_alias("captchas", "champion")
    assert int(champion.version) == 3 and champion.tags["test_sequence_accuracy"] == "0.7"

    # Evaluating the same run again logs its model again, but registers no new version
    run_id = mlflow.models.get_model_info(better).run_id
    with tracking.run_context(experiment_id, run_id=run_id):
        again = tracking.register_champion(log_tiny_model(), "captchas", 0.7)
    assert again["version"] == 3
    assert len(client.search_model_versions("name = 'captchas'")) == 3


def test_compare_lists_runs_best_first(isolated_mlflow, capsys):
    experiment_id = tracking.configure(MLflowParams())
    for name, accuracy in (("low", 0.2), ("high", 0.9), ("mid", 0.6)):
        logged_run(experiment_id, accuracy, name)
    params = write_params(isolated_mlflow / "params.yaml")
    assert compare.main(["--params", str(params), "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | run_id | started |")
    assert "test/sequence_accuracy" in lines[0] and "model.arch" in lines[0]
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["high", "mid", "low"]


def test_compare_says_so_when_there_are_no_runs(isolated_mlflow, capsys):
    params = write_params(isolated_mlflow / "params.yaml")
    assert compare.main(["--params", str(params)]) == 1
    assert "no finished runs" in capsys.readouterr().out


@pytest.mark.parametrize(("symbol", "key"), [("A", "errors/A"), ("@", "errors/U+0040")])
def test_metric_names_are_safe_for_any_symbol(symbol, key):
    from captcha_ocr.evaluation import metric_key

    assert metric_key("errors", symbol) == key
