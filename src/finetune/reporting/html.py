"""One self-contained HTML page: inline CSS, images as base64 PNG, no scripts, no network."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

SECTIONS = [
    ("summary", "Summary"),
    ("confusions", "Confusions"),
    ("errors", "Errors, most confident first"),
    ("slices", "Slices"),
    ("label-errors", "Likely label errors"),
    ("robustness", "Robustness"),
    ("explanations", "Explanations"),
    ("next-steps", "What to look at next"),
]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9;line-height:1.45}
header{background:#1d2330;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c9d1e0;font-size:13px}
nav{background:#fff;border-bottom:1px solid #dde1e8;padding:8px 32px;position:sticky;top:0}
nav a{margin-right:16px;color:#2858b8;text-decoration:none;font-size:14px}
main{padding:8px 32px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:16px 20px;margin:18px 0}
h2{margin-top:0;font-size:19px} h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px;width:100%}
th,td{border-bottom:1px solid #e6e9ef;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f6;font-weight:600} td.num{text-align:right;white-space:nowrap}
tr.weak td{background:#fdecea} .tag{display:inline-block;padding:1px 7px;border-radius:9px;
font-size:12px;background:#eef1f6;margin-right:4px}
.good{color:#17803d} .bad{color:#c0392b} .muted{color:#6b7385;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.card{border:1px solid #dde1e8;border-radius:8px;padding:8px 14px;min-width:130px}
.card b{display:block;font-size:20px} .card span{font-size:12px;color:#6b7385}
img{max-width:100%;height:auto;border:1px solid #eef0f4;margin:6px 0}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs img{max-width:48%}
.attr{line-height:1.9;font-size:14px;margin:4px 0 12px}
.attr span{padding:1px 2px;border-radius:3px}
ol.next li{margin:6px 0}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def signed(value: float | None, digits: int = 3, higher_is_better: bool = True) -> str:
    if value is None:
        return '<span class="muted">–</span>'
    good = (value > 0) == higher_is_better
    cls = "muted" if abs(value) < 10 ** (-digits) else ("good" if good else "bad")
    return f'<span class="{cls}">{value:+.{digits}f}</span>'


def png_data_uri(figure: Any, dpi: int = 100) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{esc(alt)}">'


def table(
    df: pd.DataFrame,
    columns: Sequence[str] | None = None,
    highlight: str | None = None,
    max_chars: int = 400,
) -> str:
    """An HTML table; ``highlight`` names a boolean column whose rows get the ``weak`` class."""
    if df.empty:
        return '<p class="muted">none</p>'
    columns = list(columns or df.columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    rows = []
    for _, row in df.iterrows():
        cls = ' class="weak"' if highlight and bool(row.get(highlight)) else ""
        cells = []
        for c in columns:
            v = row[c]
            num = isinstance(v, int | float) and not isinstance(v, bool)
            text = fmt(v)
            if len(text) > max_chars:
                text = text[:max_chars] + "…"
            cells.append(f'<td class="num">{esc(text)}</td>' if num else f"<td>{esc(text)}</td>")
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def attribution_html(words: list[tuple[str, float]]) -> str:
    """Words with a background: red pushes towards the predicted class, blue away from it."""
    parts = []
    for word, score in words:
        alpha = min(abs(score), 1.0) * 0.75
        colour = f"rgba(214,39,40,{alpha:.2f})" if score > 0 else f"rgba(31,119,180,{alpha:.2f})"
        parts.append(f'<span style="background:{colour}" title="{score:+.2f}">{esc(word)}</span>')
    return '<div class="attr">' + " ".join(parts) + "</div>"


def cards(items: list[tuple[str, str]]) -> str:
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{v}</b><span>{esc(k)}</span></div>' for k, v in items)
        + "</div>"
    )


def page(title: str, subtitle: str, sections: dict[str, str]) -> str:
    """The whole document; ``sections`` maps each id in SECTIONS to its inner HTML."""
    nav = "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name in SECTIONS)
    body = "".join(
        f'<section id="{sid}"><h2>{esc(name)}</h2>{sections.get(sid, "")}</section>'
        for sid, name in SECTIONS
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
