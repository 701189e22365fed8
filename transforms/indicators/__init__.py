"""Technical indicators, TA-Lib-exact, for every symbol of a time x symbols panel at once.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "adx": "registry",
    "atr": "registry",
    "bbands": "registry",
    "cci": "registry",
    "compute_indicators": "registry",
    "ema": "registry",
    "Indicator": "registry",
    "INDICATORS": "registry",
    "IndicatorSpec": "registry",
    "lookback": "registry",
    "macd": "registry",
    "natr": "registry",
    "obv": "registry",
    "roc": "registry",
    "rsi": "registry",
    "sma": "registry",
    "stoch": "registry",
    "willr": "registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
