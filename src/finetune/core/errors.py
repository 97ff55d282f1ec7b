"""Errors a user can act on. Stage entry points turn these into a message and exit code 1."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class PipelineError(Exception):
    """Base class: the message says what is wrong, where, and what to do."""


class ConfigError(PipelineError):
    """The configuration (conf/ or params.yaml) is invalid or out of date."""


class DataError(PipelineError):
    """Input data is missing or invalid."""


class ModelNotFoundError(PipelineError):
    """A model path or id cannot be resolved (offline, not installed, or wrong)."""


def known_options(section: str, options: Mapping[str, Any] | None, known: Iterable[str]) -> dict:
    """``options`` as a dict; a ConfigError naming ``section`` when a key is not in ``known``."""
    options = dict(options or {})
    known = sorted(known)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{section}: unknown option(s) {unknown}; known: {known}")
    return options
