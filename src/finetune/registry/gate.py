"""Model registry lifecycle: ``challenger``/``champion`` aliases and the promotion gate.

Every model trained in the workspace (not an experiment nor a tune trial) is registered as a new
version of ``tracking.registered_model_name`` by ``finetune.registry.register``, which gives it
the alias ``challenger``; the first version ever also becomes ``champion`` (there is nothing to
compare it with). The gate holds the registry lock (``finetune.registry.lock``) and reads both
aliases again before it moves the champion. The promotion gate evaluates
the challenger and the champion on the SAME current test split and promotes only when:

- challenger macro-F1 - champion macro-F1 >= ``promotion.min_f1_gain``, and
- no class's recall drops by more than ``promotion.max_recall_drop``.

The decision and the numbers go to run tags (``promotion.*`` on the challenger's run), model
version tags, and a short report (``paths.promotion_report`` + ``paths.promotion_decision``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from finetune.core.errors import PipelineError
from finetune.core.schema import PipelineConfig, PromotionConfig
from finetune.evaluation.baseline import baseline_gap
from finetune.evaluation.metrics import macro_f1, multilabel_f1
from finetune.modeling import decisions
from finetune.modeling.backbones import load_logged
from finetune.registry.aliases import (
    CHALLENGER,
    CHAMPION,
    FIRST_MODEL_REASON,
    TAG_PREFIX,
    RegistryError,
    alias_version,
    client,
    model_name,
)
from finetune.registry.report import write_report

log = logging.getLogger(__name__)


class PromotionError(PipelineError):
    """The gate could not be applied (no challenger, model not loadable, ...)."""


class ChampionMoved(PromotionError):
    """An alias moved between the gate's read and its move; nothing was recorded or moved."""


@dataclass
class ModelScore:
    """What the gate looks at for one model on one split."""

    version: str
    f1_macro: float
    accuracy: float
    recall: dict[str, float]
    num_examples: int
    f1_micro: float | None = None  # multi-label models (accuracy: every label of a text right)


@dataclass
class Decision:
    promote: bool
    reason: str
    challenger: ModelScore
    champion: ModelScore | None
    min_f1_gain: float
    max_recall_drop: float
    f1_gain: float | None = None
    recall_drops: dict[str, float] = field(default_factory=dict)
    worst_class: str | None = None

    @property
    def outcome(self) -> str:
        return "promoted" if self.promote else "kept"

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, **asdict(self)}


def decide(
    challenger: ModelScore,
    champion: ModelScore | None,
    spec: PromotionConfig,
    below_baseline: str | None = None,
) -> Decision:
    """The gate, a pure function of the two scores (the champion None: the first model) and of
    ``below_baseline``: why the challenger loses to the TF-IDF baseline on validation
    macro-F1, if it does (``evaluation.baseline.baseline_gap`` of its train metrics)."""
    if below_baseline is not None and spec.require_beat_baseline:
        return Decision(
            False,
            f"the challenger {below_baseline}",
            challenger,
            champion,
            spec.min_f1_gain,
            spec.max_recall_drop,
        )
    if champion is None:
        return Decision(
            True,
            FIRST_MODEL_REASON,
            challenger,
            None,
            spec.min_f1_gain,
            spec.max_recall_drop,
        )
    gain = challenger.f1_macro - champion.f1_macro
    # A class the champion never saw counts as recall 0 for it (so it cannot "drop").
    drops = {
        label: champion.recall.get(label, 0.0) - challenger.recall.get(label, 0.0)
        for label in sorted(set(challenger.recall) | set(champion.recall))
    }
    worst = max(drops, key=lambda k: drops[k]) if drops else None
    decision = Decision(
        False,
        "",
        challenger,
        champion,
        spec.min_f1_gain,
        spec.max_recall_drop,
        f1_gain=gain,
        recall_drops=drops,
        worst_class=worst,
    )
    # A tiny tolerance so that "gain == margin" is not lost to float rounding.
    eps = 1e-9
    if gain + eps < spec.min_f1_gain:
        decision.reason = (
            f"macro-F1 gain {gain:+.4f} ({challenger.f1_macro:.4f} vs {champion.f1_macro:.4f}) "
            f"is below the required {spec.min_f1_gain:+.4f}"
        )
    elif worst is not None and drops[worst] > spec.max_recall_drop + eps:
        decision.reason = (
            f"recall of class {worst!r} drops by {drops[worst]:.4f} "
            f"({champion.recall.get(worst, 0.0):.4f} -> {challenger.recall.get(worst, 0.0):.4f}), "
            f"more than the allowed {spec.max_recall_drop:.4f}"
        )
    else:
        decision.promote = True
        decision.reason = (
            f"macro-F1 gain {gain:+.4f} >= {spec.min_f1_gain:+.4f} and no class recall drops by "
            f"more than {spec.max_recall_drop:.4f}"
        )
    return decision


def score(
    version: str, y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> ModelScore:
    """Macro-F1, accuracy and per-class recall over ``labels`` (the split's classes)."""
    from sklearn.metrics import accuracy_score, recall_score

    labels = list(labels)
    recalls = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return ModelScore(
        version=str(version),
        f1_macro=macro_f1(y_true, y_pred),
        accuracy=float(accuracy_score(y_true, y_pred)),
        recall={label: float(r) for label, r in zip(labels, recalls, strict=True)},
        num_examples=len(y_true),
    )


# --------------------------------------------------------------------------- MLflow registry


def record_decision(mlflow_client: Any, name: str, decision: Decision) -> None:
    """Tags on the challenger's run and model version: outcome, reason and the numbers."""
    version = mlflow_client.get_model_version(name, decision.challenger.version)
    tags = decision_tags(decision)
    for key, value in tags.items():
        mlflow_client.set_tag(version.run_id, key, value)
        mlflow_client.set_model_version_tag(name, version.version, key, value)


def decision_tags(decision: Decision) -> dict[str, str]:
    tags = {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "challenger_version": decision.challenger.version,
        "challenger_f1_macro": f"{decision.challenger.f1_macro:.6f}",
        "min_f1_gain": str(decision.min_f1_gain),
        "max_recall_drop": str(decision.max_recall_drop),
        "num_examples": str(decision.challenger.num_examples),
    }
    if decision.champion is not None:
        tags.update(
            {
                "champion_version": decision.champion.version,
                "champion_f1_macro": f"{decision.champion.f1_macro:.6f}",
            }
        )
    if decision.champion is not None and decision.f1_gain is not None:  # it was compared
        tags.update(
            {
                "f1_gain": f"{decision.f1_gain:.6f}",
                "worst_recall_class": str(decision.worst_class),
                "worst_recall_drop": f"{decision.recall_drops.get(decision.worst_class, 0):.6f}",
            }
        )
    # MLflow tag values are limited in length; keep the reason readable but bounded.
    return {f"{TAG_PREFIX}{k}": str(v)[:4000] for k, v in tags.items()}


# --------------------------------------------------------------------------- evaluating versions


def predict_labels(
    model: Any, tokenizer: Any, texts: list[str], batch_size: int, max_length: int
) -> list[str]:
    """The predicted class per text; a multi-label model's label set joined by "|" (at the
    thresholds saved with it), as the processed splits write sets."""
    from finetune.modeling.inference import predict_proba

    preds = predict_proba(model, tokenizer, texts, batch_size, max_length)
    if decisions.is_multi_label(model.config):
        chosen = decisions.decide(preds.probabilities, decisions.from_config(model.config))
        return ["|".join(s) for s in decisions.label_sets(chosen, label_set(model))]
    id2label = model.config.id2label
    return [str(id2label[int(i)]) for i in np.asarray(preds.predicted)]


def score_sets(
    version: str, y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> ModelScore:
    """Multi-label: macro-F1 over labels, micro-F1, subset accuracy and per-label recall from
    label sets written "a|b"."""
    labels = list(labels)
    position = {label: j for j, label in enumerate(labels)}

    def matrix(values: Sequence[str]) -> np.ndarray:
        ids = [[position[x] for x in v.split("|") if x in position] if v else [] for v in values]
        return decisions.multi_hot(ids, len(labels)) > 0

    y, pred = matrix(y_true), matrix(y_pred)
    support = y.sum(axis=0)
    hits = (y & pred).sum(axis=0)
    return ModelScore(
        version=str(version),
        f1_macro=multilabel_f1(y, pred, "macro"),
        accuracy=float((y == pred).all(axis=1).mean()) if len(y) else 0.0,
        recall={label: float(hits[j] / support[j]) for label, j in position.items() if support[j]},
        num_examples=len(y_true),
        f1_micro=multilabel_f1(y, pred, "micro"),
    )


def label_set(model: Any) -> list[str]:
    """A loaded model's labels in id order (its label map)."""
    return [str(model.config.id2label[i]) for i in range(int(model.config.num_labels))]


def check_same_labels(challenger: tuple[str, Any], champion: tuple[str, Any], name: str) -> None:
    """Refuse to compare two versions whose label maps differ: one test split cannot judge
    them, and a champion for another label set would be replaced by a model that cannot
    predict its classes (or the other way round)."""
    (v1, m1), (v2, m2) = challenger, champion
    kinds = [
        "multi-label" if decisions.is_multi_label(m.config) else "single-label" for m in (m1, m2)
    ]
    if kinds[0] != kinds[1]:
        raise PromotionError(
            f"{name} v{v1} (challenger) is {kinds[0]} and v{v2} (champion) {kinds[1]}: the gate "
            "does not compare them (they answer different questions: one class per text, or a "
            "set of labels). Register the new task under its own name "
            "(tracking.registered_model_name)"
        )
    a, b = label_set(m1), label_set(m2)
    if a != b:
        only_new = sorted(set(a) - set(b))
        only_old = sorted(set(b) - set(a))
        what = (
            f"only the challenger has {only_new[:10]}, only the champion {only_old[:10]}"
            if only_new or only_old
            else "the same labels in another id order"
        )
        raise PromotionError(
            f"{name} v{v1} (challenger) and v{v2} (champion) have different label maps ({what}): "
            "the gate does not compare them. A model for another dataset belongs under its own "
            "registered name (tracking.registered_model_name, data.name by default); to make "
            f"v{v1} champion anyway, move the alias yourself "
            f"(MlflowClient().set_registered_model_alias({name!r}, 'champion', '{v1}'))"
        )


def score_loaded(
    loaded: tuple[Any, Any],
    version: str,
    texts: list[str],
    y_true: list[str],
    batch_size: int,
    max_length: int | str,
) -> ModelScore:
    """Scores of a loaded model on ``texts``, truncated as the model was trained
    (``model.max_length``; ``auto``: the length saved with its tokenizer)."""
    from finetune.modeling.backbones import inference_max_length

    model, tokenizer = loaded
    length = inference_max_length(max_length, tokenizer)
    y_pred = predict_labels(model, tokenizer, texts, batch_size, length)
    if decisions.is_multi_label(model.config):
        return score_sets(version, y_true, y_pred, label_set(model))
    return score(version, y_true, y_pred, sorted(set(y_true)))


@dataclass
class GateResult:
    decision: Decision | None
    challenger_version: str
    champion_before: str | None
    champion_after: str | None
    report_path: Path | None = None
    skipped: str | None = None


def apply_gate(
    cfg: PipelineConfig,
    spec: PromotionConfig | None = None,
    *,
    locked: bool = False,
    wait_s: float | None = 0,
) -> GateResult:
    """Compare ``challenger`` with ``champion`` on the current split; move the alias if it wins.

    Holds the registry lock (:mod:`finetune.registry.lock`) throughout, waiting up to ``wait_s``
    for it (then RegistryLocked), unless the caller holds it (``locked``: the retrain). Writes
    the report (markdown + JSON) and the tags. The champion alias only ever moves after the
    decision is made, and only when both aliases still point where they did when the gate
    read them (:func:`commit`); an error before that (the store not answering, say) stops the
    gate with a RegistryError and leaves both aliases where they were.
    """
    from contextlib import nullcontext

    from mlflow.exceptions import MlflowException

    from finetune.registry.lock import exclusive_lock, lock_path

    spec = spec or cfg.promotion
    name = model_name(cfg.tracking)
    with nullcontext() if locked else exclusive_lock(lock_path(cfg), wait_s):
        mlflow_client = client(cfg.tracking)
        try:
            pending = evaluate_aliases(cfg, spec, name, mlflow_client)
            if isinstance(pending, GateResult):
                return pending
            return commit(cfg, spec, name, mlflow_client, pending)
        except MlflowException as exc:
            raise RegistryError(
                f"the promotion gate for {name!r} stopped: the registry at "
                f"{mlflow_client.tracking_uri} failed ({str(exc).splitlines()[0][:300]}); the "
                "aliases were not moved: check the tracking server and run `finetune promote` "
                "again"
            ) from exc


@dataclass
class Pending:
    """A decision made, nothing recorded or moved yet: what the gate read to make it."""

    decision: Decision
    challenger: Any  # the model version the challenger alias pointed at
    champion_before: str | None


def evaluate_aliases(
    cfg: PipelineConfig, spec: PromotionConfig, name: str, mlflow_client: Any
) -> Pending | GateResult:
    """Read both aliases, score both versions and decide; a GateResult when there is nothing
    to compare (the challenger is the champion)."""
    from finetune.core.artifacts import load_split

    challenger = alias_version(mlflow_client, name, CHALLENGER)
    if challenger is None:
        raise PromotionError(
            f"registered model {name!r} has no {CHALLENGER!r} alias: train a model first "
            "(`dvc repro`, or `finetune register` for the workspace's trained model)"
        )
    champion = alias_version(mlflow_client, name, CHAMPION)
    champion_before = str(champion.version) if champion else None
    if champion is not None and str(champion.version) == str(challenger.version):
        run_tags = mlflow_client.get_run(challenger.run_id).data.tags
        log.info(
            "version %s is both challenger and champion (%s); nothing to compare",
            challenger.version,
            run_tags.get(f"{TAG_PREFIX}reason", "already promoted"),
        )
        return GateResult(
            None,
            str(challenger.version),
            champion_before,
            champion_before,
            skipped=f"version {challenger.version} is already the champion",
        )

    df = load_split(cfg.paths.processed_dir, spec.split)
    texts = df["text"].astype(str).tolist()
    y_true = df["label"].astype(str).tolist()
    batch_size, max_length = cfg.evaluate.batch_size, cfg.model.max_length
    log.info(
        "promotion gate on the %s split (%d examples): challenger v%s vs champion %s",
        spec.split,
        len(df),
        challenger.version,
        f"v{champion.version}" if champion else "none",
    )

    # by version, not alias: an alias may move meanwhile
    new = load_logged(f"models:/{name}/{challenger.version}")
    old = load_logged(f"models:/{name}/{champion.version}") if champion is not None else None
    if old is not None:
        check_same_labels((challenger.version, new[0]), (champion.version, old[0]), name)
    challenger_score = score_loaded(
        new, str(challenger.version), texts, y_true, batch_size, max_length
    )
    champion_score = (
        score_loaded(old, str(champion.version), texts, y_true, batch_size, max_length)
        if old is not None
        else None
    )
    train_metrics = mlflow_client.get_run(challenger.run_id).data.metrics
    decision = decide(challenger_score, champion_score, spec, baseline_gap(train_metrics))
    return Pending(decision, challenger, champion_before)


def commit(
    cfg: PipelineConfig, spec: PromotionConfig, name: str, mlflow_client: Any, pending: Pending
) -> GateResult:
    """Record the decision and move the champion, after reading both aliases again: when either
    moved since the gate read them (someone outside the lock: another machine on a remote
    server, a manual move), the decision compared the wrong pair and ChampionMoved stops the
    gate with nothing recorded or moved."""
    challenger, champion_before = pending.challenger, pending.champion_before
    decision = pending.decision
    now = {
        alias: (str(v.version) if (v := alias_version(mlflow_client, name, alias)) else None)
        for alias in (CHAMPION, CHALLENGER)
    }
    read = {CHAMPION: champion_before, CHALLENGER: str(challenger.version)}
    if now != read:
        moved = ", ".join(
            f"{alias} {_v(read[alias])} -> {_v(now[alias])}"
            for alias in read
            if now[alias] != read[alias]
        )
        raise ChampionMoved(
            f"the aliases of {name!r} moved while the gate compared challenger "
            f"v{challenger.version} with champion {_v(champion_before)} ({moved}; another promote "
            "or a manual move outside the registry lock): nothing was recorded or moved. Run "
            "`finetune promote` again to compare the current pair"
        )
    record_decision(mlflow_client, name, decision)
    report = write_report(decision, name, spec, cfg.paths)
    mlflow_client.log_artifact(challenger.run_id, str(report), "promotion")
    if decision.promote:
        mlflow_client.set_registered_model_alias(name, CHAMPION, challenger.version)
    after = str(challenger.version) if decision.promote else champion_before
    log.info(
        "promotion: %s (v%s): %s; champion is v%s",
        decision.outcome,
        challenger.version,
        decision.reason,
        after,
    )
    return GateResult(decision, str(challenger.version), champion_before, after, report)


def _v(version: str | None) -> str:
    return "none" if version is None else f"v{version}"
