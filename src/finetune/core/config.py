"""One source of truth for config: conf/ is composed into params.yaml.

``python -m finetune.core.config compose [OVERRIDE ...]`` writes params.yaml exactly as DVC's
Hydra integration does for ``dvc exp run`` (it calls the same function), after checking it
against the schema (:mod:`finetune.core.schema`). ``python -m finetune.core.config check`` fails
when params.yaml is invalid or not what conf/ composes to; ``dvc repro`` runs it as the
``check_config`` stage whenever conf/ changes, and every stage runs the same check when it
starts (:mod:`finetune.core.runner`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from finetune.core.errors import ConfigError
from finetune.core.schema import PipelineConfig

log = logging.getLogger(__name__)

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONFIG_NAME = "config"
OVERRIDES_HEADER = "# finetune: composed from conf/ with overrides "
CHECK_STAMP = ".dvc/tmp/finetune-config-check"  # the digest of the last conf/ that matched
RECOMPOSE_COMMAND = "make params  (or: python -m finetune.core.config compose [OVERRIDE ...])"


def find_repo_root(start: str | Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding dvc.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    raise ConfigError(f"no dvc.yaml found in {here} or any parent: run from the project directory")


def _compose_text(conf_dir: Path, overrides: Sequence[str]) -> str:
    """params.yaml's text for ``conf_dir`` + ``overrides``, written by DVC's own function."""
    from dvc.utils.hydra import compose_and_dump

    conf_dir = conf_dir.resolve()
    if not (conf_dir / f"{CONFIG_NAME}.yaml").is_file():
        raise ConfigError(f"{conf_dir / (CONFIG_NAME + '.yaml')} is missing")
    with tempfile.TemporaryDirectory() as tmp, _own_hydra():
        out = Path(tmp) / PARAMS_FILE
        try:
            compose_and_dump(out, str(conf_dir), None, CONFIG_NAME, str(conf_dir), list(overrides))
        except Exception as exc:  # Hydra raises many types; all mean "bad config or override"
            raise ConfigError(
                f"cannot compose {conf_dir} with overrides {list(overrides)}: {exc}"
            ) from exc
        return out.read_text()


@contextmanager
def _own_hydra() -> Iterator[None]:
    """Compose even inside a Hydra app (a stage checking its params at start): the app's
    global Hydra state is set aside for the composition and put back afterwards."""
    from hydra.core.global_hydra import GlobalHydra

    hydra_state = GlobalHydra.instance()
    saved = hydra_state.hydra if hydra_state.is_initialized() else None
    hydra_state.clear()
    try:
        yield
    finally:
        hydra_state.clear()
        if saved is not None:
            hydra_state.initialize(saved)


def compose(conf_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/ with Hydra overrides into a plain dict, exactly as DVC does."""
    return yaml.safe_load(_compose_text(Path(conf_dir), overrides))


def write_params(root: str | Path, overrides: Sequence[str] = ()) -> Path:
    """Compose ``root/conf``, validate it against the schema, write ``root/params.yaml``
    atomically (nothing is written when composing or validating fails)."""
    from finetune.core.io import atomic_path
    from finetune.core.validate import parse

    root = Path(root)
    target = root / PARAMS_FILE
    body = _compose_text(root / CONF_DIR, overrides)
    parse(yaml.safe_load(body), root / CONF_DIR, overrides)
    header = f"{OVERRIDES_HEADER}{json.dumps(list(overrides))}\n" if overrides else ""
    with atomic_path(target) as tmp:
        tmp.write_text(header + body)
    log.info("wrote %s%s", target, f" with overrides {list(overrides)}" if overrides else "")
    return target


def read_overrides_header(params_text: str) -> list[str]:
    first = params_text.split("\n", 1)[0]
    if first.startswith(OVERRIDES_HEADER):
        return list(json.loads(first[len(OVERRIDES_HEADER) :]))
    return []


def params_diff(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    """One line per key where params ``a`` and the composition ``b`` differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in a:
                yield f"{name}: only in conf/"
            elif key not in b:
                yield f"{name}: only in params.yaml"
            else:
                yield from params_diff(a[key], b[key], name)
    elif a != b:
        yield f"{prefix}: params.yaml has {a!r}, conf/ gives {b!r}"


def read_overrides(root: str | Path) -> list[str]:
    """The overrides params.yaml was composed with (``make params O=...``), from its header."""
    path = Path(root) / PARAMS_FILE
    return read_overrides_header(path.read_text()) if path.is_file() else []


def check_params(root: str | Path) -> None:
    """Raise ConfigError unless params.yaml equals what conf/ composes to.

    What conf/ composes to is checked against the schema first, so an unknown or wrong key in
    conf/ is reported as such (key, suggestion, file) rather than as a difference. Inside
    ``dvc exp run`` DVC has just composed params.yaml from conf/ itself (with the experiment's
    ``-S`` overrides), so there is nothing to compare.
    """
    from finetune.core.validate import parse

    root = Path(root)
    if os.environ.get("DVC_EXP_NAME"):
        log.info(
            "inside dvc exp run %s: params.yaml was composed by DVC", os.environ["DVC_EXP_NAME"]
        )
        return
    params_path = root / PARAMS_FILE
    if not params_path.is_file():
        raise ConfigError(f"{params_path} is missing: create it with `{RECOMPOSE_COMMAND}`")
    digest = _config_digest(root)
    stamp = root / CHECK_STAMP
    if stamp.is_file() and stamp.read_text() == digest:
        log.debug("conf/ and params.yaml unchanged since they last matched")
        return
    text = params_path.read_text()
    overrides = read_overrides_header(text)
    expected = compose(root / CONF_DIR, overrides)
    parse(expected, root / CONF_DIR, overrides)  # a typo in conf/: its key, file and fix
    actual = yaml.safe_load(text)
    differences = list(params_diff(actual, expected))
    if differences:
        shown = "\n  ".join(differences[:20])
        raise ConfigError(
            f"{params_path} is out of date with conf/ "
            "(it is generated: edit conf/, not params.yaml)."
            f"\n  {shown}\nRecompose it with: {RECOMPOSE_COMMAND}"
            + (f" using overrides {overrides}" if overrides else "")
        )
    log.info("params.yaml matches conf/%s", f" with overrides {overrides}" if overrides else "")
    if stamp.parent.is_dir():  # .dvc/tmp: every stage of one `dvc repro` checks, once is enough
        stamp.write_text(digest)


def _config_digest(root: Path) -> str:
    """A digest of every conf/ file and params.yaml: equal digests, equal check result."""
    digest = hashlib.sha256()
    for path in [*sorted((root / CONF_DIR).rglob("*.yaml")), root / PARAMS_FILE]:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def load_params(root: str | Path) -> dict[str, Any]:
    path = Path(root) / PARAMS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing: create it with `{RECOMPOSE_COMMAND}`")
    return yaml.safe_load(path.read_text())


def load_config(root: str | Path) -> PipelineConfig:
    """params.yaml of ``root`` as the validated, typed config (what commands read)."""
    from finetune.core.validate import parse

    root = Path(root)
    return parse(load_params(root), root / CONF_DIR, read_overrides(root))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.core.config", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_compose = sub.add_parser("compose", help="compose conf/ into params.yaml")
    p_compose.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=2")
    sub.add_parser("check", help="fail if params.yaml is invalid or out of date with conf/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        root = find_repo_root()
        if args.command == "compose":
            write_params(root, args.overrides)
        else:
            load_config(root)  # the schema: unknown keys, types, ranges
            check_params(root)  # and conf/ still composes to it
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
