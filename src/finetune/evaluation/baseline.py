"""The in-run baseline: TF-IDF (word 1-2 grams + character 2-5 grams) and logistic regression."""

from __future__ import annotations

from collections.abc import Mapping
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


def baseline_standing(metrics: Mapping[str, Any]) -> str | None:
    """``beats``, ``ties`` or ``loses``: the model's validation macro-F1 against the TF-IDF
    baseline's, from train metrics; a difference within ``baseline_tolerance`` (one validation
    example's worth, 1 / rows) is a tie. None for a run from before the baseline was fitted."""
    model, baseline = metrics.get("val_f1_macro"), metrics.get("baseline_val_f1_macro")
    if model is None or baseline is None:
        return None
    tolerance = float(metrics.get("baseline_tolerance", 0.0))
    diff = float(model) - float(baseline)
    return "beats" if diff > tolerance else ("loses" if diff < -tolerance else "ties")


def baseline_gap(metrics: Mapping[str, Any]) -> str | None:
    """Why a model with these train metrics must not be champion (its validation macro-F1 is
    below the TF-IDF baseline's by more than one validation example's worth), or None."""
    if baseline_standing(metrics) != "loses":
        return None
    return (
        f"is worse than the TF-IDF baseline on validation macro-F1 "
        f"({float(metrics['val_f1_macro']):.4f} vs {float(metrics['baseline_val_f1_macro']):.4f})"
        ": promotion.require_beat_baseline is true"
    )


def verdict(
    model_val_f1: float,
    baseline_val_f1: float,
    train: Mapping[str, Any],
    train_counts: np.ndarray,
    truncated_share: float,
    required: bool,
) -> dict[str, Any]:
    """Whether the model beats the TF-IDF baseline on validation macro-F1 and, when it does not,
    one message with the figures and what to try, derived from this run (why training stopped,
    examples per class, truncation). ``train`` is the train stage's metrics: their validation
    figures, when there, are the ones judged (the gate reads the same); ``required``:
    promotion.require_beat_baseline."""
    figures = {"val_f1_macro": model_val_f1, "baseline_val_f1_macro": baseline_val_f1}
    if "baseline_val_f1_macro" in train and "val_f1_macro" in train:
        figures = dict(train)
        model_val_f1 = float(train["val_f1_macro"])
        baseline_val_f1 = float(train["baseline_val_f1_macro"])
    standing = baseline_standing(figures)
    if standing == "beats":
        return {"beats_baseline": True, "baseline_warning": None, "what_to_try": []}
    tips: list[str] = []
    reason = train.get("stop_reason")
    if reason in ("time_budget", "max_epochs"):
        tips.append(
            f"training was stopped by {reason} after {train.get('epochs', 0):.2f} epochs, "
            "possibly still improving: raise train.time_budget or train.max_epochs"
        )
    per_class = int(np.median(train_counts)) if len(train_counts) else 0
    if per_class < 50:
        tips.append(
            f"a median of {per_class} training examples per class: bag-of-words models are "
            "strong at this size; label more examples per class"
        )
    if truncated_share > 0.1:
        tips.append(
            f"{truncated_share:.0%} of the test texts are longer than model.max_length and cut: "
            "raise model.max_length"
        )
    tips.append(
        "try a higher train.learning_rate (the new classification head starts from random), "
        "a larger backbone (conf/model/), or deploy the TF-IDF baseline, which wins on this data"
    )
    figures_text = f"({model_val_f1:.4f} vs {baseline_val_f1:.4f})"
    if standing == "ties":
        warning = (
            f"The fine-tuned model does NOT clearly beat the TF-IDF baseline on validation "
            f"macro-F1 {figures_text}: within one validation example's worth, a tie. It is not "
            "refused; compare the two on the test split below."
        )
    else:
        warning = (
            f"The fine-tuned model does NOT beat the TF-IDF baseline on validation macro-F1 "
            f"{figures_text}. "
            + (
                "It is not made champion (promotion.require_beat_baseline)."
                if required
                else "promotion.require_beat_baseline is false: it may still become champion."
            )
        )
    return {"beats_baseline": False, "baseline_warning": warning, "what_to_try": tips}
