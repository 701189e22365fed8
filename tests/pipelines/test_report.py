import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from pipelines.report import ReportError, check_out_dir, write_report


def report(out, value, **kw):
    return write_report(out, tables={"t.parquet": pd.DataFrame({"x": [value]})},
                        manifest={"value": value}, summary=f"value {value}\n", **kw)


def test_write_and_replace(tmp_path):
    out = tmp_path / "rep"
    report(out, 1)
    report(out, 2)
    assert pd.read_parquet(out / "t.parquet")["x"].item() == 2
    m = json.loads((out / "manifest.json").read_text())
    assert m["value"] == 2 and m["files"]["t.parquet"]["rows"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temporary folders left


def test_failed_write_keeps_the_previous_report(tmp_path):
    out = tmp_path / "rep"
    report(out, 1)

    class Boom(pd.DataFrame):
        def to_parquet(self, *a, **k):
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_report(out, tables={"a.parquet": pd.DataFrame({"x": [5]}), "b.parquet": Boom({"x": [1]})},
                     manifest={}, summary="")
    assert pd.read_parquet(out / "t.parquet")["x"].item() == 1
    assert not (out / "a.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_killed_while_writing(tmp_path):
    """kill -9 in the middle of a write: the old report is intact, no partial one is visible,
    and the next write cleans up the hidden leftovers."""
    out = tmp_path / "rep"
    report(out, 1)
    script = textwrap.dedent(f"""
        import time, pandas as pd
        from pipelines import report
        real = pd.DataFrame.to_parquet
        def slow(self, *a, **k):
            real(self, *a, **k)
            print("written", flush=True)
            time.sleep(60)
        pd.DataFrame.to_parquet = slow
        report.write_report({str(out)!r}, tables={{"t.parquet": pd.DataFrame({{"x": [2]}})}}, manifest={{}}, summary="")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert pd.read_parquet(out / "t.parquet")["x"].item() == 1
    visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert visible == ["rep"]
    report(out, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_output_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ReportError, match="exists and is not a folder"):
        check_out_dir(f)


def test_report_names_cannot_escape(tmp_path):
    with pytest.raises(ReportError, match="plain name"):
        write_report(tmp_path / "rep", tables={"../evil.parquet": pd.DataFrame({"x": [1]})}, manifest={}, summary="")
    assert not (tmp_path / "evil.parquet").exists()


def test_extra_files_are_written_atomically_with_the_tables(tmp_path):
    out = tmp_path / "rep"
    write_report(out, tables={"t.parquet": pd.DataFrame({"x": [1]})}, manifest={}, summary="",
                 files={"plot.png": b"\x89PNG fake"})
    assert (out / "plot.png").read_bytes() == b"\x89PNG fake"
    assert json.loads((out / "manifest.json").read_text())["files"]["plot.png"] == {"bytes": 9}
    with pytest.raises(ReportError, match="plain name"):
        write_report(out, tables={}, manifest={}, summary="", files={"../x.png": b""})
    with pytest.raises(ReportError, match="given twice"):
        write_report(out, tables={"a.parquet": pd.DataFrame({"x": [1]})}, manifest={}, summary="",
                     files={"a.parquet": b""})
    assert (out / "plot.png").exists()  # failed writes left the previous report alone
