"""Small inline SVG charts for ``summary.html``: lines, stacked shares and trade markers.

Implements :func:`line_chart` and :func:`stacked_chart`. Inline SVG rather than matplotlib PNGs
because a daily page draws a dozen small charts: each is a few kilobytes of text drawn in well
under a millisecond, stays sharp when zoomed, and needs no plotting library in the run. Every
label is HTML-escaped; NaN breaks a line instead of being drawn as zero.
"""
from __future__ import annotations

import html

import numpy as np

PALETTE = ("#1f4e86", "#e07b28", "#2e8b57", "#b23a48", "#7a5195", "#6b7280")
_W, _H, _L, _R, _T, _B = 560, 190, 46, 10, 18, 22  # size and margins (left, right, top, bottom)


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _scale(lo: float, hi: float, top: float, bottom: float):
    span = hi - lo if hi > lo else 1.0
    return lambda v: bottom - (v - lo) / span * (bottom - top)


def _segments(xs, ys) -> list[str]:
    """Polyline point lists of the finite runs of ``ys`` (NaN breaks the line)."""
    out, run = [], []
    for x, y in zip(xs, ys):
        if np.isfinite(y):
            run.append(f"{x:.1f},{y:.1f}")
        elif run:
            out.append(" ".join(run))
            run = []
    if run:
        out.append(" ".join(run))
    return out


def _frame(labels, lo, hi, y, *, top, bottom, pct=False) -> list[str]:
    """Axes box, the y range's two labels and the first/last x labels."""
    f = (lambda v: f"{v:.0%}") if pct else _fmt
    parts = [f'<rect x="{_L}" y="{top}" width="{_W - _L - _R}" height="{bottom - top}" fill="none" stroke="#d0d5dc"/>',
             f'<text x="{_L - 4}" y="{y(hi) + 4:.1f}" text-anchor="end">{_e(f(hi))}</text>',
             f'<text x="{_L - 4}" y="{y(lo):.1f}" text-anchor="end">{_e(f(lo))}</text>']
    if len(labels):
        parts += [f'<text x="{_L}" y="{_H - 6}">{_e(labels[0])}</text>',
                  f'<text x="{_W - _R}" y="{_H - 6}" text-anchor="end">{_e(labels[-1])}</text>']
    return parts


def _legend(names_colors) -> list[str]:
    parts, x = [], _L
    for name, color in names_colors:
        parts.append(f'<rect x="{x}" y="4" width="10" height="3" fill="{color}"/>'
                     f'<text x="{x + 14}" y="10">{_e(name)}</text>')
        x += 22 + 6.5 * len(str(name))
    return parts


def _svg(title: str, parts: list[str]) -> str:
    return (f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
            f'role="img" font-size="10" font-family="system-ui,sans-serif" fill="#3b4552">'
            f"<title>{_e(title)}</title>{''.join(parts)}</svg>")


def line_chart(title: str, labels, lines, *, markers=(), pct: bool = False, lo: float | None = None,
               hi: float | None = None) -> str:
    """An SVG line chart.

    Parameters
    ----------
    title : the chart's accessible title (shown as a tooltip)
    labels : x labels, one per point (the first and the last are drawn)
    lines : list of (name, values) with values of the labels' length; NaN breaks a line
    markers : list of (index, value, kind): kind ``long`` (up triangle), ``short`` (down
        triangle) or ``exit`` (a cross), drawn at point ``index``
    pct : y labels as percentages
    lo, hi : the y range (default: the data's)
    """
    n = len(labels)
    vals = [np.asarray(v, dtype=np.float64) for _, v in lines]
    finite = np.concatenate([v[np.isfinite(v)] for v in vals] + [np.array([m[1] for m in markers], dtype=float)])
    lo = float(finite.min()) if lo is None and finite.size else (0.0 if lo is None else lo)
    hi = float(finite.max()) if hi is None and finite.size else (1.0 if hi is None else hi)
    top, bottom = _T, _H - _B
    y = _scale(lo, hi, top + 2, bottom - 2)
    step = (_W - _L - _R) / max(n - 1, 1)
    xs = [_L + i * step for i in range(n)]
    parts = _frame(labels, lo, hi, y, top=top, bottom=bottom, pct=pct)
    colors = []
    for k, ((name, _), v) in enumerate(zip(lines, vals)):
        color = PALETTE[k % len(PALETTE)]
        colors.append((name, color))
        for seg in _segments(xs, [y(t) if np.isfinite(t) else np.nan for t in v]):
            width = 1.6 if k == 0 else 1.1
            parts.append(f'<polyline points="{seg}" fill="none" stroke="{color}" stroke-width="{width}"/>')
    for i, v, kind in markers:
        if not (0 <= i < n and np.isfinite(v)):
            continue
        cx, cy = xs[i], y(v)
        if kind == "long":
            parts.append(f'<path d="M{cx:.1f},{cy - 7:.1f} l5,9 h-10 z" fill="#2e8b57">'
                         "<title>enter long</title></path>")
        elif kind == "short":
            parts.append(f'<path d="M{cx:.1f},{cy + 7:.1f} l5,-9 h-10 z" fill="#b23a48">'
                         "<title>enter short</title></path>")
        else:
            parts.append(f'<path d="M{cx - 4:.1f},{cy - 4:.1f} l8,8 m0,-8 l-8,8" stroke="#3b4552" stroke-width="1.6">'
                         f"<title>exit</title></path>")
    return _svg(title, parts + _legend(colors))


def stacked_chart(title: str, labels, layers) -> str:
    """Shares (0..1) stacked from the bottom: ``layers`` is a list of (name, values); a NaN point is
    drawn as a gap in every layer."""
    n = len(labels)
    top, bottom = _T, _H - _B
    y = _scale(0.0, 1.0, top, bottom)
    step = (_W - _L - _R) / max(n - 1, 1)
    xs = np.array([_L + i * step for i in range(n)])
    vals = np.array([np.asarray(v, dtype=np.float64) for _, v in layers]).reshape(len(layers), n)
    ok = np.isfinite(vals).all(axis=0)
    base = np.zeros(n)
    parts = _frame(labels, 0.0, 1.0, y, top=top, bottom=bottom, pct=True)
    colors = []
    for k, (name, _) in enumerate(layers):
        color = PALETTE[k % len(PALETTE)]
        colors.append((name, color))
        upper = base + np.where(ok, vals[k], 0.0)
        for run in _runs(ok):
            up = " ".join(f"{xs[i]:.1f},{y(upper[i]):.1f}" for i in run)
            down = " ".join(f"{xs[i]:.1f},{y(base[i]):.1f}" for i in reversed(run))
            parts.append(f'<polygon points="{up} {down}" fill="{color}" fill-opacity="0.75"/>')
        base = upper
    return _svg(title, parts + _legend(colors))


def _runs(ok) -> list[list[int]]:
    out, run = [], []
    for i, good in enumerate(ok):
        if good:
            run.append(i)
        elif run:
            out.append(run)
            run = []
    if run:
        out.append(run)
    return out
