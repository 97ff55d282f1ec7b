"""Markdown that stays a table whatever the data holds: cells escaped (``|``, newlines)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def md_cell(value: Any) -> str:
    """One table cell: floats to 3 decimals; ``|`` and line breaks cannot end the cell."""
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (``_none_`` when it is empty)."""
    if df.empty:
        return "_none_\n"
    head = (
        "| "
        + " | ".join(md_cell(c) for c in df.columns)
        + " |\n| "
        + " | ".join("---" for _ in df.columns)
        + " |\n"
    )
    rows = "".join(
        "| " + " | ".join(md_cell(v) for v in row) + " |\n" for row in df.itertuples(index=False)
    )
    return head + rows
