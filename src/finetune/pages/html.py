"""Self-contained HTML pages from Jinja2 templates (``templates/``).

Autoescaping is on for every template, so a text, a label or an id from the data is always
shown as text, never read as markup. A page has inline CSS and base64 PNG images, no scripts
and no network access: it opens offline in any browser and can be mailed or logged as one file.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"
MAX_CELL_CHARS = 400


def fmt(value: Any, digits: int = 3) -> str:
    """A value as a person reads it: 3 decimals, "–" for missing, yes/no for booleans."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def signed(value: float | None, digits: int = 3, higher_is_better: bool = True) -> Markup:
    """A change with its sign, green when it is an improvement, red when it is not."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Markup('<span class="muted">–</span>')
    good = (value > 0) == higher_is_better
    cls = "muted" if abs(value) < 10 ** (-digits) else ("good" if good else "bad")
    return Markup('<span class="{}">{}</span>').format(cls, f"{value:+.{digits}f}")


def attribution_colour(score: float) -> str:
    """Background of a word: orange pushes towards the explained class, purple away from it
    (ColorBrewer's PuOr ends: told apart with any colour vision; dark text stays readable)."""
    alpha = min(abs(float(score)), 1.0) * 0.75
    return f"rgba(230,97,1,{alpha:.2f})" if score > 0 else f"rgba(94,60,153,{alpha:.2f})"


def table(
    df: pd.DataFrame, columns: Sequence[str] | None = None, highlight: str | None = None
) -> dict[str, Any]:
    """A DataFrame as what the ``table`` macro renders: header, cells (text, numeric?) and
    the rows to highlight (``highlight`` names a boolean column)."""
    columns = list(columns or df.columns)
    rows = []
    for record in df.to_dict("records"):
        cells = []
        for column in columns:
            value = record[column]
            text = fmt(value)
            if len(text) > MAX_CELL_CHARS:
                text = text[:MAX_CELL_CHARS] + "…"
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cells.append({"text": text, "numeric": numeric})
        rows.append({"cells": cells, "weak": bool(highlight and record.get(highlight))})
    return {"columns": columns, "rows": rows}


@functools.cache
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template: data is text, never markup
        undefined=jinja2.StrictUndefined,  # a missing value is an error, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt=fmt, signed=signed, attribution_colour=attribution_colour)
    env.globals.update(table=table)
    return env


def render(template: str, **context: Any) -> str:
    """The page ``template`` (a file in ``templates/``) with ``context``."""
    return environment().get_template(template).render(**context)
