"""Data: sources, validation, cleaning, splits, the preprocess stage and the data report."""
