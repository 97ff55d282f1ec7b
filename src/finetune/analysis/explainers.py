"""Word attributions from three explainers behind one interface, and how faithful each one is.

Every explainer scores the same words, a text split on whitespace (:func:`words`), towards one
class, so their scores can be compared word by word:

- ``integrated_gradients``: Captum's layer integrated gradients on the input embeddings of the
  PyTorch model (word pieces summed into their word); needs the model's gradients.
- ``shap``: the ``shap`` package's partition explainer with a text masker that removes words;
  needs only probabilities (PyTorch or ONNX).
- ``lime``: ``lime``'s text explainer (a local linear model over word-removal samples); needs
  only probabilities.
- ``random``: seeded random scores, the floor an explainer has to beat.

Faithfulness follows ERASER (DeYoung et al., 2020) and ferret's area-over-the-perturbation-curve
form: for each fraction k of the words (10% .. 50%), *comprehensiveness* is how much the target
class's probability drops when the top-k words are removed (higher: the words mattered) and
*sufficiency* how much it drops when only they are kept (lower: they were enough). Agreement
between two explainers is the Spearman rank correlation of their word scores and the share of
their top 20% words they have in common.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from finetune.modeling.truncation import HEAD_ONLY, LongText

log = logging.getLogger(__name__)

IG, SHAP, LIME, RANDOM = "integrated_gradients", "shap", "lime", "random"
METHODS = (IG, SHAP, LIME)
NEEDS_GRADIENTS = {IG}
TITLES = {IG: "Integrated gradients", SHAP: "SHAP", LIME: "LIME", RANDOM: "Random"}
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)
TOP_SHARE = 0.2  # the "top words" that agreement compares

Proba = Callable[[list[str]], np.ndarray]  # texts -> probabilities (rows x classes)
Explainer = Callable[[list[str], list[int]], list[np.ndarray]]  # texts, targets -> word scores


def words(text: str) -> list[str]:
    """The words every explainer scores: ``text`` split on whitespace."""
    return text.split()


def normalise(text: str) -> str:
    """``text`` with its whitespace collapsed: what the explainers see (a tokenizer ignores the
    difference), so that a word's index means the same to all of them."""
    return " ".join(text.split())


def scaled(scores: np.ndarray) -> np.ndarray:
    """Scores divided by their largest magnitude (display: -1 .. 1)."""
    top = float(np.max(np.abs(scores))) if len(scores) else 0.0
    return scores / top if top > 0 else scores


# --------------------------------------------------------------------------- the explainers


def integrated_gradients(
    model: Any, tokenizer: Any, max_length: int, n_steps: int, long_text: LongText
) -> Explainer:
    """Layer integrated gradients on the input embeddings; the baseline replaces every token but
    the special ones with padding. A word's score is the sum over its pieces and the embedding
    dimension; words cut off by ``max_length`` (the model never sees them) score 0. A chunked
    text (``model.long_text: chunks``) is attributed window by window: with mean pooling each
    window's scores count for 1/windows of the text's (its logit is their mean), with max
    pooling only the window whose logit for the class is the highest counts."""
    import torch
    from captum.attr import LayerIntegratedGradients

    from finetune.modeling import truncation

    model.eval()

    def forward(input_ids: Any, attention_mask: Any) -> Any:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def weighted_windows(ids: list[int], special: list[int], target: int) -> list[Any]:
        """(positions, weight) of the windows whose attributions make up the text's."""
        found = truncation.windows(special, max_length, long_text) or [list(range(len(ids)))]
        if len(found) == 1 or long_text.pool == truncation.MEAN:
            return [(keep, 1.0 / len(found)) for keep in found]
        with torch.inference_mode():  # max pooling: the window that gives the class's logit
            best = max(
                found,
                key=lambda keep: float(
                    forward(
                        torch.tensor([[ids[i] for i in keep]], device=model.device),
                        torch.ones((1, len(keep)), dtype=torch.long, device=model.device),
                    )[0, target]
                ),
            )
        return [(best, 1.0)]

    def explain(texts: list[str], targets: list[int]) -> list[np.ndarray]:
        out = []
        for text, target in zip(texts, targets, strict=True):
            full = tokenizer(
                [text],
                truncation=False,
                return_special_tokens_mask=True,
                return_offsets_mapping=True,
                verbose=False,
            )
            special_mask = list(full["special_tokens_mask"][0])
            all_ids = list(full["input_ids"][0])
            token_scores = np.zeros(len(all_ids))
            for keep, weight in weighted_windows(all_ids, special_mask, int(target)):
                ids = torch.tensor([[all_ids[i] for i in keep]], device=model.device)
                mask = torch.ones_like(ids)
                is_special = torch.tensor(
                    [[special_mask[i] for i in keep]], device=ids.device, dtype=torch.bool
                )
                baseline = torch.where(is_special, ids, torch.full_like(ids, pad))
                attr = lig.attribute(
                    ids,
                    baselines=baseline,
                    additional_forward_args=(mask,),
                    target=int(target),
                    n_steps=n_steps,
                    internal_batch_size=n_steps,
                )
                token_scores[keep] += weight * attr.sum(dim=-1)[0].detach().float().cpu().numpy()
            offsets = full["offset_mapping"][0]
            out.append(_word_scores(text, offsets, special_mask, token_scores))
        return out

    return explain


def _word_scores(
    text: str, offsets: Sequence[Sequence[int]], special: Sequence[int], scores: np.ndarray
) -> np.ndarray:
    """Token scores summed into the whitespace words their characters fall in. A token whose
    offsets start on the space before its word (sentencepiece's "▁word", byte-level BPE
    without trimmed offsets) counts for that word; a lone "▁" for the word after it."""
    starts = _word_starts(text)
    out = np.zeros(len(starts))
    for (begin, end), is_special, score in zip(offsets, special, scores, strict=True):
        word = None if is_special else _word_at(text, starts, begin, end)
        if word is not None:
            out[word] += float(score)
    return out


def _word_starts(text: str) -> np.ndarray:
    """Where each whitespace word of the normalised ``text`` begins."""
    return np.cumsum([0] + [len(w) + 1 for w in words(text)])[:-1]


def _word_at(text: str, starts: np.ndarray, begin: int, end: int) -> int | None:
    """The word a token's characters [begin, end) belong to; leading spaces are skipped (a
    sentencepiece "▁word" may start on the space before its word; a lone "▁" then counts for
    the word after it). None for a token with no characters."""
    if end <= begin:
        return None
    while begin < end and text[begin].isspace():
        begin += 1
    if begin >= len(text):
        return None
    return int(np.searchsorted(starts, begin, side="right")) - 1


def visible_text(tokenizer: Any, text: str, max_length: int, long_text: LongText) -> str:
    """``text`` (normalised) cut to the words the model reads at ``max_length`` tokens, the
    way it cuts them (``model.long_text``: head, tail or head and tail joined); the text itself
    when it fits or is read whole (chunks). Explainers then score only words the model sees."""
    from finetune.modeling import truncation

    enc = tokenizer(
        [text], truncation=False, return_special_tokens_mask=True, return_offsets_mapping=True,
        verbose=False,
    )  # fmt: skip
    special = list(enc["special_tokens_mask"][0])
    keep = truncation.kept_positions(special, max_length, long_text)
    if keep is None:
        return text
    offsets, starts = enc["offset_mapping"][0], _word_starts(text)
    seen = {_word_at(text, starts, *offsets[i]) for i in keep if not special[i]}
    ws = words(text)
    return " ".join(ws[j] for j in sorted(x for x in seen if x is not None))


def shap_partition(proba: Proba, max_evals: int, batch_size: int, seed: int) -> Explainer:
    """shap's partition explainer (Owen values over a hierarchy of word spans) with a text
    masker that removes words, limited to ``max_evals`` model calls per text."""
    import warnings

    with warnings.catch_warnings():  # shap's colour maps use matplotlib calls it deprecates
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        import shap

    masker = shap.maskers.Text(r"\s+", mask_token=" ", collapse_mask_token=False)

    def model(masked: np.ndarray) -> np.ndarray:
        return proba([str(t) for t in masked])

    explainer = shap.Explainer(model, masker, algorithm="partition", seed=seed)

    def explain(texts: list[str], targets: list[int]) -> list[np.ndarray]:
        out = []
        for text, target in zip(texts, targets, strict=True):
            n = len(words(text))
            if n == 1:  # nothing to partition: the word carries the whole difference
                whole, nothing = proba([text, ""])[:, target]
                out.append(np.array([float(whole - nothing)]))
                continue
            result = explainer(
                [text],
                max_evals=max(max_evals, 2 * n + 1),
                batch_size=batch_size,
                outputs=np.array([target]),
                silent=True,
            )
            values = np.asarray(result.values[0], dtype=float)[:, 0]
            if len(values) != n:
                raise RuntimeError(f"shap scored {len(values)} pieces of a {n}-word text")
            out.append(values)
        return out

    return explain


def lime_text(proba: Proba, num_samples: int, seed: int) -> Explainer:
    """lime's text explainer over word positions (``bow=False``: each occurrence is its own
    feature), removing words, every word's weight kept."""
    from lime.lime_text import LimeTextExplainer

    calls = itertools.count()  # the k-th text explained gets seed + k, one call or many

    def explain(texts: list[str], targets: list[int]) -> list[np.ndarray]:
        out = []
        for text, target in zip(texts, targets, strict=True):
            n = len(words(text))
            explainer = LimeTextExplainer(
                split_expression=r"\s+",
                bow=False,
                mask_string="",
                feature_selection="none",
                random_state=seed + next(calls),
            )
            result = explainer.explain_instance(
                text,
                lambda xs: proba([normalise(x) for x in xs]),
                labels=(int(target),),
                num_features=n,
                num_samples=num_samples,
            )
            weights = result.as_map()[int(target)]
            if len(weights) != n:
                raise RuntimeError(f"lime scored {len(weights)} features of a {n}-word text")
            scores = np.zeros(n)
            for index, weight in weights:
                scores[int(index)] = float(weight)
            out.append(scores)
        return out

    return explain


def random_scores(seed: int) -> Explainer:
    """Seeded random word scores: the floor the others must beat."""

    rng = np.random.default_rng(seed)  # one stream across calls (texts come one at a time)

    def explain(texts: list[str], targets: list[int]) -> list[np.ndarray]:
        return [rng.standard_normal(len(words(t))) for t in texts]

    return explain


# --------------------------------------------------------------------------- faithfulness


def faithfulness(
    proba: Proba,
    texts: list[str],
    targets: list[int],
    attributions: list[np.ndarray],
    fractions: Sequence[float] = FRACTIONS,
) -> pd.DataFrame:
    """Per text: ``comprehensiveness`` and ``sufficiency`` of its word scores towards its
    target, averaged over ``fractions`` (the top ceil(k x words) words by score, at least one),
    from one batch of model calls."""
    variants: list[str] = []
    for text, scores in zip(texts, attributions, strict=True):
        ws = words(text)
        order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
        for k in fractions:
            top = set(order[: max(1, math.ceil(k * len(ws)))].tolist())
            variants.append(" ".join(w for j, w in enumerate(ws) if j not in top))
            variants.append(" ".join(w for j, w in enumerate(ws) if j in top))
    probs = proba(list(texts) + variants)
    full = probs[np.arange(len(texts)), targets]
    rest = probs[len(texts) :].reshape(len(texts), len(fractions), 2, -1)
    rows = []
    for i, target in enumerate(targets):
        removed, kept = rest[i, :, 0, target], rest[i, :, 1, target]
        rows.append(
            {
                "comprehensiveness": float(np.mean(full[i] - removed)),
                "sufficiency": float(np.mean(full[i] - kept)),
            }
        )
    return pd.DataFrame(rows, columns=["comprehensiveness", "sufficiency"])


def agreement(a: list[np.ndarray], b: list[np.ndarray], share: float = TOP_SHARE) -> dict:
    """Mean Spearman correlation of two explainers' word scores (texts of 2+ words where both
    vary) and the mean share of their top ``share`` words in common."""
    from scipy.stats import spearmanr

    rhos, overlaps = [], []
    for x, y in zip(a, b, strict=True):
        n = len(x)
        if n == 0:
            continue
        k = max(1, math.ceil(share * n))
        top_x = set(np.argsort(-x, kind="stable")[:k].tolist())
        top_y = set(np.argsort(-y, kind="stable")[:k].tolist())
        overlaps.append(len(top_x & top_y) / k)
        if n >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
            rhos.append(float(spearmanr(x, y).statistic))
    return {
        "spearman": float(np.mean(rhos)) if rhos else None,
        "top_overlap": float(np.mean(overlaps)) if overlaps else None,
    }


# --------------------------------------------------------------------------- putting it together


@dataclass
class Explained:
    """What :func:`explain` found: per text, each method's scaled word scores; per method, its
    faithfulness and cost; per pair, agreement; and the method to trust."""

    texts: list[str]
    targets: list[int]
    scores: dict[str, list[np.ndarray]]
    per_text: pd.DataFrame  # text index, method, comprehensiveness, sufficiency
    table: pd.DataFrame  # one row per method
    agreement: pd.DataFrame  # one row per pair of methods
    recommended: str | None
    reason: str
    fractions: tuple[float, ...] = FRACTIONS

    def words_of(self, i: int, method: str) -> list[tuple[str, float]]:
        return [
            (w, round(float(s), 4))
            for w, s in zip(words(self.texts[i]), scaled(self.scores[method][i]), strict=True)
        ]


def explain(
    explainers: dict[str, Explainer],
    proba: Proba,
    texts: list[str],
    targets: list[int],
    fractions: Sequence[float] = FRACTIONS,
    seed: int = 0,
    time_budget_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Explained:
    """Run every explainer (and the random floor) on ``texts`` towards ``targets``, time them,
    and measure their faithfulness and agreement. ``texts`` must be non-empty strings.

    Texts are explained one at a time, in order; with ``time_budget_s`` the next one is begun
    only while it is expected to fit (the mean time of those done so far, faithfulness
    included), and the result holds the texts explained (at least one). ``clock``: seconds."""
    texts = [normalise(t) for t in texts]
    if not texts:
        raise ValueError("no text to explain")
    if any(not t for t in texts):
        raise ValueError("an explained text is empty")
    runs = {**explainers, RANDOM: random_scores(seed)}
    scores: dict[str, list[np.ndarray]] = {name: [] for name in runs}
    seconds = dict.fromkeys(runs, 0.0)
    parts = []
    began = clock()
    for i, (text, target) in enumerate(zip(texts, targets, strict=True)):
        spent = clock() - began
        if time_budget_s is not None and i and spent * (i + 1) / i > time_budget_s:
            log.info(
                "explained %d of %d texts: the next would not fit the time budget (%.0f s; "
                "%.1f s a text so far)",
                i,
                len(texts),
                time_budget_s,
                spent / i,
            )
            texts, targets = texts[:i], targets[:i]
            break
        n = len(words(text))
        for name, explainer in runs.items():
            started = clock()
            (attribution,) = explainer([text], [target])
            seconds[name] += clock() - started
            scores[name].append(np.asarray(attribution, dtype=float))
            if len(scores[name][-1]) != n:
                raise RuntimeError(
                    f"{name} did not give one score per word: {len(scores[name][-1])} for {n}"
                )
        f = faithfulness(  # one batch of model calls for every method's variants of this text
            proba, [text] * len(runs), [target] * len(runs), [s[-1] for s in scores.values()],
            fractions,
        )  # fmt: skip
        parts.append(f.assign(method=list(runs), text=i))
    seconds = {name: s / len(texts) for name, s in seconds.items()}
    for name, s in seconds.items():
        log.info("%s: %.3f s per text (%d texts)", name, s, len(texts))
    per_text = pd.concat(parts, ignore_index=True)
    table = summarise(per_text, seconds)
    pairs = [
        {"a": a, "b": b, **agreement(scores[a], scores[b])}
        for i, a in enumerate(explainers)
        for b in list(explainers)[i + 1 :]
    ]
    agree = pd.DataFrame(pairs, columns=["a", "b", "spearman", "top_overlap"])
    recommended, reason = recommend(table)
    return Explained(
        texts, targets, scores, per_text, table, agree, recommended, reason,
        tuple(float(k) for k in fractions),
    )  # fmt: skip


def summarise(per_text: pd.DataFrame, seconds: dict[str, float]) -> pd.DataFrame:
    """One row per method: mean comprehensiveness and sufficiency, their difference (the
    faithfulness score: higher is better), seconds per text, and whether it beats random on
    both measures."""
    table = per_text.groupby("method", sort=False)[["comprehensiveness", "sufficiency"]].mean()
    table["faithfulness"] = table["comprehensiveness"] - table["sufficiency"]
    table["seconds_per_text"] = [seconds[m] for m in table.index]
    floor = table.loc[RANDOM] if RANDOM in table.index else None
    table["beats_random"] = [
        m != RANDOM
        and (
            floor is None
            or (
                bool(r.comprehensiveness > floor.comprehensiveness)
                and bool(r.sufficiency < floor.sufficiency)
            )
        )
        for m, r in table.iterrows()
    ]
    return table.reset_index()


def recommend(table: pd.DataFrame) -> tuple[str | None, str]:
    """The explainer to read first: the most faithful among those that beat random (ties: the
    faster), and why, in one sentence."""
    real = table[table["method"] != RANDOM]
    good = real[real["beats_random"].astype(bool)]
    if good.empty:
        return None, (
            "no explainer beat random word scores on these texts: do not trust the highlighted "
            "words (more texts, or more samples per text, may help)"
        )
    ranked = good.assign(rounded=good["faithfulness"].round(3)).sort_values(
        ["rounded", "seconds_per_text"], ascending=[False, True]
    )
    best = ranked.iloc[0]
    reason = (
        f"{TITLES[best.method]} is the most faithful here: removing its top words lowers the "
        f"class's probability by {best.comprehensiveness:.3f} on average and keeping only them "
        f"by {best.sufficiency:.3f} (faithfulness {best.faithfulness:.3f}"
    )
    if len(ranked) > 1:
        second = ranked.iloc[1]
        reason += f"; next {TITLES[second.method]} at {second.faithfulness:.3f}"
    floor = table[table["method"] == RANDOM]
    if len(floor):
        reason += f"; random {floor.iloc[0].faithfulness:.3f}"
    weak = real[~real["beats_random"].astype(bool)]["method"].tolist()
    if weak:
        reason += f"; not better than random: {', '.join(TITLES[m] for m in weak)}"
    return str(best.method), reason + ")"


def build(
    methods: Sequence[str],
    proba: Proba,
    *,
    model: Any = None,
    tokenizer: Any = None,
    max_length: int = 128,
    long_text: LongText = HEAD_ONLY,
    n_steps: int = 16,
    shap_max_evals: int = 200,
    lime_samples: int = 200,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Explainer]:
    """The explainers ``methods`` names. Integrated gradients needs the PyTorch model (an ONNX
    model has no gradients): without it, it is left out with a log line."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown explainer(s) {unknown}: use {', '.join(METHODS)}")
    out: dict[str, Explainer] = {}
    for m in dict.fromkeys(methods):
        if m == IG:
            if model is None:
                log.info("integrated gradients left out: the model has no gradients (ONNX)")
                continue
            out[m] = integrated_gradients(model, tokenizer, max_length, n_steps, long_text)
        elif m == SHAP:
            out[m] = shap_partition(proba, shap_max_evals, batch_size, seed)
        elif m == LIME:
            out[m] = lime_text(proba, lime_samples, seed)
    return out
