"""summary.html: content against pandas, self-containment, escaping, and failures that keep the report."""
from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import yaml

from alphapulse.pipelines.report import html as html_report
from alphapulse.pipelines.report import views
from alphapulse.pipelines.report import write as report
from alphapulse.pipelines.backtest import prepare_backtest, run_backtest_pipeline
from alphapulse.pipelines.config import load_config, parse_config
from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily
from alphapulse.pipelines.portfolio.pipeline import prepare_portfolio, run_portfolio
from tests.pipelines.conftest import ROOT, SAMPLE

ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "h3", "p", "div", "b", "span",
                "table", "thead", "tbody", "tr", "th", "td", "img", "ul", "li", "a",
                # inline SVG charts: shapes and text only (no <use>, <image> or <foreignObject>)
                "svg", "rect", "text", "polyline", "polygon", "path"}
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The page as the browser's parser sees it: tags, images, tables (cell text), all text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.imgs, self.tables, self.text = set(), [], [], []
        self._cell = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def table(self, *header_cells: str) -> pd.DataFrame:
        """The first table whose header row has all ``header_cells``, as text."""
        for t in self.tables:
            if t and set(header_cells) <= set(t[0]):
                return pd.DataFrame(t[1:], columns=t[0])
        raise AssertionError(f"no table with columns {header_cells}")

    def img(self, alt: str) -> bytes:
        for a in self.imgs:
            if a.get("alt") == alt:
                return base64.b64decode(a["src"].removeprefix("data:image/png;base64,"))
        raise AssertionError(f"no image {alt!r}")


def assert_self_contained(text: str) -> Page:
    page = Page(text)
    assert page.tags <= ALLOWED_TAGS, page.tags - ALLOWED_TAGS  # no script, link, iframe, object, ...
    for href in re.findall(r'<a\s+href="([^"]*)"', text):
        assert href and ":" not in href and not href.startswith(("/", ".")), href  # a file of the report folder
    for a in page.imgs:
        assert a["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(a["src"][22:])[:8] == PNG
    assert not re.search(r"https?://|url\(|@import", text)  # nothing fetched from anywhere
    return page


@pytest.fixture(scope="module")
def daily_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "rep"
    return run_daily(prepare_daily(load_config(), data_path=str(SAMPLE), out_dir=str(out), backend="cpu")).out_dir


@pytest.fixture(scope="module")
def portfolio_out(tmp_path_factory):
    base = yaml.safe_load((ROOT / "pipelines" / "config" / "default_config.yaml").read_text())
    base["portfolio"] = {**base["portfolio"], "regimes": {"n_init": 3}, "monte_carlo": {"n_paths": 5000}}
    out = tmp_path_factory.mktemp("p") / "rep"
    return run_portfolio(prepare_portfolio(parse_config(base), data_path=str(SAMPLE), out_dir=str(out),
                                           backend="cpu")).out_dir


@pytest.fixture(scope="module")
def backtest_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "rep"
    request = prepare_backtest(load_config(), data_path=str(SAMPLE), out_dir=str(out), strategy="sma_cross",
                               grid="fast=5:20:5,slow=30:60:10", backend="cpu", cluster=None)
    return run_backtest_pipeline(request).out_dir


def _close(text: str, value: float) -> bool:
    """A cell shows ``value`` to the page's 4 significant digits (whole numbers in full)."""
    if np.isnan(value):
        return text == ""
    return abs(float(text) - value) <= 5e-4 * abs(value) + 1e-12


def test_daily_page_shows_the_latest_values_of_every_symbol(daily_out):
    page = assert_self_contained((daily_out / "summary.html").read_text())
    snap = page.table("rsi_14").set_index("symbol")
    ind = pd.read_parquet(daily_out / "indicators.parquet")
    oracle = ind.sort_values("timestamp").groupby("symbol").tail(1).set_index("symbol").sort_index()
    assert list(snap.index) == list(oracle.index) and len(snap) == 50
    for col in ("rsi_14", "sma_50", "macd_hist_12_26_9", "atr_14", "obv"):
        for sym in oracle.index:
            assert _close(snap.at[sym, col], oracle.at[sym, col]), (sym, col, snap.at[sym, col], oracle.at[sym, col])
    assert (snap["timestamp"] == oracle["timestamp"].dt.strftime("%Y-%m-%d")).all()
    manifest = json.loads((daily_out / "manifest.json").read_text())
    rejected = page.table("reason", "rows")
    assert dict(zip(rejected["reason"], rejected["rows"].astype(int))) == manifest["input"]["rejected_by_reason"]
    stages = page.table("stage")
    assert list(stages["stage"]) == list(manifest["stages"])
    assert not page.imgs  # no plot without monitoring: the daily page never imports matplotlib


def test_portfolio_page_has_heatmaps_regimes_and_weights(portfolio_out):
    page = assert_self_contained((portfolio_out / "summary.html").read_text())
    for alt in ("correlation heatmap", "regime timeline", "weights heatmap"):
        assert page.img(alt)[:8] == PNG
    w = pd.read_parquet(portfolio_out / "weights.parquet")
    top = page.table("top 5").set_index("method")
    best = w.sort_values("weight", ascending=False).groupby("method").head(1).set_index("method")
    for method, row in best.iterrows():
        assert top.at[method, "top 5"].startswith(f"{row['symbol']} {100 * row['weight']:.1f}%")
    centres = page.table("volatility")
    expected = pd.read_parquet(portfolio_out / "regime_centres.parquet")
    assert all(_close(t, v) for t, v in zip(centres["volatility"], expected["volatility"]))


def test_correlation_matrix_from_the_upper_triangle_matches_pandas(portfolio_out):
    corr = pd.read_parquet(portfolio_out / "correlation.parquet")
    day = corr[corr["date"] == corr["date"].max()]
    symbols, mat = views.correlation_matrix(day)
    upper = day.pivot(index="symbol_i", columns="symbol_j", values="rho")
    full = upper.combine_first(upper.T).reindex(index=symbols, columns=symbols).to_numpy(dtype=float, copy=True)
    np.fill_diagonal(full, 1.0)
    np.testing.assert_array_equal(mat, full)
    assert (np.diag(mat) == 1).all() and np.array_equal(mat, mat.T, equal_nan=True)


def test_backtest_page_inlines_the_heatmap_and_draws_equity(backtest_out):
    page = assert_self_contained((backtest_out / "summary.html").read_text())
    assert page.img("Sharpe heatmap") == (backtest_out / "sharpe_heatmap.png").read_bytes()
    assert page.img("equity curves")[:8] == PNG
    top = page.table("portfolio_sharpe")
    summary = pd.read_parquet(backtest_out / "backtest_summary.parquet").sort_values("rank").head(10)
    assert list(top["rank"].astype(int)) == list(summary["rank"])
    assert list(top["fast"].astype(int)) == list(summary["fast"])
    assert all(_close(t, v) for t, v in zip(top["portfolio_sharpe"], summary["portfolio_sharpe"]))


HOSTILE = "<script>alert(1)</script>"


def _gpu_manifest() -> dict:
    samples = [{"t": 0.5 * k, "stage": "load" if k < 4 else "fit", "gpu_util_pct": 10.0 * k,
                "gpu_mem_used_bytes": 2**30, "cpu_pct": 50.0, "rss_bytes": 2**29} for k in range(8)]
    return {
        "run_id": "x1", "created_at": "2026-01-01T00:00:00+00:00", "pipeline": HOSTILE,
        "backend": {"name": "gpu", "reason": '"><img src=x onerror=alert(1)>', "dtype": "float32", "device": 0,
                    "device_name": "NVIDIA H100"},
        "input": {"path": "/data/<iframe>", "rows_read": 10, "rows_accepted": 9, "rows_rejected": 1,
                  "rejected_by_reason": {HOSTILE: 1}, "symbols": 2},
        "stages": {"load": 1.0, "fit": 3.0},
        "monitoring": {"interval_s": 0.5, "samples": samples,
                       "stage_peaks": {"load": {"gpu_util_pct": 30.0, "gpu_mem_used_bytes": 2**30,
                                                "rss_bytes": 2**29}}},
        "routing": [{"operation": "covariance", "size": 50, "backend": "cpu", "speedup": 0.4, "min_speedup": 1.5,
                     "reason": "measured 0.4x < 1.5x"}],
        "alerts": [{"kind": "gpu_oom", "stage": "fit", "message": f"out of memory {HOSTILE}", "batch_size": 1024,
                    "action": "retried at 512"}],
        "cost": {"currency": "USD", "gpu_per_hour": 2.5, "cpu_core_per_hour": 0.05, "total": 0.0125,
                 "per_unit": {"unit": "million bars", "value": 0.5},
                 "stages": {"load": {"gpu_seconds": 0.0, "cpu_seconds": 1.0, "cost": 0.0001},
                            "fit": {"gpu_seconds": 3.0, "cpu_seconds": 1.0, "cost": 0.0124}}},
    }


def test_every_value_is_escaped_and_gpu_sections_render():
    ind = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"] * 2),
                        "symbol": [HOSTILE] * 2 + ["B&B"] * 2, "<b>col</b>": [1.0, 2.0, 3.0, np.nan]})
    text = html_report.render(_gpu_manifest(), {"indicators.parquet": ind})
    page = assert_self_contained(text)
    assert "<script" not in text.lower() and "<iframe" not in text and "<img src=x" not in text
    shown = "".join(page.text)
    assert HOSTILE in shown and '"><img src=x onerror=alert(1)>' in shown and "/data/<iframe>" in shown
    snap = page.table("<b>col</b>")
    assert snap.to_dict("records") == [{"symbol": HOSTILE, "timestamp": "2024-01-02", "<b>col</b>": "2"},
                                       {"symbol": "B&B", "timestamp": "2024-01-02", "<b>col</b>": ""}]
    assert page.img("utilisation timeline")[:8] == PNG
    assert "1 alert(s)" in shown and page.table("action")["action"].tolist() == ["retried at 512"]
    routing = page.table("min_speedup")
    assert routing["backend"].tolist() == ["cpu"] and routing["reason"].tolist() == ["measured 0.4x < 1.5x"]
    stages = page.table("GPU s")
    assert stages["cost"].tolist() == ["0.0001", "0.0124"]
    assert "0.0125 USD" in shown and "0.5 USD per million bars" in shown


def test_a_broken_section_keeps_the_rest_of_the_page():
    tables = {"correlation.parquet": pd.DataFrame({"date": [pd.Timestamp("2024-01-31")], "wrong": [1.0]}),
              "weights.parquet": pd.DataFrame({"date": pd.Timestamp("2024-01-31"), "method": ["hrp", "hrp"],
                                               "symbol": ["A", "B"], "weight": [0.25, 0.75]})}
    page = assert_self_contained(html_report.render({"pipeline": "portfolio", "stages": {"x": 1.0}}, tables))
    shown = "".join(page.text)
    assert "correlation: not rendered (KeyError" in shown
    assert page.img("weights heatmap")[:8] == PNG and page.table("stage")["stage"].tolist() == ["x"]


def test_write_report_keeps_the_report_when_the_page_cannot_be_rendered(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(html_report, "render", broken)
    frame = pd.DataFrame({"a": [1, 2]})
    out = report.write_report(tmp_path / "rep", tables={"t.parquet": frame}, manifest={"pipeline": "x"},
                              summary="# x\n")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "summary.html", "summary.md", "t.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "t.parquet"), frame)
    page = assert_self_contained((out / "summary.html").read_text())
    assert "RuntimeError: renderer exploded" in "".join(page.text)
    assert "summary.html could not be rendered" in caplog.text


def test_summary_html_is_a_reserved_name(tmp_path):
    with pytest.raises(report.ReportError, match="summary.html"):
        report.write_report(tmp_path / "rep", tables={}, manifest={}, summary="", files={"summary.html": b"x"})


def test_models_page_shows_whole_period_scores_best_first():
    scores = pd.DataFrame({"model": ["ridge", "knn", "ridge", "knn"], "step": [0, 0, -1, -1],
                           "ic_mean": [0.5, 0.4, 0.01, 0.03], "hit_rate": [0.6, 0.6, 0.51, 0.52]})
    page = assert_self_contained(html_report.render({"pipeline": "models"}, {"model_scores.parquet": scores}))
    table = page.table("model", "ic_mean")
    assert table["model"].tolist() == ["knn", "ridge"] and table["ic_mean"].tolist() == ["0.03", "0.01"]
    title, head = views.headline_table({"pipeline": "models"}, {"model_scores.parquet": scores})
    assert title.startswith("Out-of-sample") and head["ic_mean"].tolist() == [0.03, 0.01]
