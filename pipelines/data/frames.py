"""The few places where pandas and cuDF differ, in one module.

Everything else uses the API the two share. ``lib`` is the dataframe module of the run's backend
(``Backend.frames``): ``pandas`` or ``cudf``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def is_cudf(lib) -> bool:
    return lib.__name__ == "cudf"


def read_csv(lib, path, *, text_columns=()):
    """Types inferred by a fast parser (pyarrow on the CPU, libcudf on the GPU). A column with a
    stray non-numeric value arrives as text; :func:`to_float` then rejects just those rows.

    Only an empty field is missing: the parsers' default null spellings ("NA", "NULL", "N/A", ...)
    are real tickers too. ``text_columns`` are read as text whatever they look like (a symbol
    "0700" stays "0700", not the integer 700); "nan" and "inf" still parse as floats in numbers."""
    if is_cudf(lib):
        return lib.read_csv(path, dtype={c: "str" for c in text_columns} or None, keep_default_na=False,
                            na_values=[""])
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    options = pa_csv.ConvertOptions(strings_can_be_null=True, null_values=[""],
                                    column_types={c: pa.string() for c in text_columns})
    table = pa_csv.read_csv(path, convert_options=options)
    return table.to_pandas(date_as_object=False)


def read_parquet(lib, path):
    return lib.read_parquet(path)


def write_computed(frame, path, *, row_group_size: int | None = None) -> None:
    """A frame of computed values (indicators, recurrence state) as parquet, without a row index.

    On the host, only the columns that are not floats are dictionary-encoded. Computed floats have
    about as many distinct values as rows, so pyarrow's dictionary outgrows its page limit and falls
    back to plain encoding after paying for it: a 2 M-row file of 20 indicators takes 3.7x the write
    time, 2x the read time and 1.25x the size with it (``benchmarks/parquet_dictionary.py``). Bars
    from a vendor are not written here: their prices repeat, and there the dictionary makes files
    smaller.
    libcudf encodes on the device and keeps its defaults.
    """
    if is_cudf(module_of(frame)):
        frame.to_parquet(path, index=False, row_group_size_rows=row_group_size)
        return
    frame.to_parquet(path, index=False, row_group_size=row_group_size,
                     use_dictionary=[str(c) for c, t in frame.dtypes.items() if t.kind != "f"])


def to_datetime(lib, s):
    """Parsed timestamps; NaT where unparseable. Time-zone-aware input becomes naive UTC."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC").dt.tz_localize(None)
    elif s.dtype.kind == "M":
        out = s
    else:
        out = lib.to_datetime(s, errors="coerce")
        if isinstance(out.dtype, pd.DatetimeTZDtype):
            out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.astype("datetime64[ns]")


def to_float(lib, s):
    """float64 values; NaN where the text is not a number."""
    if s.dtype.kind in "iuf":
        return s.astype(np.float64)
    if s.dtype.kind == "b":
        raise TypeError("boolean")
    return lib.to_numeric(s, errors="coerce").astype(np.float64)


def to_host(frame) -> pd.DataFrame:
    """A pandas frame (a no-op on the CPU): the report boundary."""
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def values(series):
    """The series' values as a NumPy (pandas) or CuPy (cuDF) array; nulls become NaN.

    cuDF keeps missing floats as nulls (not NaN) and refuses ``.values`` on a column with nulls.
    """
    if hasattr(series, "to_cupy"):
        return series.to_cupy(na_value=np.nan) if series.dtype.kind == "f" else series.to_cupy()
    return series.values


def isna(series):
    """Null mask as a NumPy (pandas) or CuPy (cuDF) bool array."""
    return series.isna().values


def module_of(frame):
    """pandas or cudf, by the frame's type."""
    if type(frame).__module__.split(".", 1)[0] == "cudf":
        import cudf

        return cudf
    return pd


def as_array(x):
    """Codes from ``factorize`` as an array (NumPy for pandas, CuPy for cuDF)."""
    return x.values if hasattr(x, "values") and not isinstance(x, np.ndarray) else x


def as_index(lib, uniques):
    """Uniques from ``factorize`` as an Index of the frame library."""
    return uniques if isinstance(uniques, lib.Index) else lib.Index(uniques)
