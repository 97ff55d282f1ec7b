"""Monitoring the model in use: input and prediction drift, label-free performance estimates,
the verdict ``finetune monitor`` exits with, and the prediction log it can read."""
