"""Promotion reports: the Markdown table and the JSON decision a person and a script read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from finetune.core.schema import PathsConfig, PromotionConfig
from finetune.reporting.markdown import md_cell

if TYPE_CHECKING:
    from finetune.registry.gate import Decision

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def render_report(decision: Decision, name: str, spec: PromotionConfig) -> str:
    ch, cp = decision.challenger, decision.champion
    lines = [
        f"# Promotion decision: {name} v{ch.version} {decision.outcome.upper()}",
        "",
        f"- when: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- split: {spec.split} ({ch.num_examples} examples, evaluated for both models now)",
        f"- rule: macro-F1 gain >= {spec.min_f1_gain:+.4f} and no class recall drop > "
        f"{spec.max_recall_drop:.4f}",
        f"- reason: {decision.reason}",
        "",
    ]
    if cp is None:
        lines += [
            f"Challenger v{ch.version}: macro-F1 {ch.f1_macro:.4f}, accuracy "
            f"{ch.accuracy:.4f}. There was no champion.",
            "",
        ]
        return "\n".join(lines)
    lines += [
        f"| | challenger v{ch.version} | champion v{cp.version} | change |",
        "|---|---|---|---|",
        f"| macro-F1 | {ch.f1_macro:.4f} | {cp.f1_macro:.4f} | {ch.f1_macro - cp.f1_macro:+.4f} |",
        f"| accuracy | {ch.accuracy:.4f} | {cp.accuracy:.4f} | {ch.accuracy - cp.accuracy:+.4f} |",
    ]
    if ch.f1_micro is not None and cp.f1_micro is not None:  # multi-label
        lines.append(
            f"| micro-F1 | {ch.f1_micro:.4f} | {cp.f1_micro:.4f} | "
            f"{ch.f1_micro - cp.f1_micro:+.4f} |"
        )
    for label in sorted(decision.recall_drops):
        a, b = ch.recall.get(label, 0.0), cp.recall.get(label, 0.0)
        lines.append(f"| recall {md_cell(label)} | {a:.4f} | {b:.4f} | {a - b:+.4f} |")
    return "\n".join([*lines, ""])


def write_report(decision: Decision, name: str, spec: PromotionConfig, paths: PathsConfig) -> Path:
    """``paths.promotion_report`` (Markdown) and ``paths.promotion_decision`` (JSON), each
    written atomically."""
    from finetune.core.io import StagedOutputs, write_json

    md = Path(paths.promotion_report)
    with StagedOutputs() as out:
        out.file(md).write_text(render_report(decision, name, spec))
        decision_json = json.loads(json.dumps(decision.as_dict(), default=str))
        write_json(out.file(paths.promotion_decision), decision_json)
    log.info("promotion report: %s", md)
    return md
