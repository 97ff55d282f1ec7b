"""Augmentation of the training split: methods, synonyms, the augment stage."""
