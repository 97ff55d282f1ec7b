"""The in-run baseline: TF-IDF (word 1-2 grams + character 2-5 grams) and logistic regression."""

from __future__ import annotations

from typing import Any

import numpy as np

from finetune.core.errors import ConfigError, known_options


def build_baseline(spec: dict[str, Any] | None = None, seed: int = 0) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    spec = known_options("evaluate.baseline", spec, ("C", "max_features", "char_ngrams"))
    c = float(spec.get("C", 10.0))
    if c <= 0:
        raise ConfigError(f"evaluate.baseline.C={c} must be > 0")
    max_features = spec.get("max_features", 50000)
    features = [
        (
            "word",
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=max_features),
        )
    ]
    if spec.get("char_ngrams", True):
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
    spec: dict[str, Any] | None = None,
    seed: int = 0,
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
