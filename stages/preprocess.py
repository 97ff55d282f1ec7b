"""preprocess stage: read the raw data, validate and clean it, write stratified splits.

Run by `dvc repro` (see dvc.yaml). Reads the composed params.yaml, never conf/ directly,
so what runs is exactly what DVC records. Logic lives in `finetune.data.preprocess`.
"""

import hydra
from omegaconf import DictConfig

from finetune.core.runner import run_stage
from finetune.data import preprocess


@hydra.main(config_path="..", config_name="params", version_base=None)
def main(cfg: DictConfig) -> None:
    run_stage("preprocess", preprocess.run, cfg)


if __name__ == "__main__":
    main()
