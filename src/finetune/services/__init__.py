"""The team setup: ``finetune services up|down|status`` (``make services``) runs PostgreSQL, an S3
object store (SeaweedFS) and an MLflow tracking server on them, as real server processes with
their data under ``paths.services_dir``. The pipeline itself never imports this package: stages
reach the servers through MLFLOW_TRACKING_URI / ``tracking=server`` and DVC's ``s3`` remote."""
