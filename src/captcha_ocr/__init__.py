"""captcha-ocr: read text captchas; a DVC pipeline with Keras models tracked in MLflow."""

__version__ = "0.1.0"
