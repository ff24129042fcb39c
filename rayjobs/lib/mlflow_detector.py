"""The pyfunc that serves a detector (logged by ``rayjobs/lib/mlflow_model.py`` as models-from-code:
MLflow stores this file, not a pickled object, and runs it to build the model).

Input: uint8 RGB face crops ``(N, 3, S, S)``; output: P(fake) per crop (uncalibrated).
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import numpy as np


class SFFBDetector(mlflow.pyfunc.PythonModel):
    """P(fake) of face crops, from the checkpoint logged with the model."""

    def load_context(self, context) -> None:
        from rayjobs.lib.checkpoints import load_model
        from rayjobs.lib.scoring import model_device

        self.device = model_device()
        self.model = load_model(context.artifacts["checkpoint"], self.device)

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        from rayjobs.lib.scoring import fake_scores

        return fake_scores(self.model, np.asarray(model_input, np.uint8), self.device)


mlflow.models.set_model(SFFBDetector())
