"""MLflow tracking: the store, the run each trained model owns, its tags."""
