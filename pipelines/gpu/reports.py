"""The report folders the API serves: listing them under the roots and reading their files safely.

Implements :func:`check_run_id` (a run id is a plain folder name, never a path) and
:class:`ReportRoots` (the report folders under the roots, their summaries, and their files read
as regular files without following a symbolic link).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException

from alphapulse.pipelines.gpu.schemas import RunSummary, short_value

SUMMARY_HTML = "summary.html"
MANIFEST = "manifest.json"
RUN_ID_PATTERN = r"^[^./\\\x00][^/\\\x00]*$"
"""A report folder's name: no path separator or NUL, no leading dot (the schema states it too)."""
RUN_ID_MAX_LENGTH = 255


def check_run_id(run_id: str) -> str:
    """A run id as it may be looked up: a plain folder name. HTTPException 400 otherwise."""
    if len(run_id) > RUN_ID_MAX_LENGTH or not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise HTTPException(400, f"invalid run id {short_value(run_id)}: a report folder's name (no path separator, "
                                 f"NUL or leading dot; at most {RUN_ID_MAX_LENGTH} characters)")
    return run_id


def _read_regular(folder: Path, name: str, *, follow_folder: bool) -> bytes:
    """The bytes of ``folder/name`` when it is a regular file reached without following a
    symbolic link (``folder`` itself only when ``follow_folder``); OSError otherwise.

    The checks are made on the open descriptors, so a file swapped for a link between listing
    and reading is refused too; O_NONBLOCK keeps a FIFO from blocking the open."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | (0 if follow_folder else os.O_NOFOLLOW)
    try:
        dir_fd = os.open(folder, flags)
    except OSError as e:
        raise OSError(f"{folder.name}: not a folder reached without a symbolic link ({e.strerror})") from None
    try:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise OSError(f"{name} is a symbolic link (not followed)")
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        return f.read()


def is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class ReportRoots:
    """The folders whose report folders the API lists: each root itself when it holds a
    ``manifest.json``, and each of its immediate, visible, non-link sub-folders that does (a
    manifest that is a link or not a file lists the folder as unreadable, saying so)."""

    roots: tuple[Path, ...]

    def folders(self) -> dict[str, Path]:
        """id -> report folder, roots in order, folders by name."""
        out: dict[str, Path] = {}
        for root in self.roots:
            if not root.is_dir():
                continue
            candidates = [root] + sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir()
                                         and not p.is_symlink())
            for folder in candidates:
                if not os.path.lexists(folder / MANIFEST):
                    continue
                rid, k = folder.name, 1
                while rid in out:
                    k += 1
                    rid = f"{folder.name}~{k}"
                out[rid] = folder
        return out

    def read(self, folder: Path, name: str) -> bytes:
        """A file of a report folder: a regular file, no link followed below the roots."""
        return _read_regular(folder, name, follow_folder=folder in self.roots)

    def summary(self, rid: str, folder: Path) -> tuple[RunSummary, dict | None]:
        manifest, error = None, None
        try:
            manifest = json.loads(self.read(folder, MANIFEST))
            if not isinstance(manifest, dict):
                raise ValueError("manifest.json is not a JSON object")
        except (OSError, ValueError) as e:
            manifest, error = None, f"{type(e).__name__}: {e}"
        m = manifest or {}
        be = m.get("backend") if isinstance(m.get("backend"), dict) else {}
        alerts = m.get("alerts") if isinstance(m.get("alerts"), list) else []
        status = "unreadable" if manifest is None else ("alerts" if alerts else "ok")
        has_page = is_regular_file(folder / SUMMARY_HTML)

        def text(v):
            return None if v is None else str(v)

        return RunSummary(id=rid, pipeline=text(m.get("pipeline")), run_id=text(m.get("run_id")),
                          created_at=text(m.get("created_at")), backend=text(be.get("name")),
                          backend_reason=text(be.get("reason")), status=status, alerts=len(alerts), error=error,
                          path=str(folder), summary_html=f"/runs/{rid}/{SUMMARY_HTML}" if has_page else None), manifest

    def find(self, rid: str) -> Path:
        folder = self.folders().get(check_run_id(rid))
        if folder is None:
            raise HTTPException(404, f"no report folder {rid!r} under {', '.join(map(str, self.roots))}")
        return folder
