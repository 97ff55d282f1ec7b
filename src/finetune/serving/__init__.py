"""What runs inside a served model and nowhere else: the MLflow "models from code" entry of the
ONNX pyfunc (:mod:`finetune.serving.onnx_pyfunc_entry`). The export stage passes that file's
path to MLflow; nothing in finetune imports this package (``make lint`` checks it), so the
served model may use any layer (the ONNX wrapper in ``modeling``, the prediction log in
``monitoring``) without a cycle between them."""
