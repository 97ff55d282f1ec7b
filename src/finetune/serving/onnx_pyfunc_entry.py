"""The ONNX pyfunc as MLflow "models from code": MLflow stores this file with the model and runs
it when the model is loaded (``mlflow models serve``, ``mlflow.pyfunc.load_model``). Nothing in
finetune imports it; :func:`finetune.export.registration.log_onnx_model` passes its path.
Models registered before it moved here hold their own copy, which imports the same modules.

What only a served model does lives here: with ``FINETUNE_PREDICTION_LOG`` set, every call
appends what it predicted to that prediction log (:mod:`finetune.monitoring.predlog`).
"""

import os

import mlflow
import numpy as np

from finetune.core.labels import prob_columns
from finetune.modeling.onnx_pyfunc import OnnxTextClassifier, as_texts
from finetune.monitoring import predlog


class LoggedOnnxTextClassifier(OnnxTextClassifier):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        table = super().predict(context, model_input, params)
        log_dir = os.environ.get(predlog.ENV_VAR)
        if log_dir:
            labels = self.classifier.labels
            probs = table[prob_columns(labels)].to_numpy(dtype=np.float64)
            predlog.append(log_dir, as_texts(model_input), probs, labels, self.log_name)
        return table


mlflow.models.set_model(LoggedOnnxTextClassifier())
