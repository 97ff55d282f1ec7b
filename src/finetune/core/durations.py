"""Durations as people write them on a command line or in conf/: ``90s``, ``30m``, ``12h``,
``7d``, ``2w`` (``finetune monitor --since``, ``finetune tune --timeout``)."""

from __future__ import annotations

import re
from datetime import timedelta

from finetune.core.errors import ConfigError

DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str, what: str) -> timedelta:
    """``30m`` -> 30 minutes; ``what`` names the option in the error (``--since``)."""
    match = DURATION.match(value.strip().lower())
    if not match:
        raise ConfigError(f"{what} {value!r}: write a number and a unit, e.g. 90s, 30m, 12h, 7d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
