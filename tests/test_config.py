"""conf/ is the one source of truth: every option composes, params.yaml is current."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from finetune.core.config import (
    check_params,
    compose,
    find_repo_root,
    main,
    read_overrides_header,
    write_params,
)
from finetune.core.errors import ConfigError
from finetune.core.schema import PipelineConfig
from finetune.core.validate import parse
from tests.conftest import config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]


def test_groups_cover_every_concern() -> None:
    expected = {"data", "model", "train", "augment", "evaluate", "error_analysis", "tracking"}
    assert expected | {"experiment"} <= set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_composes_and_fits_the_schema(group: str, option: str) -> None:
    cfg = compose(CONF, [f"{group}={option}"])
    typed = parse(cfg, CONF, [f"{group}={option}"])  # every key known, typed and in range
    assert typed.model_dump(mode="json") == cfg, "the schema reads every value as composed"
    assert _types(typed.model_dump(mode="json")) == _types(cfg), "2 stays 2, 0.5 stays 0.5"
    if group != "experiment":
        own = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
        own.pop("defaults", None)
        assert_contains(cfg[group], own, group)


def _types(value: object) -> object:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def assert_contains(actual: object, expected: object, where: str) -> None:
    """Every value the option file sets is in the composed config (mappings merge with the
    defaults they extend, so they may hold more keys)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for key, value in expected.items():
            assert key in actual, f"{where}.{key}"
            assert_contains(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, str) and "${" in expected:
        assert "${" not in str(actual), f"{where}: the interpolation is resolved"
    else:
        assert actual == expected, where


def _sections(model: type[BaseModel] = PipelineConfig) -> list[type[BaseModel]]:
    found = [model]
    for field in model.model_fields.values():
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found += _sections(arg)
    return found


def test_code_holds_no_default_so_conf_is_the_only_source() -> None:
    """No field of any section has a default: every value comes from conf/, so code and conf/
    cannot disagree, and a key conf/ lacks is an error, not a silent fallback."""
    sections = _sections()
    assert len(sections) > 20
    with_default = [
        f"{model.__name__}.{name}"
        for model in sections
        for name, field in model.model_fields.items()
        if not field.is_required()
    ]
    assert with_default == []
    assert all(m.model_config.get("extra") == "forbid" for m in sections), "unknown keys fail"


def test_schema_names_every_section_of_the_composed_config() -> None:
    assert set(PipelineConfig.model_fields) == set(compose(CONF))


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "error_analysis/default.yaml",
            "  folds: 5",
            "  fold: 5",
            r"conf/error_analysis/default\.yaml: unknown key error_analysis\.label_errors\.fold;"
            r" did you mean error_analysis\.label_errors\.folds\?",
        ),
        (
            "train/default.yaml",
            "batch_size: 32",
            "batch_size: many",
            r"conf/train/default\.yaml: train\.batch_size=\"many\": Input should be a valid",
        ),
        (
            "data/support_tickets.yaml",
            "id_column: id",
            "id_colum: id",
            r"conf/data/support_tickets\.yaml: unknown key data\.id_colum; did you mean "
            r"data\.id_column\?",
        ),
        (
            "augment/default.yaml",
            "fraction: 0.5",
            "fraction: 1.5",
            r"conf/augment/default\.yaml: augment\.fraction=1\.5: Input should be less than",
        ),
    ],
    ids=["typo", "type", "typo-in-data", "range"],
)
def test_a_bad_key_in_conf_names_the_key_the_fix_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, old: str, new: str, message: str
) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    root = _copy_project(tmp_path)
    path = root / "conf" / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    params_before = (root / "params.yaml").read_bytes()
    with pytest.raises(ConfigError, match=message):
        write_params(root)  # make params
    assert (root / "params.yaml").read_bytes() == params_before, "nothing written"
    with pytest.raises(ConfigError, match=message):
        check_params(root)  # the check_config stage, and every stage when it starts


def test_an_unknown_key_from_an_override_says_so() -> None:
    cfg = compose(CONF, ["+train.warmup=0.1"])
    with pytest.raises(
        ConfigError,
        match=r"unknown key train\.warmup; did you mean train\.warmup_ratio\? \(no conf/ file "
        r"sets it: it came from an override",
    ):
        parse(cfg, CONF, ["+train.warmup=0.1"])
    with pytest.raises(ConfigError, match=r"Could not override 'train\.warmup'"):
        compose(CONF, ["train.warmup=0.1"])  # Hydra itself refuses a new key without +


def test_a_missing_key_and_several_problems_are_all_reported() -> None:
    cfg = compose(CONF)
    del cfg["train"]["epochs"]
    cfg["evaluate"]["split"] = "holdout"
    with pytest.raises(ConfigError) as info:
        parse(cfg, CONF)
    first, *rest = str(info.value).splitlines()
    assert first.startswith("missing key train.epochs: set it in conf/train/default.yaml")
    assert "(and 1 more problem(s) below)" in first
    assert rest == [
        "  conf/evaluate/default.yaml: evaluate.split=\"holdout\": Input should be 'train', "
        "'validation' or 'test'"
    ]


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


@pytest.mark.parametrize("key", ["tune.storage", "tracking.uri"])
def test_a_password_in_a_url_setting_is_refused_and_never_shown(key: str) -> None:
    """params.yaml is committed and logged: a URL setting's password comes from the
    environment (PGPASSWORD, MLFLOW_TRACKING_PASSWORD), and the error does not repeat it."""
    with pytest.raises(
        ConfigError,
        match=rf'{re.escape(key)}="postgresql://me:\*\*\*@db/optuna": the URL holds a password.*'
        r"PGPASSWORD.*MLFLOW_TRACKING_PASSWORD",
    ) as refused:
        config({key: "postgresql://me:s3cret@db/optuna"})
    assert "s3cret" not in str(refused.value)
    without = config({key: "postgresql://me@db/optuna"})
    assert without.params()[key.split(".")[0]][key.split(".")[1]] == "postgresql://me@db/optuna"


def test_a_password_in_any_logged_url_is_masked() -> None:
    from finetune.core.store import TrackingUnavailable, check_uri

    cfg = config({"data.hf.name": "https://me:s3cret@hub.internal/sets/x"})
    assert cfg.params()["data"]["hf"]["name"] == "https://me:***@hub.internal/sets/x"
    # MLFLOW_TRACKING_URI is not in params: one holding a password is masked in messages
    with pytest.raises(
        TrackingUnavailable, match=r"http://me:\*\*\*@127\.0\.0\.1:9 is unreach"
    ) as e:
        check_uri("http://me:s3cret@127.0.0.1:9", timeout_s=2)
    assert "s3cret" not in str(e.value)
