"""``alphapulse backtest``: help, one-line errors before any work, a run on the bundled data."""
import json
import subprocess
import sys

import pytest

from alphapulse.flows.cli.dispatch import main
from tests.pipelines.conftest import ROOT, SAMPLE


def test_help_documents_grid_and_semantics(capsys):
    with pytest.raises(SystemExit) as e:
        main(["backtest", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for text in ("fast=5:50:5,slow=20:200:10", "lower=20,25,30;upper=70,75,80", "start:stop[:step]",
                 "bar t+1's open", "--cluster", "tcp://HOST:PORT", "backtest_summary.parquet", "random_sample"):
        assert text in out, text


@pytest.mark.parametrize("args, message", [
    (["--grid", "fast=5:1"], "grid parameter 'fast': range '5:1' has stop < start"),
    (["--grid", "fsat=5"], "not a parameter of sma_cross (did you mean 'fast'?)"),
    (["--grid", "fast=50;slow=20"], "all 1 combinations are invalid (fast >= slow: 1)"),
    (["--strategy", "sma_crosss"], "unknown strategy 'sma_crosss' (did you mean 'sma_cross'?)"),
    (["--cluster", "yarn"], "cluster must be null, 'local', 'processes', 'cuda' or a scheduler address"),
    (["--data", "nope.parquet"], "nope.parquet: no such file"),
    (["--config", "nope.yaml"], "config file not found"),
    (["--out", str(SAMPLE)], "exists and is not a folder"),
])
def test_mistakes_are_one_line_errors(tmp_path, capsys, args, message):
    base = {"--data": str(SAMPLE), "--out": str(tmp_path / "o"), "--backend": "cpu"}
    base.update(dict(zip(args[::2], args[1::2])))
    assert main(["backtest", *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alphapulse: error:") and message in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_bad_backtest_config_fails_before_prefect_is_imported(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backtest:\n  walk_forward: {train_bars: 10, test_bars: 5, metrc: sharpe}\n")
    code = ("import sys; from alphapulse.flows.cli.dispatch import main; "
            "rc = main(['backtest', '--config', %r, '--data', %r]); "
            "assert 'prefect' not in sys.modules, 'prefect imported'; sys.exit(rc)" % (str(cfg), str(SAMPLE)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "backtest.walk_forward.metrc: unknown key (did you mean 'metric'?)" in proc.stderr


def test_bundled_data_end_to_end(tmp_path, capsys):
    """The default sweep, sma_cross fast=5:50:5 x slow=20:200:10, over the bundled sample."""
    out = tmp_path / "r"
    assert main(["backtest", "--data", str(SAMPLE), "--out", str(out), "--strategy", "sma_cross",
                 "--grid", "fast=5:50:5,slow=20:200:10", "--backend", "cpu", "--no-prefect", "-q"]) == 0
    text = capsys.readouterr().out
    assert "combinations: 190 in the grid, 174 run, 16 skipped as invalid" in text
    assert "50 symbols x 1259 timestamps" in text and "best by portfolio Sharpe: fast=" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["backtest_metrics.parquet"]["rows"] == 50 * 174
    assert manifest["files"]["backtest_summary.parquet"]["rows"] == 174
    assert manifest["files"]["equity.parquet"]["rows"] == 10 * 1259
    assert manifest["grid"]["source"] == "command line"
