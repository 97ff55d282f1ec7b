"""The ONNX pyfunc as MLflow "models from code": MLflow stores this file with the model and runs
it when the model is loaded (``mlflow models serve``, ``mlflow.pyfunc.load_model``). Nothing in
finetune imports it; :func:`finetune.tracking.onnx_model.log_onnx_model` passes its path."""

import mlflow

from finetune.tracking.onnx_model import OnnxTextClassifier

mlflow.models.set_model(OnnxTextClassifier())
