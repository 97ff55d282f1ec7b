"""Evaluation: the evaluate stage, metrics and the in-stage TF-IDF baseline."""
