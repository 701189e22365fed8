"""Technical indicators, TA-Lib-exact, for every symbol of a time x symbols panel at once.

- :mod:`.series`: the per-series kernels (one thread per symbol), compiled for the CPU and CUDA;
- :mod:`.registry`: :class:`Indicator`, :class:`IndicatorSpec`, :data:`INDICATORS`,
  :func:`compute_indicators` (many indicators, one compaction) and :func:`lookback`;
- :mod:`.functions`: one indicator at a time (``sma``, ``ema``, ``rsi``, ...);
- :mod:`.state`: :class:`IndicatorState`, :func:`empty_state`, :func:`continue_indicators`: go on from
  a saved state over new bars only, identical to the full run.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "adx": "functions",
    "atr": "functions",
    "bbands": "functions",
    "cci": "functions",
    "compute_indicators": "registry",
    "continue_indicators": "state",
    "ema": "functions",
    "empty_state": "state",
    "Indicator": "registry",
    "INDICATORS": "registry",
    "IndicatorSpec": "registry",
    "IndicatorState": "state",
    "lookback": "registry",
    "macd": "functions",
    "natr": "functions",
    "obv": "functions",
    "roc": "functions",
    "rsi": "functions",
    "sma": "functions",
    "stoch": "functions",
    "willr": "functions",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
