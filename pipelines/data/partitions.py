"""Partitions of whole symbols, for work larger than memory.

A partition is a sorted range of whole symbols with about ``bars_per_partition`` bars: every bar
of a symbol is in its partition, whichever files (symbol groups, months, ...) hold them, so no
lookback is ever cut and no overlap is needed. Symbols are regrouped whole, never split.

- :func:`plan_partitions`: scans the symbol column of parquet inputs, row group by row group
  (bounded memory), and groups the sorted symbols into partitions. CSV input, or input that fits
  one partition, is one whole partition (loaded by :func:`alphapulse.pipelines.data.load.load_bars`).
- :func:`load_partition`: reads only the partition's rows (row groups whose symbol statistics
  cannot hold them are skipped), keeping each row's file and row number, and validates them with
  the loader's own rules (:func:`alphapulse.pipelines.data.rules.check_rows`, ``check_symbols``), so accepted and
  rejected rows are exactly those of a whole load.

Memory: one partition's rows plus one row group at a time. Rows with no symbol go to the last
partition (where they sort in a whole load) and are rejected there.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.data.load import DataError, InputFiles, LoadedBars, split_checked
from alphapulse.pipelines.data.rules import check_rows, check_symbols

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Partition:
    """One unit of work.

    Attributes
    ----------
    index : position in the plan (0-based)
    symbols : sorted symbols of the partition; empty for the whole input
    files : indices into ``InputFiles.paths`` of the files holding some of them
    bars : rows of those symbols (rejected ones included)
    nulls : whether rows without a symbol belong here
    fingerprint : sha256 of the files' (index, path, size, mtime_ns) and the symbols: changes when
        an input file changes, or moves in the input's file order (the cache key of a partition's results)
    """

    index: int
    symbols: tuple[str, ...]
    files: tuple[int, ...]
    bars: int
    nulls: bool
    fingerprint: str

    @property
    def whole(self) -> bool:
        return not self.symbols

    def label(self, total: int) -> str:
        if self.whole:
            return "the whole input"
        return f"partition {self.index + 1} of {total} ({self.symbols[0]}..{self.symbols[-1]})"


def input_fingerprint(inputs: InputFiles) -> str:
    """sha256 of every input file's (index, path, size, mtime_ns): changes when the input does."""
    return _fingerprint(inputs, range(len(inputs.paths)), ())


def _fingerprint(inputs: InputFiles, files, symbols) -> str:
    h = hashlib.sha256()
    for i in files:
        p = inputs.paths[i]
        st = os.stat(p)
        # the index too: rejected rows name their file by it, so a file added before it is a change
        h.update(f"{i}\0{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update("\0".join(symbols).encode())
    return h.hexdigest()


def _symbol_column(inputs: InputFiles) -> str:
    """The symbol column's name in the files."""
    return next((src for src, std in inputs.rename.items() if std == "symbol"), "symbol")


def _symbol_strings(column) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) \
        else pc.cast(column, pa.string())


def _read_error(path, e: Exception) -> Exception:
    if isinstance(e, OSError) and not type(e).__module__.startswith("pyarrow"):
        return e  # a file that vanished or cannot be opened: IO, worth a retry
    return DataError(f"{path}: cannot read as parquet: {type(e).__name__}: {e}")


def plan_partitions(inputs: InputFiles, *, bars_per_partition: int) -> list[Partition]:
    """Partitions of whole symbols, about ``bars_per_partition`` bars each (a symbol with more
    bars is a partition on its own); one whole partition for CSV input or input that fits one."""
    whole = [Partition(0, (), tuple(range(len(inputs.paths))), 0, True,
                       _fingerprint(inputs, range(len(inputs.paths)), ()))]
    if inputs.format != "parquet":
        return whole
    import pyarrow.parquet as pq

    total = 0
    for path in inputs.paths:  # footers only: input that fits one partition is not scanned
        try:
            total += pq.read_metadata(path).num_rows
        except Exception as e:
            raise _read_error(path, e) from None
    if total <= bars_per_partition:
        return whole
    column = _symbol_column(inputs)
    counts: dict[str, int] = {}
    in_file: dict[str, set[int]] = {}
    null_files: set[int] = set()
    for i, path in enumerate(inputs.paths):
        try:
            pf = pq.ParquetFile(path)
            for rg in range(pf.num_row_groups):
                col = _symbol_strings(pf.read_row_group(rg, columns=[column]).column(0))
                if col.null_count:
                    null_files.add(i)
                vc = col.value_counts()
                for value, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                    if value is not None:
                        counts[value] = counts.get(value, 0) + n
                        in_file.setdefault(value, set()).add(i)
        except Exception as e:
            raise _read_error(path, e) from None
    parts, group, bars = [], [], 0
    for s in sorted(counts):
        if group and bars + counts[s] > bars_per_partition:
            parts.append((group, bars))
            group, bars = [], 0
        group.append(s)
        bars += counts[s]
    if group or not parts:
        parts.append((group, bars))
    out = []
    for k, (symbols, bars) in enumerate(parts):
        last = k == len(parts) - 1
        files = sorted(set().union(*(in_file[s] for s in symbols)) | (null_files if last else set()))
        out.append(Partition(k, tuple(symbols), tuple(files), bars, last,
                             _fingerprint(inputs, files, symbols)))
    log.info("%d partitions of whole symbols (%s bars in %d files, about %s a partition)", len(out),
             f"{total:,}", len(inputs.paths), f"{bars_per_partition:,}")
    return out


def _stats_exclude(stats, lo: str, hi: str) -> bool:
    """Whether a row group's symbol statistics prove it holds no symbol in [lo, hi] (and no null)."""
    if stats is None or not stats.has_min_max or stats.null_count:
        return False
    mn, mx = stats.min, stats.max
    if isinstance(mn, bytes):
        mn, mx = mn.decode("utf-8", "replace"), mx.decode("utf-8", "replace")
    if not isinstance(mn, str):
        return False
    return mx < lo or mn > hi


def load_partition(inputs: InputFiles, part: Partition, *, lib=pd) -> LoadedBars:
    """Read and validate the rows of one partition (see the module docstring).

    Returns
    -------
    LoadedBars with ``bars`` (``lib`` frame) and ``rejected`` as :func:`alphapulse.pipelines.data.load.load_bars`
    returns them for these symbols, ``source_row`` counted in the whole file.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    column = _symbol_column(inputs)
    wanted = pa.array(part.symbols, type=pa.string())
    lo, hi = part.symbols[0], part.symbols[-1]
    pieces = []
    for i in part.files:
        path = inputs.paths[i]
        try:
            pf = pq.ParquetFile(path)
            j = pf.schema_arrow.get_field_index(column)
            offset = 0
            for rg in range(pf.num_row_groups):
                meta = pf.metadata.row_group(rg)
                n = meta.num_rows
                if part.nulls or not _stats_exclude(meta.column(j).statistics, lo, hi):
                    table = pf.read_row_group(rg)
                    sym = _symbol_strings(table.column(column))
                    mask = pc.is_in(sym, value_set=wanted)
                    if part.nulls:
                        mask = pc.or_(mask, pc.is_null(sym))
                    rows = np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False))
                    if len(rows):
                        raw = table.take(pa.array(rows)).to_pandas().rename(columns=inputs.rename)
                        piece = check_rows(raw, lib=pd, source_file=i, source=str(path))
                        piece["source_row"] = (offset + rows).astype(np.int64)
                        pieces.append(piece)
                offset += n
        except (DataError, MemoryError):
            raise
        except Exception as e:
            raise _read_error(path, e) from None
    if not pieces:
        raise DataError(f"{part.label(part.index + 1)}: no rows")
    checked = check_symbols(pd.concat(pieces, ignore_index=True))
    # the dtype load_bars' Dask frame gives text (Dask's convert-string), so the report's schema
    # is the same whichever loader ran
    checked["symbol"] = checked["symbol"].astype("string[pyarrow]")
    if frames.is_cudf(lib):
        checked = lib.from_pandas(checked)
    return split_checked(checked, inputs, partitions=1)
