"""The small pieces of ``summary.html``: escaped text and cells, tables, key-value cards, inlined
PNG images, and matplotlib figures drawn off pyplot.

Implements the helpers :mod:`~alphapulse.pipelines.report.sections` builds the page's sections
with (private to the report room: their names keep the underscore) and :data:`MAX_TABLE_ROWS`.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

MAX_TABLE_ROWS = 60


def escape(v) -> str:
    """HTML-escape any value (quotes too, so it is safe inside attributes)."""
    return html.escape(str(v), quote=True)


def fmt_value(v) -> str:
    """A table cell's text: 4 significant digits for floats, dates without a midnight time."""
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return ""
        # counts held as floats (a column with gaps): whole numbers, not 1.259e+04
        return f"{v:.0f}" if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        v = pd.Timestamp(v)
        return str(v.date()) if v == v.normalize() else str(v)
    return str(v)


def _is_text(dtype) -> bool:
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def html_table(df: pd.DataFrame, *, max_rows: int = MAX_TABLE_ROWS, note: str | None = None) -> str:
    """``df`` (index not included) as an HTML table of at most ``max_rows`` rows, every cell escaped."""
    shown = df.head(max_rows)
    text = [_is_text(t) for t in shown.dtypes]
    head = "".join(f'<th class="s">{escape(c)}</th>' if s else f"<th>{escape(c)}</th>"
                   for c, s in zip(shown.columns, text))
    rows = []
    for row in shown.itertuples(index=False, name=None):
        cells = []
        for v, s in zip(row, text):
            t = fmt_value(v)
            # long text (a reason, a message) wraps; short text and numbers never do
            cells.append(f'<td class="{"s w" if len(t) > 60 else "s"}">{escape(t)}</td>' if s
                         else f"<td>{escape(t)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    more = ""
    if len(df) > max_rows or note:
        more = f'<p class="note">{escape(note or "")}{" " if note else ""}' + (
            f"(first {max_rows} of {len(df):,} rows)" if len(df) > max_rows else "") + "</p>"
    return (f'<div class="scroll"><table class="t"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{more}')


def records_table(records: list[dict], columns: list[str] | None = None) -> str:
    return html_table(pd.DataFrame.from_records(records, columns=columns))


def kv_list(pairs: list[tuple[str, object]]) -> str:
    items = "".join(f"<b>{escape(k)}</b><span>{escape(v)}</span>" for k, v in pairs if v is not None and v != "")
    return f'<div class="kv">{items}</div>'


def img_tag(png: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def new_figure(width_in: float, height_in: float):
    """A matplotlib figure on the Agg canvas (no pyplot: no global state, thread-safe)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def set_margins(fig, *, left: float, bottom: float, top: float = 0.35, right: float = 0.2, **space) -> None:
    """Fixed margins in inches: ``tight_layout`` would cost a second full draw of the figure."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, **space)


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def human_bytes(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
