"""Tests for alphapulse.pipelines.data.synthetic: determinism, schema, OHLC consistency, stylised facts, files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapulse.pipelines.data.synthetic import COLUMNS, synthetic_bars, write_synthetic_parquet

TRADING_DAYS = 252


def _panel(frame: pd.DataFrame, column: str, n_symbols: int) -> np.ndarray:
    """(n_symbols, n_bars) panel of a frame where every symbol has every bar."""
    return frame[column].to_numpy(dtype=np.float64).reshape(n_symbols, -1)


@pytest.fixture(scope="module")
def daily_sample() -> pd.DataFrame:
    return synthetic_bars(50, 2000, seed=7)


@pytest.fixture(scope="module")
def daily_returns(daily_sample) -> np.ndarray:
    return np.diff(np.log(_panel(daily_sample, "close", 50)), axis=1)


# --- determinism, schema --------------------------------------------------------------------


def test_same_seed_same_frame_different_seed_different():
    a = synthetic_bars(7, 60, seed=3, late_listing_fraction=0.3)
    b = synthetic_bars(7, 60, seed=3, late_listing_fraction=0.3)
    pd.testing.assert_frame_equal(a, b)
    c = synthetic_bars(7, 60, seed=4, late_listing_fraction=0.3)
    assert not np.array_equal(a["close"].to_numpy()[:60], c["close"].to_numpy()[:60])


def test_symbols_do_not_depend_on_how_many_follow():
    small = synthetic_bars(3, 40, seed=1)
    large = synthetic_bars(120, 40, seed=1)
    head = large.iloc[: len(small)].reset_index(drop=True)
    # Names are padded to the width of n_symbols - 1; the bars themselves are identical.
    assert list(head["symbol"].unique()) == ["S000", "S001", "S002"]
    pd.testing.assert_frame_equal(head.drop(columns="symbol"), small.drop(columns="symbol"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_schema_shape_and_order(dtype):
    frame = synthetic_bars(11, 25, dtype=dtype)
    assert tuple(frame.columns) == COLUMNS == ("timestamp", "symbol", "open", "high", "low", "close", "volume")
    assert len(frame) == 11 * 25
    assert frame["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert frame["symbol"].dtype == pd.Series(["x"]).dtype  # pandas' default str dtype
    for column in ("open", "high", "low", "close"):
        assert frame[column].dtype == np.dtype(dtype)
    assert frame["volume"].dtype == np.float64
    assert isinstance(frame.index, pd.RangeIndex)
    assert frame["symbol"].iloc[0] == "S00" and frame["symbol"].iloc[-1] == "S10"
    expected = frame.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected)
    assert not frame.duplicated(["symbol", "timestamp"]).any()
    # Daily bars: business days from the start.
    days = pd.DatetimeIndex(frame["timestamp"].iloc[:25])
    assert days.equals(pd.bdate_range("2015-01-02", periods=25).as_unit("ns"))


def test_float32_is_the_float64_bars_cast():
    wide = synthetic_bars(4, 30, seed=5)
    narrow = synthetic_bars(4, 30, seed=5, dtype=np.float32)
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(narrow[column].to_numpy(), wide[column].to_numpy().astype(np.float32))
    np.testing.assert_array_equal(narrow["volume"].to_numpy(), wide["volume"].to_numpy())


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_symbols=0, n_bars=5), dict(n_symbols=2, n_bars=0), dict(n_symbols=2, n_bars=5, frequency="hourly"),
        dict(n_symbols=2, n_bars=5, seed=-1), dict(n_symbols=2, n_bars=5, late_listing_fraction=1.5),
        dict(n_symbols=2, n_bars=5, dtype=np.int64), dict(n_symbols=2, n_bars=1, late_listing_fraction=1.0),
    ],
)
def test_bad_arguments_are_errors(kwargs):
    with pytest.raises(ValueError):
        synthetic_bars(**kwargs)


# --- OHLC consistency -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_symbols=st.integers(1, 60),
    n_bars=st.integers(2, 400),
    seed=st.integers(0, 2**63),
    frequency=st.sampled_from(["daily", "minute"]),
    late_listing_fraction=st.floats(0.0, 1.0),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_ohlc_consistent(n_symbols, n_bars, seed, frequency, late_listing_fraction, dtype):
    frame = synthetic_bars(
        n_symbols, n_bars, frequency=frequency, seed=seed, late_listing_fraction=late_listing_fraction, dtype=dtype
    )
    o, h, lo, c, v = (frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    assert np.isfinite(np.stack([o, h, lo, c]).astype(np.float64)).all() and np.isfinite(v).all()
    assert (h >= np.maximum(o, c)).all()
    assert (np.maximum(o, c) >= np.minimum(o, c)).all()
    assert (np.minimum(o, c) >= lo).all()
    assert (lo > 0).all()
    assert (v > 0).all()
    counts = frame.groupby("symbol", sort=True).size()
    assert len(counts) == n_symbols
    assert (n_symbols - (counts == n_bars).sum()) == round(late_listing_fraction * n_symbols)
    # Each symbol's first open is its starting price (log-uniform in [5, 500]) times a small gap.
    first_open = frame.groupby("symbol", sort=True)["open"].first().to_numpy()
    assert (first_open > 4.0).all() and (first_open < 600.0).all()


# --- stylised facts (50 symbols x 2,000 days) ------------------------------------------------


def test_annualised_volatility_plausible(daily_returns):
    vol = daily_returns.std(axis=1) * np.sqrt(TRADING_DAYS)
    assert 0.10 <= np.median(vol) <= 0.80
    assert (vol > 0.05).all() and (vol < 1.5).all()


def test_fat_tails(daily_returns):
    r = daily_returns - daily_returns.mean(axis=1, keepdims=True)
    excess_kurtosis = (r**4).mean(axis=1) / (r**2).mean(axis=1) ** 2 - 3.0
    assert np.median(excess_kurtosis) > 1.0


def test_common_factor_correlates_symbols(daily_returns):
    corr = np.corrcoef(daily_returns)
    mean_pairwise = corr[np.triu_indices_from(corr, k=1)].mean()
    assert 0.1 < mean_pairwise < 0.8
    # Betas vary: correlation with the equal-weighted market is not the same for every symbol.
    market = daily_returns.mean(axis=0)
    with_market = np.array([np.corrcoef(r, market)[0, 1] for r in daily_returns])
    assert with_market.std() > 0.03


def test_volatility_clusters(daily_returns):
    a = np.abs(daily_returns - daily_returns.mean(axis=1, keepdims=True))
    lag1 = np.array([np.corrcoef(x[:-1], x[1:])[0, 1] for x in a])
    assert lag1.mean() > 0.05


def test_volume_higher_on_large_moves(daily_sample, daily_returns):
    log_volume = np.log(_panel(daily_sample, "volume", 50))[:, 1:]
    move = np.abs(daily_returns)
    corr = np.array([np.corrcoef(m, v)[0, 1] for m, v in zip(move, log_volume)])
    assert corr.mean() > 0.2


def test_open_near_previous_close(daily_sample, daily_returns):
    gap = np.log(_panel(daily_sample, "open", 50)[:, 1:] / _panel(daily_sample, "close", 50)[:, :-1])
    assert gap.std() < 0.5 * daily_returns.std()


# --- minute bars ----------------------------------------------------------------------------


def test_minute_timestamps():
    n_days = 4
    frame = synthetic_bars(2, 390 * n_days + 17, frequency="minute", start="2024-03-01")
    one = pd.DatetimeIndex(frame.loc[frame["symbol"] == "S0", "timestamp"])
    assert len(one) == 390 * n_days + 17 and one.is_monotonic_increasing and one.is_unique
    per_day = pd.Series(1, index=one).groupby(one.normalize()).size()
    assert (per_day.iloc[:n_days] == 390).all() and per_day.iloc[-1] == 17
    assert (one.dayofweek < 5).all()
    minutes = one.hour * 60 + one.minute
    assert minutes.min() == 9 * 60 + 30 and minutes.max() == 15 * 60 + 59
    assert (one.second == 0).all()
    assert one[0] == pd.Timestamp("2024-03-01 09:30") and one[390] == pd.Timestamp("2024-03-04 09:30")


def test_minute_volatility_scales_with_sqrt_time():
    n_symbols, n_days = 20, 20
    frame = synthetic_bars(n_symbols, 390 * n_days, frequency="minute", seed=11)
    r = np.diff(np.log(_panel(frame, "close", n_symbols)), axis=1)
    annualised = r.std(axis=1) * np.sqrt(TRADING_DAYS * 390)
    assert 0.10 <= np.median(annualised) <= 0.80
    # Same symbols (their parameters do not depend on frequency or length) on daily bars.
    daily = synthetic_bars(n_symbols, 2000, seed=11)
    daily_r = np.diff(np.log(_panel(daily, "close", n_symbols)), axis=1)
    daily_annualised = daily_r.std(axis=1) * np.sqrt(TRADING_DAYS)
    assert 0.6 < np.median(annualised) / np.median(daily_annualised) < 1.5


# --- late listing ---------------------------------------------------------------------------


def test_late_listing():
    n_symbols, n_bars = 40, 300
    frame = synthetic_bars(n_symbols, n_bars, seed=2, late_listing_fraction=0.25)
    groups = frame.groupby("symbol", sort=True)
    counts = groups.size()
    assert (counts < n_bars).sum() == 10 and (counts >= 1).all()
    last_day = pd.bdate_range("2015-01-02", periods=n_bars)[-1]
    assert (groups["timestamp"].max() == last_day).all()
    # A late symbol's rows are the tail of the full calendar, contiguous.
    first = groups["timestamp"].min()
    calendar = pd.bdate_range("2015-01-02", periods=n_bars)
    assert all(counts[s] == n_bars - calendar.get_loc(first[s]) for s in counts.index)
    # Symbols listed from the start are untouched by other symbols' late listing.
    full = synthetic_bars(n_symbols, n_bars, seed=2)
    on_time = counts.index[counts == n_bars]
    pd.testing.assert_frame_equal(
        frame[frame["symbol"].isin(on_time)].reset_index(drop=True),
        full[full["symbol"].isin(on_time)].reset_index(drop=True),
    )


# --- parquet files --------------------------------------------------------------------------


@pytest.mark.parametrize("symbols_per_file", [7, 64])
def test_parquet_files_concatenate_to_synthetic_bars(tmp_path, symbols_per_file):
    kwargs = dict(frequency="minute", seed=9, late_listing_fraction=0.2, dtype=np.float32)
    expected = synthetic_bars(130, 500, **kwargs)
    paths = write_synthetic_parquet(tmp_path, 130, 500, symbols_per_file=symbols_per_file, **kwargs)
    assert [p.name for p in paths] == [f"part-{k:05d}.parquet" for k in range(-(-130 // symbols_per_file))]
    parts = [pd.read_parquet(p) for p in paths]
    for part in parts[:-1]:
        assert part["symbol"].nunique() == symbols_per_file
    assert not set.intersection(*(set(p["symbol"]) for p in parts[:2]))  # whole symbols per file
    got = pd.concat(parts, ignore_index=True)
    assert tuple(got.columns) == COLUMNS
    pd.testing.assert_frame_equal(got, expected)


def test_parquet_files_are_reproducible(tmp_path):
    a = write_synthetic_parquet(tmp_path / "a", 30, 50, seed=4, symbols_per_file=20)
    b = write_synthetic_parquet(tmp_path / "b", 30, 50, seed=4, symbols_per_file=20)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    with pytest.raises(FileExistsError):
        write_synthetic_parquet(tmp_path / "a", 30, 50, seed=4)
    again = write_synthetic_parquet(tmp_path / "a", 30, 50, seed=4, symbols_per_file=50, overwrite=True)
    assert sorted((tmp_path / "a").glob("part-*.parquet")) == again


def test_cli_writes_files(tmp_path):
    from alphapulse.pipelines.data.synthetic import main

    paths = main([str(tmp_path / "out"), "--symbols", "12", "--bars", "400", "--frequency", "minute",
                  "--seed", "3", "--symbols-per-file", "5"])
    assert len(paths) == 3
    got = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    pd.testing.assert_frame_equal(got, synthetic_bars(12, 400, frequency="minute", seed=3))
