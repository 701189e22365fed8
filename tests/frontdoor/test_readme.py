"""The README's notebook example runs as written, in a fresh folder holding only the bundled data,
and its objects hold what the text says they hold."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from tests.pipelines.conftest import ROOT, SAMPLE


def _example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python (notebooks)"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's front-door section lost its python block"
    return match.group(1)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE, tmp_path / "data" / "sp500_sample.parquet")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_example(), "README.md", "exec"), ns)  # noqa: S102 - the README's own code
    printed = capsys.readouterr().out
    ind, bt, opt, report = ns["ind"], ns["bt"], ns["opt"], ns["report"]
    assert list(ind.columns) == ["timestamp", "symbol", "rsi_14", "macd_12_26_9", "macd_signal_12_26_9",
                                 "macd_hist_12_26_9"]
    assert len(ind.attrs["rejected"]) == 16 and "AAPL" in printed
    assert bt.strategy == "sma_cross" and len(bt.summary) == 16 and bt.walk_forward is not None
    assert bt.walk_forward["window"].nunique() >= 4
    assert opt.method == "max_sharpe" and opt.weights.sum() == pytest.approx(1.0, abs=1e-9)
    assert opt.weights.max() <= 0.1 + 1e-9 and np.isfinite(opt.covariance.to_numpy()).all()
    assert opt.method_used in printed
    assert (tmp_path / "reports" / "notebook-portfolio" / "manifest.json").is_file()
    assert report.out_dir.resolve() == (tmp_path / "reports" / "notebook-portfolio").resolve()
    assert "weights.parquet" in report.tables
