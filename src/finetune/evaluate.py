"""evaluate: test-split metrics (DVC metrics), confusion matrix (DVC plot), predictions."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from finetune import tracking
from finetune.inference import predict_proba
from finetune.io import StagedOutputs, write_json, write_parquet
from finetune.modeling import load_trained
from finetune.splits import load_split

log = logging.getLogger(__name__)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support."""
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "f1_weighted": float(
            f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)
        ),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
    }


def predictions_frame(df: pd.DataFrame, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """One row per example: true/predicted label, confidence and every class probability."""
    pred = probs.argmax(axis=1)
    out = df.copy()
    out["predicted"] = [labels[i] for i in pred]
    out["predicted_id"] = pred
    out["confidence"] = probs.max(axis=1)
    out["correct"] = out["predicted_id"].to_numpy() == out["label_id"].to_numpy()
    for i, label in enumerate(labels):
        out[f"prob_{label}"] = probs[:, i]
    return out


def confusion_figure(cm: np.ndarray, labels: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(cm, display_labels=labels)
    display.plot(xticks_rotation=45, colorbar=False, cmap="Blues")
    display.figure_.set_size_inches(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5)
    display.figure_.tight_layout()
    return display.figure_


def run(cfg: Any) -> dict[str, Any]:
    """Stage entry: model + test split -> metrics JSON, confusion plot data, predictions."""
    import matplotlib.pyplot as plt
    import mlflow

    paths, ev = cfg["paths"], cfg["evaluate"]
    model, tokenizer = load_trained(paths["model_dir"])
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    df = load_split(paths["processed_dir"], ev.get("split", "test"))
    preds = predict_proba(
        model,
        tokenizer,
        df["text"].tolist(),
        int(ev["batch_size"]),
        int(cfg["model"]["max_length"]),
    )
    frame = predictions_frame(df, preds.probabilities, labels)
    metrics = classification_metrics(frame["label_id"].to_numpy(), preds.predicted, labels)
    total = sum(preds.batch_seconds)
    metrics["inference_samples_per_second"] = round(len(df) / total, 2) if total else None
    metrics["num_examples"] = len(df)
    cm = confusion_matrix(frame["label_id"], preds.predicted, labels=list(range(len(labels))))
    with tracking.train_run(paths["run_info"], cfg["tracking"]), StagedOutputs() as out:
        write_json(out.file(paths["evaluate_metrics"]), metrics)
        write_parquet(out.file(paths["predictions"]), frame)
        # DVC "confusion" template: one record per example, actual vs predicted.
        frame[["label", "predicted"]].rename(columns={"label": "actual"}).to_csv(
            out.file(paths["confusion_plot"]), index=False
        )
        mlflow.log_metrics(
            {
                "test_accuracy": metrics["accuracy"],
                "test_f1_macro": metrics["f1_macro"],
                "test_f1_weighted": metrics["f1_weighted"],
                **{
                    f"test_{name}_{label}": value
                    for label, per in metrics["per_class"].items()
                    for name, value in per.items()
                    if name != "support"
                },
            }
        )
        mlflow.log_dict(metrics, "evaluate/metrics.json")
        mlflow.log_dict({"labels": labels, "matrix": cm.tolist()}, "evaluate/confusion_matrix.json")
        figure = confusion_figure(cm, labels)
        figure.savefig(out.file(paths["confusion_image"]), format="png", dpi=120)
        mlflow.log_figure(figure, "evaluate/confusion_matrix.png")
        plt.close(figure)
    log.info(
        "test accuracy %.4f, macro-F1 %.4f on %d examples",
        metrics["accuracy"],
        metrics["f1_macro"],
        len(df),
    )
    return metrics
