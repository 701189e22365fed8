"""Compare two AlphaPulse report folders table by table (a GPU run against a CPU run, say).

    python scripts/compare_reports.py REPORT_A REPORT_B [--rtol-float64 1e-9] [--rtol-float32 1e-4]

Every parquet table under either folder (``indicators/part-NNNNN.parquet`` included) must exist
in both, with the same columns in the same order, the same dtypes and the same rows. Rows are
matched after a stable sort on the table's non-float columns (timestamp, symbol, strategy, ...),
so two backends that emit the same rows in another order agree. Non-float values must be equal;
floats must have NaN at the same places and ``|a - b| <= rtol * (|a| + s)`` where ``s`` is the
column's median magnitude (an absolute floor for values near zero, such as returns or
correlations that cross it) and ``rtol`` the dtype's: 1e-9 for float64 (a few ulp of reduction
order and fused multiply-adds, amplified by recurrences over a few thousand bars), 1e-4 for float32
(the kernels accumulate in float64 and round once, but float32 inputs already differ by 6e-8
relative and recurrences such as ADX amplify it).

Exit status: 0 when the folders agree, 1 with one line per difference, 2 when a folder is missing
or unreadable. Other files (manifest.json, summary.*) are not compared: they carry the run's
backend, timings and identity.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

MAX_LINES_PER_TABLE = 20


def parquet_files(root: Path) -> list[str]:
    """Relative paths of the parquet files under ``root``, sorted (hidden scratch folders skipped)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))


def _aligned(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = [c for c in a.columns if not pd.api.types.is_float_dtype(a[c])]
    if keys:
        a = a.sort_values(keys, kind="stable", na_position="first")
        b = b.sort_values(keys, kind="stable", na_position="first")
    return a.reset_index(drop=True), b.reset_index(drop=True)


def _where(frame: pd.DataFrame, row: int) -> str:
    keys = [c for c in frame.columns if not pd.api.types.is_float_dtype(frame[c])][:3]
    described = ", ".join(f"{k}={frame[k].iloc[row]}" for k in keys)
    return f"row {row}" + (f" ({described})" if described else "")


def compare_tables(a: pd.DataFrame, b: pd.DataFrame, *, rtol64: float, rtol32: float) -> list[str]:
    """The differences between two tables, one line each (empty when they agree)."""
    if list(a.columns) != list(b.columns):
        only_a = [c for c in a.columns if c not in b.columns]
        only_b = [c for c in b.columns if c not in a.columns]
        return [f"columns differ: only in A {only_a}, only in B {only_b}" if only_a or only_b
                else f"columns in another order: A {list(a.columns)} B {list(b.columns)}"]
    out = [f"column {c}: dtype {a[c].dtype} vs {b[c].dtype}" for c in a.columns if a[c].dtype != b[c].dtype]
    if out:
        return out
    if len(a) != len(b):
        return [f"{len(a)} rows vs {len(b)} rows"]
    a, b = _aligned(a, b)
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_float_dtype(x):
            xv, yv = x.to_numpy(np.float64, na_value=np.nan), y.to_numpy(np.float64, na_value=np.nan)
            nan_x, nan_y = np.isnan(xv), np.isnan(yv)
            bad_nan = np.flatnonzero(nan_x != nan_y)
            if bad_nan.size:
                out.append(f"column {c}: NaN in one and not the other at {bad_nan.size} rows, first "
                           f"{_where(a, int(bad_nan[0]))}: A {xv[bad_nan[0]]!r} B {yv[bad_nan[0]]!r}")
                continue
            ok = ~nan_x
            inf_x, inf_y = np.isinf(xv), np.isinf(yv)
            bad_inf = np.flatnonzero((inf_x | inf_y) & (xv != yv))
            if bad_inf.size:
                out.append(f"column {c}: infinite values differ at {bad_inf.size} rows, first "
                           f"{_where(a, int(bad_inf[0]))}")
                continue
            finite = ok & ~inf_x
            if not finite.any():
                continue
            rtol = rtol32 if x.dtype == np.float32 else rtol64
            scale = float(np.median(np.abs(xv[finite])))
            diff = np.where(finite, np.abs(xv - yv), 0.0)
            limit = rtol * (np.abs(xv) + scale)
            bad = np.flatnonzero(finite & (diff > limit))
            if bad.size:
                worst = int(bad[np.argmax(diff[bad] / np.maximum(limit[bad], np.finfo(float).tiny))])
                out.append(f"column {c}: {bad.size} values beyond rtol {rtol:g} (scale {scale:.3g}); worst "
                           f"{_where(a, worst)}: A {xv[worst]!r} B {yv[worst]!r} (|diff| {diff[worst]:.3g})")
        else:
            same = (x == y) | (x.isna() & y.isna())
            bad = np.flatnonzero(~same.to_numpy(bool, na_value=False))
            if bad.size:
                out.append(f"column {c}: {bad.size} values differ, first {_where(a, int(bad[0]))}: "
                           f"A {x.iloc[bad[0]]!r} B {y.iloc[bad[0]]!r}")
    return out


def compare_reports(a: Path, b: Path, *, rtol64: float = 1e-9, rtol32: float = 1e-4) -> list[str]:
    """Every difference between report folders ``a`` and ``b``, one line each."""
    files_a, files_b = parquet_files(a), parquet_files(b)
    out = [f"{name}: only in A" for name in files_a if name not in files_b]
    out += [f"{name}: only in B" for name in files_b if name not in files_a]
    if not files_a and not files_b:
        out.append("no parquet tables in either folder")
    for name in (n for n in files_a if n in files_b):
        lines = compare_tables(pd.read_parquet(a / name), pd.read_parquet(b / name), rtol64=rtol64, rtol32=rtol32)
        if len(lines) > MAX_LINES_PER_TABLE:
            lines = lines[:MAX_LINES_PER_TABLE] + [f"... and {len(lines) - MAX_LINES_PER_TABLE} more"]
        out += [f"{name}: {line}" for line in lines]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report_a", type=Path)
    ap.add_argument("report_b", type=Path)
    ap.add_argument("--rtol-float64", type=float, default=1e-9)
    ap.add_argument("--rtol-float32", type=float, default=1e-4)
    args = ap.parse_args(argv)
    for folder in (args.report_a, args.report_b):
        if not folder.is_dir():
            print(f"compare_reports: error: {folder} is not a folder", file=sys.stderr)
            return 2
    try:
        diffs = compare_reports(args.report_a, args.report_b, rtol64=args.rtol_float64, rtol32=args.rtol_float32)
    except (OSError, ValueError) as e:  # an unreadable or corrupt parquet file
        print(f"compare_reports: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if diffs:
        print(f"{args.report_a} and {args.report_b} differ in {len(diffs)} place(s):")
        for line in diffs:
            print(f"  {line}")
        return 1
    print(f"{args.report_a} and {args.report_b} agree ({len(parquet_files(args.report_a))} parquet tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
