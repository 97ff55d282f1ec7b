"""train stage: fine-tune the pretrained transformer; save model + tokenizer; open the MLflow run.

Run by `dvc repro` (see dvc.yaml). Reads the composed params.yaml, never conf/ directly,
so what runs is exactly what DVC records. Logic lives in `finetune.training.train`.
"""

from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from finetune.core.runner import run_stage
from finetune.core.schema import PipelineConfig


def load() -> Callable[[PipelineConfig], object]:
    """The stage's logic, imported once the runner's checks have passed."""
    from finetune.training import train

    return train.run


@hydra.main(config_path="..", config_name="params", version_base=None)
def main(cfg: DictConfig) -> None:
    run_stage("train", load, cfg)


if __name__ == "__main__":
    main()
