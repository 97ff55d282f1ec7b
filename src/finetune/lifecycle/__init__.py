"""Life after training: scheduled retraining and batch prediction."""
