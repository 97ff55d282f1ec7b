"""train stage: fine-tune the pretrained transformer; save model + tokenizer; open the MLflow run;
then register the model as the challenger (not for `dvc exp run` nor tune trials).

Run by `dvc repro` (see dvc.yaml). Reads the composed params.yaml, never conf/ directly,
so what runs is exactly what DVC records. Logic lives in `finetune.training.train` (training,
which knows nothing of the registry) and `finetune.registry.register` (registration).
"""

from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from finetune.core.runner import run_stage
from finetune.core.schema import PipelineConfig


def load() -> Callable[[PipelineConfig], object]:
    """The stage's logic, imported once the runner's checks have passed."""
    from finetune.registry.register import register_trained
    from finetune.training import train

    def train_and_register(cfg: PipelineConfig) -> object:
        result = train.run(cfg)
        register_trained(cfg, result)
        return result

    return train_and_register


@hydra.main(config_path="..", config_name="params", version_base=None)
def main(cfg: DictConfig) -> None:
    run_stage("train", load, cfg)


if __name__ == "__main__":
    main()
