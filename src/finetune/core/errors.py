"""Errors a user can act on. Stage entry points turn these into a message and exit code 1."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: the message says what is wrong, where, and what to do."""


class ConfigError(PipelineError):
    """The configuration (conf/ or params.yaml) is invalid or out of date."""


class DataError(PipelineError):
    """Input data is missing or invalid."""


class ModelNotFoundError(PipelineError):
    """A model path or id cannot be resolved (offline, not installed, or wrong)."""


class JobError(PipelineError):
    """A distributed job (Spark) failed or could not start; nothing was committed."""
