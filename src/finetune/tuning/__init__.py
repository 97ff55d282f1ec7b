"""Hyperparameter search: ``finetune tune`` runs an Optuna study whose trials are DVC
experiments (run by DVC's queue) and MLflow child runs of one parent run per study, writes the
best trial as the preset ``conf/experiment/tuned.yaml``, and draws the study's figures. The train
stage's side of a trial (reporting, pruning) is :mod:`finetune.training.pruning`."""
