"""train stage: fine-tune the pretrained transformer; save model + tokenizer; open the MLflow run.

Run by `dvc repro` (see dvc.yaml). Reads the composed params.yaml, never conf/ directly,
so what runs is exactly what DVC records. Logic lives in `finetune.training.train`.
"""

import hydra
from omegaconf import DictConfig

from finetune.core.runner import run_stage
from finetune.training import train


@hydra.main(config_path="..", config_name="params", version_base=None)
def main(cfg: DictConfig) -> None:
    run_stage("train", train.run, cfg)


if __name__ == "__main__":
    main()
