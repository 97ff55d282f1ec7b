"""The export stage: ONNX variants (fp32, int8, fp16), scored against PyTorch, one deployed."""
