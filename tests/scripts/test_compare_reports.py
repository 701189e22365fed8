"""scripts/compare_reports.py on real report folders: equal ones agree, a perturbed cell is named."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphapulse.flows.cli.dispatch import main as cli

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compare_reports.py"
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


def compare(a: Path, b: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), *extra], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two daily reports of the bundled sample, written by two separate runs."""
    base = tmp_path_factory.mktemp("reports")
    for name in ("a", "b"):
        assert cli(["daily", "--data", str(SAMPLE), "--out", str(base / name), "--no-prefect", "--quiet"]) == 0
    return base / "a", base / "b"


def test_two_runs_agree(reports):
    a, b = reports
    proc = compare(a, b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "agree" in proc.stdout


def test_a_perturbed_cell_is_reported_with_its_column_and_row(reports, tmp_path):
    a, b = reports
    c = tmp_path / "c"
    shutil.copytree(b, c)
    table = pd.read_parquet(c / "indicators.parquet")
    column = "rsi_14"
    row = int(np.flatnonzero(table[column].notna().to_numpy())[100])
    table.loc[row, column] *= 1 + 1e-6
    table.to_parquet(c / "indicators.parquet", index=False)
    proc = compare(a, c)
    assert proc.returncode == 1, proc.stdout
    assert f"indicators.parquet: column {column}: 1 values beyond rtol" in proc.stdout
    assert str(table.loc[row, "symbol"]) in proc.stdout


def test_rows_in_another_order_agree_but_a_missing_row_does_not(reports, tmp_path):
    a, b = reports
    c = tmp_path / "c"
    shutil.copytree(b, c)
    table = pd.read_parquet(c / "indicators.parquet")
    table.sample(frac=1.0, random_state=0).to_parquet(c / "indicators.parquet", index=False)
    assert compare(a, c).returncode == 0
    table.iloc[1:].to_parquet(c / "indicators.parquet", index=False)
    proc = compare(a, c)
    assert proc.returncode == 1 and "rows vs" in proc.stdout


def test_nan_moved_dtype_changed_and_missing_table_are_reported(reports, tmp_path):
    a, b = reports
    c = tmp_path / "c"
    shutil.copytree(b, c)
    table = pd.read_parquet(c / "indicators.parquet")
    first_valid = int(np.flatnonzero(table["sma_20"].notna().to_numpy())[0])
    table.loc[first_valid, "sma_20"] = np.nan
    table["ema_12"] = table["ema_12"].astype("float32")
    table.to_parquet(c / "indicators.parquet", index=False)
    (c / "rejected.parquet").unlink()
    out = compare(a, c).stdout
    assert "rejected.parquet: only in A" in out
    assert "column ema_12: dtype float64 vs float32" in out
    # the dtype difference is reported first; NaN moves are found once dtypes agree
    table["ema_12"] = table["ema_12"].astype("float64")
    table["ema_12"] = pd.read_parquet(b / "indicators.parquet")["ema_12"]
    table.to_parquet(c / "indicators.parquet", index=False)
    assert "column sma_20: NaN in one and not the other at 1 rows" in compare(a, c).stdout


def test_float32_tables_use_the_float32_tolerance(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    x = pd.DataFrame({"symbol": ["A", "B", "C"], "v": np.array([1.0, 2.0, 3.0], np.float32)})
    x.to_parquet(a / "t.parquet", index=False)
    y = x.copy()
    y.loc[1, "v"] = np.float32(2.0 * (1 + 2e-5))
    y.to_parquet(b / "t.parquet", index=False)
    assert compare(a, b).returncode == 0
    assert compare(a, b, "--rtol-float32", "1e-6").returncode == 1


def test_a_missing_folder_is_exit_2(tmp_path):
    proc = compare(tmp_path / "nope", tmp_path)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
