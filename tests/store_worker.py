"""A process that shares an MLflow store with others, for tests/test_tracking.py:

    python tests/store_worker.py create|champion|die  START_AT  [ACCURACY]

It waits until the wall-clock time START_AT, so that several of them act at the same
moment, then: `create` opens the experiment (creating the store if it is new),
`champion` registers a freshly logged model with ACCURACY, `die` starts a run and
kills itself with SIGKILL, as the out-of-memory killer would. The store is
MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import mlflow

from captcha_ocr import tracking
from captcha_ocr.params import MLflowParams


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def main(mode: str, start_at: float, accuracy: float = 0.5) -> None:
    if mode == "champion":
        # Logged before the barrier: the race is in registering, not in logging.
        experiment_id = tracking.configure(MLflowParams())
        with tracking.run_context(experiment_id):
            model_uri = mlflow.pyfunc.log_model(
                name="model", python_model=Constant(), pip_requirements=["mlflow"]
            ).model_uri
    time.sleep(max(0.0, start_at - time.time()))
    if mode == "create":
        print("experiment", tracking.configure(MLflowParams()))
    elif mode == "champion":
        tracking.register_champion(model_uri, "captchas", accuracy)
    elif mode == "die":
        experiment_id = tracking.configure(MLflowParams())
        with tracking.run_context(experiment_id, run_name=f"killed-{os.getpid()}"):
            print("run started", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), *map(float, sys.argv[3:]))
