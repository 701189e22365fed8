import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from alphapulse.pipelines.report.write import ReportError, check_out_dir, write_report


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
        from alphapulse.pipelines.report import write as report
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


# ---------------------------------------------------------------------------------------------
# Which folders a report may replace, and what it removes there
# ---------------------------------------------------------------------------------------------


def listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_folder_holding_someone_elses_manifest_is_not_a_report(tmp_path):
    """A web app's manifest.json once made ``--out app`` delete the whole app."""
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "manifest.json").write_text('{"name": "x"}')
    (app / "src" / "main.js").write_text("keep")
    before = listing(app)
    for call in (lambda: check_out_dir(app), lambda: report(app, 1)):
        with pytest.raises(ReportError) as e:
            call()
        assert str(app) in str(e.value) and "not a report" in str(e.value) and "\n" not in str(e.value)
    assert listing(app) == before and (app / "src" / "main.js").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]


@pytest.mark.parametrize("record", [
    {"files": {"t.parquet": {"rows": 1}}},                                     # an old report
    {"alphapulse_report": {"format": 1, "files": "manifest.json"}},           # not a list
    {"alphapulse_report": {"format": 1, "files": ["../../etc/passwd", "manifest.json"]}},
    {"alphapulse_report": {"format": 99, "files": ["manifest.json", "t.parquet"]}},
    ["not", "an", "object"],
])
def test_a_manifest_without_a_valid_mark_is_not_a_report(tmp_path, record):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(record))
    (out / "t.parquet").write_bytes(b"x")
    with pytest.raises(ReportError, match="not a report"):
        report(out, 1)
    assert listing(out) == ["manifest.json", "t.parquet"]


def test_a_report_from_before_the_mark_says_how_to_proceed(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"files": {"t.parquet": {"rows": 1}}}))
    (out / "t.parquet").write_bytes(b"x")
    with pytest.raises(ReportError) as e:
        check_out_dir(out)
    message = str(e.value)
    assert message.startswith(f"{out}: ") and "older AlphaPulse" in message and "delete or move" in message


def test_the_manifest_lists_every_file_of_the_report(tmp_path):
    out = tmp_path / "rep"
    src = tmp_path / "part.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(src)
    write_report(out, tables={"t.parquet": pd.DataFrame({"x": [1]})}, manifest={}, summary="",
                 files={"plot.png": b"png"}, linked={"indicators/part-00000.parquet": src})
    mark = json.loads((out / "manifest.json").read_text())["alphapulse_report"]
    assert mark["format"] == 1
    assert mark["files"] == [p for p in listing(out) if p != "indicators"]


@pytest.mark.parametrize("foreign", ["notes.txt", "indicators/notes.txt", "sub/x", "t.parquet/inner"])
def test_a_report_that_gained_foreign_files_is_not_replaced(tmp_path, foreign):
    out = tmp_path / "rep"
    src = tmp_path / "part.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(src)
    write_report(out, tables={"t.parquet": pd.DataFrame({"x": [1]})}, manifest={}, summary="",
                 linked={"indicators/part-00000.parquet": src})
    if foreign == "t.parquet/inner":  # a file of the report replaced by a folder of someone's
        (out / "t.parquet").unlink()
    (out / foreign).parent.mkdir(exist_ok=True)
    (out / foreign).write_text("mine")
    before = listing(out)
    with pytest.raises(ReportError) as e:
        report(out, 2)
    message = str(e.value)
    shown = {"sub/x": "sub/", "t.parquet/inner": "t.parquet/"}.get(foreign, foreign)  # a folder: named as one
    assert message.startswith(f"{out}: ") and f"({shown})" in message and "\n" not in message
    assert listing(out) == before and (out / foreign).read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.parquet", "rep"]


def test_a_report_replaces_exactly_its_own_files(tmp_path):
    """Files of the previous report the new one does not write go; the partitioned layout turns
    into the single-file one and back."""
    out = tmp_path / "rep"
    src = tmp_path / "part.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(src)
    write_report(out, tables={"rejected.parquet": pd.DataFrame({"x": [1]})}, manifest={}, summary="",
                 linked={"indicators/part-00000.parquet": src, "indicators/part-00001.parquet": src})
    report(out, 2)
    assert listing(out) == ["manifest.json", "summary.html", "summary.md", "t.parquet"]
    write_report(out, tables={}, manifest={}, summary="", linked={"indicators/part-00000.parquet": src})
    assert listing(out) == ["indicators", "indicators/part-00000.parquet", "manifest.json", "summary.html",
                            "summary.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.parquet", "rep"]


def test_an_empty_folder_and_a_missing_one_are_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    report(tmp_path / "empty", 1)
    report(tmp_path / "new" / "deeper", 1)
    assert pd.read_parquet(tmp_path / "empty" / "t.parquet")["x"].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]


# ---------------------------------------------------------------------------------------------
# --out through a symbolic link
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target_state", ["missing", "empty", "report"])
def test_a_link_is_followed_to_its_folder_and_stays_a_link(tmp_path, target_state):
    target = tmp_path / "store" / "reports"
    if target_state != "missing":
        target.mkdir(parents=True)
    if target_state == "report":
        report(target, 1)
    (tmp_path / "store").mkdir(exist_ok=True)
    link = tmp_path / "link"
    os.symlink(target, link)
    if target_state == "missing":  # a dangling link: refused, nothing created
        with pytest.raises(ReportError, match="broken or looping symbolic link"):
            report(link, 2)
        assert not target.exists()
    else:
        assert check_out_dir(link) == target
        assert report(link, 2) == target
        assert pd.read_parquet(target / "t.parquet")["x"].item() == 2
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "store"]
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ([] if target_state == "missing" else ["reports"])


def test_a_looping_link_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(ReportError, match="broken or looping symbolic link"):
        check_out_dir(a)


# ---------------------------------------------------------------------------------------------
# No scratch left behind on a failure
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["exchange", "rename", "fsync"])
def test_a_failure_at_the_swap_leaves_the_previous_report_and_no_scratch(tmp_path, monkeypatch, where):
    from alphapulse.pipelines.report import write as report_module

    out = tmp_path / "rep"
    report(out, 1)

    def boom(*a, **k):
        raise OSError(5, "Input/output error")

    if where == "exchange":
        monkeypatch.setattr(report_module, "exchange_paths", boom)
    elif where == "rename":  # no renameat2 here: the two-rename fallback, its second rename failing
        monkeypatch.setattr(report_module, "exchange_paths", lambda a, b: False)
        real = os.rename
        monkeypatch.setattr(report_module.os, "rename",
                            lambda a, b: boom() if str(b) == str(out) and "-old-" not in str(a) else real(a, b))
    else:  # the parent's flush after the swap
        real_fsync = report_module.fsync_dir
        monkeypatch.setattr(report_module, "fsync_dir", lambda p: boom() if p == tmp_path else real_fsync(p))
    with pytest.raises(OSError, match="Input/output error"):
        report(out, 2)
    monkeypatch.undo()
    assert pd.read_parquet(out / "t.parquet")["x"].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


# ---------------------------------------------------------------------------------------------
# Concurrent writers (real processes)
# ---------------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time, pandas as pd
    from pathlib import Path
    from alphapulse.pipelines.report import write as report
    out, value, go, rounds, slow = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    if slow == "slow":  # hold the lock with a scratch folder half written
        real = pd.DataFrame.to_parquet
        def slowly(self, *a, **k):
            real(self, *a, **k)
            print("written", flush=True)
            time.sleep(1.5)
        pd.DataFrame.to_parquet = slowly
    while not go.exists():
        time.sleep(0.005)
    for i in range(rounds):
        frame = pd.DataFrame({"x": [value] * 20_000, "i": range(20_000)})
        report.write_report(out, tables={"t.parquet": frame, "u.parquet": frame}, manifest={"value": value},
                            summary=f"value {value}\\n", files={"v.txt": str(value).encode()})
""")


def writers(tmp_path, out, values, *, rounds=1, slow=()):
    go = tmp_path / "go"
    return go, [subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(v), str(go), str(rounds),
                                  "slow" if v in slow else "fast"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in values]


def finish(procs, timeout=120):
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def assert_whole(out, values):
    manifest = json.loads((out / "manifest.json").read_text())
    value = manifest["value"]
    assert value in values
    for name in ("t.parquet", "u.parquet"):
        frame = pd.read_parquet(out / name)
        assert len(frame) == 20_000 and set(frame["x"]) == {value}
    assert (out / "v.txt").read_text() == str(value) and (out / "summary.md").read_text() == f"value {value}\n"
    assert listing(out) == sorted(manifest["alphapulse_report"]["files"])


def test_a_writer_waits_for_another_and_never_touches_its_scratch(tmp_path):
    """The writer that comes second used to remove the first one's scratch folder as stale (the
    first then failed on a missing file): now it waits for the lock, and both reports are whole."""
    out = tmp_path / "rep"
    go, (first,) = writers(tmp_path, out, [1], slow=(1,))
    go.touch()
    assert first.stdout.readline().strip() == "written"  # it holds the lock, its scratch half written
    _, later = writers(tmp_path, out, [2, 3])
    results = finish([first, *later])
    assert [rc for rc, _ in results] == [0, 0, 0], results
    assert_whole(out, [2, 3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "rep"]


def test_writers_started_together_all_finish_whole(tmp_path):
    out = tmp_path / "rep"
    go, procs = writers(tmp_path, out, [1, 2, 3, 4], rounds=4)
    time.sleep(1.0)  # let them import: they start writing at the same moment
    go.touch()
    results = finish(procs)
    assert [rc for rc, _ in results] == [0, 0, 0, 0], results
    assert_whole(out, [1, 2, 3, 4])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "rep"]


def test_a_lock_held_too_long_is_one_line(tmp_path, monkeypatch):
    import fcntl

    from alphapulse.pipelines.report import write as report_module

    out = tmp_path / "rep"
    report(out, 1)
    monkeypatch.setattr(report_module, "LOCK_WAIT_SECONDS", 0.3)
    with open(tmp_path / ".rep.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ReportError) as e:
            report(out, 2)
    message = str(e.value)
    assert message.startswith(f"{out}: another run is writing") and "\n" not in message
    assert pd.read_parquet(out / "t.parquet")["x"].item() == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_live_runs_scratch_folder_survives_another_daily_run(tmp_path):
    """The daily pipeline's part files wait in ``.<name>.parts-*`` beside the report; a second run
    into the same folder used to remove the first one's as stale. Only a killed run's (one no
    process holds) goes."""
    from alphapulse.pipelines.config import load_config
    from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily

    out = tmp_path / "rep"
    live = tmp_path / ".rep.parts-00000000live"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        os.mkdir({str(live)!r})
        open(os.path.join({str(live)!r}, "part-00000.parquet"), "w").write("live")
        fd = os.open({str(live)!r}, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        dead = tmp_path / ".rep.parts-0000000dead"  # a killed run's: nobody holds it
        dead.mkdir()
        (dead / "part-00000.parquet").write_text("stale")
        data = tmp_path / "bars.csv"
        ts = pd.date_range("2024-01-01", periods=40, freq="D").strftime("%Y-%m-%d")
        pd.DataFrame({"timestamp": ts, "symbol": "AAA", "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5,
                      "volume": 1.0}).to_csv(data, index=False)
        run_daily(prepare_daily(load_config(), data_path=str(data), out_dir=str(out), backend="cpu"))
        assert (live / "part-00000.parquet").read_text() == "live"
        assert not dead.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == [".rep.parts-00000000live", "bars.csv", "rep"]
    finally:
        holder.kill()
        holder.wait()
