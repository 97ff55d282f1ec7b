"""Every figure the stages draw (matplotlib, Agg): evaluate, error report, data report."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def png_data_uri(figure: Any, dpi: int = 100) -> str:
    """A figure as a ``data:image/png;base64`` URI, for self-contained HTML pages."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


MAX_MATRIX_CLASSES = 20  # a confusion matrix figure shows at most this many classes
MAX_CURVES = 10  # per-class PR/ROC curves drawn (the largest classes)
MAX_SLICE_ROWS = 40  # slices drawn (weak ones and the lowest first)
MAX_TICK_CHARS = 28


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # constrained layout fits long tick labels without tight_layout's warnings
    return plt.subplots(figsize=(width, height), layout="constrained")


@functools.cache
def _font() -> Any:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    return FT2Font(font_manager.findfont(font_manager.FontProperties()))


def _drawable(text: str) -> str:
    """``text`` with the characters the figure font has no glyph for (CJK, emoji with the
    default font) drawn as "□", plus a short hash of the label so two such labels stay apart."""
    font = _font()
    shown = "".join(c if c.isspace() or font.get_char_index(ord(c)) else "□" for c in text)
    if shown == text:
        return text
    return f"{shown} ({hashlib.sha1(text.encode()).hexdigest()[:6]})"


def _short(text: str, limit: int = MAX_TICK_CHARS) -> str:
    text = _drawable(str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slices_figure(slices: pd.DataFrame, overall: float) -> Any:
    """Accuracy per slice with its 95% CI; weak slices in red. With many slices (a class per
    slice for 100 classes), the weak ones and then the lowest, up to MAX_SLICE_ROWS."""
    import matplotlib.pyplot as plt

    data = slices.reset_index(drop=True)
    if len(data) > MAX_SLICE_ROWS:
        data = (
            data.assign(_order=~data["weak"])
            .sort_values(["_order", "accuracy"], kind="stable")
            .head(MAX_SLICE_ROWS)
            .sort_values(["dimension", "slice"], kind="stable")
            .reset_index(drop=True)
        )
    fig, ax = _figure(8, 0.28 * len(data) + 1.2)
    y = np.arange(len(data))[::-1]
    colours = ["#c0392b" if w else "#2858b8" for w in data["weak"]]
    ax.errorbar(
        data["accuracy"],
        y,
        xerr=[
            (data["accuracy"] - data["ci_low"]).clip(lower=0),
            (data["ci_high"] - data["accuracy"]).clip(lower=0),
        ],
        fmt="none",
        ecolor="#9aa3b5",
        capsize=2,
    )
    ax.scatter(data["accuracy"], y, c=colours, zorder=3, s=22)
    ax.axvline(overall, color="#444", linestyle=":", linewidth=1)
    ax.set_yticks(
        y,
        [
            f"{d}: {_short(s)} (n={n})"
            for d, s, n in zip(data["dimension"], data["slice"], data["n"], strict=True)
        ],
        fontsize=8,
    )
    shown = "" if len(data) == len(slices) else f" ({len(data)} of {len(slices)} slices)"
    ax.set_xlabel(f"accuracy (95% bootstrap CI); dotted: overall{shown}")
    ax.set_xlim(max(0.0, float(data["ci_low"].min()) - 0.05), 1.01)
    uri = png_data_uri(fig)
    plt.close(fig)
    return uri


def robustness_figure(table: pd.DataFrame) -> str:
    import matplotlib.pyplot as plt

    data = table.fillna({"flip_rate": 0.0})
    fig, ax = _figure(6, 0.4 * len(data) + 1.0)
    ax.barh(data["test"][::-1], data["flip_rate"][::-1] * 100, color="#2858b8")
    for i, (rate, n) in enumerate(
        zip(data["flip_rate"][::-1], data["applicable"][::-1], strict=True)
    ):
        ax.text(rate * 100, i, f" {rate:.1%} of {n}", va="center", fontsize=8)
    ax.set_xlabel("predictions that flip (%)")
    ax.set_xlim(0, max(5.0, float(data["flip_rate"].max()) * 130))
    uri = png_data_uri(fig)
    plt.close(fig)
    return uri


def confusion_uri(predictions: pd.DataFrame, labels: list[str]) -> str:
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(predictions["label"], predictions["predicted"], labels=labels)
    fig = confusion_figure(cm, labels)
    uri = png_data_uri(fig)
    plt.close(fig)
    return uri


def most_confused(cm: np.ndarray, k: int = MAX_MATRIX_CLASSES) -> np.ndarray:
    """Indexes of the ``k`` classes with the most errors, as true or predicted class (the
    largest classes fill up when fewer than ``k`` have errors), in label order."""
    errors = cm.sum(axis=0) + cm.sum(axis=1) - 2 * np.diag(cm)
    order = np.lexsort((-cm.sum(axis=1), -errors))  # most errors first, then the largest
    return np.sort(order[:k])


def confusion_figure(cm: np.ndarray, labels: list[str]) -> Any:
    """The confusion matrix; with more than MAX_MATRIX_CLASSES classes, the sub-matrix of
    the most confused ones (the full matrix is in the confusion tables)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    title = None
    if len(labels) > MAX_MATRIX_CLASSES:
        keep = most_confused(cm)
        cm = cm[np.ix_(keep, keep)]
        title = f"the {len(keep)} most confused of {len(labels)} classes"
        labels = [labels[i] for i in keep]
    n = len(labels)
    fig, ax = _figure(0.55 * n + 3, 0.5 * n + 2.5)
    display = ConfusionMatrixDisplay(cm, display_labels=[_short(x) for x in labels])
    display.plot(ax=ax, xticks_rotation=45 if n <= 8 else 90, colorbar=False, cmap="Blues")
    if n > 12:
        for text in display.text_.ravel():
            text.set_fontsize(7)
    if title:
        ax.set_title(title)
    return fig


def curves_figure(y: np.ndarray, probs: np.ndarray, labels: list[str], kind: str) -> Any:
    """Per-class one-vs-rest PR (kind="pr") or ROC (kind="roc") curves in one image: every
    class up to MAX_CURVES classes, else the MAX_CURVES largest. ``y``: class ids, or a
    multi-label 0/1 matrix (a curve per label)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, ax = _figure(6.5, 5)
    y = np.asarray(y)
    multi = y.ndim == 2  # a multi-label 0/1 matrix
    support = y.sum(axis=0) if multi else np.bincount(y.astype(int), minlength=len(labels))
    drawn = sorted(np.argsort(-support, kind="stable")[:MAX_CURVES])
    for i in drawn:
        target = y[:, i].astype(int) if multi else (y == i).astype(int)
        if target.sum() in (0, len(target)):
            continue
        if kind == "pr":
            p, r, _ = precision_recall_curve(target, probs[:, i])
            ax.plot(r, p, label=_short(labels[i]))
        else:
            f, t, _ = roc_curve(target, probs[:, i])
            ax.plot(f, t, label=_short(labels[i]))
    some = "" if len(drawn) == len(labels) else f", the {len(drawn)} largest of {len(labels)}"
    if kind == "pr":
        ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall (test{some})")
    else:
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC (test{some})")
    ax.set(xlim=(0, 1.01), ylim=(0, 1.01))
    ax.legend(fontsize=8, loc="lower left" if kind == "pr" else "lower right")
    return fig


def reliability_figure(curves: list[tuple[str, list[dict[str, Any]]]]) -> Any:
    """The reliability diagram: one line per (label, rows of ``metrics.reliability_bins``)."""
    fig, ax = _figure(5.5, 5)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    for name, rows in curves:
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            marker="o",
            label=name,
        )
    ax.set(
        xlabel="confidence",
        ylabel="accuracy",
        title="Reliability diagram (test)",
        xlim=(0, 1.01),
        ylim=(0, 1.01),
    )
    ax.legend(fontsize=8, loc="upper left")
    return fig


def token_lengths_plot(lengths: Mapping[str, np.ndarray], max_length: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = _figure(7, 3.5)
    top = max((int(v.max()) for v in lengths.values() if len(v)), default=1)
    bins = np.linspace(0, max(top, max_length) + 1, 50)
    for name, values in lengths.items():
        ax.hist(values, bins=bins, histtype="step", density=True, label=name, linewidth=1.5)
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length {max_length}")
    ax.set_xlabel("tokens per text")
    ax.set_ylabel("share of texts")
    ax.set_title("Token lengths per split")
    ax.legend()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def tradeoff_figure(rows: list[dict[str, Any]], chosen: str | None) -> Any:
    """Accuracy against latency at batch 1, one point per scored variant (chosen one ringed)."""
    fig, ax = _figure(6, 4)
    for row in rows:
        x, y = row["latency_ms_p50_batch1"], row["accuracy"]
        ax.scatter([x], [y], s=60, zorder=3)
        if row["variant"] == chosen:
            ax.scatter([x], [y], s=220, facecolors="none", edgecolors="black", zorder=4)
        ax.annotate(
            f"{row['variant']} ({row['size_mb']:.0f} MB)",
            (x, y),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=9,
        )
    ax.set_xlabel("latency p50 at batch 1 (ms, lower is better)")
    ax.set_ylabel("test accuracy")
    ax.set_title(
        "Export variants: accuracy against latency" + (f" (chosen: {chosen})" if chosen else "")
    )
    ax.grid(alpha=0.3)
    return fig
