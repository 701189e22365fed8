"""Shared helpers for the risk and portfolio tests: real close panels, the FTSE 100 file,
synthetic returns with gaps, and NumPy with CuPy's linear-algebra failure semantics (CPU tests of
the code paths a transform takes on CuPy)."""
from __future__ import annotations

import functools
import os
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# CuPy's linear-algebra failure semantics live with the CuPy stand-in, which uses them on device arrays
from tests.cupy_standin._linalg import unchecked_cholesky, unchecked_solve

ROOT = Path(__file__).resolve().parents[2]
FTSE_CSV = Path(os.environ.get("ALPHAPULSE_FTSE100_CSV",
                               ROOT.parent / "shared" / "data" / "ftse100" / "ftse100_dataset.csv.gz"))


def close_panel(long: pd.DataFrame) -> pd.DataFrame:
    """Long bars -> wide closes (timestamps x symbols, sorted), NaN where a symbol has no bar."""
    wide = long.pivot(index="timestamp", columns="symbol", values="close").sort_index()
    return wide.reindex(sorted(wide.columns), axis=1)


@functools.lru_cache(maxsize=1)
def _ftse_wide() -> pd.DataFrame | None:
    if not FTSE_CSV.exists():
        return None
    wide = pd.read_csv(FTSE_CSV)
    return wide.set_index(wide.columns[0]).sort_index()


def ftse_closes() -> pd.DataFrame:
    """The FTSE 100 adjusted closes (dates x 64 symbols, wide as shipped); skips when absent."""
    wide = _ftse_wide()
    if wide is None:
        pytest.skip(f"FTSE 100 file not found at {FTSE_CSV} (set ALPHAPULSE_FTSE100_CSV to its path)")
    return wide


def synthetic_returns(n_bars: int = 400, n_symbols: int = 12, seed: int = 7, gaps: bool = True) -> np.ndarray:
    """Seeded one-factor returns (correlations 0.2-0.8) with a late listing, interior gaps and a
    symbol without data when ``gaps``."""
    rng = np.random.default_rng(seed)
    beta = rng.uniform(0.5, 2.0, n_symbols)
    market = rng.normal(0.0003, 0.01, n_bars)
    r = market[:, None] * beta[None, :] + rng.normal(0, 0.01, (n_bars, n_symbols)) * rng.uniform(0.5, 2, n_symbols)
    if gaps:
        r[: n_bars // 2, 1] = np.nan  # late listing
        r[rng.choice(n_bars, 15, replace=False), 2] = np.nan  # interior gaps
        r[n_bars - 30:, 3] = np.nan  # delisted
        r[:, 4] = np.nan  # no data
    return r


def month_end_rows(index) -> np.ndarray:
    """Row positions of the last row of each calendar month of a date index."""
    dates = pd.DatetimeIndex(pd.to_datetime(index))
    pos = pd.Series(np.arange(len(dates)), index=dates)
    return pos.groupby([dates.year, dates.month]).max().to_numpy()


def cupy_like_numpy():
    """NumPy, except that ``linalg.cholesky`` and ``linalg.solve`` fail as CuPy's do by default
    (``cupyx.errstate(linalg="ignore")``): silently, with a partial factor or non-finite values,
    where NumPy raises ``LinAlgError``. Passed (or patched in) as a transform's ``xp``, it makes
    the transform take its CuPy branches on the CPU; ``xp is np`` is False for it."""
    fake = types.ModuleType("cupy_like_numpy")
    fake.__dict__.update({k: v for k, v in vars(np).items() if not k.startswith("__")})
    linalg = types.ModuleType("cupy_like_numpy.linalg")
    linalg.__dict__.update({k: v for k, v in vars(np.linalg).items() if not k.startswith("__")})
    linalg.cholesky, linalg.solve = unchecked_cholesky, unchecked_solve
    fake.linalg = linalg
    return fake


def install_fake_cupyx(monkeypatch):
    """``cupyx.scipy.linalg`` as SciPy's (``solve_triangular`` has the same signature), for the
    CuPy branches that import it, run on :func:`cupy_like_numpy` arrays."""
    import scipy.linalg

    for name, module in (("cupyx", types.ModuleType("cupyx")), ("cupyx.scipy", types.ModuleType("cupyx.scipy")),
                         ("cupyx.scipy.linalg", scipy.linalg)):
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules["cupyx"].scipy = sys.modules["cupyx.scipy"]
    sys.modules["cupyx.scipy"].linalg = scipy.linalg


class _DeviceLike(np.ndarray):
    """A NumPy array that ``alphapulse.transforms.arrays`` takes for a CuPy one (its type's module is
    ``cupy``), with CuPy's ``get``."""

    def get(self):
        return np.array(self)


_DeviceLike.__module__ = "cupy"


def install_fake_cupy(monkeypatch):
    """Make ``cupy`` importable as :func:`cupy_like_numpy` (with :func:`install_fake_cupyx`) and
    return a function that marks an array as a device array: the transform then takes its CuPy
    paths on the CPU, including the checks that refuse device arrays (``is_cupy``)."""
    monkeypatch.setitem(sys.modules, "cupy", cupy_like_numpy())
    install_fake_cupyx(monkeypatch)
    return lambda a: np.asarray(a, dtype=np.float64).view(_DeviceLike)
