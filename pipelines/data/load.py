"""Loading and validating bars.

Bars at rest are long ("tidy") tables with the columns ``timestamp, symbol, open, high, low,
close, volume`` (other names are mapped by ``data.columns``), in CSV or parquet, as one file or a
folder of files. Loading goes through Dask (pandas partitions on the CPU, cuDF on the GPU): each
file is read, renamed, parsed and row-checked as one partition, then rows are shuffled so that a
partition holds whole symbols, where the per-symbol checks run.

Validation. Schema problems (a path that is not a regular file or folder, a file that cannot be
read, missing, repeated or unexpected columns, a column of the wrong type, such as nested parquet
values or timestamps given as bare numbers, no rows at all, every row rejected) are errors naming
the file and column: :class:`DataError`. Bad rows are rejected, never dropped silently: each gets
one reason (the first rule it breaks, in the order of :data:`REASONS`) and goes to
``rejected.parquet`` with its file and row number.

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

Rows are returned sorted by (symbol, timestamp), whatever the input order.
"""
from __future__ import annotations

import logging
import math
import re
import unicodedata
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.config.schema import STANDARD_COLUMNS
from alphapulse.pipelines.errors import DataError

log = logging.getLogger(__name__)

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
_SUFFIXES = {".csv": "csv", ".csv.gz": "csv", ".csv.bz2": "csv", ".csv.zst": "csv",
             ".parquet": "parquet", ".pq": "parquet"}


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


@dataclass(frozen=True)
class InputFiles:
    """The files of an input path, their format, and the column mapping checked against them."""

    paths: tuple[Path, ...]
    format: str
    rename: dict[str, str]  # file column -> standard column


@dataclass
class LoadedBars:
    """Result of :func:`load_bars`.

    Attributes
    ----------
    bars : frame (pandas or cuDF) with the standard columns, sorted by (symbol, timestamp)
    rejected : pandas frame of rejected rows: source_file, source_row, reason, standard columns
    files : the input files, in the order ``source_file`` indexes
    """

    bars: object
    rejected: pd.DataFrame
    files: list[str]
    rows_read: int = 0
    stats: dict = field(default_factory=dict)


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    name = path.name.lower()
    for suffix, kind in _SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    if name == "manifest.json":
        raise DataError(f"{path.parent}: an AlphaPulse report inside the input folder; keep reports outside it")
    raise DataError(f"{path}: cannot tell the format from the extension; set data.format to csv or parquet")


def _few(names: list, limit: int = 10) -> str:
    """A list of column names for a message, at most ``limit`` of them (a hostile header can have
    thousands)."""
    shown = repr(list(names[:limit]))
    return shown if len(names) <= limit else f"{shown[:-1]}, ... ({len(names) - limit:,} more)]"


def _arrow_type_problem(column: str, typ) -> str | None:
    """Why a parquet column of arrow type ``typ`` cannot be the standard ``column`` (None: it can)."""
    import pyarrow as pa

    t = pa.types
    if t.is_dictionary(typ):
        typ = typ.value_type
    text = t.is_string(typ) or t.is_large_string(typ) or getattr(t, "is_string_view", lambda _: False)(typ)
    if t.is_null(typ) or text:
        return None
    if column == "timestamp":
        if t.is_timestamp(typ) or t.is_date(typ):
            return None
        if t.is_integer(typ) or t.is_floating(typ) or t.is_decimal(typ):
            return (f"holds numbers ({typ}); give timestamps as a timestamp/date type or ISO 8601 text "
                    "(bare numbers are ambiguous: seconds, milliseconds or nanoseconds since 1970?)")
    elif column == "symbol":
        if t.is_integer(typ) or t.is_floating(typ):
            return None
    elif t.is_integer(typ) or t.is_floating(typ) or t.is_decimal(typ):
        return None
    wanted = {"timestamp": "dates or text", "symbol": "text or numbers"}.get(column, "numbers")
    return f"has dtype {typ}; expected {wanted}"


def _file_columns(path: Path, kind: str) -> list[tuple[str, object]]:
    """(name, arrow type) of each column; the type is None for CSV (known only once parsed)."""
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            return list(zip(schema.names, schema.types))
        return [(c, None) for c in pd.read_csv(path, nrows=0).columns]
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header, no rows)") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except Exception as e:
        raise DataError(f"{path}: cannot read as {kind}: {type(e).__name__}: {e}") from None


def inspect_input(path: str | Path, *, columns: dict[str, str] | None = None, fmt: str = "auto") -> InputFiles:
    """Check an input path before any heavy work: it exists, its files have a known format and,
    once renamed by ``columns`` (standard name -> file name), exactly the standard columns.

    Cheap (reads headers and parquet schemas only), so the CLI calls it before Prefect starts.
    """
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise DataError(f"{path}: a broken or looping symbolic link")
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        if not files:
            raise DataError(f"{path}: folder holds no data files")
    elif path.is_file():
        files = [path]
    else:  # a FIFO or a device would block or never end
        raise DataError(f"{path}: not a regular file or folder")
    kinds = {_format_of(p, fmt) for p in files}
    if len(kinds) > 1:
        raise DataError(f"{path}: mixes CSV and parquet files; give one format per input")
    kind = kinds.pop()
    mapping = dict(columns or {})
    rename = {v: k for k, v in mapping.items()}
    seen: set[str] = set()
    for p in files:
        typed = _file_columns(p, kind)
        cols = [c for c, _ in typed]
        seen.update(cols)
        # pandas renames a repeated CSV header "close" to "close.1"; parquet keeps both names
        dupes = sorted({c for c in cols if cols.count(c) > 1} |
                       {m.group(1) for c in cols if (m := re.fullmatch(r"(.+)\.\d+", str(c))) and m.group(1) in cols})
        if dupes:
            raise DataError(f"{p}: duplicate column name(s) {_few(dupes)}")
        named = _standard_names(p, cols, mapping)
        for (c, typ), n in zip(typed, named):
            problem = None if typ is None else _arrow_type_problem(n, typ)
            if problem:
                raise DataError(f"{p}: column {c!r} {problem}")
    # only the mappings the files use: a file that already says "symbol" keeps it (readers that
    # look a standard column up by its file name, such as alphapulse.pipelines.data.partitions, find it)
    return InputFiles(tuple(files), kind, {k: v for k, v in rename.items() if k in seen})


def _standard_names(where, cols: list, mapping: dict) -> list:
    """The standard name of each of ``cols`` under ``mapping`` (standard -> file name), or a
    :class:`DataError` naming ``where`` when a standard column is missing, doubled or foreign."""
    rename = {v: k for k, v in mapping.items()}
    named = [rename.get(c, c) for c in cols]
    for std in STANDARD_COLUMNS:
        both = [c for c, n in zip(cols, named) if n == std]
        if len(both) > 1:  # e.g. "Name" mapped to symbol in a file that also has "symbol"
            raise DataError(f"{where}: columns {both} would both be {std!r} (data.columns maps {std}: "
                            f"{mapping[std]!r}); drop one or change the mapping")
    missing = [c for c in STANDARD_COLUMNS if c not in named]
    extra = [c for c, n in zip(cols, named) if n not in STANDARD_COLUMNS]
    if missing:
        shown = [f"{c!r} (mapped from {mapping[c]!r})" if c in mapping else repr(c) for c in missing]
        raise DataError(f"{where}: missing column(s) {', '.join(shown)}; found {_few(cols)}. "
                        "Map other names in data.columns")
    if extra:
        raise DataError(f"{where}: unexpected column(s) {_few(extra)}; expected {list(STANDARD_COLUMNS)} "
                        f"(map other names in data.columns)")
    return named


def load_frame(frame, *, columns: dict[str, str] | None = None, lib=pd, source: str = "frame") -> LoadedBars:
    """Validate and sort bars already in memory by the same rules as :func:`load_bars`.

    Parameters
    ----------
    frame : pandas or cuDF frame of long bars (any index; the columns of :data:`STANDARD_COLUMNS`,
        other names mapped by ``columns``, standard name -> frame name)
    lib : the frame library to compute in (``Backend.frames``); a pandas frame is moved to cuDF
        for a GPU backend
    source : how messages and ``LoadedBars.files`` name the frame

    Returns
    -------
    LoadedBars; ``source_row`` is the 0-based position in ``frame``.
    """
    if not hasattr(frame, "columns") or not hasattr(frame, "iloc"):
        raise DataError(f"{source}: expected a DataFrame of bars, got {type(frame).__name__}")
    cols = [str(c) for c in frame.columns]
    if len(set(cols)) != len(cols):
        raise DataError(f"{source}: duplicate column name(s) {_few(sorted({c for c in cols if cols.count(c) > 1}))}")
    named = _standard_names(source, cols, dict(columns or {}))
    raw = frame.reset_index(drop=True)
    raw.columns = named
    on_gpu = type(raw).__module__.split(".", 1)[0] == "cudf"
    if frames.is_cudf(lib) and not on_gpu:
        raw = lib.from_pandas(raw)
    elif on_gpu and not frames.is_cudf(lib):
        raw = frames.to_host(raw)
    checked = check_symbols(check_rows(raw, lib=lib, source=source))
    inputs = InputFiles((Path(source),), "frame", {})
    return require_accepted(split_checked(checked, inputs))


def _meta(lib):
    cols = {"timestamp": np.dtype("datetime64[ns]"), "symbol": str, **{c: np.float64 for c in NUMERIC},
            "source_file": np.int32, "source_row": np.int64, "code": np.int16}
    return lib.DataFrame({c: pd.Series([], dtype=t) for c, t in cols.items()})


def _read_and_check(item, *, inputs: InputFiles, lib):
    """Read one file and apply the row rules: one Dask partition."""
    index, path = item
    try:
        if inputs.format == "parquet":
            raw = frames.read_parquet(lib, path)
        else:
            symbol = next((f for f, std in inputs.rename.items() if std == "symbol"), "symbol")
            raw = frames.read_csv(lib, path, text_columns=(symbol,))
    except FileNotFoundError:
        raise  # checked by inspect_input, gone since (a flaky mount): IO, which the flows retry
    except Exception as e:
        raise DataError(f"{path}: cannot read as {inputs.format}: {type(e).__name__}: {e}") from None
    raw = raw.rename(columns=inputs.rename)
    return check_rows(raw, lib=lib, source_file=index, source=str(path))


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


def _group_by_symbol(ddf, lib, symbols_per_partition: int):
    """Shuffle so that each partition holds whole symbols, about ``symbols_per_partition`` each."""
    if ddf.npartitions == 1:
        return ddf  # one file: its partition already holds whole symbols
    symbols = ddf["symbol"].dropna().unique().compute()
    n_groups = max(1, math.ceil(len(symbols) / symbols_per_partition))
    sorted_symbols = np.sort(frames.to_host(symbols).to_numpy(dtype=object).astype(str))

    def assign(part):
        pos = np.searchsorted(sorted_symbols, frames.to_host(part["symbol"]).fillna("").to_numpy(dtype=str))
        part = part.copy()
        part["_group"] = lib.Series(pos // symbols_per_partition, index=part.index)
        return part

    ddf = ddf.map_partitions(assign, meta={**ddf._meta.dtypes.to_dict(), "_group": np.int64})
    return ddf.shuffle(on="_group", npartitions=n_groups).drop(columns="_group")


def load_bars(inputs: InputFiles, *, lib=pd, symbols_per_partition: int = 100, scheduler=None) -> LoadedBars:
    """Read, validate and sort the bars of ``inputs`` (from :func:`inspect_input`).

    Parameters
    ----------
    inputs : InputFiles
    lib : the dataframe module, pandas or cuDF (``Backend.frames``)
    symbols_per_partition : whole symbols per Dask partition for the per-symbol checks
    scheduler : a Dask scheduler (None: Dask's default; a distributed Client when one is active)

    Returns
    -------
    LoadedBars
    """
    import dask
    import dask.dataframe as dd

    if frames.is_cudf(lib):
        import dask_cudf  # noqa: F401  (registers cuDF partitions with Dask)
    items = list(enumerate(str(p) for p in inputs.paths))
    ddf = dd.from_map(_read_and_check, items, inputs=inputs, lib=lib, meta=_meta(lib),
                      enforce_metadata=False, divisions=[None] * (len(items) + 1))
    ddf = _group_by_symbol(ddf, lib, symbols_per_partition)
    ddf = ddf.map_partitions(check_symbols, meta=_meta(lib))
    with dask.config.set(scheduler=scheduler) if scheduler else nullcontext():
        checked = ddf.compute()
    return require_accepted(split_checked(checked, inputs, partitions=int(ddf.npartitions)))


def require_accepted(loaded: LoadedBars) -> LoadedBars:
    """``loaded`` itself, or a :class:`DataError` when every row was rejected: a report of nothing
    would look like a run that worked. The message gives the commonest reasons and the first row."""
    if loaded.stats["rows_accepted"]:
        return loaded
    counts = loaded.stats["rejected_by_reason"]
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k}: {v:,}" for k, v in top[:3]) + (f", {len(top) - 3} more reasons" if len(top) > 3 else "")
    first = loaded.rejected.sort_values(["source_file", "source_row"]).iloc[0]
    where = f"{loaded.files[int(first['source_file'])]} row {int(first['source_row'])} (0-based data row)"
    raise DataError(f"{', '.join(loaded.files)}: all {loaded.stats['rows_read']:,} rows rejected ({shown}); "
                    f"first: {where}: {first['reason']}")


def split_checked(checked, inputs: InputFiles, *, partitions: int = 1) -> LoadedBars:
    """Accepted bars and rejected rows (with their reasons) of checked rows (``check_rows`` then
    ``check_symbols``), sorted by (symbol, timestamp); shared by :func:`load_bars` and the daily
    pipeline's partition loader (``alphapulse.pipelines.data.partitions``)."""
    rows_read = len(checked)
    if rows_read == 0:
        raise DataError(f"{', '.join(str(p) for p in inputs.paths)}: no rows")
    checked = checked.sort_values(["symbol", "timestamp", "source_file", "source_row"]).reset_index(drop=True)
    ok = checked["code"] == 0
    bars = checked[ok][list(STANDARD_COLUMNS)].reset_index(drop=True)
    rejected = frames.to_host(checked[~ok])
    reasons = pd.Categorical.from_codes(rejected["code"].to_numpy(), categories=REASONS)
    rejected = rejected.assign(reason=reasons.astype(str))
    rejected = rejected[["source_file", "source_row", "reason", *STANDARD_COLUMNS]].reset_index(drop=True)
    by_reason = rejected["reason"].value_counts().sort_index().to_dict()
    stats = {"rows_read": rows_read, "rows_accepted": int(len(bars)), "rows_rejected": int(len(rejected)),
             "rejected_by_reason": {k: int(v) for k, v in by_reason.items()},
             "symbols": int(bars["symbol"].nunique()),
             "partitions": partitions}
    if len(bars):
        stats["first_timestamp"] = str(pd.Timestamp(bars["timestamp"].min()))
        stats["last_timestamp"] = str(pd.Timestamp(bars["timestamp"].max()))
    if len(rejected):
        log.warning("rejected %d of %d rows: %s", len(rejected), rows_read,
                    ", ".join(f"{k}: {v}" for k, v in stats["rejected_by_reason"].items()))
    return LoadedBars(bars, rejected, [str(p) for p in inputs.paths], rows_read, stats)
