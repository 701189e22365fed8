"""An indicator store that grows: a parquet dataset a daily run appends to, with each symbol's state.

Implements :func:`check_store` (is this folder a store, or new), :func:`open_store` (the committed
manifest and state, never the history), :func:`bar_fingerprints` (what a symbol's bars were),
:func:`plan_update` (which symbols append and which recompute, and why), :func:`state_arrays` /
:func:`state_frame` (the state as :class:`~alphapulse.transforms.indicators.state.IndicatorState`
and back) and :func:`commit` (one atomic step per run).

Layout::

    STORE/
      _alphapulse_store.json        the mark: {"alphapulse_store": {"format": 1}}
      data/                         what readers read: pandas.read_parquet(STORE), DuckDB, polars
        part-000001-00000.parquet   rows ``timestamp, symbol, <outputs>`` of run 1, sorted by (symbol, timestamp)
        part-000002-00000.parquet   run 2's rows (a day's append: new files only)
        _manifest.json              the committed version: files, identity, runs (hidden from readers)
        _state/state-00000.parquet  one row per symbol: bars seen, first/last timestamp, fingerprint,
                                    kept bars and float64 recurrences (hidden from readers)
        _bars/bars-000002-00000.parquet  run 2's validated bars (hidden from readers): what the
                                    signals and a full recompute read back when a run's input
                                    holds only the new bars; small ones are merged every
                                    32 runs (``_bars/merged-<run>-<k>.parquet``)
      _staging-<id>/                a run's tree before its commit (hidden; a dead run's is removed)

pyarrow's dataset reader skips names starting with ``_`` or ``.``, so ``pandas.read_parquet(STORE)``
reads the committed rows and nothing else; DuckDB and polars read ``STORE/data/*.parquet`` (a
recursive ``**`` glob would take the hidden state and bars too).

The commit. A run builds the whole next ``data/`` tree in ``_staging-<id>/data``: hard links to the
committed files it keeps, its new files, rewritten copies of files that held a recomputed symbol's
rows (without them), the next state and manifest, all fsynced. Then it swaps the two ``data`` folders
in one ``renameat2(RENAME_EXCHANGE)``: readers see the store before the run or after it, never a mix,
and a run killed at any point before leaves the committed tree as it was (its staging folder is
removed by the next run). Where the filesystem cannot exchange, two renames are used; a run killed
between them leaves ``data/`` missing and the old tree in ``_staging-<id>/old``, which the next run
puts back. The old tree is then deleted: only files the store wrote (the manifest lists them; a
``data/`` holding anything else is refused).

Fingerprints. Each symbol's state holds a 128-bit fingerprint of its bars (timestamp, open, high,
low, close, volume as loaded, float64 bits) folded bar by bar, so appending bars continues it and
the fingerprint of a whole history given again is comparable however it was split into runs. It
detects accidental change (a vendor correction, a back-filled bar), not tampering: it is not a
cryptographic hash.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from alphapulse.pipelines.config.schema import STANDARD_COLUMNS
from alphapulse.pipelines.data import frames
from alphapulse.pipelines.errors import ReportPathError
from alphapulse.pipelines.report.write import exchange_paths, fsync_dir, link_or_copy
from alphapulse.transforms.indicators.registry import IndicatorSpec
from alphapulse.transforms.indicators.state import (STEP_BARS, IndicatorState, empty_state, state_fields,
                                                    state_key, state_size, state_window)

log = logging.getLogger(__name__)

MARK = "alphapulse_store"
MARK_FILE = "_alphapulse_store.json"
FORMAT = 1
DATA = "data"
MANIFEST = "_manifest.json"
STATE_DIR = "_state"
STAGING = "_staging-"
BARS_DIR = "_bars"
MAX_MANIFEST_BYTES = 64 << 20
MAX_FILES = 200_000
"""More data files than this is refused (a store of 10 years of daily runs holds about 2,520 x a few)."""
MAX_SYMBOLS = 1_000_000
ROWS_PER_FILE = 2_000_000
"""A run's rows are split into files of at most this many rows."""
BARS_COMPACT_FILES = 32
BARS_COMPACT_ROWS = ROWS_PER_FILE // 8
"""A commit that would leave :data:`BARS_COMPACT_FILES` bar files of fewer than
:data:`BARS_COMPACT_ROWS` rows merges them (at most 8 M rows read): a year of daily runs leaves
a few files to read back, not 252."""
ROWS_PER_GROUP = 65_536
"""Parquet row groups of this many rows: files are sorted by symbol, so a reader asking for some
symbols (the signals' histories, DuckDB) skips the row groups whose symbol range misses them."""
STATE_SYMBOLS_PER_FILE = 4096
"""A state file holds at most this many symbols (5,000 symbols: two files)."""
CODE_MODULES = ("alphapulse.transforms.indicators.state", "alphapulse.transforms.indicators.resume",
                "alphapulse.transforms.indicators.steps", "alphapulse.transforms.indicators.series",
                "alphapulse.transforms.indicators.registry", "alphapulse.transforms.kernels",
                "alphapulse.pipelines.data.panel", "alphapulse.pipelines.daily.store")
"""The code a store's values come from: a change to any of them recomputes everything."""


class StoreError(ReportPathError):
    """A folder that cannot be used as a store (input error, exit 2)."""


# ---------------------------------------------------------------------------------------------
# Identity: what the stored values depend on besides the bars
# ---------------------------------------------------------------------------------------------


def code_version() -> str:
    """sha256 of the source of :data:`CODE_MODULES` (not a hand-kept version number)."""
    import importlib

    h = hashlib.sha256()
    for name in CODE_MODULES:
        h.update(inspect.getsource(importlib.import_module(name)).encode())
    return h.hexdigest()


def store_identity(specs: list[IndicatorSpec], dtype) -> dict:
    """The indicators (resolved parameters, in order), the compute dtype and the code version."""
    return {"indicators": [{"name": s.name, "params": s.resolved_params()} for s in specs],
            "dtype": str(np.dtype(dtype)), "code": code_version()}


def identity_changes(stored: dict, current: dict) -> list[str]:
    """Why a store made with ``stored`` must be recomputed in full under ``current`` ([] if it need not)."""
    why = []
    if stored.get("indicators") != current["indicators"]:
        why.append("the indicators config changed")
    if stored.get("dtype") != current["dtype"]:
        why.append(f"the precision changed ({stored.get('dtype')} -> {current['dtype']})")
    if stored.get("code") != current["code"]:
        why.append("the indicator code changed (code version)")
    return why


# ---------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------


def check_store(store: str | Path, *, inputs=(), out_dir: str | Path | None = None) -> Path:
    """The store's absolute path, if it is a store, or a missing or empty folder (a new store).

    Refused with a one-line :class:`StoreError`: a file; a non-empty folder without the store's mark
    (AlphaPulse writes only into folders it marked); the input, a folder holding it or inside an input
    folder; the report folder, or a folder inside or around it.
    """
    path = Path(store).absolute()
    if path.is_symlink():
        try:
            path = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise StoreError(f"{store}: a broken or looping symbolic link") from None
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: the store path exists and is not a folder")
    real = path.resolve()
    for p in inputs:
        src = Path(p).resolve()
        if src == real or src.is_relative_to(real) or (src.is_dir() and real.is_relative_to(src)):
            raise StoreError(f"{path}: the store and the input {p} overlap; give a store folder outside the input")
    if out_dir is not None:
        out = Path(out_dir).resolve()
        if out == real or out.is_relative_to(real) or real.is_relative_to(out):
            raise StoreError(f"{path}: the store and the report folder {out_dir} overlap; give separate folders")
    if path.is_dir() and not _is_marked(path):
        with os.scandir(path) as entries:
            first = next(entries, None)
        if first is not None:
            raise StoreError(f"{path}: folder exists, is not empty and is not an AlphaPulse store (no valid "
                             f"{MARK_FILE}); give a new or empty folder, or a store")
    return path


def _is_marked(path: Path) -> bool:
    record = _read_json(path / MARK_FILE, limit=1 << 16)
    return isinstance(record, dict) and isinstance(record.get(MARK), dict) and record[MARK].get("format") == FORMAT


def _read_json(path: Path, *, limit: int):
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


@dataclass
class Snapshot:
    """The committed store as a run finds it (never its history).

    Attributes
    ----------
    root : the store folder
    manifest : the committed ``_manifest.json`` (None for a new store)
    state : one row per symbol (see :func:`state_frame`), sorted by symbol; empty for a new store
    """

    root: Path
    manifest: dict | None
    state: pd.DataFrame = field(repr=False)

    @property
    def files(self) -> list[dict]:
        return [] if self.manifest is None else self.manifest["files"]

    @property
    def bar_files(self) -> list[dict]:
        return [] if self.manifest is None else self.manifest.get("bars", [])


def recover(root: Path) -> None:
    """Undo what a killed run left: a ``data/`` moved aside and not replaced is put back; the staging
    folders of dead runs are removed (the caller holds the store's lock, so none is live)."""
    data = root / DATA
    for staging in sorted(root.glob(f"{STAGING}*")):
        old = staging / "old"
        if not data.exists() and (old / MANIFEST).is_file():
            log.warning("store %s: putting back the committed data/ a killed run moved to %s", root, old)
            os.rename(old, data)
        shutil.rmtree(staging)


def read_manifest(root: Path) -> dict | None:
    """The committed manifest of store ``root`` (None for a new store); a damaged one is a :class:`StoreError`."""
    data = root / DATA
    if not data.exists():
        return None
    manifest = _read_json(data / MANIFEST, limit=MAX_MANIFEST_BYTES)
    if not (isinstance(manifest, dict) and isinstance(manifest.get(MARK), dict)
            and manifest[MARK].get("format") == FORMAT and isinstance(manifest.get("files"), list)
            and isinstance(manifest.get("state"), list) and isinstance(manifest.get("bars", []), list)
            and len(manifest["files"]) + len(manifest.get("bars", [])) <= MAX_FILES):
        raise StoreError(f"{data / MANIFEST}: missing or damaged store manifest; the store cannot be continued "
                         "(move it away and run on a new store for a full run)")
    return manifest


def open_store(root: Path) -> Snapshot:
    """Read the committed manifest and state of store ``root`` (after :func:`recover`).

    Raises :class:`StoreError` when the store's ``data/`` holds a file its manifest does not list, or
    the manifest is damaged: a run replaces the tree whole and must not drop someone else's file.
    """
    data = root / DATA
    manifest = read_manifest(root)
    if manifest is None:
        return Snapshot(root, None, pd.DataFrame({"symbol": pd.Series([], dtype=object)}))
    own = {MANIFEST, *(f["path"] for f in manifest["files"] + manifest.get("bars", [])), *manifest["state"]}
    for dirpath, dirnames, filenames in os.walk(data):
        rel_dir = Path(dirpath).relative_to(data)
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if rel not in own:
                raise StoreError(f"{root}: its data/ holds {rel}, a file the store did not write; move it out "
                                 "(a run replaces data/ whole)")
    state = pd.concat([pd.read_parquet(data / p) for p in manifest["state"]], ignore_index=True) \
        if manifest["state"] else pd.DataFrame({"symbol": pd.Series([], dtype=object)})
    if len(state) > MAX_SYMBOLS:
        raise StoreError(f"{root}: {len(state):,} symbols in the state, over the limit of {MAX_SYMBOLS:,}")
    return Snapshot(root, manifest, state.sort_values("symbol", ignore_index=True))


def read_bars(root: Path, manifest: dict | None, symbols) -> pd.DataFrame:
    """The stored bars of ``symbols`` (``timestamp, symbol, open, high, low, close, volume``; in no
    particular order: sort if needed). Only the row groups whose symbol range meets them are read
    (files are sorted by symbol, in row groups of :data:`ROWS_PER_GROUP`). A store written before it
    kept bars holds none (the caller compares the counts with the state's ``seen``)."""
    wanted = sorted({str(s) for s in symbols})
    frames_ = []
    for entry in ([] if manifest is None else manifest.get("bars", [])):
        lo, hi = (entry["symbols"] + [None, None])[:2]
        if wanted and lo is not None and lo <= wanted[-1] and hi >= wanted[0]:
            part = pd.read_parquet(root / DATA / entry["path"],
                                   filters=[("symbol", ">=", wanted[0]), ("symbol", "<=", wanted[-1])])
            part = part[part["symbol"].isin(wanted)]
            if len(part):
                frames_.append(part)
    if not frames_:
        return pd.DataFrame({c: pd.Series([], dtype="datetime64[ns]" if c == "timestamp" else
                                          (object if c == "symbol" else np.float64)) for c in STANDARD_COLUMNS})
    return pd.concat(frames_, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------------

_FP_SEED = (np.uint64(0x6A09E667F3BCC908), np.uint64(0xBB67AE8584CAA73B))
_FP_MUL = (np.uint64(0x100000001B3), np.uint64(0xC2B2AE3D27D4EB4F))
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix_array(x):
    # uint64 arithmetic that wraps alike on NumPy arrays and, compiled below, on Numba's scalars
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


_splitmix = numba.njit(cache=True)(_splitmix_array)


@numba.njit(cache=True)
def _fold(words, starts, ends, fp):
    # fp[s] = fold over the rows starts[s]..ends[s]-1, word by word; two lanes with other multipliers
    for s in range(starts.shape[0]):
        h0 = fp[s, 0]
        h1 = fp[s, 1]
        for r in range(starts[s], ends[s]):
            for c in range(words.shape[1]):
                w = _splitmix(words[r, c])
                h0 = ((h0 ^ w) * _FP_MUL[0]) ^ (h0 >> np.uint64(29))
                h1 = ((h1 ^ (w + _GOLDEN)) * _FP_MUL[1]) ^ (h1 >> np.uint64(31))
        fp[s, 0] = h0
        fp[s, 1] = h1


def _fold_in_steps(words, starts, ends, fp):
    # _fold bar by bar, every symbol at once (uint64 arrays wrap as Numba's scalars do): a day's bars
    # need no Numba start-up (see transforms.indicators.steps)
    counts = ends - starts
    for r in range(int(counts.max(initial=0))):
        live = np.flatnonzero(counts > r)
        h0, h1 = fp[live, 0], fp[live, 1]
        for c in range(words.shape[1]):
            w = _splitmix_array(words[starts[live] + r, c])
            h0 = ((h0 ^ w) * _FP_MUL[0]) ^ (h0 >> np.uint64(29))
            h1 = ((h1 ^ (w + _GOLDEN)) * _FP_MUL[1]) ^ (h1 >> np.uint64(31))
        fp[live, 0] = h0
        fp[live, 1] = h1


def bar_fingerprints(bars: pd.DataFrame, *, start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of each symbol's bars, continuing ``start``.

    Parameters
    ----------
    bars : pandas frame ``timestamp, symbol, open, high, low, close, volume`` sorted by (symbol, timestamp)
    start : uint64 array of shape (n_symbols, 2), the fingerprints to continue (default: of no bar),
        for the symbols in the order of ``bars``

    Returns
    -------
    symbols : array of the distinct symbols, in ``bars``' order
    fingerprints : uint64 array of shape (n_symbols, 2)
    """
    sym = bars["symbol"].to_numpy()
    n = len(sym)
    change = np.flatnonzero(sym[1:] != sym[:-1]) + 1 if n else np.array([], dtype=np.int64)
    starts = np.concatenate([[0], change]).astype(np.int64) if n else np.array([], dtype=np.int64)
    ends = np.concatenate([change, [n]]).astype(np.int64) if n else np.array([], dtype=np.int64)
    words = np.empty((n, 6), dtype=np.uint64)
    words[:, 0] = bars["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64).view(np.uint64)
    for c, name in enumerate(("open", "high", "low", "close", "volume"), 1):
        words[:, c] = bars[name].to_numpy(dtype=np.float64).view(np.uint64)
    fp = np.empty((len(starts), 2), dtype=np.uint64)
    if start is None:
        fp[:] = np.array(_FP_SEED, dtype=np.uint64)
    else:
        fp[:] = start
    if len(starts) and int((ends - starts).max()) > STEP_BARS:
        _fold(words, starts, ends, fp)
    else:
        _fold_in_steps(words, starts, ends, fp)
    return sym[starts], fp


# ---------------------------------------------------------------------------------------------
# State <-> frame
# ---------------------------------------------------------------------------------------------


def state_arrays(state: pd.DataFrame, symbols, specs: list[IndicatorSpec]) -> IndicatorState:
    """The :class:`IndicatorState` of ``symbols`` (NumPy, shape (.., n_symbols)): a symbol's stored state
    where ``state`` has a row for it, else the empty state (it starts from its first bar)."""
    symbols = pd.Index(symbols)
    st = empty_state(specs, len(symbols))
    if not len(state):
        return st
    rows = pd.Index(state["symbol"]).get_indexer(symbols)
    have = np.flatnonzero(rows >= 0)
    src = rows[have]
    st.seen[have] = state["seen"].to_numpy()[src]
    window = state_window(specs)
    for f in state_fields(specs):
        for r in range(window):
            st.kept[f][r, have] = state[f"kept__{f}__{r}"].to_numpy()[src]
    for s in specs:
        key = state_key(s)
        for r in range(state_size(s)):
            st.values[key][r, have] = state[f"state__{key}__{r}"].to_numpy()[src]
    return st


def state_frame(symbols, st: IndicatorState, specs: list[IndicatorSpec], *, first, last, fingerprints) -> pd.DataFrame:
    """The stored form of ``st``: one row per symbol, float64 columns ``kept__<field>__<row>`` and
    ``state__<key>__<row>``, with ``seen``, ``first_timestamp``, ``last_timestamp`` and the fingerprint
    (``fp0``, ``fp1``: uint64 stored as int64 bits)."""
    fp = np.asarray(fingerprints, dtype=np.uint64).view(np.int64)
    cols = {"symbol": np.asarray(symbols, dtype=object), "seen": np.asarray(st.seen, dtype=np.int64),
            "first_timestamp": np.asarray(first, dtype="datetime64[ns]"),
            "last_timestamp": np.asarray(last, dtype="datetime64[ns]"), "fp0": fp[:, 0], "fp1": fp[:, 1]}
    for f in state_fields(specs):
        for r in range(st.kept[f].shape[0]):
            cols[f"kept__{f}__{r}"] = np.ascontiguousarray(st.kept[f][r])
    for s in specs:
        key = state_key(s)
        for r in range(state_size(s)):
            cols[f"state__{key}__{r}"] = np.ascontiguousarray(st.values[key][r])
    return pd.DataFrame(cols)


def stored_fingerprints(state: pd.DataFrame) -> np.ndarray:
    """uint64 array of shape (n_symbols, 2) of the state's rows."""
    return np.stack([state["fp0"].to_numpy(np.int64), state["fp1"].to_numpy(np.int64)], axis=1).view(np.uint64)


# ---------------------------------------------------------------------------------------------
# What a run does
# ---------------------------------------------------------------------------------------------


@dataclass
class UpdatePlan:
    """Which symbols a run appends to and which it recomputes, and why.

    Attributes
    ----------
    append : symbols continued from their state (their new bars only)
    recompute : symbol -> reason, for symbols computed from their first bar
    full_reasons : why everything is recomputed ([] when not)
    """

    append: list[str]
    recompute: dict[str, str]
    full_reasons: list[str]


def plan_update(snapshot: Snapshot, bars: pd.DataFrame, identity: dict) -> tuple[UpdatePlan, pd.DataFrame]:
    """Split ``bars`` (loaded, sorted by (symbol, timestamp)) into the rows this run computes.

    A changed identity (config, precision, code) recomputes every stored symbol, from the input
    where it holds the whole history, else from the store's bars and the input's newer ones.
    Otherwise a symbol's input holds either only bars after its last stored timestamp (append), or its whole
    history (its first bar no later than the stored first one, or at least as many bars at or before
    the last stored timestamp as the store saw): then the fingerprint of that history is compared with
    the stored one, and a difference (a correction, or a bar that was not there before) recomputes the
    symbol from the input's bars. An input that overlaps a symbol's stored bars without holding its
    whole history is refused (it could neither be appended nor recomputed), naming the symbol.

    Returns
    -------
    plan : UpdatePlan
    rows : the bars to compute: appended symbols' new bars and recomputed symbols' every bar
    """
    from alphapulse.pipelines.errors import DataError

    state = snapshot.state
    full = []
    if snapshot.manifest is not None:
        full = identity_changes(snapshot.manifest["identity"], identity)
    if full and len(state):
        bars = _with_stored_histories(snapshot, bars, "; ".join(full))
    symbols = bars["symbol"].to_numpy()
    if snapshot.manifest is None or full or not len(state):
        reason = "; ".join(full) if full else "first run on an empty store"
        recompute = {str(s): reason for s in pd.unique(symbols)}
        return UpdatePlan([], recompute, full or [reason]), bars
    idx = pd.Index(state["symbol"]).get_indexer(symbols)
    known = idx >= 0
    last = state["last_timestamp"].to_numpy("datetime64[ns]")
    ts = bars["timestamp"].to_numpy().astype("datetime64[ns]")
    old = known & (ts <= last[np.where(known, idx, 0)])
    recompute: dict[str, str] = {}
    for s in pd.unique(symbols[~known]):
        recompute[str(s)] = "new symbol"
    if old.any():
        hist = bars[old]
        hsyms, fps = bar_fingerprints(hist)
        counts = hist.groupby("symbol", sort=False).size().to_numpy()
        firsts = hist.groupby("symbol", sort=False)["timestamp"].min().to_numpy().astype("datetime64[ns]")
        rows = pd.Index(state["symbol"]).get_indexer(hsyms)
        stored = stored_fingerprints(state)[rows]
        seen = state["seen"].to_numpy()[rows]
        first_stored = state["first_timestamp"].to_numpy("datetime64[ns]")[rows]
        whole = (firsts <= first_stored) | (counts >= seen)
        if not whole.all():
            k = int(np.flatnonzero(~whole)[0])
            raise DataError(f"{hsyms[k]}: the input holds {counts[k]:,} bar(s) at or before its last stored bar "
                            f"({pd.Timestamp(last[rows[k]])}) but not its whole history (stored from "
                            f"{pd.Timestamp(first_stored[k])}, {seen[k]:,} bars): give only newer bars to append, "
                            "or the whole history to correct it")
        changed = (fps != stored).any(axis=1) | (counts != seen)
        for k in np.flatnonzero(changed):
            recompute[str(hsyms[k])] = ("history changed: bars before its last stored bar differ from the stored "
                                        "ones (a correction, or a bar that was not there before)")
    mask = pd.Series(symbols).isin(list(recompute)).to_numpy()
    rows_ = bars[mask | (known & ~old)]
    append = sorted({str(s) for s in pd.unique(symbols[known & ~old])} - set(recompute))
    return UpdatePlan(append, dict(sorted(recompute.items())), []), rows_


def _with_stored_histories(snapshot: Snapshot, bars: pd.DataFrame, why: str) -> pd.DataFrame:
    """A full recompute replaces every stored row, so it needs every stored symbol's whole history:
    ``bars`` where they hold it, else the store's bars followed by ``bars``' newer ones. Refused,
    naming the symbol, where the store cannot supply it (a store written before it kept bars) or
    ``bars`` overlaps the stored bars without the whole history."""
    from alphapulse.pipelines.errors import DataError

    state = snapshot.state
    g = bars.groupby("symbol", sort=False)["timestamp"]
    firsts = g.min().reindex(state["symbol"]).to_numpy("datetime64[ns]")
    counts = g.size().reindex(state["symbol"]).fillna(0).to_numpy()
    seen = state["seen"].to_numpy()
    # NaT (a symbol not in the input) compares False: its history must come from the store
    whole = (firsts <= state["first_timestamp"].to_numpy("datetime64[ns]")) | (counts >= seen)
    need = state[~whole].reset_index(drop=True)
    if not len(need):
        return bars
    stored = read_bars(snapshot.root, snapshot.manifest, need["symbol"])
    got = stored.groupby("symbol", sort=False).size().reindex(need["symbol"]).fillna(0).to_numpy()
    missing = np.flatnonzero(got != need["seen"].to_numpy())
    if len(missing):
        k = int(missing[0])
        sym, first, n = need["symbol"][k], pd.Timestamp(need["first_timestamp"][k]), int(need["seen"][k])
        raise DataError(f"{sym}: {why}, so the store is recomputed in full, but neither the input nor the store "
                        f"holds this symbol's whole history (stored from {first}, {n:,} bars; the store keeps no "
                        "bars of it); give the whole history, or a new store")
    at = pd.Index(need["symbol"]).get_indexer(bars["symbol"])
    last = need["last_timestamp"].to_numpy("datetime64[ns]")
    older = (at >= 0) & (bars["timestamp"].to_numpy().astype("datetime64[ns]") <= last[np.maximum(at, 0)])
    if older.any():
        k = int(at[np.flatnonzero(older)[0]])
        n = int((older & (at == k)).sum())
        raise DataError(f"{need['symbol'][k]}: the input holds {n:,} bar(s) at or before its last stored bar "
                        f"({pd.Timestamp(last[k])}) but not its whole history (stored from "
                        f"{pd.Timestamp(need['first_timestamp'][k])}, {int(need['seen'][k]):,} bars): give only newer "
                        "bars, or the whole history")
    stored = stored.astype(bars.dtypes.to_dict())
    return pd.concat([bars, stored], ignore_index=True).sort_values(["symbol", "timestamp"], kind="stable",
                                                                     ignore_index=True)


# ---------------------------------------------------------------------------------------------
# The commit
# ---------------------------------------------------------------------------------------------


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    if path.parent.name == BARS_DIR:  # the input's bars: see frames.write_computed
        frame.to_parquet(path, index=False, row_group_size=ROWS_PER_GROUP)
    else:
        frames.write_computed(frame, path, row_group_size=ROWS_PER_GROUP)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _symbol_range(frame: pd.DataFrame) -> list[str]:
    return [str(frame["symbol"].iloc[0]), str(frame["symbol"].iloc[-1])] if len(frame) else []


def _carry(entries: list[dict], old_data: Path, tree: Path, recomputed: set[str], seq: int) -> list[dict]:
    """The committed files ``entries`` in the next tree: hard links, except that a file holding a
    recomputed symbol's rows is rewritten without them (only a correction pays for reading history)."""
    out = []
    for entry in entries:
        src = old_data / entry["path"]
        lo, hi = (entry["symbols"] + [None, None])[:2]
        if recomputed and lo is not None and any(lo <= s <= hi for s in recomputed):
            old = pd.read_parquet(src)
            kept = old[~old["symbol"].isin(recomputed)]
            if len(kept) < len(old):
                if len(kept):
                    name = entry["path"].replace(".parquet", f"-r{seq:06d}.parquet")
                    _write_parquet(kept, tree / name)
                    out.append({"path": name, "rows": int(len(kept)), "symbols": _symbol_range(kept)})
                continue
        link_or_copy(src, tree / entry["path"])
        out.append(entry)
    return out


def _write_chunks(frame: pd.DataFrame, tree: Path, prefix: str, seq: int) -> list[dict]:
    """``frame`` (sorted by symbol) as files of at most :data:`ROWS_PER_FILE` rows, ``<prefix>-<seq>-<k>``."""
    out = []
    for k, begin in enumerate(range(0, len(frame), ROWS_PER_FILE)):
        chunk = frame.iloc[begin:begin + ROWS_PER_FILE]
        name = f"{prefix}-{seq:06d}-{k:05d}.parquet"
        _write_parquet(chunk, tree / name)
        out.append({"path": name, "rows": int(len(chunk)), "symbols": _symbol_range(chunk)})
    return out


def _compact_bars(entries: list[dict], tree: Path, seq: int) -> list[dict]:
    """``entries`` (the next tree's bar files), with the small ones merged once there are
    :data:`BARS_COMPACT_FILES` of them. Bar files are the store's own hidden copies, rewritten as
    its state is; the rows readers read are never rewritten by a compaction."""
    small = [e for e in entries if e["rows"] < BARS_COMPACT_ROWS]
    if len(small) < BARS_COMPACT_FILES:
        return entries
    merged = pd.concat([pd.read_parquet(tree / e["path"]) for e in small], ignore_index=True)
    merged = merged.sort_values(["symbol", "timestamp"], kind="stable", ignore_index=True)
    for e in small:
        (tree / e["path"]).unlink()  # a link or a file in the staging tree: the committed tree keeps its own
    kept = [e for e in entries if e["rows"] >= BARS_COMPACT_ROWS]
    return kept + _write_chunks(merged, tree, f"{BARS_DIR}/merged", seq)


def commit(snapshot: Snapshot, *, rows: pd.DataFrame, bars: pd.DataFrame, state: pd.DataFrame,
           recomputed: set[str], full: bool, identity: dict, run: dict) -> dict:
    """Make ``rows`` and ``state`` the store's next committed version, in one atomic step.

    Parameters
    ----------
    snapshot : the committed store (from :func:`open_store`), its lock held by the caller
    rows : this run's computed rows, ``timestamp, symbol, <outputs>`` sorted by (symbol, timestamp)
    bars : the bars they were computed from (validated, the same order), kept under ``_bars/``
    state : the whole next state (every symbol, those this run did not touch included), by symbol
    recomputed : symbols whose committed rows this run's rows replace (their old rows are dropped)
    full : every committed row is replaced (a changed config, dtype or code)
    identity : :func:`store_identity` of this run
    run : this run's record for the manifest's ``runs`` list (run id, counts, reasons)

    Returns
    -------
    The committed manifest.
    """
    root = snapshot.root
    root.mkdir(parents=True, exist_ok=True)
    if not _is_marked(root):
        (root / MARK_FILE).write_text(json.dumps({MARK: {"format": FORMAT}}) + "\n", encoding="utf-8")
    seq = 1 + (snapshot.manifest["version"] if snapshot.manifest else 0)
    staging = root / f"{STAGING}{uuid.uuid4().hex[:12]}"
    tree = staging / DATA
    (tree / STATE_DIR).mkdir(parents=True)
    (tree / BARS_DIR).mkdir()
    old_data = root / DATA
    try:
        files = ([] if full else _carry(snapshot.files, old_data, tree, recomputed, seq)) \
            + _write_chunks(rows, tree, "part", seq)
        bar_files = _compact_bars(([] if full else _carry(snapshot.bar_files, old_data, tree, recomputed, seq))
                                  + _write_chunks(bars, tree, f"{BARS_DIR}/bars", seq), tree, seq)
        state_files = []
        for k, begin in enumerate(range(0, len(state), STATE_SYMBOLS_PER_FILE)):
            name = f"{STATE_DIR}/state-{k:05d}.parquet"
            _write_parquet(state.iloc[begin:begin + STATE_SYMBOLS_PER_FILE], tree / name)
            state_files.append(name)
        runs = (snapshot.manifest["runs"] if snapshot.manifest else [])[-99:] + [{"version": seq, **run}]
        manifest = {MARK: {"format": FORMAT}, "version": seq, "identity": identity,
                    "rows": int(sum(f["rows"] for f in files)), "symbols": int(len(state)),
                    "files": sorted(files, key=lambda f: f["path"]), "state": state_files,
                    "bars": sorted(bar_files, key=lambda f: f["path"]), "runs": runs}
        (tree / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        for d in (tree / STATE_DIR, tree / BARS_DIR, tree):
            fsync_dir(d)
        _swap(tree, old_data, staging)
    finally:
        if old_data.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:  # failed between the fallback's two renames: the committed tree is staging/old
            recover(root)
    fsync_dir(root)
    return manifest


def _swap(tree: Path, data: Path, staging: Path) -> None:
    """Put ``tree`` at ``data`` atomically; the committed tree (if any) ends up inside ``staging``."""
    if not data.exists():
        os.rename(tree, data)
        return
    if exchange_paths(tree, data):
        return
    os.rename(data, staging / "old")  # a kill here is undone by recover()
    os.rename(tree, data)
