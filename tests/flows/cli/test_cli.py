import json
import subprocess
import sys

import pandas as pd
import pytest

from alphapulse.flows.cli.dispatch import main
from tests.pipelines.conftest import ROOT, SAMPLE


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["daily", "--help"])
    assert e.value.code == 0
    assert "--backend {auto,cpu,gpu}" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--data", "nope.parquet"], "nope.parquet: no such file"),
    (["--config", "nope.yaml"], "config file not found"),
    (["--out", str(SAMPLE)], "exists and is not a folder"),
])
def test_mistakes_are_one_line_errors(tmp_path, capsys, args, message):
    base = {"--data": str(SAMPLE), "--out": str(tmp_path / "o")}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["daily"] + [x for kv in base.items() for x in kv]
    argv += [a for a in args if a not in base and a not in base.values()]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("alphapulse: error:") and message in err and "Traceback" not in err


def test_bad_config_fails_before_prefect_is_imported(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gpu:\n  enabledd: true\n")
    code = ("import sys; from alphapulse.flows.cli.dispatch import main; rc = main(['daily', '--config', %r]); "
            "assert 'prefect' not in sys.modules, 'prefect imported'; sys.exit(rc)" % str(cfg))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "gpu.enabledd: unknown key (did you mean 'enabled'?)" in proc.stderr


def test_run_without_prefect(tmp_path, capsys):
    assert main(["daily", "--data", str(SAMPLE), "--out", str(tmp_path / "r"), "--backend", "cpu", "--no-prefect",
                 "-q"]) == 0
    out = capsys.readouterr().out
    assert "rows: 58,100 read, 58,084 accepted, 16 rejected" in out
    assert (tmp_path / "r" / "indicators.parquet").exists()


def test_runs_into_one_folder_at_the_same_moment_all_succeed(tmp_path):
    """Two runs into one --out at once: one used to remove the other's scratch folder as stale and
    fail on a missing file (1 in 9 trials). Writers now wait for each other (a lock beside the
    folder); every run succeeds and the report is whole. Real processes, bounded time."""
    data = tmp_path / "bars.csv"
    ts = pd.date_range("2024-01-01", periods=60, freq="D").strftime("%Y-%m-%d")
    pd.concat([pd.DataFrame({"timestamp": ts, "symbol": s, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5,
                             "volume": 1.0}) for s in ("AAA", "BBB")]).to_csv(data, index=False)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "alphapulse.flows.cli.dispatch", "daily", "--data", str(data), "--out", str(out),
            "--backend", "cpu", "--no-prefect", "-q"]
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    try:
        errors = [p.communicate(timeout=120)[1] for p in procs]
        results = [(p.returncode, e) for p, e in zip(procs, errors)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [rc for rc, _ in results] == [0, 0, 0], results
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == manifest["alphapulse_report"]["files"]
    assert len(pd.read_parquet(out / "indicators.parquet")) == 120
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.csv", "out"]  # no scratch, no lock left
