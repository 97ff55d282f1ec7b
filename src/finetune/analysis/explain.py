"""Explanations of a model's predictions, as the error report and ``finetune explain`` show them.

:mod:`finetune.analysis.explainers` computes the word scores and their faithfulness; this module
chooses the texts (the report's most confident errors plus a seeded sample of correct
predictions, or a user's own texts), runs the configured explainers on them, and turns the result
into what the pages, the terminal and the tables show.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from finetune.analysis import explainers as X
from finetune.core.durations import parse_duration
from finetune.core.errors import DataError
from finetune.core.schema import ExplanationsConfig
from finetune.modeling.truncation import HEAD_ONLY, LongText

log = logging.getLogger(__name__)


def report_rows(
    predictions: pd.DataFrame, errors: pd.DataFrame, top_errors: int, correct: int, seed: int
) -> pd.DataFrame:
    """The texts the error report explains: the ``top_errors`` most confident errors and a
    seeded sample of ``correct`` correct predictions, empty texts left out, in an order that
    mixes the two in proportion (for 20 and 10: error, correct, error, error, correct, ...): a
    time budget that
    ends the list early keeps both kinds. Errors keep their order (most confident first)."""
    wrong = errors.head(top_errors).assign(correct=False)
    right = predictions[predictions["correct"].astype(bool)]
    right = right[right["text"].astype(str).str.strip() != ""]
    right = right.sample(n=min(correct, len(right)), random_state=seed)
    right = right.rename(columns={"label": "true_label", "predicted": "predicted_label"})
    keep = ["id", "text", "true_label", "predicted_label", "confidence", "correct"]
    wrong = wrong[wrong["text"].astype(str).str.strip() != ""]
    parts = [wrong[keep], right.assign(correct=True)[keep]]
    # each row's place within its kind, as a share: sorting by it interleaves the kinds
    order = np.concatenate([(np.arange(len(p)) + 0.5) / max(len(p), 1) for p in parts])
    rows = pd.concat(parts, ignore_index=True)
    return rows.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


def explain_rows(
    rows: pd.DataFrame,
    labels: list[str],
    proba: X.Proba,
    spec: ExplanationsConfig,
    seed: int,
    *,
    model: Any = None,
    tokenizer: Any = None,
    max_length: int = 128,
    long_text: LongText = HEAD_ONLY,
    batch_size: int = 64,
    target_column: str = "predicted_label",
) -> dict[str, Any]:
    """Explain each row's ``target_column`` class with ``spec.methods``; the page context
    (:func:`context`). ``rows``: id, text and the label columns to show. With the PyTorch
    ``tokenizer``, a text longer than ``max_length`` tokens is explained as the words the model
    reads (the rest would score nothing and make removing words bring them into view)."""
    explainers = X.build(
        spec.methods,
        proba,
        model=model,
        tokenizer=tokenizer,
        max_length=max_length,
        long_text=long_text,
        n_steps=spec.n_steps,
        shap_max_evals=spec.shap_max_evals,
        lime_samples=spec.lime_samples,
        batch_size=batch_size,
        seed=seed,
    )
    if rows.empty or not explainers:
        return context(None, rows)
    targets = [labels.index(str(t)) for t in rows[target_column]]
    texts = [X.normalise(str(t)) for t in rows["text"]]
    if tokenizer is not None:  # only the words the model reads (model.long_text's cut)
        texts = [X.visible_text(tokenizer, t, max_length, long_text) for t in texts]
    budget = (
        parse_duration(spec.time_budget, "error_analysis.explanations.time_budget").total_seconds()
        if spec.time_budget
        else None
    )
    result = X.explain(explainers, proba, texts, targets, spec.fractions, seed, budget)
    return context(result, rows.iloc[: len(result.texts)], candidates=len(rows))


def context(
    result: X.Explained | None, rows: pd.DataFrame, candidates: int | None = None
) -> dict[str, Any]:
    """What the pages, tables and terminal show: per text its labels and each method's words;
    the faithfulness and agreement tables; the recommendation; ``candidates``: the texts there
    were to explain (a time budget may have ended the list earlier). JSON-serialisable."""
    if result is None:
        return {
            "methods": [],
            "examples": [],
            "table": [],
            "agreement": [],
            "recommended": None,
            "candidates": len(rows) if candidates is None else candidates,
        }
    methods = [m for m in result.scores if m != X.RANDOM]
    examples = []
    for i, row in enumerate(rows.to_dict("records")):
        examples.append(
            {
                **{k: _plain(v) for k, v in row.items() if k != "text"},
                "text": result.texts[i],
                "words": {m: result.words_of(i, m) for m in methods},
                "top_word": _top_word(result, i, result.recommended or methods[0]),
                "heading": _heading(row),
            }
        )
    table = result.table.assign(title=result.table["method"].map(X.TITLES))
    agreement = result.agreement.assign(
        a=result.agreement["a"].map(X.TITLES), b=result.agreement["b"].map(X.TITLES)
    )
    return {
        "methods": methods,
        "titles": {m: X.TITLES[m] for m in methods},
        "examples": examples,
        "table": [{k: _plain(v) for k, v in r.items()} for r in table.to_dict("records")],
        "agreement": [{k: _plain(v) for k, v in r.items()} for r in agreement.to_dict("records")],
        "recommended": result.recommended,
        "reason": result.reason,
        "weak": [
            X.TITLES[m]
            for m, ok in zip(table["method"], table["beats_random"], strict=True)
            if m != X.RANDOM and not ok
        ],
        "fractions": list(result.fractions),
        "candidates": len(rows) if candidates is None else candidates,
    }


def _heading(row: dict[str, Any]) -> str:
    """A text's title: its id, given label and prediction (report), or the prediction and the
    class explained (``finetune explain``)."""
    predicted = f"{row['predicted_label']} ({float(row['confidence']):.2f})"
    if row.get("true_label") is not None:
        verdict = "correct" if row.get("correct") else "error"
        return f"{row['id']}: {row['true_label']} predicted as {predicted}, {verdict}"
    head = f"{row['id']}: predicted {predicted}"
    target = row.get("target_label")
    return head if target in (None, row["predicted_label"]) else f"{head}, explaining {target}"


def tables(ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The faithfulness and agreement tables as the pages' ``table`` macro renders them."""
    from finetune.pages import html as H

    faith = pd.DataFrame(ctx["table"])
    if len(faith):
        faith = faith.rename(
            columns={
                "title": "explainer",
                "seconds_per_text": "seconds per text",
                "beats_random": "beats random",
            }
        )
        faith["beats random"] = [
            "–" if m == X.RANDOM else ok
            for m, ok in zip(faith["method"], faith["beats random"], strict=True)
        ]
    columns = ["explainer", "comprehensiveness", "sufficiency", "faithfulness"]
    columns += ["seconds per text", "beats random"]
    agree = pd.DataFrame(ctx["agreement"]).rename(
        columns={"a": "explainer", "b": "with", "spearman": "Spearman rho"}
    )
    agree = agree.rename(columns={"top_overlap": f"top {X.TOP_SHARE:.0%} words shared"})
    return H.table(faith, columns if len(faith) else None), H.table(agree)


def render_page(ctx: dict[str, Any], source: str, backend: str) -> str:
    """The explanations as one self-contained HTML page (the error report's section)."""
    import time

    from finetune.pages import html as H

    faithfulness, agreement = tables(ctx)
    return H.render(
        "explanations.html.j2",
        title="Explanations",
        subtitle=f"model {source} ({backend}) · generated {time.strftime('%Y-%m-%d %H:%M:%S')}",
        sections=[("explanations", "Explanations")],
        explanations=ctx,
        explanation_table=faithfulness,
        agreement_table=agreement,
    )


def _top_word(result: X.Explained, i: int, method: str) -> str:
    scores = result.scores[method][i]
    if not len(scores) or float(np.max(scores)) <= 0:
        return ""
    return X.words(result.texts[i])[int(np.argmax(scores))]


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as JSON's."""
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def metrics(ctx: dict[str, Any]) -> dict[str, float]:
    """The faithfulness table as flat MLflow metrics: explain_<method>_<measure>."""
    out = {}
    for row in ctx["table"]:
        for measure in ("comprehensiveness", "sufficiency", "faithfulness", "seconds_per_text"):
            out[f"explain_{row['method']}_{measure}"] = float(row[measure])
    return out


def terminal_lines(ctx: dict[str, Any], top: int = 5) -> list[str]:
    """Per text: the prediction, then each method's ``top`` words with their scores."""
    lines = []
    for ex in ctx["examples"]:
        head = f"{ex['text'][:80]!r}: {ex['predicted_label']} ({ex['confidence']:.2f})"
        if ex.get("target_label") and ex["target_label"] != ex["predicted_label"]:
            head += f", explaining {ex['target_label']}"
        lines.append(head)
        for method in ctx["methods"]:
            ranked = sorted(ex["words"][method], key=lambda ws: -ws[1])[:top]
            shown = ", ".join(f"{w} {s:+.2f}" for w, s in ranked)
            lines.append(f"  {ctx['titles'][method]:<21} {shown}")
    if ctx["table"]:
        lines.append("faithfulness (comprehensiveness - sufficiency; higher is better):")
        for row in ctx["table"]:
            weak = not row["beats_random"] and row["method"] != X.RANDOM
            flag = "  (not above random)" if weak else ""
            lines.append(
                f"  {row['title']:<21} {row['faithfulness']:+.3f}  "
                f"{row['seconds_per_text']:.2f} s/text{flag}"
            )
        lines.append(ctx["reason"])
    return lines


def check_texts(
    texts: Sequence[str], token_counts: Sequence[int], limit: int | None, names: Sequence[str]
) -> None:
    """``finetune explain``'s input: no empty text, none longer than the model reads (the
    explainers would score words the model never sees; ``limit`` None: a model that reads all
    of a text, chunks). ``names``: how to name each text."""
    for name, text, n in zip(names, texts, token_counts, strict=True):
        if not str(text).strip():
            raise DataError(f"{name} is empty: give a text with words in it")
        if limit is not None and n > limit:
            raise DataError(
                f"{name} is {n} tokens and the model reads at most {limit}: shorten it to the "
                "part you want explained, or pass --max-length up to the model's limit"
            )
