"""evaluate stage: score the trained model on the test split (metrics, confusion plot, predictions).

Run by `dvc repro` (see dvc.yaml). Reads the composed params.yaml, never conf/ directly,
so what runs is exactly what DVC records. Logic lives in `finetune.evaluation.evaluate`.
"""

import hydra
from omegaconf import DictConfig

from finetune.core.runner import run_stage
from finetune.evaluation import evaluate


@hydra.main(config_path="..", config_name="params", version_base=None)
def main(cfg: DictConfig) -> None:
    run_stage("evaluate", evaluate.run, cfg)


if __name__ == "__main__":
    main()
