"""The logged reader's entry point: MLflow runs this file to load it (models from
code), so nothing is unpickled."""

import mlflow

from captcha_ocr.mlflow_reader import CaptchaReader

mlflow.models.set_model(CaptchaReader())
