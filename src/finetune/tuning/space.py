"""The search space (``tune.space``): checked against the params, turned into Optuna
distributions, and a trial's values into ``dvc exp run -S`` overrides."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from finetune.core.errors import ConfigError
from finetune.core.schema import CategoricalParam, FloatParam, IntParam, TuneConfig
from finetune.tracking.runs import flatten

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

SearchParam = FloatParam | IntParam | CategoricalParam
SEARCHABLE = ("train", "model", "augment")


def candidates(param: SearchParam) -> list[Any]:
    """The values that bound what the search can give: both ends of a range, every choice."""
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if isinstance(param, FloatParam):  # Optuna gives floats: 3.0, not 3, for an int key
        return [float(param.low), float(param.high)]
    return [param.low, param.high]


def with_value(params: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(dict(params))
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return out


def check_space(spec: TuneConfig, params: Mapping[str, Any]) -> None:
    """Raise ConfigError (naming the entry) unless every searched key is a leaf of train.*,
    model.* or augment.* and every value the search can give passes the config schema."""
    from finetune.core.validate import parse

    known = set(flatten({s: params[s] for s in SEARCHABLE}))
    for param in spec.space:
        if param.param not in known:
            close = difflib.get_close_matches(param.param, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"tune.space: {param.param} is not a key of {', '.join(SEARCHABLE)}{hint}"
            )
        for value in candidates(param):
            try:
                parse(with_value(params, param.param, value))
            except ConfigError as exc:
                raise ConfigError(
                    f"tune.space: {param.param} = {value!r} is not a valid value: "
                    f"{str(exc).splitlines()[0]}"
                ) from exc
    if spec.sampler.type == "grid":
        grid(spec.space)


def distributions(space: Sequence[SearchParam]) -> dict[str, BaseDistribution]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, BaseDistribution] = {}
    for p in space:
        if isinstance(p, FloatParam):
            out[p.param] = FloatDistribution(float(p.low), float(p.high), log=p.log)
        elif isinstance(p, IntParam):
            out[p.param] = IntDistribution(p.low, p.high, log=p.log)
        else:
            out[p.param] = CategoricalDistribution(p.choices)
    return out


def grid(space: Sequence[SearchParam]) -> dict[str, list[Any]]:
    """The grid sampler's points: every choice, every integer of an int range."""
    out: dict[str, list[Any]] = {}
    for p in space:
        if isinstance(p, FloatParam):
            raise ConfigError(
                f"tune.sampler.type grid: {p.param} is a float range; give it choices "
                "(type: categorical) or use the tpe or random sampler"
            )
        out[p.param] = (
            list(p.choices) if isinstance(p, CategoricalParam) else [*range(p.low, p.high + 1)]
        )
    return out


def hydra_value(value: Any) -> str:
    """A Python value as a Hydra override value that parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    plain = text.replace("_", "").isalnum() and not text[0].isdigit()
    if plain and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text
    return "'" + text.replace("'", "\\'") + "'"


def override_args(values: Mapping[str, Any]) -> list[str]:
    """{"train.learning_rate": 1e-4} -> ["train.learning_rate=0.0001"]."""
    return [f"{key}={hydra_value(value)}" for key, value in values.items()]
