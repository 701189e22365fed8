"""The portfolio pipeline end to end on the bundled sample, and the CLI's errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from alphapulse.flows.cli.dispatch import main
from alphapulse.pipelines.config import load_config, parse_config
from alphapulse.pipelines.portfolio.pipeline import month_end_rows, prepare_portfolio, run_portfolio
from tests.pipelines.conftest import SAMPLE

FAST = {"regimes": {"n_init": 3}, "monte_carlo": {"n_paths": 5000}}


def _config(**portfolio):
    base = yaml.safe_load(open(SAMPLE.parents[1] / "pipelines" / "config" / "default_config.yaml"))
    base["portfolio"] = {**base["portfolio"], **FAST, **portfolio}
    return parse_config(base)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("pf") / "rep"
    result = run_portfolio(prepare_portfolio(_config(), data_path=str(SAMPLE), out_dir=str(out), backend="cpu"))
    return result


FILES = ("covariance.parquet", "weights.parquet", "fallbacks.parquet", "correlation.parquet",
         "correlation_summary.parquet", "regimes.parquet", "regime_centres.parquet", "regime_runs.parquet",
         "risk.parquet", "excluded.parquet", "rejected.parquet", "manifest.json", "summary.md", "summary.html")


def test_report_files(report):
    assert sorted(p.name for p in report.out_dir.iterdir()) == sorted(FILES)
    manifest = json.loads((report.out_dir / "manifest.json").read_text())
    assert manifest["pipeline"] == "portfolio"
    assert set(manifest["files"]) == set(FILES) - {"manifest.json", "summary.md", "summary.html"}


def test_weights_sum_to_one(report):
    w = pd.read_parquet(report.out_dir / "weights.parquet")
    sums = w.groupby(["date", "method"])["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-8)
    assert set(w["method"]) == {"min_variance", "max_sharpe", "hrp", "risk_parity", "black_litterman", "ensemble"}
    assert (w["weight"] >= -1e-10).all()
    assert w.groupby("method")["symbol"].count().nunique() == 1


def test_effective_holdings_in_manifest_summary_and_page(report):
    """A report field added in the pipeline's report module alone reaches the manifest, summary.md,
    summary.html and the CLI (issue 15: one file per report field)."""
    w = pd.read_parquet(report.out_dir / "weights.parquet")
    want = {m: round(float(1.0 / (g["weight"] ** 2).sum()), 2) for m, g in w.groupby("method", sort=False)}
    eff = report.manifest["effective_holdings"]
    assert eff == want and set(eff) >= {"hrp", "ensemble"}
    assert all(1.0 <= v <= report.manifest["window"]["qualified"] + 1e-9 for v in eff.values())
    line = ", ".join(f"{m} {n:g}" for m, n in eff.items())
    assert line in (report.out_dir / "summary.md").read_text()
    assert line in (report.out_dir / "summary.html").read_text()
    from alphapulse.pipelines.portfolio.report import cli_lines

    assert f"effective holdings: {line}" in cli_lines(report.manifest, report.out_dir)


def test_covariance_symmetric_psd(report):
    c = pd.read_parquet(report.out_dir / "covariance.parquet")
    m = c.pivot(index="symbol_i", columns="symbol_j", values="cov")
    assert (m.index == m.columns).all()
    a = m.to_numpy()
    np.testing.assert_array_equal(a, a.T)
    assert np.linalg.eigvalsh(a).min() > -1e-12
    # Ledoit-Wolf equals scikit-learn's on the common window (annualised)
    from sklearn.covariance import LedoitWolf

    r = _accepted_returns()
    manifest = report.manifest
    block = r.loc[manifest["window"]["start"]:manifest["window"]["end"], list(m.index)].dropna()
    assert len(block) == manifest["window"]["rows"]
    np.testing.assert_allclose(a, LedoitWolf().fit(block.to_numpy()).covariance_ * 252, rtol=1e-9, atol=1e-14)


def _accepted_returns() -> pd.DataFrame:
    """One-bar returns of the rows the pipeline accepts (validated by alphapulse.pipelines.data.load), by pandas."""
    from alphapulse.pipelines.data.load import inspect_input, load_bars

    loaded = load_bars(inspect_input(SAMPLE, columns={"timestamp": "date", "symbol": "Name"}))
    wide = loaded.bars.pivot(index="timestamp", columns="symbol", values="close").sort_index()
    return wide / wide.shift(1) - 1


def test_correlation_matches_pandas_on_one_date(report):
    corr = pd.read_parquet(report.out_dir / "correlation.parquet")
    assert (corr["symbol_i"] < corr["symbol_j"]).all()  # upper triangle only
    r = _accepted_returns()
    rows = month_end_rows(pd.DatetimeIndex(r.index))
    t = rows[30]
    date = r.index[t]
    got = corr[corr["date"] == date].set_index(["symbol_i", "symbol_j"])["rho"]
    ref = r.iloc[t - 62:t + 1].corr(min_periods=20)
    upper = ref.where(np.triu(np.ones(ref.shape, dtype=bool), k=1)).stack().dropna()
    assert len(got) == len(upper) > 1000
    np.testing.assert_allclose(got.loc[upper.index].to_numpy(), upper.to_numpy(), atol=1e-12)


def test_excluded_symbols_listed(report):
    ex = pd.read_parquet(report.out_dir / "excluded.parquet").set_index("symbol")
    assert ex.loc["APTV", "reason"] == "short_history"
    assert "43 returns" in ex.loc["APTV", "detail"]  # 44 bars
    assert "APTV" in report.manifest["excluded"]
    summary = (report.out_dir / "summary.md").read_text()
    assert "APTV" in summary and "## Excluded symbols" in summary
    w = pd.read_parquet(report.out_dir / "weights.parquet")
    assert not set(ex.index) & set(w["symbol"])


def test_regimes_and_risk(report):
    reg = pd.read_parquet(report.out_dir / "regimes.parquet")
    centres = pd.read_parquet(report.out_dir / "regime_centres.parquet")
    assert centres["volatility"].is_monotonic_increasing
    assert set(reg["regime"]) == {0, 1, 2}
    runs = pd.read_parquet(report.out_dir / "regime_runs.parquet")
    assert runs["bars"].sum() == len(reg)
    risk = pd.read_parquet(report.out_dir / "risk.parquet")
    assert set(risk["model"]) == {"normal", "student_t", "bootstrap", "normal_closed_form"}
    assert (risk["CVaR"] >= risk["VaR"]).all() and (risk["VaR"] > 0).all()
    normal = risk.set_index(["model", "level", "horizon"])["VaR"]
    assert normal[("normal", 0.99, 1)] == pytest.approx(normal[("normal_closed_form", 0.99, 1)], rel=0.1)
    cs = pd.read_parquet(report.out_dir / "correlation_summary.parquet")
    assert cs["absorption_ratio"].between(0, 1).all() and (cs["n_symbols"] > 40).all()


def test_fallback_chain_recorded(tmp_path):
    cfg = _config(methods=["efficient_return", "min_variance"], target_return=5.0, monte_carlo={"n_paths": 1000,
                  "models": ["normal"], "horizons_bars": [1]})
    result = run_portfolio(prepare_portfolio(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "r"), backend="cpu"))
    chains = pd.read_parquet(tmp_path / "r" / "fallbacks.parquet")
    er = chains[chains["method"] == "efficient_return"]
    assert er["tried"].tolist() == ["efficient_return", "min_variance"]
    assert er["status"].tolist() == ["failed", "ok"] and er["reason"].iloc[0]
    assert result.manifest["fallbacks"]["efficient_return"] == ["efficient_return", "min_variance"]
    assert "efficient_return | 0 | efficient_return | failed" in (tmp_path / "r" / "summary.md").read_text()
    w = result.tables["weights.parquet"].pivot(index="symbol", columns="method", values="weight")
    np.testing.assert_allclose(w["efficient_return"], w["min_variance"])


def test_black_litterman_views(tmp_path):
    views = [{"kind": "absolute", "asset": "AAPL", "return": 0.5, "confidence": 0.9},
             {"kind": "relative", "asset": "MSFT", "versus": "IBM", "return": 0.1},
             {"kind": "absolute", "asset": "APTV", "return": 0.2}]
    cfg = _config(methods=["black_litterman"], black_litterman={"views": views},
                  monte_carlo={"n_paths": 1000, "models": ["normal"], "horizons_bars": [1]})
    result = run_portfolio(prepare_portfolio(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "r"), backend="cpu"))
    w = result.tables["weights.parquet"].query("method == 'black_litterman'").set_index("symbol")["weight"]
    assert w["AAPL"] > w.drop("AAPL").max()  # the bullish view on AAPL tilts the portfolio to it
    assert any("APTV" in n for n in result.manifest["notes"])  # the view on an excluded symbol is dropped


def _cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_cli_errors(tmp_path, capsys):
    code, err = _cli(capsys, "portfolio", "--data", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "o"),
                     "--no-prefect")
    assert code == 2 and err.startswith("alphapulse: error:") and "\n" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("portfolio:\n  metods: [hrp]\n")
    code, err = _cli(capsys, "portfolio", "--config", str(bad), "--out", str(tmp_path / "o"), "--no-prefect")
    assert code == 2 and "portfolio.metods: unknown key (did you mean 'methods'?)" in err
    bad.write_text("portfolio:\n  methods: [efficient_return]\n")
    code, err = _cli(capsys, "portfolio", "--config", str(bad), "--data", str(SAMPLE), "--no-prefect")
    assert code == 2 and "target_return is not set" in err
    bad.write_text("portfolio:\n  lookback_bars: 100\n  min_history_bars: 200\n")
    code, err = _cli(capsys, "portfolio", "--config", str(bad), "--data", str(SAMPLE), "--no-prefect")
    assert code == 2 and "exceeds portfolio.lookback_bars" in err
    file_out = tmp_path / "afile"
    file_out.write_text("x")
    code, err = _cli(capsys, "portfolio", "--data", str(SAMPLE), "--out", str(file_out), "--no-prefect")
    assert code == 2 and "not a folder" in err
    assert not (tmp_path / "o").exists()


def test_cli_runs(tmp_path, capsys):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"columns": {"timestamp": "date", "symbol": "Name"}},
                                   "portfolio": {"methods": ["hrp", "min_variance"], **FAST,
                                                 "monte_carlo": {"n_paths": 1000, "models": ["normal"]}}}))
    code = main(["portfolio", "--data", str(SAMPLE), "--out", str(tmp_path / "o"), "--config", str(cfg),
                 "--backend", "cpu", "--no-prefect", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "excluded: APTV" in out and "fallbacks: none" in out
    assert (tmp_path / "o" / "weights.parquet").exists()


def test_default_config_documents_portfolio():
    pc = load_config().portfolio
    assert pc.covariance == "ledoit_wolf" and pc.out_dir == "reports/portfolio"


@pytest.mark.parametrize("estimator", ["sample", "ledoit_wolf", "oas", "ewma", "denoised"])
def test_every_covariance_estimator(estimator):
    from alphapulse.pipelines.runtime.backend import cpu_backend
    from alphapulse.pipelines.portfolio.pipeline import covariance_stage, load_stage, optimise_stage, returns_stage

    cfg = _config(covariance=estimator)
    request = prepare_portfolio(cfg, data_path=str(SAMPLE), out_dir="/tmp/unused-portfolio-report")
    backend = cpu_backend("test")
    rets = returns_stage(load_stage(request, backend).bars, cfg.portfolio, backend)
    cov = covariance_stage(rets, cfg.portfolio, backend)
    assert cov.shape == (44, 44)
    np.testing.assert_array_equal(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > -1e-12
    if estimator == "sample":
        np.testing.assert_allclose(cov, np.cov(rets.block, rowvar=False) * 252, rtol=1e-12)
    opt = optimise_stage(rets, cov, cfg.portfolio)
    np.testing.assert_allclose(opt.weights.groupby("method")["weight"].sum(), 1.0, atol=1e-8)


def test_every_portfolio_within_max_weight(tmp_path):
    """Risk parity ignored min_weight/max_weight (0.0425 on the sample with max_weight 0.035), and
    the ensemble, which mixes it in, broke the bound too."""
    config = _config(max_weight=0.035, min_weight=0.005, monte_carlo={"n_paths": 1000},
                     methods=["min_variance", "hrp", "risk_parity"])
    result = run_portfolio(prepare_portfolio(config, data_path=str(SAMPLE), out_dir=str(tmp_path / "r"), backend="cpu"))
    w = pd.read_parquet(result.out_dir / "weights.parquet")
    assert set(w["method"]) == {"min_variance", "hrp", "risk_parity", "ensemble"}
    assert w["weight"].max() <= 0.035 + 1e-12 and w["weight"].min() >= 0.005 - 1e-12
    assert (w[w["method"] == "risk_parity"]["weight"] > 0.035 - 1e-9).any()  # the bound binds
    chains = pd.read_parquet(result.out_dir / "fallbacks.parquet")
    assert (chains["status"] == "ok").all()
