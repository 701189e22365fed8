"""AlphaPulse: GPU-native quantitative market research, with the same answers on a CPU.

``import alphapulse as ap`` is the front door for notebooks; the rooms below hold the rest:

- ``alphapulse.transforms``: pure computation on arrays (indicators, backtest, portfolio,
  models, covariance, correlation, regimes, Monte Carlo, returns), NumPy or CuPy;
- ``alphapulse.pipelines``: composition and the outside world (config, runtime, data, report,
  gpu, and the daily, backtest, portfolio and models pipelines);
- ``alphapulse.flows``: the Prefect flows and the command line.
"""
from importlib import metadata as _metadata

from alphapulse._exports import lazy_exports as _lazy_exports

try:
    __version__ = _metadata.version("alphapulse")
except _metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

# An installed package holds its rooms (pip maps the repository's top-level transforms/,
# pipelines/ and flows/ into it). A bare source tree on sys.path (the GPU host's check, which
# copies the tree and installs nothing) keeps them beside this folder: look there too.
_source_tree = __import__("pathlib").Path(__file__).resolve().parent.parent
if (not (_source_tree / "alphapulse" / "transforms").exists()
        and (_source_tree / "transforms" / "__init__.py").is_file()):
    __path__.append(str(_source_tree))
del _source_tree

_EXPORTS = {name: "research" for name in ("load_config", "indicators", "signals", "backtest", "optimise", "run",
                                          "BacktestResult", "Optimisation", "PIPELINES")}
__all__ = sorted(_EXPORTS) + ["__version__"]
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
