"""The ONNX pyfunc as MLflow "models from code": MLflow stores this file with the model and runs
it when the model is loaded (``mlflow models serve``, ``mlflow.pyfunc.load_model``). Nothing in
finetune imports it; :func:`finetune.export.registration.log_onnx_model` passes its path."""

import mlflow

from finetune.modeling.onnx_pyfunc import OnnxTextClassifier

mlflow.models.set_model(OnnxTextClassifier())
