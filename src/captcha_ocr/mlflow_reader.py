"""The model MLflow keeps and registers: captcha images in, text out.

The Keras model alone maps an image, already resized and scaled, to logits over
symbol ids that only the data's charset gives meaning to. `CaptchaReader` bundles
the model file, data_info.json (the charset) and `read`'s preparation and decoding
into one MLflow pyfunc model, so that

    reader = mlflow.pyfunc.load_model("models:/captcha-ocr@champion")
    reader.predict(pd.DataFrame({"image": [open("captcha.png", "rb").read()]}))

and `mlflow models serve` read a captcha file, in any format Pillow reads, as the
evaluate stage read the test split. The decoder and test-time shifts are inference
params with evaluate's settings as their defaults: `predict(..., params={"tta_shifts": 0})`.
"""

from __future__ import annotations

import io
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

import captcha_ocr
from captcha_ocr.params import EvaluateParams

IMAGE_COLUMN = "image"
MODEL_ARTIFACT = "keras_model"
DATA_INFO_ARTIFACT = "data_info"
# The settings a caller may change per call; batch_size stays what evaluate used.
INFERENCE_PARAMS = {"decoder": "string", "beam_width": "long", "tta_shifts": "long"}
# What the bundled captcha_ocr code imports when it reads (MLflow adds itself).
REQUIREMENTS = ("tensorflow-cpu", "keras", "numpy", "pandas", "pillow", "pydantic", "pyyaml")


class CaptchaReader(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        import keras

        from captcha_ocr.data import model_input_spec
        from captcha_ocr.dataset_info import read_data_info

        self.model = keras.models.load_model(context.artifacts[MODEL_ARTIFACT])
        info_dir = Path(context.artifacts[DATA_INFO_ARTIFACT]).parent
        self.charset = read_data_info(info_dir).charset_map()
        self.spec = model_input_spec(self.model, max_length=1)  # unused when reading
        self.batch_size = context.model_config["batch_size"]

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from pydantic import ValidationError

        from captcha_ocr.importing import load_image
        from captcha_ocr.read import model_images, read_texts

        try:
            settings = EvaluateParams(batch_size=self.batch_size, **(params or {}))
        except ValidationError as error:
            problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors())
            raise MlflowException(problems, INVALID_PARAMETER_VALUE) from None
        pngs, failures = [], []
        for row, data in enumerate(model_input[IMAGE_COLUMN]):
            try:
                pngs.append(load_image(io.BytesIO(data))[0])
            except (TypeError, ValueError) as error:
                failures.append(f"row {row}: {error}")
        if failures:
            raise MlflowException(
                f"{len(failures)} of {len(model_input)} images could not be read: "
                + "; ".join(failures),
                INVALID_PARAMETER_VALUE,
            )
        predictions = read_texts(self.model, model_images(pngs, self.spec), self.charset, settings)
        return pd.DataFrame({"text": predictions.texts, "confidence": predictions.confidence})


def signature(settings: EvaluateParams) -> ModelSignature:
    """Image bytes in (base64 in a JSON request); text and confidence out; the reading
    settings as params whose defaults are these."""
    return ModelSignature(
        inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
        outputs=Schema([ColSpec("string", "text"), ColSpec("double", "confidence")]),
        params=ParamSchema(
            [
                ParamSpec(name, kind, getattr(settings, name))
                for name, kind in INFERENCE_PARAMS.items()
            ]
        ),
    )


def log_reader(
    model_file: Path, data_info_file: Path, settings: EvaluateParams, example_image: bytes
) -> str:
    """Log the reader into the active run; its model URI. MLflow checks the example
    against the signature by reading it with the saved model."""
    info = mlflow.pyfunc.log_model(
        name="model",
        # Models from code: MLflow runs reader_model.py to load it, nothing is unpickled.
        python_model=str(Path(__file__).with_name("reader_model.py")),
        model_config={"batch_size": settings.batch_size},
        artifacts={MODEL_ARTIFACT: str(model_file), DATA_INFO_ARTIFACT: str(data_info_file)},
        # The package travels with the model, so it loads where captcha_ocr is not installed.
        code_paths=[str(Path(captcha_ocr.__file__).parent)],
        signature=signature(settings),
        input_example=pd.DataFrame({IMAGE_COLUMN: [example_image]}),
        # Listing the requirements skips MLflow's inference of them (~6 s).
        pip_requirements=[f"{name}=={version(name)}" for name in REQUIREMENTS],
    )
    return info.model_uri
