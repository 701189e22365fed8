"""The loader's row rules: each row of bars is coded by the first rule it breaks, never dropped.

Implements the bounds (:data:`MIN_PRICE`, :data:`MAX_PRICE`, :data:`MAX_VOLUME`,
:data:`EARLIEST`, :data:`FUTURE_SLACK`), the rejection reasons in the order the rules apply
(:data:`REASONS`), :func:`check_rows` (one file's rows: parsing and per-row rules) and
:func:`check_symbols` (a partition of whole symbols: order and duplicates). The loader
(:mod:`alphapulse.pipelines.data.load`) and the daily pipeline's partition reader
(:mod:`alphapulse.pipelines.data.partitions`) apply them.

Row rules, besides missing and unparseable values:

- timestamps: text is parsed as ISO 8601 (any offsets, converted to UTC; naive ones are taken as
  UTC), or, where that parses fewer rows, in the one format pandas infers from the column; rows in
  no such format are rejected. Text that writes no date is unparseable, never the run's clock:
  words without a digit (pandas reads "now" and "today" as the current time) and a time of day
  written first ("10:00", "10:00 1": pandas takes the missing date from today). Dates that start
  with day and month (03/04/2024) are read in the order some row proves (a first field over 12);
  when no row tells, the file is an error, never a guess. Timestamps before 1678 or more than a day
  after the run's UTC clock are rejected (a bar cannot come from the future; outside those bounds
  nanosecond timestamps overflow). Bare numbers are an error (seconds, milliseconds or nanoseconds
  since 1970?).
- symbols: text (a CSV's symbol column is read as text, so "0700" stays "0700"; integers and
  integral floats of a parquet integer column with gaps print as integers); in a CSV only an
  empty field is missing (the ticker "NA" is a ticker); blank ones, ones padded with whitespace
  and ones holding a character of Unicode category Cc (control), Cf (format: zero-width space,
  soft hyphen, byte-order mark, bidi controls), Zl or Zp (line and paragraph separators) or Zs
  other than the plain space (no-break and other odd spaces) are rejected, so that ``"AAA "`` or
  ``"AAA\\u200b"`` never becomes a second ``AAA`` that prints the same.
- prices must lie in [:data:`MIN_PRICE`, :data:`MAX_PRICE`] and volumes in [0,
  :data:`MAX_VOLUME`]: within these bounds the squares and window sums the indicators take stay
  finite and normal even in float32 (see the constants).
"""
from __future__ import annotations

import re
import unicodedata
import warnings

import numpy as np
import pandas as pd

from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.errors import DataError

PRICES = ("open", "high", "low", "close")
NUMERIC = PRICES + ("volume",)
MIN_PRICE = 1e-15
"""Smallest accepted price: its square (1e-30) is still a normal float32 (>= 1.2e-38)."""
MAX_PRICE = 1e15
"""Largest accepted price: a window sum of squares over 100,000 bars (1e35) stays below float32's
3.4e38 (1e308 passes ``isfinite`` but overflows the first square)."""
MAX_VOLUME = 1e18
"""Largest accepted volume: OBV's running sum over a million bars (1e24) stays finite in float32."""
EARLIEST = pd.Timestamp("1678-01-01")
"""Earliest accepted timestamp (datetime64[ns] starts in September 1677)."""
FUTURE_SLACK = pd.Timedelta(days=1)
"""How far past the run's UTC clock a timestamp may lie (local exchange times ahead of UTC)."""


def _reasons():
    reasons = ["ok", "bad_timestamp: unparseable or missing", OUT_OF_TIME, "missing_symbol", BAD_SYMBOL]
    for c in NUMERIC:
        reasons += [f"not_a_number: {c}", f"nan: {c}", f"inf: {c}"]
    reasons += [f"non_positive: {c}" for c in PRICES]
    reasons += ["negative: volume"]
    reasons += [f"out_of_range: {c} (outside [{MIN_PRICE:g}, {MAX_PRICE:g}])" for c in PRICES]
    reasons += [f"out_of_range: volume (above {MAX_VOLUME:g})"]
    reasons += ["high_below_low", "open_outside_low_high", "close_outside_low_high", DUPLICATE]
    return reasons


DUPLICATE = "duplicate: (symbol, timestamp) seen earlier"
OUT_OF_TIME = "bad_timestamp: before 1678 or more than a day in the future"
BAD_SYMBOL = "bad_symbol: blank, padded with whitespace or holding control, invisible or odd space characters"
REASONS: list[str] = _reasons()
"""Rejection reasons by code (0 = accepted), in the order the rules are applied."""
_CODE = {r: i for i, r in enumerate(REASONS)}


def check_rows(raw, *, lib, source_file: int = 0, source: str = "input"):
    """Parse the standard columns of ``raw`` and code each row by the first rule it breaks.

    Returns a frame with the parsed standard columns, ``source_file``, ``source_row`` (0-based
    data row in its file) and ``code`` (index into :data:`REASONS`; 0 = accepted).
    """
    n = len(raw)
    ts = _timestamps(lib, raw["timestamp"], source)
    # compared before the cast: a year-9999 timestamp of a coarser unit would overflow nanoseconds
    late = pd.Timestamp.now(tz="UTC").tz_localize(None) + FUTURE_SLACK
    out_of_time = (ts < EARLIEST) | (ts > late)
    out = lib.DataFrame({"timestamp": ts.mask(out_of_time).astype("datetime64[ns]")})
    sym = raw["symbol"]
    text = _symbol_text(lib, sym)
    out["symbol"] = text
    xp = _array_module(lib)
    code = xp.zeros(n, dtype=xp.int16)

    def flag(mask, reason):
        code[(code == 0) & mask] = _CODE[reason]

    flag(frames.isna(ts), "bad_timestamp: unparseable or missing")
    flag(frames.values(out_of_time.fillna(False)), OUT_OF_TIME)
    flag(frames.isna(sym), "missing_symbol")
    flag(xp.asarray(_bad_symbols(text)), BAD_SYMBOL)
    for c in NUMERIC:
        try:
            x = frames.to_float(lib, raw[c])
        except TypeError as e:
            raise DataError(f"{source}: column {c!r} has dtype {raw[c].dtype} ({e}); expected numbers") from None
        out[c] = x
        v = frames.values(x)
        nan = xp.isnan(v)
        if raw[c].dtype.kind not in "iuf":
            flag(nan & ~frames.isna(raw[c]), f"not_a_number: {c}")
        flag(nan, f"nan: {c}")
        flag(xp.isinf(v), f"inf: {c}")
    o, h, lo, cl, vol = (frames.values(out[c]) for c in NUMERIC)
    for c, v in zip(PRICES, (o, h, lo, cl)):
        flag(v <= 0, f"non_positive: {c}")
    flag(vol < 0, "negative: volume")
    for c, v in zip(PRICES, (o, h, lo, cl)):
        flag((v < MIN_PRICE) | (v > MAX_PRICE), f"out_of_range: {c} (outside [{MIN_PRICE:g}, {MAX_PRICE:g}])")
    flag(vol > MAX_VOLUME, f"out_of_range: volume (above {MAX_VOLUME:g})")
    flag(h < lo, "high_below_low")
    flag((o < lo) | (o > h), "open_outside_low_high")
    flag((cl < lo) | (cl > h), "close_outside_low_high")
    out["source_file"] = xp.full(n, source_file, dtype=xp.int32)
    out["source_row"] = xp.arange(n, dtype=xp.int64)
    out["code"] = code
    return out


def _timestamps(lib, s, source: str):
    """Timestamps of a raw column, naive UTC in whatever unit the parse gave (NaT where
    unparseable); see the module docstring for the rules."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.tz_localize(None)
    kind = s.dtype.kind
    if kind == "M":
        return s
    if kind in "iufcb":
        example = s.dropna().head(1)
        example = f", e.g. {frames.to_host(example).iloc[0]!r}" if len(example) else ""
        raise DataError(f"{source}: column 'timestamp' holds numbers ({s.dtype}{example}); give dates as text "
                        "such as 2024-01-02 or 2024-01-02T14:30:00Z, or a timestamp type (bare numbers are "
                        "ambiguous: seconds, milliseconds or nanoseconds since 1970?)")
    undated = _undated(s)
    if undated.any():
        s = s.mask(lib.Series(undated, index=s.index))
    if frames.is_cudf(lib):
        return frames.to_datetime(lib, s)
    iso = pd.to_datetime(s, errors="coerce", format="ISO8601", utc=True)
    if iso.isna().sum() > s.isna().sum():
        # not all ISO 8601: the column's own format (inferred from its first value) may fit more rows
        month_first = _parse_inferred(s, dayfirst=False)
        best = month_first if month_first.notna().sum() > iso.notna().sum() else iso
        first = s.dropna().head(1)
        first = str(frames.to_host(first).iloc[0]) if len(first) else ""
        if _DAY_MONTH.match(first):  # 03/04/2024: 3 April or March 4? The rows must tell.
            day_first = _parse_inferred(s, dayfirst=True)
            n_month, n_day = month_first.notna().sum(), day_first.notna().sum()
            differ = (day_first != month_first) & day_first.notna() & month_first.notna()
            if n_day == n_month > iso.notna().sum() and differ.any():
                i = int(np.flatnonzero(differ.to_numpy())[0])
                either = f"{month_first.iloc[i]:%Y-%m-%d} or {day_first.iloc[i]:%Y-%m-%d}"
                raise DataError(f"{source}: column 'timestamp': day and month order is ambiguous (row {i}, "
                                f"{str(s.iloc[i])!r}, is {either}, and no row tells which); give ISO 8601 dates "
                                "such as 2024-04-03")
            if n_day > max(n_month, iso.notna().sum()):
                best = day_first
        iso = best
    return iso.dt.tz_localize(None)


_UNDATED = re.compile(r"\s*(?:[0-9]{1,2}:[0-9]{2}|[^0-9]*$)")
"""Text that writes no date: no digit at all, or a time of day first."""


def _undated(s) -> np.ndarray:
    """NumPy bool mask of text timestamps that write no date (see :data:`_UNDATED`). On the host:
    one column per file, and the same regex engine on both backends."""
    host = s.to_pandas() if hasattr(s, "to_pandas") else s
    if host.dtype == object:
        host = host.astype("string")  # pyarrow reads a column of "10:00" as times of day, not text
    return host.str.match(_UNDATED.pattern).fillna(False).to_numpy(dtype=bool)


_DAY_MONTH = re.compile(r"\s*\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b")
"""A date that starts with day and month in either order (03/04/2024, 3.4.24, 03-04-2024)."""


def _parse_inferred(s, *, dayfirst: bool):
    """``s`` parsed in the format pandas infers from its first value (NaT where a row differs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": then it parses per row
        try:
            return pd.to_datetime(s, errors="coerce", utc=True, dayfirst=dayfirst)
        except (ValueError, TypeError, OverflowError):
            return pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")


def _symbol_text(lib, sym):
    """Symbols as text: integers print as integers, also where an integer column with gaps was read
    as floats (7203.0 -> "7203", as arrow's cast prints it)."""
    if str(sym.dtype) in ("str", "string", "object"):
        return sym
    if sym.dtype.kind != "f":
        return sym.astype(str)
    host = sym.to_pandas() if hasattr(sym, "to_pandas") else sym
    v = host.to_numpy(dtype=np.float64, na_value=np.nan)
    whole = np.isfinite(v) & (np.abs(v) < 2.0**53) & (v == np.floor(v))
    text = host.astype(str).to_numpy(dtype=object)
    text[whole] = v[whole].astype(np.int64).astype(str)
    return lib.Series(text, index=sym.index if lib is pd else None, dtype="str")


def _bad_symbols(text):
    """NumPy bool mask of symbols that are blank, padded with whitespace or hold a refused
    character (:data:`REFUSED_CATEGORIES`, or a space other than U+0020).

    Judged once per distinct symbol, on the host: a file holds few symbols and many rows."""
    host = text.to_pandas() if hasattr(text, "to_pandas") else text
    bad = [u for u in host.dropna().unique() if _bad_symbol(str(u))]
    return host.isin(bad).to_numpy(dtype=bool) if bad else np.zeros(len(host), dtype=bool)


REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Unicode categories a symbol may not hold: control, format (invisible: zero-width space and
joiner, soft hyphen, byte-order mark, bidi controls), line and paragraph separators. Spaces (Zs)
other than U+0020 are refused too: a no-break space makes a symbol that prints like another."""


def _bad_symbol(s: str) -> bool:
    return (not s or s != s.strip()
            or any(unicodedata.category(ch) in REFUSED_CATEGORIES
                   or (ch != " " and unicodedata.category(ch) == "Zs") for ch in s))


def _array_module(lib):
    if frames.is_cudf(lib):
        import cupy

        return cupy
    return np


def check_symbols(part):
    """Sort a partition of whole symbols and reject repeated (symbol, timestamp) bars.

    The first accepted occurrence in file order is kept; later accepted ones are rejected as
    duplicates (a rejected row never hides a good one).
    """
    part = part.assign(_bad=part["code"] != 0)
    part = part.sort_values(["symbol", "timestamp", "_bad", "source_file", "source_row"])
    dup = part.duplicated(subset=["symbol", "timestamp", "_bad"], keep="first") & ~part["_bad"]
    part["code"] = part["code"].mask(dup, _CODE[DUPLICATE])
    return part.drop(columns="_bad").sort_values(["symbol", "timestamp", "source_file", "source_row"])
