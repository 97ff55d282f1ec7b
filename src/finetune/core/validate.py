"""Check a composed config against the schema; every error names the key, the fix and the file.

:func:`parse` turns params.yaml (or any composed dict) into a :class:`PipelineConfig`, or raises
one :class:`ConfigError` whose first line says, for the first problem found, which key is wrong,
what is wrong with it, the closest known key for a typo, and the ``conf/`` file that set it
(found by looking the key up in the files the composition used), e.g.::

    conf/error_analysis/default.yaml: unknown key error_analysis.label_errors.fold; did you
    mean error_analysis.label_errors.folds?
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from finetune.core.errors import ConfigError
from finetune.core.schema import PipelineConfig
from finetune.core.secrets import mask

GLOBAL_PACKAGE = "# @package _global_"


@dataclass(frozen=True)
class Problem:
    key: str  # dotted path, e.g. "train.batch_size"
    kind: str  # "unknown", "missing" or "invalid"
    message: str
    value: Any = None


def parse(
    params: Mapping[str, Any] | PipelineConfig,
    conf_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> PipelineConfig:
    """``params`` as a validated :class:`PipelineConfig` (returned as is if it already is one).

    ``conf_dir`` (default: ``conf/`` of the repository around the cwd, if any) is searched for
    the file that set a wrong key; ``overrides`` are the Hydra overrides params.yaml was
    composed with (group choices such as ``data=sst2`` decide which files are searched first).
    """
    if isinstance(params, PipelineConfig):
        return params
    try:
        return PipelineConfig.model_validate(dict(params))
    except ValidationError as exc:
        problems = list(problems_of(exc, params))
    raise ConfigError(describe(problems, _conf_dir(conf_dir), overrides))


def _conf_dir(conf_dir: str | Path | None) -> Path | None:
    if conf_dir is not None:
        return Path(conf_dir)
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate / "conf" if (candidate / "conf").is_dir() else None
    return None


def problems_of(exc: ValidationError, params: Mapping[str, Any]) -> Iterator[Problem]:
    """One :class:`Problem` per wrong key (a union's alternatives are merged into one)."""
    merged: dict[tuple[str, str], list[str]] = {}
    values: dict[str, Any] = {}
    for error in exc.errors():
        path, value = _key_path(error["loc"], params)
        key = ".".join(path)
        kind = {"extra_forbidden": "unknown", "missing": "missing"}.get(error["type"], "invalid")
        merged.setdefault((key, kind), []).append(error["msg"].removeprefix("Value error, "))
        values[key] = value
    for (key, kind), messages in merged.items():
        unique = list(dict.fromkeys(messages))
        yield Problem(key, kind, " or ".join(unique), values.get(key))


def _key_path(loc: Sequence[Any], params: Mapping[str, Any]) -> tuple[list[str], Any]:
    """The part of a pydantic error location that names keys of ``params``, and the value
    there (a union adds tags such as ``literal['balanced']`` after the key; a list, indexes)."""
    path: list[str] = []
    node: Any = params
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
            path.append(str(part))
        elif isinstance(node, Mapping) and isinstance(part, str) and part.isidentifier():
            path.append(part)  # a missing key
            return path, None
        else:  # a list's index (the whole list is shown), or a union's tag ("list[float]")
            break
    return path, node


def known_keys(path: Sequence[str]) -> list[str]:
    """The schema's field names at ``path`` (the section or sub-section holding the key)."""
    model: Any = PipelineConfig
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def describe(problems: list[Problem], conf_dir: Path | None, overrides: Sequence[str]) -> str:
    """The first problem as one line (key, what is wrong, suggestion, file); the others below."""
    lines = [_line(p, conf_dir, overrides) for p in problems]
    more = f" (and {len(lines) - 1} more problem(s) below)" if len(lines) > 1 else ""
    return lines[0] + more + "".join(f"\n  {line}" for line in lines[1:])


def _line(problem: Problem, conf_dir: Path | None, overrides: Sequence[str]) -> str:
    path = problem.key.split(".")
    where = origin(conf_dir, path, overrides) if conf_dir is not None else None
    prefix = f"{where}: " if where else ""
    if problem.kind == "unknown":
        known = known_keys(path[:-1])
        lowered = {k.lower(): k for k in known}
        close = [
            lowered[k]
            for k in difflib.get_close_matches(path[-1].lower(), lowered, n=1, cutoff=0.6)
        ]
        parent = ".".join(path[:-1])
        hint = (
            f"; did you mean {'.'.join([*path[:-1], close[0]])}?"
            if close
            else f"; {parent or 'the config'} has {', '.join(known)}"
        )
        source = "" if where else _override_note(conf_dir)
        return f"{prefix}unknown key {problem.key}{hint}{source}"
    if problem.kind == "missing":
        target = chosen_file(conf_dir, path[0], overrides) if conf_dir is not None else None
        return f"missing key {problem.key}: set it in {target or 'conf/'}"
    if isinstance(problem.value, Mapping):  # a rule across the keys of a section
        return f"{prefix}{problem.key}: {problem.message}"
    return f"{prefix}{problem.key}={json.dumps(mask(problem.value))}: {problem.message}"


def _override_note(conf_dir: Path | None) -> str:
    if conf_dir is None:
        return ""
    return (
        " (no conf/ file sets it: it came from an override, `dvc exp run -S` or "
        "`make params O=...`)"
    )


# --------------------------------------------------------------------------- which file set it


def origin(conf_dir: Path, path: Sequence[str], overrides: Sequence[str] = ()) -> str | None:
    """The conf/ file (relative, e.g. ``conf/train/default.yaml``) that sets ``path``: the
    options the composition chose are searched first, then every option of the group."""
    chosen = group_choices(conf_dir, overrides)
    for candidate in _candidates(conf_dir, path[0], chosen):
        if _sets(candidate, conf_dir, path):
            return f"{conf_dir.name}/{candidate.relative_to(conf_dir).as_posix()}"
    return None


def chosen_file(conf_dir: Path, section: str, overrides: Sequence[str] = ()) -> str:
    """The conf/ file the composition took ``section`` from (its group's chosen option), or
    conf/config.yaml for a key at the top level."""
    option = group_choices(conf_dir, overrides).get(section)
    path = conf_dir / section / f"{option}.yaml"
    if option is not None and path.is_file():
        return f"{conf_dir.name}/{section}/{option}.yaml"
    return f"{conf_dir.name}/config.yaml"


def group_choices(conf_dir: Path, overrides: Sequence[str] = ()) -> dict[str, str]:
    """{group: option} from conf/config.yaml's defaults list, then group overrides."""
    chosen: dict[str, str] = {}
    root = _load(conf_dir / "config.yaml")
    for entry in root.get("defaults") or []:
        if isinstance(entry, Mapping):
            for group, option in entry.items():
                name = str(group).removeprefix("optional ").removeprefix("override ").strip()
                if option is not None:
                    chosen[name] = str(option)
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if "." not in key and (conf_dir / key).is_dir():
            chosen[key] = value
    return chosen


def _candidates(conf_dir: Path, section: str, chosen: Mapping[str, str]) -> Iterator[Path]:
    seen: set[Path] = set()

    def chain(group: str, option: str) -> Iterator[Path]:
        path = conf_dir / group / f"{option}.yaml"
        if path in seen or not path.is_file():
            return
        seen.add(path)
        yield path
        for entry in _load(path).get("defaults") or []:
            if isinstance(entry, str) and entry != "_self_":
                yield from chain(group, entry)

    if section in chosen:
        yield from chain(section, chosen[section])
    for group, option in chosen.items():
        if group != section:
            yield from (p for p in chain(group, option) if _is_global(p))
    yield conf_dir / "config.yaml"
    for group_dir in (conf_dir / section, *sorted(p for p in conf_dir.iterdir() if p.is_dir())):
        for path in sorted(group_dir.glob("*.yaml")) if group_dir.is_dir() else []:
            if path not in seen and (group_dir.name == section or _is_global(path)):
                seen.add(path)
                yield path


def _sets(path: Path, conf_dir: Path, key: Sequence[str]) -> bool:
    node: Any = _load(path)
    parts = list(key)
    if path.parent != conf_dir and not _is_global(path):
        if parts[0] != path.parent.name:
            return False
        parts = parts[1:]
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _is_global(path: Path) -> bool:
    head = path.read_text().lstrip().splitlines()[:1]
    return bool(head) and head[0].strip() == GLOBAL_PACKAGE


def _load(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
