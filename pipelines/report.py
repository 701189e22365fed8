"""Report folders: parquet tables, ``manifest.json``, ``summary.md`` and ``summary.html``, written atomically.

Everything is written into a hidden temporary folder beside the target, flushed to disk, then
swapped into place: with ``renameat2(RENAME_EXCHANGE)`` on Linux (one atomic step: readers see
the old report or the new one, never neither), else with two renames. A run that fails, or a
process killed while writing, leaves the previous report untouched; its leftover temporary
folder is hidden (``.<name>.tmp-*``) and removed by the next write.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import html_report

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SUMMARY = "summary.md"
SUMMARY_HTML = html_report.SUMMARY_HTML


class ReportError(OSError):
    """The report cannot be written where asked."""


def check_out_dir(out_dir: str | Path, *, inputs=()) -> Path:
    """Validate an output folder before a run: not a file; not an input path, a folder holding one,
    or a folder inside an input folder; if it exists, empty or a previous report (a report replaces
    its folder whole, so ``--out ~`` must not delete a home folder); parent writable.

    Parameters
    ----------
    out_dir : the report folder
    inputs : the run's input paths (files or folders)
    """
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: output path exists and is not a folder")
    real = out.resolve()
    for p in inputs:
        src = Path(p).resolve()
        if src == real or src.is_relative_to(real):
            raise ReportError(f"{out}: the input {p} is inside it, and a report replaces its folder whole; "
                              "give another output folder")
        if src.is_dir() and real.is_relative_to(src):
            raise ReportError(f"{out}: inside the input folder {p} (the next run would read the report as bars); "
                              "give a folder outside it")
    if out.is_dir() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise ReportError(f"{out}: folder exists, is not empty and is not a report (no {MANIFEST}); a report "
                          "replaces its folder whole, so give a new or empty folder")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    try:  # a real try: os.access says yes to root everywhere, /proc and read-only mounts included
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
    except OSError as e:
        raise ReportError(f"{out}: cannot create it in {parent}: {e.strerror or e}") from None
    return out


def _safe_name(name: str) -> str:
    """``name`` if it is a plain file name inside the report folder: no folder part (``/``, ``\\``,
    ``..``), not hidden, no control characters, at most 255 bytes, not a file write_report writes
    itself; else :class:`ReportError`."""
    if (not isinstance(name, str) or not name or Path(name).name != name or name.startswith(".")
            or "\\" in name or re.search(r"[\x00-\x1f\x7f]", name) or len(name.encode("utf-8", "replace")) > 255):
        raise ReportError(f"report file name {name!r} must be a plain name inside the report folder")
    if name in (MANIFEST, SUMMARY, SUMMARY_HTML):
        raise ReportError(f"report file name {name!r} is reserved for the report's own {name}")
    return name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the filesystem cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:  # another filesystem, or no hard links there
        shutil.copyfile(src, dest)


def _summary_html(record: dict, tables: dict[str, pd.DataFrame], files: dict[str, bytes]) -> str:
    """The page for people; a rendering failure costs the page's plots, never the report."""
    try:
        return html_report.render(record, tables, files)
    except Exception as e:
        log.exception("summary.html could not be rendered; writing a minimal page instead")
        return html_report.minimal_page(record, f"{type(e).__name__}: {e}")


def write_report(out_dir: str | Path, *, tables: dict[str, pd.DataFrame], manifest: dict, summary: str,
                 files: dict[str, bytes] | None = None, linked: dict[str, Path] | None = None,
                 page_tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write a complete report folder at ``out_dir``, replacing any previous one atomically.

    Parameters
    ----------
    out_dir : the report folder
    tables : file name (e.g. ``"indicators.parquet"``) -> pandas frame, written without index
    manifest : JSON-serialisable run record; ``files`` (name -> rows) is added
    summary : Markdown text for ``summary.md`` (``summary.html`` is rendered from the manifest, the
        tables and the files by :func:`pipelines.html_report.render`)
    files : optional file name (e.g. ``"sharpe_heatmap.png"``) -> raw bytes, written as they are
        (recorded in the manifest's ``files`` with their size)
    linked : optional name -> a finished file (e.g. a partition written by a Dask worker), hard-linked
        (copied across filesystems) into the report; a name may have one folder, e.g.
        ``"indicators/part-00000.parquet"``
    page_tables : optional frames shown on ``summary.html`` but not written (e.g.
        ``"indicators_latest"`` when the indicators themselves are linked part files)

    Returns
    -------
    Path of the report folder.
    """
    out = check_out_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        written = {}
        for name, frame in tables.items():
            path = tmp / _safe_name(name)
            frame.to_parquet(path, index=False)
            written[name] = {"rows": int(len(frame)), "columns": [str(c) for c in frame.columns]}
        for name, data in (files or {}).items():
            if name in written or name in (MANIFEST, SUMMARY, SUMMARY_HTML):
                raise ReportError(f"report file name {name!r} given twice")
            (tmp / _safe_name(name)).write_bytes(bytes(data))
            written[name] = {"bytes": len(data)}
        for name, src in (linked or {}).items():
            dest = tmp.joinpath(*(_safe_name(p) for p in name.split("/", 1)))
            if name in written or dest.exists():
                raise ReportError(f"report file name {name!r} given twice")
            dest.parent.mkdir(exist_ok=True)
            _link_or_copy(Path(src), dest)
            written[name] = {"bytes": dest.stat().st_size}
            if dest.suffix == ".parquet":  # rows and columns as for tables (from the footer only)
                import pyarrow.parquet as pq

                meta = pq.read_metadata(dest)
                written[name] = {"rows": meta.num_rows, "columns": [c for c in meta.schema.to_arrow_schema().names
                                                                    if not c.startswith("__index_level_")]}
        record = {**manifest, "files": written}
        (tmp / MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
        (tmp / SUMMARY).write_text(summary)
        (tmp / SUMMARY_HTML).write_text(_summary_html(record, {**tables, **(page_tables or {})}, files or {}),
                                        encoding="utf-8")
        for f in tmp.rglob("*"):
            if f.is_dir():
                _fsync_dir(f)
                continue
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if out.exists():
            if not _exchange(tmp, out):
                old = out.parent / f".{out.name}.tmp-old-{uuid.uuid4().hex[:12]}"
                os.rename(out, old)
                os.rename(tmp, out)
                tmp = old
            # after the exchange, tmp holds the previous report
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.rename(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("report written to %s", out)
    return out


def format_value(v) -> str:
    """A cell of a summary table: 4 significant digits for floats, dates without a midnight time."""
    if isinstance(v, (float, np.floating)):
        return "nan" if np.isnan(v) else f"{v:.4g}"
    if isinstance(v, pd.Timestamp) and v == v.normalize():
        return str(v.date())
    return str(v)


def rejected_note(inp: dict) -> str:
    """Where a summary's rejected-row count points: `` (see `rejected.parquet`: reason: rows, ...)``,
    or nothing when no row was rejected. ``inp`` is a manifest's ``input`` record."""
    if not inp.get("rows_rejected"):
        return ""
    reasons = ", ".join(f"{k}: {v:,}" for k, v in inp.get("rejected_by_reason", {}).items())
    return f" (see `rejected.parquet`: {reasons})"


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` (index not included) as a Markdown table for ``summary.md``."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(format_value(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])
