"""Long frame <-> panel: the one conversion between bars at rest and arrays in compute.

A :class:`Panel` holds, for each field, an array of shape (n_bars, n_symbols): rows are the
union of all timestamps (sorted), columns the symbols (sorted), NaN where a symbol has no bar.
Nothing is forward-filled. The arrays live on the backend's device (NumPy or CuPy) in its dtype
and memory order; this is the load-side device boundary, :func:`panel_to_frame` the report side.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphapulse.pipelines.data import frames as frames


@dataclass
class Panel:
    """Aligned time x symbols arrays.

    Attributes
    ----------
    timestamps : index of length n_bars (pandas or cuDF), sorted
    symbols : index of length n_symbols, sorted
    fields : dict of str to array of shape (n_bars, n_symbols)
    rows : (time codes, symbol codes) of the source frame's rows, each of length n_rows: where
        each row of the long frame sits in the panel
    """

    timestamps: object
    symbols: object
    fields: dict
    rows: tuple

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.timestamps), len(self.symbols)


def bars_to_panel(bars, *, fields=("open", "high", "low", "close", "volume"), dtype=np.float64,
                  xp=np, order: str = "C") -> Panel:
    """Pivot a long frame (one row per (symbol, timestamp), no duplicates) into a :class:`Panel`.

    Parameters
    ----------
    bars : pandas or cuDF frame with ``timestamp``, ``symbol`` and ``fields`` columns
    fields : columns to pivot
    dtype : float dtype of the arrays
    xp : NumPy or CuPy (must match the frame: pandas -> NumPy, cuDF -> CuPy)
    order : "C" (time-major rows) or "F" (column-contiguous series); see ``Backend.panel_order``
    """
    lib = frames.module_of(bars)
    t_codes, timestamps = lib.factorize(bars["timestamp"], sort=True)
    s_codes, symbols = lib.factorize(bars["symbol"], sort=True)
    t_codes, s_codes = frames.as_array(t_codes), frames.as_array(s_codes)
    shape = (len(timestamps), len(symbols))
    arrays = {}
    for name in fields:
        arr = xp.full(shape, np.nan, dtype=dtype, order=order)
        arr[t_codes, s_codes] = frames.values(bars[name]).astype(dtype, copy=False)
        arrays[name] = arr
    return Panel(frames.as_index(lib, timestamps), frames.as_index(lib, symbols), arrays, (t_codes, s_codes))


def panel_to_frame(panel: Panel, values: dict, *, keys) -> object:
    """Long frame of ``values`` at the panel's source rows.

    Parameters
    ----------
    panel : the Panel the values were computed on
    values : dict of str to array of shape (n_bars, n_symbols)
    keys : the source frame's ``timestamp`` and ``symbol`` columns (a frame), in source-row order

    Returns
    -------
    frame with ``keys``' columns then one column per entry of ``values``, one row per source row.
    """
    t_codes, s_codes = panel.rows
    out = keys.reset_index(drop=True)
    lib = frames.module_of(out)
    # one concat, not an insert per column: past 100 columns pandas warned at every insert
    columns = lib.DataFrame({name: arr[t_codes, s_codes] for name, arr in values.items()}, index=out.index)
    return lib.concat([out, columns], axis=1)
