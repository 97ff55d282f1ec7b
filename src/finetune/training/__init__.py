"""Training: the train stage and the Trainer around it."""
