"""The verdict: each check against its threshold in ``monitor.thresholds``; any flag is drift."""

from __future__ import annotations

from typing import Any

from finetune.core.schema import MonitorThresholds

EXIT_DRIFT = 3  # finetune monitor: drift or a performance drop flagged (0: nothing flagged)


def checks(s: dict[str, Any], t: MonitorThresholds) -> list[dict[str, Any]]:
    """One row per check: name, flagged, and the sentence that explains it."""
    inp, pred, perf = s["input_drift"], s["prediction_drift"], s["performance"]
    auc, mmd = inp["domain_classifier"], inp["mmd"]
    input_flag = auc["auc_low"] > t.domain_auc and mmd["p_value"] < t.mmd_p_value
    script = inp["text_statistics"]["script_shift"]
    pred_flag = pred["p_value"] < t.prediction_p_value and pred["psi"] > t.psi
    performance = _performance(perf, t)
    moved = (
        f"predicted labels chi-square p={pred['p_value']:.4g}"
        if "chi2" in pred
        else f"label shares Fisher p={pred['p_value']:.4g} (Bonferroni over the labels"
        + (f"; most moved: {pred['most_moved_label']})" if pred["most_moved_label"] else ")")
    )
    return [
        {
            "check": "input drift",
            "flagged": bool(input_flag),
            "detail": (
                f"domain classifier ROC-AUC {auc['auc']:.3f} "
                f"[{auc['auc_low']:.3f}, {auc['auc_high']:.3f}] "
                f"({'above' if auc['auc_low'] > t.domain_auc else 'not above'} {t.domain_auc}), "
                f"MMD p={mmd['p_value']:.4f} "
                f"({'below' if mmd['p_value'] < t.mmd_p_value else 'not below'} {t.mmd_p_value})"
            ),
        },
        {
            "check": "script drift",
            "flagged": bool(script > t.script_shift),
            "detail": f"script shift (total variation) {script:.3f} vs {t.script_shift}",
        },
        {
            "check": "prediction drift",
            "flagged": bool(pred_flag),
            "detail": (
                f"{moved} (threshold {t.prediction_p_value}), PSI {pred['psi']:.3f} "
                f"(threshold {t.psi})"
            ),
        },
        performance,
    ]


def _performance(perf: dict[str, Any], t: MonitorThresholds) -> dict[str, Any]:
    """The performance check: measured with labels, else estimated, else (a multi-label model
    on unlabelled texts) not checked, saying why."""
    if perf.get("accuracy") is not None:  # labels: the drop must also be more than chance
        basis, value, reference = (
            perf.get("basis", "accuracy"),
            perf["accuracy"],
            perf["test"]["accuracy"],
        )
        significant = perf["drop_p_value"] < t.performance_p_value
        evidence = f"Fisher p={perf['drop_p_value']:.4g} vs {t.performance_p_value}"
    elif perf["estimated"] is not None:  # the estimate's whole interval below the test's point
        basis = "estimated accuracy"
        value, reference = perf["estimated"]["accuracy"], perf["test"]["estimated_accuracy"]
        significant = perf["estimated"]["accuracy_high"] < reference
        evidence = f"interval up to {perf['estimated']['accuracy_high']:.3f}"
    else:
        return {
            "check": "performance drop",
            "flagged": False,
            "detail": f"not checked: the batch has no labels, and {perf['estimate_unavailable']}",
        }
    drop = reference - value
    return {
        "check": "performance drop",
        "flagged": bool(drop > t.accuracy_drop and significant),
        "detail": (
            f"{basis} {value:.3f} vs {reference:.3f} on the test split "
            f"(drop {drop:+.3f}, threshold {t.accuracy_drop}; {evidence})"
        ),
    }


def reasons(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{r['check']}: {r['detail']}" for r in rows if r["flagged"]]
