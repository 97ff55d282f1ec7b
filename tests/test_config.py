"""conf/ is the one source of truth: every option composes, params.yaml is current."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from finetune.core.config import (
    check_params,
    compose,
    find_repo_root,
    main,
    read_overrides_header,
    write_params,
)
from finetune.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]


def test_groups_cover_every_concern() -> None:
    expected = {"data", "model", "train", "augment", "evaluate", "error_analysis", "tracking"}
    assert expected | {"experiment"} <= set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_composes(group: str, option: str) -> None:
    cfg = compose(CONF, [f"{group}={option}"])
    for section in ("data", "model", "train", "augment", "evaluate", "error_analysis", "tracking"):
        assert isinstance(cfg[section], dict), section
    assert isinstance(cfg["paths"], dict) and isinstance(cfg["seed"], int)
    if group != "experiment":
        own = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
        own.pop("defaults", None)
        assert_contains(cfg[group], own, group)


def assert_contains(actual: object, expected: object, where: str) -> None:
    """Every value the option file sets is in the composed config (mappings merge with the
    defaults they extend, so they may hold more keys)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for key, value in expected.items():
            assert key in actual, f"{where}.{key}"
            assert_contains(actual[key], value, f"{where}.{key}")
    else:
        assert actual == expected, where


def test_committed_params_yaml_is_composed_from_conf() -> None:
    text = (REPO / "params.yaml").read_text()
    assert read_overrides_header(text) == [], "params.yaml must be composed with no overrides"
    assert yaml.safe_load(text) == compose(CONF)
    check_params(REPO)


def _copy_project(tmp_path: Path) -> Path:
    shutil.copytree(CONF, tmp_path / "conf")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


def test_edited_conf_without_recompose_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    root = _copy_project(tmp_path)
    evaluate = root / "conf" / "evaluate" / "default.yaml"
    evaluate.write_text(evaluate.read_text().replace("batch_size: 64", "batch_size: 16"))
    with pytest.raises(ConfigError, match=r"evaluate\.batch_size.*\n.*make params"):
        check_params(root)
    write_params(root)
    check_params(root)
    assert yaml.safe_load((root / "params.yaml").read_text())["evaluate"]["batch_size"] == 16


def test_overrides_are_recorded_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    root = _copy_project(tmp_path)
    write_params(root, ["train.epochs=1", "experiment=smoke"])
    text = (root / "params.yaml").read_text()
    assert read_overrides_header(text) == ["train.epochs=1", "experiment=smoke"]
    assert yaml.safe_load(text)["augment"]["enabled"] is False
    check_params(root)
    (root / "params.yaml").write_text(text.replace("max_steps: 20", "max_steps: 21"))
    with pytest.raises(ConfigError, match=r"train\.max_steps: params\.yaml has 21, conf/ gives 20"):
        check_params(root)


def test_inside_dvc_experiments_params_are_dvcs_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy_project(tmp_path)
    (root / "params.yaml").write_text("seed: 1\n")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc")
    check_params(root)  # DVC composed it from conf/ with the -S overrides itself


def test_bad_override_and_missing_params_are_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    with pytest.raises(ConfigError, match="Could not override 'nosuch'"):
        compose(CONF, ["nosuch=1"])
    root = _copy_project(tmp_path)
    (root / "params.yaml").unlink()
    with pytest.raises(ConfigError, match="params.yaml is missing.*make params"):
        check_params(root)
    monkeypatch.chdir(root)
    assert main(["check"]) == 1
    assert main(["compose"]) == 0 and main(["check"]) == 0


def test_find_repo_root(tmp_path: Path) -> None:
    assert find_repo_root(REPO / "src" / "finetune") == REPO
    with pytest.raises(ConfigError, match="no dvc.yaml"):
        find_repo_root(tmp_path)
