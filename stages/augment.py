"""augment stage: write the training set the trainer uses (train split + offline augmentations).

Run by `dvc repro` (see dvc.yaml). Reads the composed params.yaml, never conf/ directly,
so what runs is exactly what DVC records. Logic lives in `finetune.augment.augment`.
"""

import hydra
from omegaconf import DictConfig

from finetune.augment import augment
from finetune.core.runner import run_stage


@hydra.main(config_path="..", config_name="params", version_base=None)
def main(cfg: DictConfig) -> None:
    run_stage("augment", augment.run, cfg)


if __name__ == "__main__":
    main()
