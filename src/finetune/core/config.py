"""One source of truth for config: conf/ is composed into params.yaml.

``python -m finetune.core.config compose [OVERRIDE ...]`` writes params.yaml exactly as DVC's Hydra
integration does for ``dvc exp run`` (it calls the same function). ``python -m finetune.core.config
check`` fails when params.yaml is not what conf/ composes to; ``dvc repro`` runs it as the
``check_config`` stage whenever conf/ changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from finetune.core.errors import ConfigError

log = logging.getLogger(__name__)

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONFIG_NAME = "config"
OVERRIDES_HEADER = "# finetune: composed from conf/ with overrides "
RECOMPOSE_COMMAND = "make params  (or: python -m finetune.core.config compose [OVERRIDE ...])"


def find_repo_root(start: str | Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding dvc.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    raise ConfigError(f"no dvc.yaml found in {here} or any parent: run from the project directory")


def compose(conf_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/ with Hydra overrides into a plain dict, exactly as DVC does."""
    from dvc.utils.hydra import compose_and_dump

    conf_dir = Path(conf_dir).resolve()
    if not (conf_dir / f"{CONFIG_NAME}.yaml").is_file():
        raise ConfigError(f"{conf_dir / (CONFIG_NAME + '.yaml')} is missing")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / PARAMS_FILE
        try:
            compose_and_dump(out, str(conf_dir), None, CONFIG_NAME, str(conf_dir), list(overrides))
        except Exception as exc:  # Hydra raises many types; all mean "bad config or override"
            raise ConfigError(
                f"cannot compose {conf_dir} with overrides {list(overrides)}: {exc}"
            ) from exc
        return yaml.safe_load(out.read_text())


def write_params(root: str | Path, overrides: Sequence[str] = ()) -> Path:
    """Compose ``root/conf`` and write ``root/params.yaml`` atomically."""
    from dvc.utils.hydra import compose_and_dump

    from finetune.core.io import atomic_path

    root = Path(root)
    compose(root / CONF_DIR, overrides)  # validate first: a clear error, nothing written
    target = root / PARAMS_FILE
    with atomic_path(target) as tmp:
        compose_and_dump(
            tmp.with_suffix(".yaml"),
            str((root / CONF_DIR).resolve()),
            None,
            CONFIG_NAME,
            str((root / CONF_DIR).resolve()),
            list(overrides),
        )
        body = tmp.with_suffix(".yaml").read_text()
        tmp.with_suffix(".yaml").unlink()
        header = f"{OVERRIDES_HEADER}{json.dumps(list(overrides))}\n" if overrides else ""
        tmp.write_text(header + body)
    log.info("wrote %s%s", target, f" with overrides {list(overrides)}" if overrides else "")
    return target


def read_overrides_header(params_text: str) -> list[str]:
    first = params_text.split("\n", 1)[0]
    if first.startswith(OVERRIDES_HEADER):
        return list(json.loads(first[len(OVERRIDES_HEADER) :]))
    return []


def _diff(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in a:
                yield f"{name}: only in conf/"
            elif key not in b:
                yield f"{name}: only in params.yaml"
            else:
                yield from _diff(a[key], b[key], name)
    elif a != b:
        yield f"{prefix}: params.yaml has {a!r}, conf/ gives {b!r}"


def check_params(root: str | Path) -> None:
    """Raise ConfigError unless params.yaml equals what conf/ composes to.

    Inside ``dvc exp run`` DVC has just composed params.yaml from conf/ itself (with the
    experiment's ``-S`` overrides), so there is nothing to check.
    """
    root = Path(root)
    if os.environ.get("DVC_EXP_NAME"):
        log.info(
            "inside dvc exp run %s: params.yaml was composed by DVC", os.environ["DVC_EXP_NAME"]
        )
        return
    params_path = root / PARAMS_FILE
    if not params_path.is_file():
        raise ConfigError(f"{params_path} is missing: create it with `{RECOMPOSE_COMMAND}`")
    text = params_path.read_text()
    overrides = read_overrides_header(text)
    expected = compose(root / CONF_DIR, overrides)
    actual = yaml.safe_load(text)
    differences = list(_diff(actual, expected))
    if differences:
        shown = "\n  ".join(differences[:20])
        raise ConfigError(
            f"{params_path} is out of date with conf/ "
            "(it is generated: edit conf/, not params.yaml)."
            f"\n  {shown}\nRecompose it with: {RECOMPOSE_COMMAND}"
            + (f" using overrides {overrides}" if overrides else "")
        )
    log.info("params.yaml matches conf/%s", f" with overrides {overrides}" if overrides else "")


def load_params(root: str | Path) -> dict[str, Any]:
    path = Path(root) / PARAMS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing: create it with `{RECOMPOSE_COMMAND}`")
    return yaml.safe_load(path.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.core.config", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_compose = sub.add_parser("compose", help="compose conf/ into params.yaml")
    p_compose.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=2")
    sub.add_parser("check", help="fail if params.yaml is out of date with conf/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        root = find_repo_root()
        if args.command == "compose":
            write_params(root, args.overrides)
        else:
            check_params(root)
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
