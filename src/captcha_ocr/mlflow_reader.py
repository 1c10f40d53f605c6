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

A served model takes requests from anyone who can reach it, so what one request
may cost is bounded: each image by import.max_image_pixels (checked from its
header), a request by MAX_ROWS images and MAX_REQUEST_PIXELS pixels in all, and
the settings by the params schema (beam_width, tta_shifts). A row that is not a
readable image, or past those bounds, gets an empty text and the reason in
`error`; the other rows are still read.
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
from captcha_ocr.images import DEFAULT_MAX_PIXELS
from captcha_ocr.params import EvaluateParams

IMAGE_COLUMN = "image"
MODEL_ARTIFACT = "keras_model"
DATA_INFO_ARTIFACT = "data_info"
# The settings a caller may change per call; batch_size stays what evaluate used.
INFERENCE_PARAMS = {"decoder": "string", "beam_width": "long", "tta_shifts": "long"}
# What the bundled captcha_ocr code imports when it reads (MLflow adds itself).
REQUIREMENTS = ("tensorflow-cpu", "keras", "numpy", "pandas", "pillow", "pydantic", "pyyaml")
# Bounds of one request: a few seconds of reading on two cores, and at most a few
# hundred megabytes of decoded pixels at any moment.
MAX_ROWS = 1_000
MAX_REQUEST_PIXELS = 50_000_000


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
        # Readers logged before the limit existed take the default.
        self.max_pixels = context.model_config.get("max_image_pixels", DEFAULT_MAX_PIXELS)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from pydantic import ValidationError

        from captcha_ocr.read import model_images, read_texts

        try:
            settings = EvaluateParams(batch_size=self.batch_size, **(params or {}))
        except (ValidationError, TypeError) as error:
            problems = (
                "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors())
                if isinstance(error, ValidationError)
                else str(error)
            )
            raise MlflowException(problems, INVALID_PARAMETER_VALUE) from None
        if IMAGE_COLUMN not in model_input:
            raise MlflowException(f"no {IMAGE_COLUMN!r} column", INVALID_PARAMETER_VALUE)
        rows, pngs, errors = self.load_rows(model_input[IMAGE_COLUMN])
        predictions = read_texts(self.model, model_images(pngs, self.spec), self.charset, settings)
        texts = [""] * len(errors)
        confidence = [0.0] * len(errors)
        for row, text, score in zip(rows, predictions.texts, predictions.confidence, strict=True):
            texts[row], confidence[row] = text, float(score)
        return pd.DataFrame({"text": texts, "confidence": confidence, "error": errors})

    def load_rows(self, column: pd.Series) -> tuple[list[int], list[bytes], list[str]]:
        """(the rows that hold a readable image, their PNG bytes, every row's error or
        ""), within the request's bounds."""
        from captcha_ocr.images import ImageRefused, load_image

        rows, pngs, errors = [], [], []
        pixels = 0
        for row, data in enumerate(column):
            error = ""
            if row >= MAX_ROWS:
                error = f"not read: a request reads at most {MAX_ROWS} images"
            elif pixels >= MAX_REQUEST_PIXELS:
                error = f"not read: the request's images passed {MAX_REQUEST_PIXELS:,} pixels"
            elif not isinstance(data, bytes | bytearray):
                error = f"not image bytes but {type(data).__name__}"
            else:
                try:
                    png, (width, height), _ = load_image(io.BytesIO(data), self.max_pixels)
                except ImageRefused as refused:
                    error = str(refused)
                else:
                    rows.append(row)
                    pngs.append(png)
                    pixels += width * height
            errors.append(error)
        return rows, pngs, errors


def signature(settings: EvaluateParams) -> ModelSignature:
    """Image bytes in (base64 in a JSON request); text and confidence out; the reading
    settings as params whose defaults are these."""
    return ModelSignature(
        inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
        outputs=Schema(
            [
                ColSpec("string", "text"),
                ColSpec("double", "confidence"),
                ColSpec("string", "error"),  # "" when the row was read
            ]
        ),
        params=ParamSchema(
            [
                ParamSpec(name, kind, getattr(settings, name))
                for name, kind in INFERENCE_PARAMS.items()
            ]
        ),
    )


def log_reader(
    model_file: Path,
    data_info_file: Path,
    settings: EvaluateParams,
    example_image: bytes,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
) -> str:
    """Log the reader into the active run; its model URI. MLflow checks the example
    against the signature by reading it with the saved model."""
    info = mlflow.pyfunc.log_model(
        name="model",
        # Models from code: MLflow runs reader_model.py to load it, nothing is unpickled.
        python_model=str(Path(__file__).with_name("reader_model.py")),
        model_config={"batch_size": settings.batch_size, "max_image_pixels": max_image_pixels},
        artifacts={MODEL_ARTIFACT: str(model_file), DATA_INFO_ARTIFACT: str(data_info_file)},
        # The package travels with the model, so it loads where captcha_ocr is not installed.
        code_paths=[str(Path(captcha_ocr.__file__).parent)],
        signature=signature(settings),
        input_example=pd.DataFrame({IMAGE_COLUMN: [example_image]}),
        # Listing the requirements skips MLflow's inference of them (~6 s).
        pip_requirements=[f"{name}=={version(name)}" for name in REQUIREMENTS],
    )
    return info.model_uri
