"""The validated, frozen run configuration read from YAML, and parameter grids.

Modules: ``schema`` (the root :class:`Config` and the common blocks), ``backtest``,
``portfolio``, ``models`` and ``signals`` (those pipelines' blocks), ``indicators`` (the indicators block's
syntax), ``base`` (the frozen model base), ``load`` (reading YAML, bounds, renamed keys, error
messages) and ``grid`` (parameter grids).

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "BacktestConfig": "backtest",
    "BlackLittermanConfig": "portfolio",
    "BudgetConfig": "schema",
    "check_grid": "grid",
    "ClusterConfig": "schema",
    "Config": "schema",
    "ConfigError": "load",
    "CostConfig": "schema",
    "COVARIANCE_ESTIMATORS": "portfolio",
    "DataConfig": "schema",
    "default_config_text": "load",
    "ENSEMBLE_METHODS": "models",
    "expand_grid": "grid",
    "Fallback": "schema",
    "GpuConfig": "schema",
    "grid_size": "grid",
    "GridError": "grid",
    "load_config": "load",
    "MAX_COMBINATIONS": "grid",
    "MAX_CONFIG_BYTES": "load",
    "MAX_CONFIG_DEPTH": "load",
    "MAX_COST_BPS": "base",
    "MAX_EXPONENT": "grid",
    "MAX_INDICATOR_COLUMNS": "indicators",
    "MAX_VALUES_PER_PARAMETER": "grid",
    "MAX_WINDOW_BARS": "models",
    "MC_MODELS": "portfolio",
    "MemoryManagement": "schema",
    "MODEL_KINDS": "models",
    "ModelConfig": "models",
    "ModelEnsembleConfig": "models",
    "ModelFeaturesConfig": "models",
    "ModelsConfig": "models",
    "ModelSignalConfig": "models",
    "ModelWalkForwardConfig": "models",
    "Monitoring": "schema",
    "MonteCarloConfig": "portfolio",
    "Operations": "schema",
    "parse_config": "load",
    "parse_grid": "grid",
    "parse_size": "schema",
    "parse_values": "grid",
    "PORTFOLIO_METHODS": "portfolio",
    "PortfolioConfig": "portfolio",
    "PortfolioWalkForwardConfig": "portfolio",
    "RENAMED_KEYS": "load",
    "resolve_strategy": "strategies",
    "ENTRY_POINTS": "strategies",
    "RegimeConfig": "portfolio",
    "ReportConfig": "schema",
    "SELECTION_METRICS": "backtest",
    "MAX_SIGNAL_SETS": "signals",
    "SignalsConfig": "signals",
    "SignalStrategyConfig": "signals",
    "STANDARD_COLUMNS": "schema",
    "ViewConfig": "portfolio",
    "WalkForwardConfig": "backtest",
    "with_block": "load",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
