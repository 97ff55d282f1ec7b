"""The in-run baseline: TF-IDF (word 1-2 grams + character 2-5 grams) and logistic regression."""

from __future__ import annotations

from typing import Any

import numpy as np

from finetune.core.schema import BaselineConfig


def build_baseline(spec: BaselineConfig, seed: int) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    c, max_features = spec.C, spec.max_features
    features = [
        (
            "word",
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=max_features),
        )
    ]
    if spec.char_ngrams:
        features.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(2, 5),
                    sublinear_tf=True,
                    max_features=max_features,
                ),
            )
        )
    return make_pipeline(
        FeatureUnion(features),
        LogisticRegression(C=c, max_iter=2000, random_state=seed),
    )


def fit_predict_baseline(
    train_texts: list[str],
    train_y: np.ndarray,
    eval_texts: dict[str, list[str]],
    num_classes: int,
    spec: BaselineConfig,
    seed: int,
) -> dict[str, np.ndarray]:
    """Fit on the train split; class probabilities (all ``num_classes`` columns) per eval split."""
    model = build_baseline(spec, seed)
    model.fit(train_texts, train_y)
    classes = model.classes_
    out: dict[str, np.ndarray] = {}
    for name, texts in eval_texts.items():
        probs = np.zeros((len(texts), num_classes))
        if texts:
            probs[:, classes] = model.predict_proba(texts)
        out[name] = probs
    return out
