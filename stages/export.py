"""export stage: the trained model as ONNX variants, scored against PyTorch; the best one deployed.

Run by `dvc repro` (see dvc.yaml). Reads the composed params.yaml, never conf/ directly,
so what runs is exactly what DVC records. Logic lives in `finetune.export.export`.
"""

from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from finetune.core.runner import run_stage
from finetune.core.schema import PipelineConfig


def load() -> Callable[[PipelineConfig], object]:
    """The stage's logic, imported once the runner's checks have passed."""
    from finetune.export import export

    return export.run


@hydra.main(config_path="..", config_name="params", version_base=None)
def main(cfg: DictConfig) -> None:
    run_stage("export", load, cfg)


if __name__ == "__main__":
    main()
