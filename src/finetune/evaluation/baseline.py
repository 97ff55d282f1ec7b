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


def fit_predict_multilabel_baseline(
    train_texts: list[str],
    train_y: np.ndarray,
    eval_texts: dict[str, list[str]],
    spec: BaselineConfig,
    seed: int,
) -> dict[str, np.ndarray]:
    """Multi-label: the same TF-IDF features and one logistic regression per label (one vs
    rest) on the train rows' 0/1 ``train_y`` (n, L); each label's probability per eval split.
    A label every train row has, or none has, gets that constant."""
    from sklearn.multiclass import OneVsRestClassifier

    model = build_baseline(spec, seed)
    y = np.asarray(train_y, dtype=np.int64)
    varied = np.flatnonzero((y.sum(axis=0) > 0) & (y.sum(axis=0) < len(y)))
    constant = y.mean(axis=0) if len(y) else np.zeros(y.shape[1])
    if len(varied):
        model.steps[-1] = (model.steps[-1][0], OneVsRestClassifier(model.steps[-1][1]))
        model.fit(train_texts, y[:, varied])
    out: dict[str, np.ndarray] = {}
    for name, texts in eval_texts.items():
        probs = np.tile(constant, (len(texts), 1)).astype(np.float64)
        if texts and len(varied):
            probs[:, varied] = model.predict_proba(texts)
        out[name] = probs
    return out


STANDINGS = ("loses", "ties", "beats")  # worst first


def _split_standing(metrics: Mapping[str, Any], split: str) -> str | None:
    """``beats``/``ties``/``loses`` on one split (``val``: from train, with its
    ``baseline_tolerance``; ``test``: from evaluate, one test example's worth), or None."""
    model, baseline = metrics.get(f"{split}_f1_macro"), metrics.get(f"baseline_{split}_f1_macro")
    if model is None or baseline is None:
        return None
    if split == "val":
        tolerance = float(metrics.get("baseline_tolerance", 0.0))
    elif metrics.get(f"{split}_num_examples") is None:
        return None  # no row count, no tolerance: judged on validation alone
    else:
        tolerance = 1.0 / max(float(metrics[f"{split}_num_examples"]), 1.0)
    diff = float(model) - float(baseline)
    return "beats" if diff > tolerance else ("loses" if diff < -tolerance else "ties")


def baseline_standing(metrics: Mapping[str, Any], split: str | None = None) -> str | None:
    """``beats``, ``ties`` or ``loses``: the model's macro-F1 against the TF-IDF baseline's on
    validation (train metrics) and, once evaluate has logged them, on test too: the worse of
    the two, since a small validation split can favour either (16 rows in a few-shot cut said
    "beats" where 1,047 test rows said "loses"). A difference within one example's worth of the
    split (``baseline_tolerance`` = 1 / validation rows; 1 / test rows) is a tie. ``split``:
    that split alone. None for a run from before the baseline was fitted."""
    found = [
        standing
        for name in ((split,) if split else ("val", "test"))
        if (standing := _split_standing(metrics, name)) is not None
    ]
    return min(found, key=STANDINGS.index) if found else None


def baseline_gap(metrics: Mapping[str, Any]) -> str | None:
    """Why a model with these metrics must not be champion (its macro-F1 is below the TF-IDF
    baseline's by more than one example's worth on validation or, once evaluated, on test), or
    None."""
    losing = [
        f"on {'validation' if split == 'val' else 'test'} macro-F1 "
        f"({float(metrics[f'{split}_f1_macro']):.4f} vs "
        f"{float(metrics[f'baseline_{split}_f1_macro']):.4f})"
        for split in ("val", "test")
        if _split_standing(metrics, split) == "loses"
    ]
    if not losing:
        return None
    return (
        f"is worse than the TF-IDF baseline {' and '.join(losing)}: "
        "promotion.require_beat_baseline is true"
    )


def verdict(
    model_val_f1: float,
    baseline_val_f1: float,
    train: Mapping[str, Any],
    train_counts: np.ndarray,
    truncated_share: float,
    required: bool,
    test: tuple[float, float, int] | None = None,
    length_limit: int | None = None,
    long_text: str = "head",
) -> dict[str, Any]:
    """Whether the model beats the TF-IDF baseline (:func:`baseline_standing`: on validation
    and on test) and, when it does not, one message with the figures and what to try, derived
    from this run (why training stopped, examples per class, truncation). ``train`` is the
    train stage's metrics: their validation figures, when there, are the ones judged (the gate
    reads the same); ``test``: (model, baseline) test macro-F1 and the test rows; ``required``:
    promotion.require_beat_baseline; ``length_limit``: the backbone's position limit when
    model.max_length is already at it (raising it is no advice then); ``long_text``: which part
    of a longer text the model read (model.long_text)."""
    figures: dict[str, Any] = {
        "val_f1_macro": model_val_f1,
        "baseline_val_f1_macro": baseline_val_f1,
    }
    if "baseline_val_f1_macro" in train and "val_f1_macro" in train:
        figures = dict(train)
    if test is not None:
        figures |= {
            "test_f1_macro": test[0],
            "baseline_test_f1_macro": test[1],
            "test_num_examples": test[2],
        }
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
    if truncated_share > 0.1 and length_limit is None:
        tips.append(
            f"{truncated_share:.0%} of the test texts are longer than model.max_length and cut: "
            "raise model.max_length"
        )
    elif truncated_share > 0.1:
        tips.append(
            f"{truncated_share:.0%} of the test texts are longer than the backbone's "
            f"{length_limit}-token limit and cut (model.max_length is at it, "
            f"model.long_text: {long_text}): "
            + (
                "their ends are never read; try model.long_text: head_tail (the start and the "
                "end of each text), "
                if long_text == "head"
                else "part of each is never read; "
            )
            + "a backbone with longer positions (conf/model/), or keep the part of each text "
            "that decides its label"
        )
    if train.get("head_init") == "random":
        tips.append(
            "start the head from a linear probe (train.head_init: probe, with model.pooling: "
            "mean) or try a higher train.learning_rate: the head started from random"
        )
    by_split = {split: _split_standing(figures, split) for split in ("val", "test")}
    tied = " and ".join(
        "validation" if split == "val" else "test"
        for split, standing_of in by_split.items()
        if standing_of == "ties"
    )
    tips.append(
        "try a larger backbone (conf/model/), or deploy the TF-IDF baseline, which "
        + (
            f"ties the model on {tied} and is smaller"
            if standing == "ties"
            else "wins on this data"
        )
    )
    shown = "; ".join(
        f"{'validation' if split == 'val' else 'test'} {float(figures[f'{split}_f1_macro']):.4f} "
        f"vs {float(figures[f'baseline_{split}_f1_macro']):.4f} ({standing_of})"
        for split, standing_of in by_split.items()
        if standing_of is not None
    )
    if standing == "ties":
        warning = (
            f"The fine-tuned model does NOT clearly beat the TF-IDF baseline on macro-F1 "
            f"({shown}): within one example's worth, a tie. It is not refused; compare the two "
            "per class below."
        )
    else:
        warning = (
            f"The fine-tuned model does NOT beat the TF-IDF baseline on macro-F1 ({shown}). "
            + (
                "It is not made champion (promotion.require_beat_baseline)."
                if required
                else "promotion.require_beat_baseline is false: it may still become champion."
            )
        )
    return {"beats_baseline": False, "baseline_warning": warning, "what_to_try": tips}
