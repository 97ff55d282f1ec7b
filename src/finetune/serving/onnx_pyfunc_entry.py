"""The ONNX pyfunc as MLflow "models from code": MLflow stores this file with the model and runs
it when the model is loaded (``mlflow models serve``, ``mlflow.pyfunc.load_model``). Nothing in
finetune imports it; :func:`finetune.export.registration.log_onnx_model` passes its path.
Models registered before it moved here hold their own copy, which imports the same modules.

What only a served model does lives here: with ``FINETUNE_PREDICTION_LOG`` set, every call
hands what it predicted to a buffered writer of that prediction log
(:class:`finetune.monitoring.predlog.LogWriter`), which writes from a background thread by rows
or seconds and at shutdown, and deletes days older than the retention. The settings are the
model config export wrote (``monitor.log_*``); a model exported before they existed flushes
every 1000 rows or 30 s and keeps every day.

The last flush: the writer closes at interpreter exit, and under ``mlflow models serve`` in the
scoring app's shutdown, because uvicorn ends the process on SIGTERM by raising the signal again
after its graceful shutdown, with the default handler back, so exit handlers never run.
"""

import os
import sys

import mlflow
import numpy as np
import pandas as pd

from finetune.core.labels import prob_columns
from finetune.modeling.onnx_pyfunc import OnnxTextClassifier, as_texts
from finetune.monitoring import predlog

SCORING_APP = "mlflow.pyfunc.scoring_server.app"  # what `mlflow models serve` runs


def close_at_server_shutdown(writer: predlog.LogWriter) -> bool:
    """Close ``writer`` in the scoring server's shutdown; False when this process is not one
    (the app is made after the model loads: called at the first request)."""
    app = getattr(sys.modules.get(SCORING_APP), "app", None)
    if app is None:
        return False
    app.router.on_shutdown.append(writer.close)
    return True


class LoggedOnnxTextClassifier(OnnxTextClassifier):
    def load_context(self, context):  # type: ignore[no-untyped-def]
        super().load_context(context)
        config = getattr(context, "model_config", None) or {}
        log_dir = os.environ.get(predlog.ENV_VAR)
        self.prediction_log = None
        self.closes_with_server = False
        if log_dir:
            retention = config.get("log_retention_days")
            self.prediction_log = predlog.LogWriter(
                log_dir,
                flush_rows=int(config.get("log_flush_rows", 1000)),
                flush_seconds=float(config.get("log_flush_seconds", 30)),
                retention_days=None if retention is None else int(retention),
            )

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        table = super().predict(context, model_input, params)
        if self.prediction_log is not None:
            if not self.closes_with_server:
                self.closes_with_server = close_at_server_shutdown(self.prediction_log)
            labels = self.classifier.labels
            probs = table[prob_columns(labels)].to_numpy(dtype=np.float64)
            self.prediction_log.append(
                as_texts(model_input),
                probs,
                labels,
                self.log_name,
                predicted=table["label"].tolist(),
            )
        return table


mlflow.models.set_model(LoggedOnnxTextClassifier())
