"""Report folders: parquet tables, ``manifest.json``, ``summary.md`` and ``summary.html``, written atomically.

Everything is written into a hidden temporary folder beside the target, flushed to disk, then
swapped into place: with ``renameat2(RENAME_EXCHANGE)`` on Linux (one atomic step: readers see
the old report or the new one, never neither), else with two renames. A run that fails, or a
process killed while writing, leaves the previous report untouched; its leftover temporary
folder is hidden (``.<name>.tmp-*``) and removed by the next write.

Which folders a report replaces. ``manifest.json`` carries the mark :data:`MARK`: the list of
every file the report wrote (in the manifest, not a file of its own, so that a report folder
holds exactly the files its manifest lists). A folder is a previous report only when its manifest holds a valid
mark and the folder holds nothing else; then exactly those files are replaced. Any other
non-empty folder (someone else's ``manifest.json``, a report that gained a foreign file, a report
written before reports were marked) is refused with a one-line :class:`ReportPathError`. A symbolic
link given as the folder is followed to its target (the link stays).

Concurrent writers. A writer holds an exclusive ``flock`` on ``.<name>.lock`` beside the folder
from its first scratch file to the swap, so a temporary folder found there is a dead writer's and
never a live one's; a second writer waits (at most :data:`LOCK_WAIT_SECONDS`), then writes.
:func:`scratch_folder` gives a run's own intermediate files a folder that no concurrent run
removes.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse.pipelines.errors import ReportBusyError, ReportError, ReportPathError  # noqa: F401  (public here)
from alphapulse.pipelines.report import html as html_report

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SUMMARY = "summary.md"
SUMMARY_HTML = html_report.SUMMARY_HTML
MARK = "alphapulse_report"
"""The manifest key that marks a report folder: ``{"format": 1, "files": [...]}``, every file the
report wrote (relative, ``/``-separated, sorted), its own three included."""
MARK_FORMAT = 1
MAX_MANIFEST_BYTES = 64 << 20
"""A larger ``manifest.json`` is not read (a monitored day-long run's is a few MB)."""
LOCK_WAIT_SECONDS = 600.0
"""How long a writer waits for another one writing the same folder before giving up."""


def check_out_dir(out_dir: str | Path, *, inputs=()) -> Path:
    """Validate an output folder before a run: not a file; not an input path, a folder holding one,
    or a folder inside an input folder; if it exists, empty or a previous report holding only its
    own files (see the module docstring: ``--out ~`` must not delete a home folder); parent
    writable. A symbolic link is followed to its folder.

    Parameters
    ----------
    out_dir : the report folder
    inputs : the run's input paths (files or folders)

    Returns
    -------
    The folder's absolute path (a link's target).
    """
    out = _target(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportPathError(f"{out}: output path exists and is not a folder")
    real = out.resolve()
    for p in inputs:
        src = Path(p).resolve()
        if src == real or src.is_relative_to(real):
            raise ReportPathError(f"{out}: the input {p} is inside it, and a report replaces its folder whole; "
                                  "give another output folder")
        if src.is_dir() and real.is_relative_to(src):
            raise ReportPathError(f"{out}: inside the input folder {p} (the next run would read the report as bars); "
                                  "give a folder outside it")
    _check_replaceable(out)
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    try:  # a real try: os.access says yes to root everywhere, /proc and read-only mounts included
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
    except OSError as e:
        raise ReportPathError(f"{out}: cannot create it in {parent}: {e.strerror or e}") from None
    return out


def _target(out_dir: str | Path) -> Path:
    """The absolute folder ``out_dir`` names: a symbolic link's target, so that the link stays a
    link and the scratch folder lies beside the folder it replaces."""
    out = Path(out_dir).absolute()
    if not out.is_symlink():
        return out
    try:
        target = out.resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a loop, before Python 3.13
        raise ReportPathError(f"{out}: a broken or looping symbolic link; give a folder, or a link to one "
                              "that exists") from None
    log.debug("report folder %s is a link to %s", out, target)
    return target


def _check_replaceable(out: Path) -> None:
    """:class:`ReportPathError` unless ``out`` is missing, empty or a marked report holding only the
    files its mark lists."""
    if not out.is_dir():
        return
    own = _report_files(out)
    if own is None:
        with os.scandir(out) as entries:
            if next(entries, None) is None:
                return
        if (out / MANIFEST).exists():
            raise ReportPathError(f"{out}: folder exists, is not empty and is not a report: its {MANIFEST} has no "
                                  f"valid {MARK!r} mark (someone else's, or a report of an older AlphaPulse that "
                                  "did not mark its files); AlphaPulse replaces only folders it marked, so delete or "
                                  "move it yourself, or give a new or empty folder")
        raise ReportPathError(f"{out}: folder exists, is not empty and is not a report (no {MANIFEST}); a report "
                              "replaces its folder, so give a new or empty folder")
    foreign, first = _foreign_files(out, own)
    if foreign:
        raise ReportPathError(f"{out}: a report folder holding {foreign:,} file(s) the report did not write ({first}); "
                              "AlphaPulse replaces only its own files, so move them out or give another folder")


def _report_files(folder: Path) -> set[str] | None:
    """The files a report folder's mark lists, or None when ``manifest.json`` is missing, not a
    regular file, too large, not JSON or without a valid mark."""
    path = folder / MANIFEST
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return None
        record = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    mark = record.get(MARK) if isinstance(record, dict) else None
    files = mark.get("files") if isinstance(mark, dict) and mark.get("format") == MARK_FORMAT else None
    if not isinstance(files, list) or MANIFEST not in files or not all(map(_listed, files)):
        return None
    return set(files)


def _listed(name) -> bool:
    """Whether a mark's entry is a name write_report could have written: a plain name, or one
    folder and a plain name."""
    if not isinstance(name, str):
        return False
    parts = name.split("/")
    return len(parts) <= 2 and all(p and not p.startswith(".") and "\\" not in p and "\0" not in p for p in parts)


def _foreign_files(folder: Path, own: set[str]) -> tuple[int, str | None]:
    """How many entries of ``folder`` its report did not write, and the first by name: anything not
    listed, a folder where a file was written, and anything inside a folder no listed file is in."""
    sub_folders = {name.split("/")[0] for name in own if "/" in name}
    count, first = 0, None

    def foreign(rel: str) -> None:
        nonlocal count, first
        count += 1
        first = rel if first is None else min(first, rel)

    with os.scandir(folder) as entries:
        for entry in entries:
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir and entry.name in sub_folders:
                with os.scandir(entry.path) as inner:
                    for sub in inner:
                        rel = f"{entry.name}/{sub.name}"
                        if sub.is_dir(follow_symlinks=False):
                            foreign(rel + "/")
                        elif rel not in own:
                            foreign(rel)
            elif is_dir:
                foreign(entry.name + "/")
            elif entry.name not in own:
                foreign(entry.name)
    return count, first


@contextmanager
def write_lock(out: Path):
    """Hold the exclusive lock of report folder ``out`` (``.<name>.lock`` beside it), waiting for
    another holder at most :data:`LOCK_WAIT_SECONDS`. The lock file is removed on release; a waiter
    that then holds a lock on a removed file takes the new one instead."""
    path = out.parent / f".{out.name}.lock"
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ReportBusyError(f"{out}: another run is writing a report there (it holds {path}); "
                                              f"gave up after {LOCK_WAIT_SECONDS:g} s") from None
                    if not waited:
                        log.info("waiting for another run writing %s", out)
                        waited = True
                    time.sleep(0.02)
            try:
                now = os.stat(path, follow_symlinks=False)
                mine = os.fstat(fd)
                current = (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def scratch_folder(out_dir: str | Path, kind: str):
    """A new hidden folder ``.<name>.<kind>-<id>`` beside report folder ``out_dir`` for one run's
    intermediate files, removed on exit.

    It is ``flock``-ed while the run lives: folders of the same kind left by killed runs are
    removed first, those of a run writing to the same folder at the same moment never are."""
    out = _target(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.{kind}-*"):
        _remove_unless_held(stale)
    # made under a name the cleanup ignores, and renamed once locked: never seen unlocked
    fresh = Path(tempfile.mkdtemp(prefix=f".{out.name}.{kind}~", dir=out.parent))
    fd = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = out.parent / f".{out.name}.{kind}-{uuid.uuid4().hex[:12]}"
        os.rename(fresh, path)
        fresh = path
        yield path
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        os.close(fd)


def _remove_unless_held(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:  # gone meanwhile, or not a folder: not ours to remove
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a live run holds it
        os.close(fd)
        return
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)


def _safe_name(name: str) -> str:
    """``name`` if it is a plain file name inside the report folder: no folder part (``/``, ``\\``,
    ``..``), not hidden, no control characters, at most 255 bytes, not a file write_report writes
    itself; else :class:`ReportPathError`."""
    if (not isinstance(name, str) or not name or Path(name).name != name or name.startswith(".")
            or "\\" in name or re.search(r"[\x00-\x1f\x7f]", name) or len(name.encode("utf-8", "replace")) > 255):
        raise ReportPathError(f"report file name {name!r} must be a plain name inside the report folder")
    if name in (MANIFEST, SUMMARY, SUMMARY_HTML):
        raise ReportPathError(f"report file name {name!r} is reserved for the report's own {name}")
    return name


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exchange_paths(a: Path, b: Path) -> bool:
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


def link_or_copy(src: Path, dest: Path) -> None:
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


def _write_into(tmp: Path, *, tables, manifest, summary, files, linked, page_tables) -> None:
    """Every file of the report into the empty folder ``tmp``, flushed to disk; see
    :func:`write_report`."""
    written = {}
    for name, frame in tables.items():
        path = tmp / _safe_name(name)
        frame.to_parquet(path, index=False)
        written[name] = {"rows": int(len(frame)), "columns": [str(c) for c in frame.columns]}
    for name, data in (files or {}).items():
        if name in written or name in (MANIFEST, SUMMARY, SUMMARY_HTML):
            raise ReportPathError(f"report file name {name!r} given twice")
        (tmp / _safe_name(name)).write_bytes(bytes(data))
        written[name] = {"bytes": len(data)}
    for name, src in (linked or {}).items():
        dest = tmp.joinpath(*(_safe_name(p) for p in name.split("/", 1)))
        if name in written or dest.exists():
            raise ReportPathError(f"report file name {name!r} given twice")
        dest.parent.mkdir(exist_ok=True)
        link_or_copy(Path(src), dest)
        written[name] = {"bytes": dest.stat().st_size}
        if dest.suffix == ".parquet":  # rows and columns as for tables (from the footer only)
            import pyarrow.parquet as pq

            meta = pq.read_metadata(dest)
            written[name] = {"rows": meta.num_rows, "columns": [c for c in meta.schema.to_arrow_schema().names
                                                                if not c.startswith("__index_level_")]}
    own = sorted({*written, MANIFEST, SUMMARY, SUMMARY_HTML})
    record = {**manifest, "files": written, MARK: {"format": MARK_FORMAT, "files": own}}
    (tmp / MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    (tmp / SUMMARY).write_text(summary)
    (tmp / SUMMARY_HTML).write_text(_summary_html(record, {**tables, **(page_tables or {})}, files or {}),
                                    encoding="utf-8")
    for f in tmp.rglob("*"):
        if f.is_dir():
            fsync_dir(f)
            continue
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)


def _swap(tmp: Path, out: Path) -> Path | None:
    """Put the finished report ``tmp`` at ``out``; returns where the previous folder now lies (None
    when there was none). On an error ``out`` still holds the previous folder."""
    old = None
    if out.exists():
        if exchange_paths(tmp, out):
            old = tmp  # after the exchange, tmp holds the previous report
        else:
            old = out.parent / f".{out.name}.tmp-old-{uuid.uuid4().hex[:12]}"
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
    else:
        os.rename(tmp, out)
    try:
        fsync_dir(out.parent)
    except BaseException:
        if old is not None:  # undo: readers keep seeing the previous report
            if not exchange_paths(old, out):
                os.rename(out, tmp)
                os.rename(old, out)
        else:
            os.rename(out, tmp)
        raise
    return old


def _remove_previous(old: Path, out: Path) -> None:
    """Remove the previous report, swapped out to ``old``: only the files its mark lists. Anything
    else (put there between the last check and the swap) is kept, in a visible folder beside."""
    try:
        for name in sorted(_report_files(old) or ()):
            try:
                (old / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as e:  # e.g. a folder put where a file was: kept below
                log.debug("previous report's %s not removed: %s", name, e)
        for folder in sorted(p for p in old.iterdir() if p.is_dir() and not p.is_symlink()):
            try:
                folder.rmdir()
            except OSError:
                pass
        old.rmdir()
    except OSError:
        kept = out.parent / f"{out.name}.kept-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(old, kept)
        except OSError as e:
            log.warning("files that appeared in %s while a report was written there are in %s (%s)", out, old, e)
        else:
            log.warning("files that appeared in %s while a report was written there are now in %s", out, kept)


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
        tables and the files by :func:`alphapulse.pipelines.report.html.render`)
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
    with write_lock(out):
        _check_replaceable(out)  # again: the folder may have changed while this run computed
        for stale in out.parent.glob(f".{out.name}.tmp-*"):  # a killed writer's: live ones hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            _write_into(tmp, tables=tables, manifest=manifest, summary=summary, files=files, linked=linked,
                        page_tables=page_tables)
            _check_replaceable(out)
            old = _swap(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            _remove_previous(old, out)
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
