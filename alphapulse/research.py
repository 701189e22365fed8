"""The front door: AlphaPulse on data already in memory, in the config's own vocabulary.

``import alphapulse as ap`` gives these functions; each takes a pandas (or cuDF) frame, runs the
same stages the pipelines, the Prefect flows and the CLI run, on the backend asked for
(``"auto"`` follows the config's ``gpu:`` block and what the machine has), and returns pandas
frames on the host:

- :func:`load_config`: the validated, frozen config (a YAML file, a mapping, or the default),
  with ``overrides`` merged in;
- :func:`indicators`: long bars in, long indicators out (``timestamp, symbol, sma_20, ...``);
- :func:`backtest`: one strategy over every symbol and parameter combination
  (:class:`BacktestResult` with its frames);
- :func:`signals`: each strategy's position for the next bar, per symbol (the daily run's
  ``signals.parquet``);
- :func:`optimise`: one optimiser through the fallback chain on a returns frame
  (:class:`Optimisation`: labelled weights and the chain taken);
- :func:`run`: a whole pipeline from a file to a report folder, as ``alphapulse <pipeline>``
  does without Prefect.

Bars are validated by the loader's rules (:mod:`alphapulse.pipelines.data.load`); a row that
breaks one is never dropped silently: ``rejected="raise"`` (the default) raises a one-line
:class:`~alphapulse.pipelines.data.load.DataError` naming the first bad row and the reasons,
``rejected="keep"`` goes on with the good rows and puts the rejected ones in the result's
``attrs["rejected"]``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["load_config", "indicators", "signals", "backtest", "optimise", "run", "BacktestResult", "Optimisation",
           "PIPELINES"]

PIPELINES = ("daily", "backtest", "portfolio", "models")


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(config=None, *, overrides: dict | None = None):
    """The run configuration: ``config`` (a YAML path, a mapping, a ``Config``, or None for the
    shipped default) with ``overrides`` (a nested mapping in the YAML's vocabulary) merged in.

    Raises
    ------
    ConfigError
        One line naming the key, for an unknown key or a value out of its range.
    """
    from alphapulse.pipelines.config import Config, load_config as load_yaml, parse_config

    if isinstance(config, Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = parse_config(config, source="config mapping")
    else:
        cfg = load_yaml(None if config is None else Path(config))
    if not overrides:
        return cfg
    data = cfg.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return parse_config(_merge(data, overrides), source="config with overrides")


def _bars(frame, cfg, backend, *, rejected: str, what: str):
    """Validated bars of an in-memory frame on the backend's frame library."""
    from alphapulse.pipelines.data.load import DataError, load_frame

    if rejected not in ("raise", "keep"):
        raise ValueError(f"rejected must be 'raise' or 'keep', got {rejected!r}")
    loaded = load_frame(frame, columns=cfg.data.columns, lib=backend.frames, source=what)
    if len(loaded.rejected) and rejected == "raise":
        first = loaded.rejected.sort_values("source_row").iloc[0]
        reasons = ", ".join(f"{k}: {v}" for k, v in loaded.stats["rejected_by_reason"].items())
        raise DataError(f"{what}: {len(loaded.rejected):,} of {loaded.rows_read:,} rows break a rule ({reasons}); "
                        f"first: row {int(first['source_row'])} symbol {first['symbol']!r}: {first['reason']} "
                        "(rejected='keep' goes on without them)")
    return loaded


def _backend(cfg, backend: str):
    from alphapulse.pipelines.runtime.backend import choose_backend

    return choose_backend(cfg.gpu, override=backend)


def indicators(bars, spec: dict | None = None, *, config=None, backend: str = "auto",
               rejected: str = "raise") -> pd.DataFrame:
    """Every requested indicator for every symbol of ``bars``, in one vectorised pass.

    Parameters
    ----------
    bars : long frame with ``timestamp, symbol, open, high, low, close, volume`` (other column
        names through the config's ``data.columns``); the columns an indicator reads are needed
    spec : the config's ``indicators:`` block, e.g. ``{"sma": [20, 50], "rsi": [14],
        "macd": [{"fast": 12, "slow": 26, "signal": 9}]}``; None: the config's
    config : see :func:`load_config`
    backend : "auto", "cpu" or "gpu"
    rejected : "raise" or "keep" (see the module docstring)

    Returns
    -------
    pandas.DataFrame
        ``timestamp, symbol`` and one float column per output (``sma_20``, ``macd_signal_12_26_9``,
        ...), sorted by (symbol, timestamp); TA-Lib's values, NaN during each symbol's warm-up and at
        its missing bars. ``attrs["rejected"]``: the rejected rows (empty unless ``rejected="keep"``).
    """
    from alphapulse.pipelines.daily import indicators_stage

    cfg = load_config(config) if spec is None else _with_block(load_config(config), "indicators", spec)
    be = _backend(cfg, backend)
    loaded = _bars(bars, cfg, be, rejected=rejected, what="bars")
    out = indicators_stage(loaded.bars, cfg, be)
    out.attrs["rejected"] = loaded.rejected
    return out


def signals(bars, strategies: list | None = None, *, from_report=None, top: int = 3, config=None,
            backend: str = "auto", rejected: str = "raise") -> pd.DataFrame:
    """Each strategy's position for the bar after each symbol's last one, as the daily run writes
    ``signals.parquet`` (:mod:`alphapulse.pipelines.daily.signals`): the backtest engine's own
    decision over each symbol's whole history.

    Parameters
    ----------
    bars : long frame as :func:`indicators` takes
    strategies : fixed parameter sets, e.g. ``[{"strategy": "sma_cross", "params": {"fast": 20,
        "slow": 50}}]`` (a built-in, ``package.module:name`` or a plug-in); they trade with the
        config's ``backtest:`` execution settings. None: the config's ``signals.strategies``
    from_report : a backtest report folder whose ``top`` combinations to signal, with its
        execution settings and each symbol's record from it
    config, backend, rejected : as :func:`indicators`

    Returns
    -------
    pandas.DataFrame
        ``timestamp, symbol, strategy, combo``, the parameters, ``position`` (1, -1, 0), ``action``
        (enter, exit, hold, flat), ``since``, ``source``, ``report_rank`` and the record columns;
        one row per (symbol, parameter set), in that order.
    """
    from alphapulse.pipelines.daily.signals import combine_signals, prepare_signals, signals_stage

    cfg = load_config(config)
    block = cfg.signals.model_dump(mode="json")
    if strategies is not None:
        block["strategies"] = list(strategies)
    if from_report is not None:
        block.update(from_report=str(from_report), top=top)
    cfg = _with_block(cfg, "signals", {**block, "charts": 0, "breadth": False})
    request = prepare_signals(cfg)
    if request is None:
        from alphapulse.pipelines.config import ConfigError

        raise ConfigError("signals: no strategies (give strategies=[...] or from_report=..., or set "
                          "signals.strategies)")
    be = _backend(cfg, backend)
    loaded = _bars(bars, cfg, be, rejected=rejected, what="bars")
    out, _, _ = combine_signals([signals_stage(loaded.bars, request, be)], request)
    out.attrs["rejected"] = loaded.rejected
    return out


def _with_block(cfg, key: str, block):
    from alphapulse.pipelines.config import parse_config

    data = cfg.model_dump(mode="json", by_alias=True, exclude_unset=True)
    data[key] = block
    return parse_config(data, source=f"{key} argument")


@dataclass
class Optimisation:
    """One optimiser's portfolio.

    weights : Series of weights by symbol (the symbols that qualified for the common window)
    method : the method asked for; ``method_used``: the one whose weights these are (another one
        when the fallback chain was taken)
    chain : the chain's attempts (``step, tried, status, reason``)
    covariance : the annualised covariance it used (symbols x symbols)
    excluded : symbols left out of the common window, with the reason
    """

    weights: pd.Series
    method: str
    method_used: str
    chain: pd.DataFrame
    covariance: pd.DataFrame = field(repr=False)
    excluded: pd.DataFrame = field(repr=False)

    @property
    def fell_back(self) -> bool:
        return self.method_used != self.method


def optimise(returns: pd.DataFrame, *, method: str = "min_variance", covariance: str | None = None,
             config=None, backend: str = "auto", **portfolio) -> Optimisation:
    """One portfolio optimiser, through the fallback chain, on a wide frame of returns.

    Parameters
    ----------
    returns : frame of shape (n_bars, n_symbols): per-bar simple returns, a DatetimeIndex (or
        any sorted index) and one column per symbol; NaN where a symbol has no return
    method : one of the config's ``portfolio.methods`` vocabulary (min_variance, max_sharpe, hrp,
        risk_parity, black_litterman, efficient_return, efficient_risk, max_utility, equal_weight)
    covariance : sample, ledoit_wolf, oas, ewma or denoised (None: the config's)
    config : see :func:`load_config`
    backend : "auto", "cpu" or "gpu" (the covariance runs there; the solvers on the host)
    portfolio : any other key of the ``portfolio:`` block (``min_weight=0.0, max_weight=0.1,
        lookback_bars=..., target_return=...``)

    Returns
    -------
    :class:`Optimisation`
    """
    from alphapulse.pipelines.portfolio import Returns, covariance_stage, optimise_stage
    from alphapulse.transforms.returns import common_window

    if not isinstance(returns, pd.DataFrame) or returns.shape[1] < 2:
        raise ValueError("returns must be a DataFrame with one column per symbol (at least two)")
    block = {**portfolio, "methods": [method]}
    if covariance is not None:
        block["covariance"] = covariance
    base = load_config(config)
    cfg = load_config(base, overrides={"portfolio": block})
    pc = cfg.portfolio
    be = _backend(cfg, backend)
    symbols = [str(c) for c in returns.columns]
    values = returns.to_numpy(dtype=np.float64)
    if not np.isfinite(values[~np.isnan(values)]).all():
        raise ValueError("returns hold an infinite value")
    window = common_window(values, pc.min_history_bars, window_bars=pc.lookback_bars,
                           max_gap_fraction=pc.max_gap_fraction, symbols=symbols)
    if len(window.columns) < 2 or len(window.rows) < 2:
        raise ValueError(f"{len(window.columns)} symbol(s) and {len(window.rows)} complete row(s) qualify for the "
                         f"common window (portfolio.lookback_bars={pc.lookback_bars}, "
                         f"min_history_bars={pc.min_history_bars}): need two of each")
    rets = Returns(be.xp.asarray(values), pd.DatetimeIndex(returns.index) if isinstance(returns.index, pd.DatetimeIndex)
                   else returns.index, symbols, window, np.asarray(window.select(values), dtype=np.float64))
    cov = covariance_stage(rets, pc, be, cfg.gpu)
    done = optimise_stage(rets, cov, pc)
    w = done.weights[done.weights["method"] == method]
    chain = done.chains[done.chains["method"] == method].drop(columns="method").reset_index(drop=True)
    used = chain.loc[chain["status"] == "ok", "tried"]
    qualified = rets.qualified
    return Optimisation(weights=pd.Series(w["weight"].to_numpy(), index=pd.Index(w["symbol"], name="symbol"),
                                          name="weight"),
                        method=method, method_used=str(used.iloc[-1]) if len(used) else method, chain=chain,
                        covariance=pd.DataFrame(cov, index=qualified, columns=qualified),
                        excluded=rets.excluded_frame())


@dataclass
class BacktestResult:
    """A strategy's sweep over every symbol and parameter combination; the frames are those of the
    backtest report's parquet files.

    summary : one row per combination: its parameters, aggregates over the symbols, the
        equal-weight portfolio's metrics and ``rank`` by portfolio Sharpe
        (``backtest_summary.parquet``)
    metrics : one row per (symbol, combination) with the per-series metrics
        (``backtest_metrics.parquet``)
    equity : the equal-weight portfolio's equity of the ``top_n`` combinations, one row per
        (combination, timestamp) (``equity.parquet``)
    symbol_equity : the best combination's equity per symbol, ``timestamp, symbol, equity,
        combo_id`` (``best_equity_by_symbol.parquet``; None when ``top_n`` is 0)
    walk_forward : per (window, symbol) the combination chosen in sample and its in- and
        out-of-sample metrics (``walk_forward.parquet``; None unless ``walk_forward`` is set)
    rejected : the rejected rows (empty unless ``rejected="keep"``)
    """

    strategy: str
    summary: pd.DataFrame
    metrics: pd.DataFrame
    equity: pd.DataFrame
    symbol_equity: pd.DataFrame | None = None
    walk_forward: pd.DataFrame | None = None
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def best(self) -> pd.Series:
        """The summary's first-ranked combination."""
        return self.summary.sort_values("rank").iloc[0]


def backtest(bars, *, strategy=None, grid: str | dict | None = None, config=None, backend: str = "auto",
             rejected: str = "raise", **settings) -> BacktestResult:
    """One strategy over every symbol of ``bars`` and every combination of its parameter grid.

    Parameters
    ----------
    bars : long frame of bars (see :func:`indicators`)
    strategy : a built-in strategy's name (sma_cross, ema_cross, macd_cross, rsi_reversion,
        bb_reversion, bb_breakout) or a ``Strategy``; None: the config's
    grid : the CLI's grid syntax (``"fast=5:50:5,slow=20:200:10"``) or a mapping of parameter to
        a list of values; None: the config's grid for the config's strategy, else the strategy's
        defaults (one combination)
    config : see :func:`load_config`
    backend : "auto", "cpu" or "gpu"
    rejected : "raise" or "keep" (see the module docstring)
    settings : any other key of the ``backtest:`` block (``commission_bps=5, direction="both",
        walk_forward={"train_bars": 504, "test_bars": 126}``)

    Returns
    -------
    :class:`BacktestResult`
    """
    from alphapulse.pipelines.backtest import backtest_frames, prepare_backtest_request

    cfg = load_config(config, overrides={"backtest": settings} if settings else None)
    request = prepare_backtest_request(cfg, strategy=strategy, grid=grid, backend=backend)
    be = _backend(cfg, backend)
    loaded = _bars(bars, cfg, be, rejected=rejected, what="bars")
    tables = backtest_frames(request, loaded.bars, be)
    return BacktestResult(strategy=request.strategy.name, rejected=loaded.rejected, **tables)


def run(pipeline: str, *, data, out, config=None, backend: str = "auto", **options):
    """A whole pipeline from a file (or folder of files) to a report folder, in this process.

    Parameters
    ----------
    pipeline : "daily", "backtest", "portfolio" or "models"
    data : the input path (CSV or parquet, a file or a folder)
    out : the report folder (new, empty, or a previous AlphaPulse report: replaced atomically)
    config : see :func:`load_config`
    backend : "auto", "cpu" or "gpu"
    options : the pipeline's own request options (daily: ``store``, an indicator store folder the run
        continues, as ``alphapulse daily --store``, read back with ``pandas.read_parquet(store / "data")``;
        backtest: ``strategy``, ``grid``)

    Returns
    -------
    The pipeline's result (``out_dir``, ``manifest`` and its tables).
    """
    cfg = load_config(config)
    if pipeline == "daily":
        from alphapulse.pipelines.daily import prepare_daily, run_daily

        return run_daily(prepare_daily(cfg, data_path=str(data), out_dir=str(out), backend=backend, **options))
    if pipeline == "backtest":
        from alphapulse.pipelines.backtest import prepare_backtest, run_backtest_pipeline

        return run_backtest_pipeline(prepare_backtest(cfg, data_path=str(data), out_dir=str(out), backend=backend,
                                                      **options))
    if pipeline == "portfolio":
        from alphapulse.pipelines.portfolio import prepare_portfolio, run_portfolio

        return run_portfolio(prepare_portfolio(cfg, data_path=str(data), out_dir=str(out), backend=backend, **options))
    if pipeline == "models":
        from alphapulse.pipelines.models import prepare_models, run_models

        return run_models(prepare_models(cfg, data_path=str(data), out_dir=str(out), backend=backend, **options))
    raise ValueError(f"unknown pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")
