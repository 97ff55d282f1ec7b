"""Backbones and models: tokenizers and token lengths (``tokens``, all that preprocess needs),
resolving and loading models, the mean-pooling head, batched inference, ONNX Runtime inference
and its MLflow pyfunc."""
