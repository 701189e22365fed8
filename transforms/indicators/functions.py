"""The public one-indicator functions: ``sma``, ``ema``, ``rsi``, ``macd``, ``bbands``, ``atr``,
``natr``, ``stoch``, ``adx``, ``cci``, ``willr``, ``obv``, ``roc``.

Each computes one indicator over raw panels (arrays of shape (n_bars, n_symbols), NumPy or CuPy,
NaN where a symbol has no bar), with TA-Lib's parameter names and defaults, through
:func:`alphapulse.transforms.indicators.registry.compute_indicators` (NaN semantics and outputs
as documented there). Each call compacts the panel anew: for several indicators of one panel,
call ``compute_indicators`` once with their specs.
"""
from __future__ import annotations

from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec, compute_indicators

__all__ = ["sma", "ema", "rsi", "macd", "bbands", "atr", "natr", "stoch", "adx", "cci", "willr", "obv", "roc"]


def _public(name, inputs, params):
    """Compute the single indicator ``name`` over raw panels (compacts, computes, expands)."""
    ind = INDICATORS[name]
    out = compute_indicators(dict(zip(ind.inputs, inputs)), [IndicatorSpec(name, params)])
    values = tuple(out.values())
    return values[0] if len(values) == 1 else values


def sma(close, *, period=20):
    """Simple moving average (TA-Lib ``SMA``).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, bars in the window

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period - 1``.
    """
    return _public("sma", (close,), {"period": period})


def ema(close, *, period=12):
    """Exponential moving average seeded with the SMA of the first ``period`` bars (TA-Lib ``EMA``).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, smoothing ``k = 2 / (period + 1)``

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period - 1``.
    """
    return _public("ema", (close,), {"period": period})


def rsi(close, *, period=14):
    """Relative strength index with Wilder's smoothing (TA-Lib ``RSI``), in [0, 100].

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, bars of price change averaged (at least 2)

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period``. 0 where no
    price has changed over the averaging memory.
    """
    return _public("rsi", (close,), {"period": period})


def macd(close, *, fast=12, slow=26, signal=9):
    """Moving average convergence/divergence (TA-Lib ``MACD``).

    The MACD line is EMA(fast) - EMA(slow), both seeded with an SMA over windows ending on bar
    ``slow - 1``; the signal line is the EMA(signal) of the MACD line, seeded with the mean of
    its first ``signal`` values; the histogram is line - signal.

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    fast, slow : int, EMA periods in bars (swapped if ``slow < fast``, as TA-Lib does)
    signal : int, signal EMA period in bars

    Returns
    -------
    macd, macd_signal, macd_hist : arrays of shape (n_bars, n_symbols), in price units; all
    three first valued at each series' bar ``max(fast, slow) - 1 + signal - 1`` (33 for 12/26/9).
    """
    return _public("macd", (close,), {"fast": fast, "slow": slow, "signal": signal})


def bbands(close, *, period=20, nbdev=2.0):
    """Bollinger Bands: SMA +/- ``nbdev`` population standard deviations (TA-Lib ``BBANDS``, SMA).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, bars in the window (at least 2)
    nbdev : float, band half-width in standard deviations (the same above and below)

    Returns
    -------
    upper, middle, lower : arrays of shape (n_bars, n_symbols), in price units; first value at
    each series' bar ``period - 1``.
    """
    return _public("bbands", (close,), {"period": period, "nbdev": nbdev})


def atr(high, low, close, *, period=14):
    """Average true range with Wilder's smoothing (TA-Lib ``ATR``).

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, smoothing period in bars

    Returns
    -------
    array of shape (n_bars, n_symbols), in price units; first value at each series' bar
    ``period`` (the true range needs a previous close).
    """
    return _public("atr", (high, low, close), {"period": period})


def natr(high, low, close, *, period=14):
    """Normalised average true range, ``100 * ATR / close`` in percent (TA-Lib ``NATR``).

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, smoothing period in bars. With ``period=1`` TA-Lib returns the plain true range
        (in price units, not normalised); so does this function.

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period``; 0 where the
    close is 0.
    """
    return _public("natr", (high, low, close), {"period": period})


def stoch(high, low, close, *, fastk_period=5, slowk_period=3, slowd_period=3):
    """Slow stochastic oscillator with SMA smoothing (TA-Lib ``STOCH``, MA types SMA), in [0, 100].

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    fastk_period : int, bars in the highest-high / lowest-low window of raw %K
    slowk_period : int, SMA period turning raw %K into slow %K
    slowd_period : int, SMA period turning slow %K into slow %D

    Returns
    -------
    stoch_k, stoch_d : arrays of shape (n_bars, n_symbols); both first valued at each series' bar
    ``fastk_period + slowk_period + slowd_period - 3``. Raw %K is 0 on a flat window.
    """
    return _public("stoch", (high, low, close),
                   {"fastk_period": fastk_period, "slowk_period": slowk_period, "slowd_period": slowd_period})


def adx(high, low, close, *, period=14):
    """Average directional movement index (TA-Lib ``ADX``), in [0, 100].

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, Wilder smoothing period in bars (at least 2)

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``2 * period - 1``.
    """
    return _public("adx", (high, low, close), {"period": period})


def cci(high, low, close, *, period=14):
    """Commodity channel index (TA-Lib ``CCI``): (typical - mean) / (0.015 * mean abs deviation).

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, bars in the window (at least 2)

    Returns
    -------
    array of shape (n_bars, n_symbols), dimensionless; first value at each series' bar
    ``period - 1``; 0 on a flat window.
    """
    return _public("cci", (high, low, close), {"period": period})


def willr(high, low, close, *, period=14):
    """Williams' %R (TA-Lib ``WILLR``), in [-100, 0].

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, bars in the highest-high / lowest-low window (at least 2)

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period - 1``; 0 on a
    window whose highest high equals its lowest low.
    """
    return _public("willr", (high, low, close), {"period": period})


def obv(close, volume):
    """On-balance volume (TA-Lib ``OBV``): running volume, signed by the close's direction.

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    volume : array of shape (n_bars, n_symbols), shares (any numeric dtype)

    Returns
    -------
    array of shape (n_bars, n_symbols), in shares, in the dtype of ``close``; starts at each
    series' first bar with that bar's volume.
    """
    return _public("obv", (close, volume), {})


def roc(close, *, period=10):
    """Rate of change in percent, ``100 * (close / close[-period] - 1)`` (TA-Lib ``ROC``).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, bars back

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period``; 0 where the
    earlier close is 0.
    """
    return _public("roc", (close,), {"period": period})
