"""Passwords in URL settings (``tune.storage``, ``tracking.uri``, ``MLFLOW_TRACKING_URI``).

params.yaml is committed and its values are logged as MLflow params, so a URL setting there may
not hold a password (the schema refuses one, :func:`refuse_password`); the password comes from
the environment, read by the client itself: ``PGPASSWORD`` (or ``~/.pgpass``) for a PostgreSQL
URL, which libpq reads for Optuna's and MLflow's database connections, and
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` for an MLflow tracking server.
A URI that still holds one (``MLFLOW_TRACKING_URI`` set by hand) is masked by :func:`mask_url`
wherever it is logged or written in a message.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@host: the password is what lies between the first ':' after the user
# name and the '@' that ends the credentials.
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@\s]*)@")

PASSWORD_FROM_ENV = (
    "give the password through the environment instead: PGPASSWORD (or ~/.pgpass) for a "
    "PostgreSQL URL, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD for an MLflow server"
)


def has_password(text: str) -> bool:
    return any(m.group("password") for m in _CREDENTIALS.finditer(text))


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(
        lambda m: f"{m.group('head')}:{MASK}@" if m.group("password") else m.group(0), text
    )


def mask(value: Any) -> Any:
    """``value`` (strings, or dicts and lists of them) with every URL's password masked."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask(v) for v in value)
    return value


def refuse_password(value: str | None) -> str | None:
    """A schema check for URL settings: a password in one would be committed and logged."""
    if value is not None and has_password(value):
        raise ValueError(
            "the URL holds a password, which params.yaml would commit and MLflow would log: "
            f"leave it out of the URL and {PASSWORD_FROM_ENV}"
        )
    return value
