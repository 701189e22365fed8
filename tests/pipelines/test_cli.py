import subprocess
import sys

import pytest

from flows.cli import main
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
    code = ("import sys; from flows.cli import main; rc = main(['daily', '--config', %r]); "
            "assert 'prefect' not in sys.modules, 'prefect imported'; sys.exit(rc)" % str(cfg))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "gpu.enabledd: unknown key (did you mean 'enabled'?)" in proc.stderr


def test_run_without_prefect(tmp_path, capsys):
    assert main(["daily", "--data", str(SAMPLE), "--out", str(tmp_path / "r"), "--backend", "cpu", "--no-prefect", "-q"]) == 0
    out = capsys.readouterr().out
    assert "rows: 58,100 read, 58,084 accepted, 16 rejected" in out
    assert (tmp_path / "r" / "indicators.parquet").exists()
