"""Every figure the stages draw (matplotlib, Agg): evaluate, error report, data report."""

from __future__ import annotations

import base64
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


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def slices_figure(slices: pd.DataFrame, overall: float) -> Any:
    """Accuracy per slice with its 95% CI; weak slices in red."""
    import matplotlib.pyplot as plt

    data = slices.reset_index(drop=True)
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
            f"{d}: {s} (n={n})"
            for d, s, n in zip(data["dimension"], data["slice"], data["n"], strict=True)
        ],
        fontsize=8,
    )
    ax.set_xlabel("accuracy (95% bootstrap CI); dotted: overall")
    ax.set_xlim(max(0.0, float(data["ci_low"].min()) - 0.05), 1.01)
    fig.tight_layout()
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
    fig.tight_layout()
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


def confusion_figure(cm: np.ndarray, labels: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(cm, display_labels=labels)
    display.plot(xticks_rotation=45, colorbar=False, cmap="Blues")
    display.figure_.set_size_inches(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5)
    display.figure_.tight_layout()
    return display.figure_


def curves_figure(y: np.ndarray, probs: np.ndarray, labels: list[str], kind: str) -> Any:
    """Per-class one-vs-rest PR (kind="pr") or ROC (kind="roc") curves in one image."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, ax = _figure(6.5, 5)
    for i, label in enumerate(labels):
        target = (y == i).astype(int)
        if target.sum() in (0, len(target)):
            continue
        if kind == "pr":
            p, r, _ = precision_recall_curve(target, probs[:, i])
            ax.plot(r, p, label=label)
        else:
            f, t, _ = roc_curve(target, probs[:, i])
            ax.plot(f, t, label=label)
    if kind == "pr":
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, one-vs-rest (test)")
    else:
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax.set(xlim=(0, 1.01), ylim=(0, 1.01))
    ax.legend(fontsize=8, loc="lower left" if kind == "pr" else "lower right")
    fig.tight_layout()
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
    fig.tight_layout()
    return fig


def token_lengths_plot(lengths: Mapping[str, np.ndarray], max_length: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    top = max((int(v.max()) for v in lengths.values() if len(v)), default=1)
    bins = np.linspace(0, max(top, max_length) + 1, 50)
    for name, values in lengths.items():
        ax.hist(values, bins=bins, histtype="step", density=True, label=name, linewidth=1.5)
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length {max_length}")
    ax.set_xlabel("tokens per text")
    ax.set_ylabel("share of texts")
    ax.set_title("Token lengths per split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
