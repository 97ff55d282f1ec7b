"""Backbones and models: resolving and loading them, the mean-pooling head, batched inference."""
