"""The MLflow Model Registry: champion/challenger aliases and the promotion gate."""
