"""The study's figures as PNGs, drawn offline by Optuna's own matplotlib plots: optimisation
history, parameter importances (fANOVA) and the objective against each searched parameter."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

HISTORY, IMPORTANCES, SLICES = "history.png", "importances.png", "params.png"


def draw(study: optuna.Study, out_dir: Path, metric: str) -> list[Path]:
    """The figures the study's finished trials allow, into ``out_dir``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    searched = {name for t in complete for name in t.params}
    plots: list[tuple[str, Any]] = []
    if complete:
        plots.append((HISTORY, lambda: ovm.plot_optimization_history(study, target_name=metric)))
        plots.append((SLICES, lambda: ovm.plot_slice(study, target_name=metric)))
    if len(complete) >= 2 and len(searched) >= 2:  # fANOVA needs both
        plots.append((IMPORTANCES, lambda: ovm.plot_param_importances(study, target_name=metric)))
    else:
        log.info("parameter importances need 2 complete trials over 2 parameters: not drawn")
    written = []
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = plot()
        figure = _figure_of(axes)
        figure.set_size_inches(max(figure.get_size_inches()[0], 8), 4.5)
        path = out_dir / name
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def _figure_of(axes: Any) -> Any:
    """plot_slice returns an array of axes for several parameters, one Axes for one."""
    import numpy as np

    first = np.asarray(axes, dtype=object).ravel()[0]
    return first.figure
