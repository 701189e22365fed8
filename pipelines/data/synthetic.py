"""Seeded synthetic OHLCV bars of any size, for scale tests and benchmarks.

Implements
----------
- :func:`synthetic_bars`: a long ("tidy") pandas frame ``timestamp, symbol, open, high, low,
  close, volume``, sorted by (symbol, timestamp), daily or minute bars.
- :func:`write_synthetic_parquet`: the same bars as a folder of parquet files
  (``part-00000.parquet``, ...), each holding whole symbols, written with bounded memory.
- A command line: ``python -m alphapulse.pipelines.data.synthetic OUT --symbols N --bars T [--frequency minute]
  [--seed S]``.

Model
-----
Log-returns per bar, for symbol ``i`` at bar ``t`` (``dt`` is the bar's length in years:
1/252 for daily bars, 1/(252 * 390) for minute bars, so a per-bar volatility is the annual one
times ``sqrt(dt)``):

``r[i, t] = drift[i] * dt + beta[i] * m[t] + idio_vol[i] * k(s[i, t]) * sqrt(dt) * z[i, t] + J[i, t]``

- ``m[t]``, the market factor, common to all symbols: Gaussian with an annual volatility of 14%
  in its calm and 32% in its turbulent regime, plus Poisson jumps (1.5 a year, mean -3%, sd 4%).
- ``s[i, t]``, each symbol's own two-state (calm/turbulent) Markov chain, persistent: mean stays
  of 250 trading days calm and 50 turbulent; ``k`` is 1 calm and 2.5 turbulent. The market's
  chain is the same kind (500 and 60 days). Chains are generated from geometric holding times,
  vectorised (no loop over time steps).
- ``beta[i]`` uniform in [0.5, 1.5], ``idio_vol[i]`` log-uniform in [12%, 35%] a year,
  ``drift[i]`` (expected log-growth, jumps' mean compensated) uniform in [2%, 10%] a year,
  ``J[i, t]`` idiosyncratic Poisson jumps (3 a year, mean 0, sd 7%): fat tails.
- Starting prices log-uniform in [5, 500].

Bars are consistent by construction: ``open`` is the previous close times a small gap
(``exp`` of 0.3 (daily) or 0.1 (minute) bar standard deviations), ``close`` is the previous close
times ``exp(r)``, ``high = max(open, close) * exp(e1)`` and ``low = min(open, close) *
exp(-e2)`` with ``e`` exponential of mean 0.45 bar standard deviations, so ``high >= max(open, close)``,
``low <= min(open, close)`` and ``low > 0`` hold exactly, in float64 and after the cast to float32
(rounding is monotonic). Volume is log-normal around a per-symbol level (log-uniform in
[1e5, 1e7] a day; minute bars split it over a U-shaped intraday profile), higher on bars with a
large standardised move ``|r| / sd_calm``.

Late listings: with ``late_listing_fraction > 0``, ``round(fraction * n_symbols)`` symbols,
chosen at random, start at a random later bar (uniform in [1, n_bars - 1]); their earlier rows do
not exist, and their price at listing starts from their starting price.

Determinism and chunking
------------------------
Random streams come from :class:`numpy.random.SeedSequence` with ``entropy=seed`` and a spawn
key: ``(0,)`` for the market, ``(2,)`` for the listing draws, and ``(1, b)`` for block ``b`` of
:data:`BLOCK_SYMBOLS` consecutive symbols (symbols ``b * 50 .. b * 50 + 49``). A symbol's bars
therefore depend on (seed, n_bars, frequency, start, its index) only, plus, for late listings,
on n_symbols and the fraction; never on how the work is chunked, so the files of
:func:`write_synthetic_parquet` concatenated equal :func:`synthetic_bars`, and the first ``k``
symbols of ``n`` are those of ``synthetic_bars(k, ...)`` (when nothing is listed late).

Blocks are also the unit of work: computation is vectorised over the 50 symbols (and all bars)
of a block, and the Python loop runs over blocks, which bounds the temporaries to a few arrays of
50 x n_bars float64 whatever the number of symbols. Everything is generated in float64 and cast
to ``dtype`` when stored.
"""
from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
"""Column order of the frames and files produced here."""

BLOCK_SYMBOLS = 50
"""Symbols per random stream (and per unit of vectorised work). Changing it changes the data."""

TRADING_DAYS_PER_YEAR = 252
MINUTES_PER_DAY = 390
_FIRST_MINUTE = pd.Timedelta(hours=9, minutes=30)
_ROW_GROUP_ROWS = 1 << 20

# Market factor.
_MARKET_VOL_CALM = 0.14  # annual
_MARKET_VOL_TURBULENT = 0.32
_MARKET_CALM_DAYS = 500.0  # mean stay, trading days
_MARKET_TURBULENT_DAYS = 60.0
_MARKET_JUMPS_PER_YEAR = 1.5
_MARKET_JUMP_MEAN = -0.03  # log-return
_MARKET_JUMP_SD = 0.04

# Symbols.
_START_PRICE = (5.0, 500.0)  # log-uniform
_BETA = (0.5, 1.5)  # uniform
_DRIFT = (0.02, 0.10)  # annual expected log-growth, uniform
_IDIO_VOL = (0.12, 0.35)  # annual, log-uniform
_TURBULENT_VOL_MULTIPLIER = 2.5
_CALM_DAYS = 250.0
_TURBULENT_DAYS = 50.0
_JUMPS_PER_YEAR = 3.0
_JUMP_MEAN = 0.0
_JUMP_SD = 0.07
_DAILY_VOLUME = (1e5, 1e7)  # log-uniform, shares a day

# Bars.
_RANGE_SD = 0.45  # mean high/low extension (exponential), in bar standard deviations
_VOLUME_MOVE_ELASTICITY = 0.7  # log-volume per log1p(|r| / sd_calm)
_VOLUME_NOISE_SD = 0.4  # log-volume


@dataclass(frozen=True)
class _Frequency:
    name: str
    bars_per_day: int
    gap_sd: float  # open gap, in bar standard deviations

    @property
    def years_per_bar(self) -> float:
        return 1.0 / (TRADING_DAYS_PER_YEAR * self.bars_per_day)


_FREQUENCIES = {
    "daily": _Frequency("daily", 1, 0.3),
    "minute": _Frequency("minute", MINUTES_PER_DAY, 0.1),
}


@dataclass(frozen=True)
class _Setup:
    """Everything shared by all blocks of one generation (small: O(n_bars + n_symbols))."""

    seed: int
    n_symbols: int
    n_bars: int
    freq: _Frequency
    dtype: np.dtype
    timestamps: np.ndarray  # (n_bars,) datetime64[ns]
    market_returns: np.ndarray  # (n_bars,) log-returns
    market_sd: np.ndarray  # (n_bars,) diffusion sd per bar
    listing_start: np.ndarray  # (n_symbols,) int64, first bar of each symbol
    volume_profile: np.ndarray  # (n_bars,) log intraday volume multiplier (0 for daily)


# ---------------------------------------------------------------------------------------------
# Random pieces
# ---------------------------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))


def _regime_states(
    rng: np.random.Generator, n_series: int, n_bars: int, *, mean_calm_bars: float, mean_turbulent_bars: float
) -> np.ndarray:
    """Two-state Markov chains from geometric holding times, vectorised over series and time.

    Returns
    -------
    turbulent : bool array of shape (n_series, n_bars)
        Starts from the stationary distribution; a stay lasts Geometric(1 / mean) bars.
    """
    cycle = mean_calm_bars + mean_turbulent_bars
    turbulent0 = rng.random(n_series) < mean_turbulent_bars / cycle
    expected_pairs = n_bars / cycle
    n_pairs = int(math.ceil(expected_pairs + 4.0 * math.sqrt(expected_pairs) + 2.0))
    ends = np.zeros((n_series, 1), dtype=np.int64)
    pieces = []
    while ends[:, -1].min() < n_bars:  # almost always one pass; the extension is deterministic too
        calm = rng.geometric(1.0 / mean_calm_bars, (n_series, n_pairs))
        turbulent = rng.geometric(1.0 / mean_turbulent_bars, (n_series, n_pairs))
        first = np.where(turbulent0[:, None], turbulent, calm)
        second = np.where(turbulent0[:, None], calm, turbulent)
        pieces.append(np.stack([first, second], axis=2).reshape(n_series, 2 * n_pairs))
        ends = np.cumsum(np.concatenate(pieces, axis=1), axis=1)
    flips = np.zeros((n_series, n_bars), dtype=np.uint8)
    rows, cols = np.nonzero(ends < n_bars)
    flips[rows, ends[rows, cols]] = 1  # a new stay starts at each end (ends are distinct per row)
    states = np.bitwise_xor.accumulate(flips, axis=1)
    states ^= turbulent0[:, None].astype(np.uint8)
    return states.view(bool)


def _add_jumps(
    rng: np.random.Generator, returns: np.ndarray, *, jumps_per_bar: float, mean: float, sd: float
) -> None:
    """Add a compound Poisson process (Gaussian sizes) to ``returns`` of shape (n_series, n_bars)."""
    n_series, n_bars = returns.shape
    counts = rng.poisson(jumps_per_bar * n_bars, n_series)
    rows = np.repeat(np.arange(n_series), counts)
    cols = rng.integers(0, n_bars, rows.size)
    sizes = rng.normal(mean, sd, rows.size)
    np.add.at(returns, (rows, cols), sizes)


def _timestamps(start: str, n_bars: int, freq: _Frequency) -> np.ndarray:
    """Bar timestamps, shape (n_bars,), datetime64[ns]: business days, or 09:30-15:59 minutes."""
    first = pd.Timestamp(start).normalize()
    n_days = -(-n_bars // freq.bars_per_day)
    days = pd.bdate_range(first, periods=n_days).as_unit("ns").to_numpy()
    if freq.bars_per_day == 1:
        return days
    minutes = _FIRST_MINUTE.to_timedelta64().astype("m8[ns]")
    minutes = minutes + np.arange(freq.bars_per_day) * np.timedelta64(60_000_000_000, "ns")
    return (days[:, None] + minutes[None, :]).reshape(-1)[:n_bars]


def _volume_profile(n_bars: int, freq: _Frequency) -> np.ndarray:
    """Log intraday volume multiplier per bar, shape (n_bars,): a U shape of mean 1, 0 for daily."""
    if freq.bars_per_day == 1:
        return np.zeros(n_bars)
    x = np.linspace(-1.0, 1.0, freq.bars_per_day)
    shape = 1.0 + 2.0 * x**2
    shape /= shape.mean()
    return np.resize(np.log(shape), n_bars)


def _check_integer(name: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _setup(
    n_symbols: int, n_bars: int, *, frequency: str, start: str, seed: int, late_listing_fraction: float, dtype
) -> _Setup:
    _check_integer("n_symbols", n_symbols, minimum=1)
    _check_integer("n_bars", n_bars, minimum=1)
    _check_integer("seed", seed, minimum=0)
    if frequency not in _FREQUENCIES:
        raise ValueError(f"frequency must be one of {sorted(_FREQUENCIES)}, got {frequency!r}")
    if not 0.0 <= late_listing_fraction <= 1.0:
        raise ValueError(f"late_listing_fraction must be in [0, 1], got {late_listing_fraction!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    n_symbols, n_bars, seed = int(n_symbols), int(n_bars), int(seed)
    freq = _FREQUENCIES[frequency]
    dt = freq.years_per_bar
    bars_per_year = 1.0 / dt

    rng = _rng(seed, 0)
    turbulent = _regime_states(
        rng, 1, n_bars,
        mean_calm_bars=_MARKET_CALM_DAYS * freq.bars_per_day,
        mean_turbulent_bars=_MARKET_TURBULENT_DAYS * freq.bars_per_day,
    )[0]
    market_sd = np.where(turbulent, _MARKET_VOL_TURBULENT, _MARKET_VOL_CALM) * math.sqrt(dt)
    market_returns = market_sd * rng.standard_normal(n_bars)
    _add_jumps(
        rng, market_returns[None, :], jumps_per_bar=_MARKET_JUMPS_PER_YEAR / bars_per_year,
        mean=_MARKET_JUMP_MEAN, sd=_MARKET_JUMP_SD,
    )

    listing_start = np.zeros(n_symbols, dtype=np.int64)
    n_late = int(round(late_listing_fraction * n_symbols))
    if n_late:
        if n_bars < 2:
            raise ValueError("late listing needs n_bars >= 2 (a late symbol starts at bar 1 or later)")
        rng = _rng(seed, 2)
        late = rng.choice(n_symbols, size=n_late, replace=False)
        listing_start[late] = rng.integers(1, n_bars, n_late)

    return _Setup(
        seed=seed, n_symbols=n_symbols, n_bars=n_bars, freq=freq, dtype=dtype,
        timestamps=_timestamps(start, n_bars, freq),
        market_returns=market_returns, market_sd=market_sd, listing_start=listing_start,
        volume_profile=_volume_profile(n_bars, freq),
    )


def _block_bars(block: int, setup: _Setup) -> tuple[np.ndarray, ...]:
    """Bars of symbols ``block * BLOCK_SYMBOLS ..`` (all of the block, listed or not).

    Returns
    -------
    open, high, low, close, volume : float64 arrays of shape (BLOCK_SYMBOLS, n_bars)
        Rows of symbols past ``n_symbols`` are generated too (and dropped by the caller), so that
        a symbol's bars never depend on how many symbols follow it.
    """
    n, freq = setup.n_bars, setup.freq
    dt = freq.years_per_bar
    sqrt_dt = math.sqrt(dt)
    b = BLOCK_SYMBOLS
    rng = _rng(setup.seed, 1, block)

    log_p0 = rng.uniform(math.log(_START_PRICE[0]), math.log(_START_PRICE[1]), b)
    beta = rng.uniform(*_BETA, b)
    drift = rng.uniform(*_DRIFT, b)
    idio_vol = np.exp(rng.uniform(math.log(_IDIO_VOL[0]), math.log(_IDIO_VOL[1]), b))
    log_daily_volume = rng.uniform(math.log(_DAILY_VOLUME[0]), math.log(_DAILY_VOLUME[1]), b)
    # Expected log-growth = drift: remove the jumps' mean (the market's through beta).
    drift_bar = (drift - beta * _MARKET_JUMPS_PER_YEAR * _MARKET_JUMP_MEAN - _JUMPS_PER_YEAR * _JUMP_MEAN) * dt

    turbulent = _regime_states(
        rng, b, n,
        mean_calm_bars=_CALM_DAYS * freq.bars_per_day, mean_turbulent_bars=_TURBULENT_DAYS * freq.bars_per_day,
    )
    sd = np.multiply(turbulent, _TURBULENT_VOL_MULTIPLIER - 1.0)  # (b, n) idiosyncratic sd per bar
    sd += 1.0
    del turbulent
    sd *= (idio_vol * sqrt_dt)[:, None]

    returns = rng.standard_normal((b, n))
    returns *= sd
    returns += np.multiply.outer(beta, setup.market_returns)
    returns += drift_bar[:, None]
    _add_jumps(rng, returns, jumps_per_bar=_JUMPS_PER_YEAR * dt, mean=_JUMP_MEAN, sd=_JUMP_SD)

    # Total diffusion sd per bar (market + idiosyncratic), scale of gaps and ranges.
    np.square(sd, out=sd)
    sd += np.multiply.outer(beta**2, setup.market_sd**2)
    np.sqrt(sd, out=sd)

    log_close = np.cumsum(returns, axis=1)
    log_close += log_p0[:, None]
    starts = np.zeros(b, dtype=np.int64)
    first, last = block * b, min((block + 1) * b, setup.n_symbols)
    starts[: last - first] = setup.listing_start[first:last]
    late = np.flatnonzero(starts)
    if late.size:  # a late symbol's close before its first bar is its starting price
        log_close[late] -= (log_close[late, starts[late] - 1] - log_p0[late])[:, None]

    log_open = rng.standard_normal((b, n))
    log_open *= sd
    log_open *= freq.gap_sd
    log_open[:, 0] += log_p0
    log_open[:, 1:] += log_close[:, :-1]
    open_ = np.exp(log_open, out=log_open)
    close = np.exp(log_close, out=log_close)

    extension = rng.standard_exponential((b, n))
    extension *= sd
    extension *= _RANGE_SD
    high = np.maximum(open_, close)
    high *= np.exp(extension, out=extension)  # exp(>= 0) >= 1: high >= max(open, close) exactly
    extension = rng.standard_exponential((b, n))
    extension *= sd
    extension *= -_RANGE_SD
    low = np.minimum(open_, close)
    low *= np.exp(extension, out=extension)  # in (0, 1]: 0 < low <= min(open, close)
    del extension

    # Volume: log-normal, elastic to the move standardised by the calm-regime sd.
    sd_calm = np.sqrt(idio_vol**2 + (beta * _MARKET_VOL_CALM) ** 2) * sqrt_dt
    returns -= drift_bar[:, None]
    move = np.abs(returns, out=returns)
    move /= sd_calm[:, None]
    move += 1.0
    log_volume = np.log(move, out=move)
    log_volume *= _VOLUME_MOVE_ELASTICITY
    log_volume += _VOLUME_NOISE_SD * rng.standard_normal((b, n))
    log_volume += (log_daily_volume - math.log(freq.bars_per_day))[:, None]
    log_volume += setup.volume_profile
    volume = np.exp(log_volume, out=log_volume)
    return open_, high, low, close, volume


# ---------------------------------------------------------------------------------------------
# Assembly: long columns for a range of symbols
# ---------------------------------------------------------------------------------------------


def _symbol_names(first: int, stop: int, counts: np.ndarray, n_symbols: int) -> pa.Array:
    """Arrow large_string array of ``S{i:0{w}d}`` repeated ``counts[i - first]`` times, built from buffers."""
    width = len(str(n_symbols - 1))
    index = np.arange(first, stop, dtype=np.int64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    chars = np.empty((stop - first, width + 1), dtype=np.uint8)
    chars[:, 0] = ord("S")
    chars[:, 1:] = (index[:, None] // powers) % 10 + ord("0")
    data = np.repeat(chars, counts, axis=0)
    n_rows = data.shape[0]
    offsets = np.arange(0, (n_rows + 1) * (width + 1), width + 1, dtype=np.int64)
    return pa.Array.from_buffers(pa.large_string(), n_rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _long_columns(first: int, stop: int, setup: _Setup) -> dict[str, object]:
    """Columns of symbols ``first .. stop - 1`` in long form, sorted by (symbol, timestamp).

    Returns
    -------
    dict of column name -> array, in :data:`COLUMNS` order: ``timestamp`` datetime64[ns] and the
    prices (``setup.dtype``) and ``volume`` (float64) as NumPy arrays of shape (n_rows,),
    ``symbol`` as an Arrow large_string array.
    """
    n_rows_panel = stop - first
    n = setup.n_bars
    prices = {c: np.empty((n_rows_panel, n), dtype=setup.dtype) for c in ("open", "high", "low", "close")}
    volume = np.empty((n_rows_panel, n), dtype=np.float64)
    for block in range(first // BLOCK_SYMBOLS, (stop - 1) // BLOCK_SYMBOLS + 1):
        lo = max(first, block * BLOCK_SYMBOLS)
        hi = min(stop, (block + 1) * BLOCK_SYMBOLS)
        rows = slice(lo - block * BLOCK_SYMBOLS, hi - block * BLOCK_SYMBOLS)
        open_, high, low, close, vol = _block_bars(block, setup)
        for name, values in (("open", open_), ("high", high), ("low", low), ("close", close)):
            prices[name][lo - first : hi - first] = values[rows]
        volume[lo - first : hi - first] = vol[rows]
        del open_, high, low, close, vol

    starts = setup.listing_start[first:stop]
    counts = n - starts
    columns: dict[str, object] = {}
    if not starts.any():
        columns["timestamp"] = np.tile(setup.timestamps, n_rows_panel)
        columns["symbol"] = _symbol_names(first, stop, counts, setup.n_symbols)
        for name in ("open", "high", "low", "close"):
            columns[name] = prices.pop(name).reshape(-1)
        columns["volume"] = volume.reshape(-1)
        return columns
    listed = np.arange(n)[None, :] >= starts[:, None]
    columns["timestamp"] = np.broadcast_to(setup.timestamps, (n_rows_panel, n))[listed]
    columns["symbol"] = _symbol_names(first, stop, counts, setup.n_symbols)
    for name in ("open", "high", "low", "close"):
        columns[name] = prices.pop(name)[listed]  # one full panel at a time: peak + one column
    columns["volume"] = volume[listed]
    return columns


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def synthetic_bars(
    n_symbols: int,
    n_bars: int,
    *,
    frequency: str = "daily",
    start: str = "2015-01-02",
    seed: int = 0,
    late_listing_fraction: float = 0.0,
    dtype: npt.DTypeLike = np.float64,
) -> pd.DataFrame:
    """Realistic OHLCV bars for ``n_symbols`` symbols over ``n_bars`` bars (see the module docstring).

    Parameters
    ----------
    n_symbols : int
        Number of symbols, named ``S0``.. zero-padded to the width of ``n_symbols - 1``
        (``S0000`` .. ``S4999`` for 5,000).
    n_bars : int
        Bars per symbol (listed from the first bar).
    frequency : {"daily", "minute"}
        Daily: one bar a business day (``pandas.bdate_range``), at midnight. Minute: 390 bars a
        business day, 09:30 to 15:59; ``n_bars`` need not be a multiple of 390.
    start : str
        First day (its date only); a non-business day starts on the next business day.
    seed : int
        Non-negative; the same arguments and seed give the same frame.
    late_listing_fraction : float in [0, 1]
        ``round(fraction * n_symbols)`` symbols start at a random bar in [1, n_bars - 1] (their
        earlier rows do not exist); all symbols end at the last bar.
    dtype : float32 or float64
        Storage dtype of ``open, high, low, close`` (generated in float64, then cast).

    Returns
    -------
    bars : pandas.DataFrame with columns ``timestamp`` (datetime64[ns], tz-naive), ``symbol``
        (str), ``open``, ``high``, ``low``, ``close`` (``dtype``), ``volume`` (float64, shares),
        ``n_symbols * n_bars`` rows less late listings' missing ones, sorted by (symbol, timestamp),
        with a RangeIndex.
    """
    setup = _setup(
        n_symbols, n_bars, frequency=frequency, start=start, seed=seed,
        late_listing_fraction=late_listing_fraction, dtype=dtype,
    )
    columns = _long_columns(0, setup.n_symbols, setup)
    columns["symbol"] = columns["symbol"].to_pandas()
    return pd.DataFrame(columns, columns=list(COLUMNS), copy=False)


def write_synthetic_parquet(
    path: str | Path,
    n_symbols: int,
    n_bars: int,
    *,
    frequency: str = "daily",
    start: str = "2015-01-02",
    seed: int = 0,
    late_listing_fraction: float = 0.0,
    dtype: npt.DTypeLike = np.float64,
    symbols_per_file: int = 500,
    overwrite: bool = False,
) -> list[Path]:
    """Write :func:`synthetic_bars` as a folder of parquet files, each holding whole symbols.

    File ``part-{k:05d}.parquet`` holds symbols ``k * symbols_per_file`` .. (up to
    ``symbols_per_file`` of them) sorted by (symbol, timestamp), without an index; read in order
    and concatenated, the files equal ``synthetic_bars`` with the same arguments, whatever
    ``symbols_per_file``. Files are written :data:`BLOCK_SYMBOLS` symbols at a time (row groups
    of about a million rows), so memory stays bounded by one block's bars (about 0.5 GB for
    50 symbols x one year of minute bars), not by a file's.

    Parameters
    ----------
    path : folder, created if missing
    n_symbols, n_bars, frequency, start, seed, late_listing_fraction, dtype
        As in :func:`synthetic_bars`.
    symbols_per_file : int
        Symbols per file (the last file may hold fewer).
    overwrite : bool
        Remove existing ``part-*.parquet`` files in ``path`` first; otherwise their presence is an
        error (a reader of the folder would mix old and new parts).

    Returns
    -------
    paths : list of Path, the files written, in symbol order.
    """
    _check_integer("symbols_per_file", symbols_per_file, minimum=1)
    setup = _setup(
        n_symbols, n_bars, frequency=frequency, start=start, seed=seed,
        late_listing_fraction=late_listing_fraction, dtype=dtype,
    )
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    stale = sorted(folder.glob("part-*.parquet"))
    if stale:
        if not overwrite:
            raise FileExistsError(
                f"{folder} already holds {len(stale)} part-*.parquet files (pass overwrite=True to replace them)"
            )
        for old in stale:
            old.unlink()

    price_type = pa.from_numpy_dtype(setup.dtype)
    schema = pa.schema([
        ("timestamp", pa.timestamp("ns")), ("symbol", pa.large_string()),
        ("open", price_type), ("high", price_type), ("low", price_type), ("close", price_type),
        ("volume", pa.float64()),
    ])
    paths = []
    n_files = -(-setup.n_symbols // symbols_per_file)
    for k in range(n_files):
        file_first = k * symbols_per_file
        file_stop = min(setup.n_symbols, file_first + symbols_per_file)
        target = folder / f"part-{k:05d}.parquet"
        pending: list[pa.Table] = []
        pending_rows = 0
        with pq.ParquetWriter(target, schema) as writer:
            first = file_first
            while first < file_stop:  # block-aligned pieces: each block generated once per file
                stop = min(file_stop, (first // BLOCK_SYMBOLS + 1) * BLOCK_SYMBOLS)
                columns = _long_columns(first, stop, setup)
                arrays = [columns[c] if c == "symbol" else pa.array(columns[c]) for c in COLUMNS]
                pending.append(pa.table(arrays, schema=schema))
                pending_rows += pending[-1].num_rows
                del columns
                if pending_rows >= _ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                    pending, pending_rows = [], 0
                first = stop
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
        paths.append(target)
        log.info("wrote %s: symbols %d-%d (%d of %d files)", target, file_first, file_stop - 1, k + 1, n_files)
    return paths


def main(argv: list[str] | None = None) -> list[Path]:
    """Command line: ``python -m alphapulse.pipelines.data.synthetic OUT --symbols N --bars T [...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m alphapulse.pipelines.data.synthetic",
        description="Write seeded synthetic OHLCV bars as a folder of parquet files (part-00000.parquet, ...).",
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--symbols", type=int, required=True, help="number of symbols")
    parser.add_argument("--bars", type=int, required=True, help="bars per symbol")
    parser.add_argument("--frequency", choices=sorted(_FREQUENCIES), default="daily")
    parser.add_argument("--start", default="2015-01-02", help="first day (default 2015-01-02)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--late-listing-fraction", type=float, default=0.0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="price dtype")
    parser.add_argument("--symbols-per-file", type=int, default=500)
    parser.add_argument("--overwrite", action="store_true", help="replace existing part files in OUT")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = write_synthetic_parquet(
        args.out, args.symbols, args.bars, frequency=args.frequency, start=args.start, seed=args.seed,
        late_listing_fraction=args.late_listing_fraction, dtype=args.dtype,
        symbols_per_file=args.symbols_per_file, overwrite=args.overwrite,
    )
    log.info("%d files in %s", len(paths), args.out)
    return paths


if __name__ == "__main__":
    main()
