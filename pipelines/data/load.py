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

The row rules (timestamps, symbols, price and volume bounds) are in
:mod:`alphapulse.pipelines.data.rules`.

Rows are returned sorted by (symbol, timestamp), whatever the input order.
"""
from __future__ import annotations

import logging
import math
import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse.pipelines.config.schema import STANDARD_COLUMNS
from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.data.rules import NUMERIC, REASONS, check_rows, check_symbols
from alphapulse.pipelines.errors import DataError

log = logging.getLogger(__name__)

_SUFFIXES = {".csv": "csv", ".csv.gz": "csv", ".csv.bz2": "csv", ".csv.zst": "csv",
             ".parquet": "parquet", ".pq": "parquet"}


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
    scheduler : a Dask scheduler (None: Dask's default; a distributed Client when one is active).
        Several files are read and checked through Dask; one file is read in this process.

    Returns
    -------
    LoadedBars
    """
    items = list(enumerate(str(p) for p in inputs.paths))
    if len(items) == 1:
        # one file is one partition of whole symbols, and compute() would gather it here anyway: Dask
        # would add only its import (about a second, more than a day's store run computes)
        checked = _as_dask_strings(check_symbols(_read_and_check(items[0], inputs=inputs, lib=lib)), lib)
        return require_accepted(split_checked(checked, inputs, partitions=1))
    import dask
    import dask.dataframe as dd

    if frames.is_cudf(lib):
        import dask_cudf  # noqa: F401  (registers cuDF partitions with Dask)
    ddf = dd.from_map(_read_and_check, items, inputs=inputs, lib=lib, meta=_meta(lib),
                      enforce_metadata=False, divisions=[None] * (len(items) + 1))
    ddf = _group_by_symbol(ddf, lib, symbols_per_partition)
    ddf = ddf.map_partitions(check_symbols, meta=_meta(lib))
    with dask.config.set(scheduler=scheduler) if scheduler else nullcontext():
        checked = ddf.compute()
    return require_accepted(split_checked(checked, inputs, partitions=int(ddf.npartitions)))


def _as_dask_strings(frame, lib):
    """Text columns as Dask's ``dataframe.convert-string`` leaves them (pyarrow strings, NA-backed):
    one file read in process gives the same frames as several read through Dask."""
    if frames.is_cudf(lib):
        return frame
    text = {c: pd.StringDtype("pyarrow") for c, t in frame.dtypes.items()
            if pd.api.types.is_object_dtype(t) or isinstance(t, pd.StringDtype)}
    return frame.astype(text) if text else frame


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
