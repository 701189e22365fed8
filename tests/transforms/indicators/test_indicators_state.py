"""Continuing indicators from a saved state (:mod:`alphapulse.transforms.indicators.state`) equals
computing them over all the bars at once.

The oracle is :func:`compute_indicators` over the whole panel; the continuation cuts the panel's rows
into random chunks and feeds them one after the other, each from the previous chunk's state. Cuts
fall anywhere: inside warm-ups, on a missing bar, before a late listing's first bar (a chunk in which
a symbol has no bar must leave its state alone). On NumPy the result is bit-identical in float64 and
float32; on CuPy within 1e-12 relative (NVVM places FMAs per kernel: see the module docstring).
Each chunk continues by either method, the compiled kernels or the bar-by-bar steps, drawn per chunk:
a state one writes, the other continues.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import host
from tests.transforms.gpu_testlib import device
from tests.transforms.indicators.test_indicators_properties import PROPERTY_SETTINGS, SMALL_SPECS, panels
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec, compute_indicators
from alphapulse.transforms.indicators.state import (continue_indicators, empty_state, state_fields, state_key,
                                                    state_size, state_window)

# The registry's defaults too: MACD 12/26/9 (warm-up 33), Bollinger 20, ADX 14 (warm-up 27), ...
DEFAULT_SPECS = [IndicatorSpec(name) for name in INDICATORS]


def _chunks(bars, cuts):
    edges = [0, *sorted(set(cuts)), bars["close"].shape[0]]
    return [{k: np.asfortranarray(v[a:b]) for k, v in bars.items()} for a, b in zip(edges, edges[1:]) if b > a]


METHODS = ("kernels", "steps")


def _continued(xp, bars, specs, cuts, methods=("kernels",)):
    """The outputs of feeding ``bars`` in chunks cut at ``cuts`` (rows), stacked back, on the host; chunk
    ``k`` continues by ``methods[k % len(methods)]``."""
    state = empty_state(specs, bars["close"].shape[1], xp=xp)
    pieces = []
    for k, chunk in enumerate(_chunks(bars, cuts)):
        out, state = continue_indicators(device(xp, chunk), specs, state, method=methods[k % len(methods)])
        pieces.append(host(out))
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}, state


def _assert_same(xp, got, want):
    assert list(got) == list(want)
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype, name
        assert np.array_equal(np.isnan(g), np.isnan(w)), name
        if xp is np:
            assert np.array_equal(g, w, equal_nan=True), (name, np.nanmax(np.abs(g - w)))
        else:
            scale = np.nanmax(np.abs(w), initial=0.0)
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12 * scale, err_msg=name)


@PROPERTY_SETTINGS
@given(bars=panels(min_bars=20, max_bars=90), data=st.data())
def test_any_split_equals_the_full_run(xp, bars, data):
    n_bars = bars["close"].shape[0]
    cuts = data.draw(st.lists(st.integers(1, n_bars - 1), max_size=6), label="cuts")
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    specs = data.draw(st.sampled_from([SMALL_SPECS, DEFAULT_SPECS]), label="specs")
    methods = data.draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=7), label="methods")
    bars = {k: np.asfortranarray(v.astype(dtype)) for k, v in bars.items()}
    want = host(compute_indicators(device(xp, bars), specs))
    got, state = _continued(xp, bars, specs, cuts, methods)
    _assert_same(xp, got, want)
    np.testing.assert_array_equal(host(state.seen), (~np.isnan(bars["close"])).sum(axis=0))


@pytest.mark.parametrize("method", METHODS)
@PROPERTY_SETTINGS
@given(bars=panels(min_bars=20, max_bars=60), data=st.data())
def test_one_bar_at_a_time(xp, method, bars, data):
    """The daily case: each chunk holds one row, and a symbol without a bar that day is NaN."""
    n_bars = bars["close"].shape[0]
    start = data.draw(st.integers(1, n_bars - 1), label="start")
    want = host(compute_indicators(device(xp, bars), SMALL_SPECS))
    got, _ = _continued(xp, bars, SMALL_SPECS, list(range(start, n_bars)), ("kernels", method))
    _assert_same(xp, got, want)


@pytest.mark.parametrize("method", METHODS)
def test_a_chunk_without_bars_leaves_the_state_alone(xp, method):
    rng = np.random.default_rng(1)
    close = 50 + np.cumsum(rng.normal(size=(30, 3)), axis=0)
    bars = {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": np.ones_like(close)}
    _, state = continue_indicators(device(xp, bars), SMALL_SPECS, empty_state(SMALL_SPECS, 3, xp=xp))
    nothing = {k: np.full((2, 3), np.nan) for k in bars}
    out, after = continue_indicators(device(xp, nothing), SMALL_SPECS, state, method=method)
    assert all(np.isnan(host(v)).all() for v in out.values())
    assert np.array_equal(host(after.seen), host(state.seen))
    for k in state.values:
        assert np.array_equal(host(after.values[k]), host(state.values[k]), equal_nan=True), k
    for k in state.kept:
        assert np.array_equal(host(after.kept[k]), host(state.kept[k]), equal_nan=True), k


def test_auto_steps_a_few_bars_and_launches_the_kernels_for_more(monkeypatch):
    from alphapulse.transforms.kernels import SeriesKernel
    from alphapulse.transforms.indicators.state import STEP_BARS

    def refuse(self, *args):
        raise AssertionError("a compiled kernel was launched")

    monkeypatch.setattr(SeriesKernel, "__call__", refuse)
    state = empty_state(DEFAULT_SPECS, 2)
    bars = {k: np.full((STEP_BARS, 2), 10.0) for k in ("open", "high", "low", "close", "volume")}
    bars["close"][3:, 1] = np.nan  # the longest column decides
    _, state = continue_indicators(bars, DEFAULT_SPECS, state)
    assert state.seen.tolist() == [STEP_BARS, 3]
    more = {k: np.full((STEP_BARS + 1, 2), 10.0) for k in bars}
    with pytest.raises(AssertionError, match="compiled kernel"):
        continue_indicators(more, DEFAULT_SPECS, state)
    with pytest.raises(ValueError, match="method"):
        continue_indicators(bars, DEFAULT_SPECS, state, method="fast")


def test_a_day_in_a_fresh_process_starts_no_numba_machinery():
    """The point of the steps: Numba's type registries (which import scipy.linalg for its BLAS check)
    and cached kernels cost a fresh process about half a second; a day's continuation needs neither."""
    script = (
        "import sys, numpy as np\n"
        "from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec\n"
        "from alphapulse.transforms.indicators.state import continue_indicators, empty_state\n"
        "specs = [IndicatorSpec(n) for n in INDICATORS]\n"
        "bars = {k: np.full((1, 3), 5.0) for k in ('open', 'high', 'low', 'close', 'volume')}\n"
        "continue_indicators(bars, specs, empty_state(specs, 3))\n"
        "print(sorted(m for m in ('numba.np.arraymath', 'scipy.linalg') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[3])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip() == "[]"


def test_state_is_bounded_by_the_windows_not_the_history():
    """What a symbol carries depends on the specs only: the incremental path never holds history."""
    specs = DEFAULT_SPECS
    # sma 20 / bbands 20 keep 19 bars; willr / cci 14 keep 13; roc 10 keeps 10; stoch 5 keeps 4
    assert state_window(specs) == 19
    assert state_fields(specs) == ("close", "high", "low", "volume")
    assert state_size(IndicatorSpec("stoch")) == 6 + 3 + 3
    assert state_key(IndicatorSpec("macd")) == "macd_12_26_9"
    bars = {k: np.ones((300, 2)) for k in ("open", "high", "low", "close", "volume")}
    _, state = continue_indicators(bars, specs, empty_state(specs, 2))
    assert all(v.shape == (19, 2) for v in state.kept.values())


def test_a_state_for_other_specs_is_refused():
    state = empty_state([IndicatorSpec("sma", {"period": 5})], 2)
    bars = {k: np.ones((3, 2)) for k in ("high", "low", "close")}
    with pytest.raises(ValueError, match="other indicators"):
        continue_indicators(bars, [IndicatorSpec("sma", {"period": 6})], state)
    with pytest.raises(ValueError, match="state holds 2 symbols"):
        continue_indicators({"close": np.ones((3, 3))}, [IndicatorSpec("sma", {"period": 5})], state)


_SIMULATOR_SCRIPT = r"""
import sys
import numpy as np
from numba import config
assert config.ENABLE_CUDASIM, "the CUDA simulator is not enabled"
from alphapulse.transforms.kernels import SeriesKernel
from tests.transforms.indicators.test_indicators_state import SMALL_SPECS, _continued

# every launch goes to the CUDA launcher; on NumPy arrays the simulator runs it
SeriesKernel.__call__ = lambda self, n_cols, *args: self.gpu(n_cols, *args)
bars = dict(np.load(sys.argv[1]))
got, _ = _continued(np, bars, SMALL_SPECS, [7, 8, 15])
np.savez(sys.argv[2], **got)
"""


def test_cuda_kernels_continue_under_the_simulator(tmp_path):
    """The CUDA build of every resumable kernel (run by Numba's simulator on the CPU) continues as the CPU does."""
    rng = np.random.default_rng(7)
    close = np.round(40 + np.cumsum(rng.normal(size=(24, 2)), axis=0), 2)
    bars = {"open": close, "high": close + 0.5, "low": close - 0.25, "close": close,
            "volume": rng.integers(0, 100, size=close.shape).astype(float)}
    for v in bars.values():
        v[5, 0] = np.nan
        v[:9, 1] = np.nan
    np.savez(tmp_path / "bars.npz", **bars)
    args = [sys.executable, "-c", _SIMULATOR_SCRIPT, str(tmp_path / "bars.npz"), str(tmp_path / "out.npz")]
    proc = subprocess.run(args, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}, capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).parents[3])
    assert proc.returncode == 0, proc.stderr[-4000:]
    simulated = np.load(tmp_path / "out.npz")
    want = compute_indicators({k: np.asfortranarray(v) for k, v in bars.items()}, SMALL_SPECS)
    assert set(simulated.files) == set(want)
    for name, w in want.items():
        # the simulator runs the same IEEE double operations in Python
        np.testing.assert_allclose(simulated[name], w, rtol=1e-13, atol=0, err_msg=name)
        assert not np.isnan(w[-1]).any(), name


@PROPERTY_SETTINGS
@given(data=st.data())
def test_long_series_through_the_bollinger_reseed(xp, data):
    """700 bars: Bollinger(5)'s deviation re-seeds itself every 160 bars, its counter crossing cuts."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    close = np.round(100 + np.cumsum(rng.normal(size=(700, 2)), axis=0), 2)
    spread = rng.uniform(0, 1, (2, *close.shape))
    bars = {"open": close, "high": close + spread[0], "low": close - spread[1], "close": close,
            "volume": rng.integers(0, 10**6, size=close.shape).astype(float)}
    bars = {k: np.asfortranarray(v) for k, v in bars.items()}
    cuts = data.draw(st.lists(st.integers(1, 699), min_size=1, max_size=8), label="cuts")
    methods = data.draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=4), label="methods")
    want = host(compute_indicators(device(xp, bars), SMALL_SPECS))
    got, _ = _continued(xp, bars, SMALL_SPECS, cuts, methods)
    _assert_same(xp, got, want)
