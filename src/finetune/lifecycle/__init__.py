"""Life after training: scheduled retraining and batch prediction, and running the ``dvc``
command line from ``finetune`` commands (retrain, tune)."""
