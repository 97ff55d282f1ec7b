"""error_analysis stage: report the mistakes, most confident first, and frequent confusions.

Run by `dvc repro` (see dvc.yaml). Reads the composed params.yaml, never conf/ directly,
so what runs is exactly what DVC records. Logic lives in `finetune.analysis.error_analysis`.
"""

from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from finetune.core.runner import run_stage
from finetune.core.schema import PipelineConfig


def load() -> Callable[[PipelineConfig], object]:
    """The stage's logic, imported once the runner's checks have passed."""
    from finetune.analysis import error_analysis

    return error_analysis.run


@hydra.main(config_path="..", config_name="params", version_base=None)
def main(cfg: DictConfig) -> None:
    run_stage("error_analysis", load, cfg)


if __name__ == "__main__":
    main()
