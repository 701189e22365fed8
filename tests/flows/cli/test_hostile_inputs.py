"""Broken input tried as a hostile user would, through the real entry point.

Every case runs ``alphapulse <command> ... --no-prefect`` (``alphapulse.flows.cli.dispatch.main``) and asserts one of
three outcomes, never a traceback and never a silently wrong report:

- ``error``: exit status 2 and exactly one stderr line, ``alphapulse: error: ...``, naming the
  file / column / key / row at fault;
- ``quarantine``: exit status 0, the bad rows in ``rejected.parquet`` with their reason, file and
  row, ``summary.md`` pointing at it, and no trace of them in the indicators;
- ``accepted``: input that is odd but well defined (mixed UTC offsets, numeric symbols), loaded
  to the documented values.

The data are 2 symbols x 40 daily bars, small enough that a case takes well under a second. The
size cases at the end build the larger inputs they need (20,000 symbols; 1,259 bars for a grid of
1,000,000 combinations, whose plan alone takes ~20 s) and are refused before any large
allocation; where the budget compares with the machine's memory they see 21 GiB available.
"""
from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alphapulse.flows.cli.dispatch import main
from alphapulse.pipelines.data.rules import BAD_SYMBOL, DUPLICATE, OUT_OF_TIME

N_BARS = 40
ROWS = 2 * N_BARS


def bars() -> pd.DataFrame:
    """Valid bars: AAA and BBB, 40 days each, timestamps as ISO text."""
    ts = pd.date_range("2024-01-01", periods=N_BARS, freq="D")
    parts = []
    for sym, base in (("AAA", 10.0), ("BBB", 50.0)):
        c = base + np.arange(N_BARS) * 0.1
        parts.append(pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d"), "symbol": sym, "open": c,
                                   "high": c + 1, "low": c - 1, "close": c + 0.5, "volume": 1000.0}))
    return pd.concat(parts, ignore_index=True)


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(timestamp=pd.to_datetime(frame["timestamp"]))


def run(tmp_path, capsys, *args, cmd="daily", out="out"):
    """``alphapulse cmd args --no-prefect``: (exit status, stdout, stderr)."""
    argv = [cmd, *args]
    if out is not None and "--out" not in args:
        argv += ["--out", str(tmp_path / out)]
    argv += ["--backend", "cpu", "--no-prefect", "-q"]
    capsys.readouterr()
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_error(rc, err, *fragments):
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("alphapulse: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def assert_quarantined(tmp_path, rc, err, reason, rows):
    """Exit 0; exactly ``rows`` (0-based data rows) rejected for ``reason`` and the report says so."""
    assert rc == 0, err
    out = tmp_path / "out"
    rejected = pd.read_parquet(out / "rejected.parquet")
    hit = rejected[rejected["reason"] == reason]
    assert sorted(hit["source_row"]) == sorted(rows), rejected
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["rows_accepted"] + manifest["input"]["rows_rejected"] == manifest["input"]["rows_read"]
    assert manifest["input"]["rejected_by_reason"][reason] == len(rows)
    summary = (out / "summary.md").read_text()
    assert "rejected.parquet" in summary and reason in summary
    return rejected


def indicators(tmp_path) -> pd.DataFrame:
    out = tmp_path / "out"
    if (out / "indicators.parquet").exists():
        return pd.read_parquet(out / "indicators.parquet")
    return pd.read_parquet(out / "indicators")  # a partitioned run writes a folder of parts


def write_csv(tmp_path, frame, name="bars.csv", **kw):
    path = tmp_path / name
    frame.to_csv(path, index=False, **kw)
    return path


# ---------------------------------------------------------------------------------------------
# Data files: errors
# ---------------------------------------------------------------------------------------------


def test_truncated_parquet(tmp_path, capsys):
    full = tmp_path / "full.parquet"
    typed(bars()).to_parquet(full, index=False)
    data = full.read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    assert_error(*run(tmp_path, capsys, "--data", str(tmp_path / "trunc.parquet"))[::2],
                 "trunc.parquet: cannot read as parquet")


def test_csv_with_semicolons(tmp_path, capsys):
    path = write_csv(tmp_path, bars(), "semi.csv", sep=";")
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2],
                 "semi.csv: missing column(s)", "found ['timestamp;symbol;open;high;low;close;volume']")


def test_non_utf8_bytes(tmp_path, capsys):
    text = bars().assign(symbol=["Zürich"] * N_BARS + ["BBB"] * N_BARS).to_csv(index=False)
    path = tmp_path / "latin1.csv"
    path.write_bytes(text.encode("latin-1"))
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2], "latin1.csv: not UTF-8 text")


@pytest.mark.parametrize("content, message", [
    (b"", "empty.csv: empty file (no header, no rows)"),
    (b"timestamp,symbol,open,high,low,close,volume\n", "empty.csv: no rows"),
])
def test_empty_file(tmp_path, capsys, content, message):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2], message)


def test_empty_partition_among_good_ones_and_alone(tmp_path, capsys):
    folder = tmp_path / "parts"
    folder.mkdir()
    typed(bars()).to_parquet(folder / "part-0.parquet", index=False)
    typed(bars()).iloc[:0].to_parquet(folder / "part-1.parquet", index=False)
    rc, out, err = run(tmp_path, capsys, "--data", str(folder))
    assert rc == 0, err
    assert f"rows: {ROWS} read, {ROWS} accepted, 0 rejected" in out
    only_empty = tmp_path / "empty_parts"
    only_empty.mkdir()
    typed(bars()).iloc[:0].to_parquet(only_empty / "part-0.parquet", index=False)
    assert_error(*run(tmp_path, capsys, "--data", str(only_empty), out="out2")[::2], "part-0.parquet: no rows")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_duplicate_columns(tmp_path, capsys, fmt):
    frame = typed(bars())
    if fmt == "csv":
        path = tmp_path / "dup.csv"
        path.write_text("timestamp,symbol,open,high,low,close,volume,close\n2024-01-02,A,1,2,0.5,1.5,10,1.5\n")
    else:
        path = tmp_path / "dup.parquet"
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table.append_column("close", table.column("close")), path)
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2], f"dup.{fmt}: duplicate column name(s) ['close']")


def test_missing_required_column(tmp_path, capsys):
    path = write_csv(tmp_path, bars().drop(columns="volume"))
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2], "bars.csv: missing column(s) 'volume'")


def test_all_rows_rejected(tmp_path, capsys):
    path = write_csv(tmp_path, bars().assign(close=-1.0))
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2],
                 f"all {ROWS} rows rejected (non_positive: close: {ROWS})", "bars.csv row 0 (0-based data row)")
    assert not (tmp_path / "out").exists()  # no report of nothing


@pytest.mark.parametrize("cmd, extra", [("backtest", ["--strategy", "sma_cross"]), ("portfolio", [])])
def test_all_rows_rejected_in_the_other_pipelines(tmp_path, capsys, cmd, extra):
    path = write_csv(tmp_path, bars().assign(volume=-1.0))
    assert_error(*run(tmp_path, capsys, "--data", str(path), *extra, cmd=cmd)[::2],
                 f"all {ROWS} rows rejected (negative: volume: {ROWS})")


def test_folder_mixing_csv_and_parquet(tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    bars().to_csv(folder / "a.csv", index=False)
    typed(bars()).to_parquet(folder / "b.parquet", index=False)
    assert_error(*run(tmp_path, capsys, "--data", str(folder))[::2], "mixed: mixes CSV and parquet files")


def test_folder_without_data_files(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden.csv").write_text("x")  # hidden and _private files are not data
    assert_error(*run(tmp_path, capsys, "--data", str(empty))[::2], "empty: folder holds no data files")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "readme.txt").write_text("hello")
    assert_error(*run(tmp_path, capsys, "--data", str(other))[::2], "readme.txt: cannot tell the format")


def test_symlink_loop_and_dangling_link(tmp_path, capsys):
    os.symlink(tmp_path / "b.csv", tmp_path / "a.csv")
    os.symlink(tmp_path / "a.csv", tmp_path / "b.csv")
    assert_error(*run(tmp_path, capsys, "--data", str(tmp_path / "a.csv"))[::2],
                 "a.csv: a broken or looping symbolic link")
    os.symlink(tmp_path / "gone.csv", tmp_path / "dangling.csv")
    assert_error(*run(tmp_path, capsys, "--data", str(tmp_path / "dangling.csv"))[::2], "dangling.csv: a broken")


def test_folder_with_a_symlink_to_itself_reads_each_file_once(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    bars().to_csv(folder / "a.csv", index=False)
    os.symlink(folder, folder / "loop")
    rc, out, err = run(tmp_path, capsys, "--data", str(folder))
    assert rc == 0, err
    assert f"rows: {ROWS} read, {ROWS} accepted, 0 rejected" in out


@pytest.mark.parametrize("path", ["fifo.csv", "/dev/zero", "/dev/null"])
def test_not_a_regular_file(tmp_path, capsys, path):
    """Root reads any file, so unreadable is shown with files that would block or never end."""
    if path == "fifo.csv":
        path = str(tmp_path / "fifo.csv")
        os.mkfifo(path)
    assert_error(*run(tmp_path, capsys, "--data", path)[::2], f"{path}: not a regular file or folder")


@pytest.mark.parametrize("cut", ["half", "garbage"])
def test_corrupt_gzip_csv(tmp_path, capsys, cut):
    data = gzip.compress(bars().to_csv(index=False).encode())
    path = tmp_path / "bars.csv.gz"
    path.write_bytes(data[: len(data) // 2] if cut == "half" else b"\x1f\x8b\x08\x00" + b"garbage" * 10)
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2], "bars.csv.gz: cannot read as csv")


@pytest.mark.parametrize("column, values, shown", [
    ("close", lambda c: pa.array([{"v": x} for x in c]), "column 'close' has dtype struct<v: double>"),
    ("volume", lambda c: pa.array([[x] for x in c]), "column 'volume' has dtype list<element: double>"),
    ("symbol", lambda c: pa.array([b"AAA"] * len(c)), "column 'symbol' has dtype binary"),
])
def test_parquet_nested_or_binary_column(tmp_path, capsys, column, values, shown):
    frame = typed(bars())
    table = pa.Table.from_pandas(frame, preserve_index=False)
    i = table.schema.get_field_index(column)
    table = table.set_column(i, column, values(frame[column].tolist()))
    pq.write_table(table, tmp_path / "nested.parquet")
    assert_error(*run(tmp_path, capsys, "--data", str(tmp_path / "nested.parquet"))[::2], "nested.parquet: " + shown)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_timestamps_as_epoch_numbers(tmp_path, capsys, fmt):
    """1704067200 read as nanoseconds would be 1970-01-01 00:00:01.7: silently wrong, so refused."""
    frame = bars()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("int64") // 10**9
    if fmt == "csv":
        path = write_csv(tmp_path, frame, "epoch.csv")
    else:
        path = tmp_path / "epoch.parquet"
        frame.to_parquet(path, index=False)
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2],
                 f"epoch.{fmt}: column 'timestamp' holds numbers (int64", "ambiguous")


def test_ragged_csv_row(tmp_path, capsys):
    path = tmp_path / "ragged.csv"
    path.write_text(bars().to_csv(index=False) + "2024-03-01,AAA,1,2,0.5,1.5,10,EXTRA\n")
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2],
                 "ragged.csv: cannot read as csv", "Expected 7 columns, got 8")


@pytest.mark.parametrize("name, writer, message", [
    ("real.csv", "parquet", "real.csv: not UTF-8 text"),
    ("real.parquet", "csv", "real.parquet: cannot read as parquet"),
])
def test_wrong_extension(tmp_path, capsys, name, writer, message):
    path = tmp_path / name
    if writer == "parquet":
        typed(bars()).to_parquet(path, index=False)
    else:
        bars().to_csv(path, index=False)
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2], message)


# ---------------------------------------------------------------------------------------------
# Data files: bad rows quarantined
# ---------------------------------------------------------------------------------------------


def with_row(frame, row, **values):
    frame = frame.astype(object).copy()
    for col, value in values.items():
        frame.loc[row, col] = value
    return frame


@pytest.mark.parametrize("value", ["2200-01-01", "9999-12-31", "1500-06-01"])
def test_timestamps_out_of_range_csv(tmp_path, capsys, value):
    """2200 fits datetime64[ns] but is in the future; 9999 and 1500 do not fit it at all."""
    path = write_csv(tmp_path, with_row(bars(), 5, timestamp=value))
    rc, out, err = run(tmp_path, capsys, "--data", str(path))
    assert_quarantined(tmp_path, rc, err, OUT_OF_TIME, [5])
    assert indicators(tmp_path)["timestamp"].max() < pd.Timestamp("2025-01-01")


def test_timestamp_far_future_parquet_microseconds(tmp_path, capsys):
    frame = typed(bars())
    frame["timestamp"] = frame["timestamp"].astype("datetime64[us]")
    frame.loc[7, "timestamp"] = pd.Timestamp("3000-01-01")
    frame.to_parquet(tmp_path / "future.parquet", index=False)
    rc, out, err = run(tmp_path, capsys, "--data", str(tmp_path / "future.parquet"))
    assert_quarantined(tmp_path, rc, err, OUT_OF_TIME, [7])


def test_huge_prices(tmp_path, capsys):
    """1e308 passes isfinite but its square overflows: rejected, and no inf reaches the report."""
    path = write_csv(tmp_path, with_row(bars(), 3, open=1e308, high=1e308, low=1e308, close=1e308))
    rc, out, err = run(tmp_path, capsys, "--data", str(path))
    assert_quarantined(tmp_path, rc, err, "out_of_range: open (outside [1e-15, 1e+15])", [3])
    values = indicators(tmp_path).select_dtypes("number").to_numpy()
    assert not np.isinf(values).any()


def test_inf_and_nan_strings(tmp_path, capsys):
    frame = with_row(bars(), 3, close="inf")
    frame = with_row(frame, 4, close="-inf")
    frame = with_row(frame, 5, close="NaN")
    frame = with_row(frame, 6, open="Infinity")
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)))
    assert_quarantined(tmp_path, rc, err, "inf: close", [3, 4])
    assert_quarantined(tmp_path, rc, err, "nan: close", [5])
    assert_quarantined(tmp_path, rc, err, "inf: open", [6])


def test_duplicate_timestamp_symbol_rows(tmp_path, capsys):
    frame = pd.concat([bars(), bars().iloc[[2, 3]]], ignore_index=True)
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)))
    assert_quarantined(tmp_path, rc, err, DUPLICATE, [ROWS, ROWS + 1])


@pytest.mark.parametrize("values, reason", [
    ({"close": 0.0, "low": 0.0}, "non_positive: low"),
    ({"open": -3.0}, "non_positive: open"),
    ({"high": 1.0}, "high_below_low"),
    ({"volume": -10.0}, "negative: volume"),
    ({"volume": "lots"}, "not_a_number: volume"),
    ({"volume": 1e19}, "out_of_range: volume (above 1e+18)"),
    ({"open": 1e-300, "low": 1e-300}, "out_of_range: open (outside [1e-15, 1e+15])"),
    ({"close": "12,5"}, "not_a_number: close"),
])
def test_bad_values_in_one_row(tmp_path, capsys, values, reason):
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, with_row(bars(), 2, **values))))
    assert_quarantined(tmp_path, rc, err, reason, [2])
    assert len(indicators(tmp_path)) == ROWS - 1


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_blank_and_padded_symbols(tmp_path, capsys, fmt):
    frame = with_row(bars(), 1, symbol="   ")
    frame = with_row(frame, 2, symbol=" AAA")
    frame = with_row(frame, 3, symbol="AA\tA")
    frame = with_row(frame, 4, symbol="" if fmt == "parquet" else None)
    if fmt == "csv":
        path = write_csv(tmp_path, frame)
    else:
        path = tmp_path / "bars.parquet"
        typed(frame).astype({"symbol": "str"}).to_parquet(path, index=False)
    rc, out, err = run(tmp_path, capsys, "--data", str(path))
    blank = [1, 2, 3, 4] if fmt == "parquet" else [1, 2, 3]
    assert_quarantined(tmp_path, rc, err, BAD_SYMBOL, blank)
    if fmt == "csv":  # an empty CSV field is a missing value
        assert_quarantined(tmp_path, rc, err, "missing_symbol", [4])
    assert sorted(indicators(tmp_path)["symbol"].unique()) == ["AAA", "BBB"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_symbols_with_invisible_or_line_breaking_characters(tmp_path, capsys, fmt):
    """"AAPL\\u200b" printed as AAPL beside the real AAPL; format (Cf), line and paragraph separator
    (Zl, Zp), control (Cc) and space characters other than the plain space (Zs) are refused."""
    odd = {1: "AAA\u200b", 2: "AA\u2028A", 3: "A\u00adAA", 4: "\ufeffAAA", 5: "AA\u2029A", 6: "AA\x85A",
           7: "AA\u00a0A", 8: "AA\u3000A", 9: "AA\u200dA", 10: "AA\u202eA", 11: "AA\u2060A", 12: "AA\x7fA"}
    frame = bars()
    for row, sym in odd.items():
        frame = with_row(frame, row, symbol=sym)
    frame = with_row(frame, 41, symbol="BB B")  # a plain space inside is a symbol's own
    if fmt == "csv":
        path = write_csv(tmp_path, frame)
    else:
        path = tmp_path / "bars.parquet"
        typed(frame).astype({"symbol": "str"}).to_parquet(path, index=False)
    rc, out, err = run(tmp_path, capsys, "--data", str(path))
    rejected = assert_quarantined(tmp_path, rc, err, BAD_SYMBOL, list(odd))
    assert dict(zip(rejected["source_row"], rejected["symbol"])) == odd  # kept as read, to be found
    assert sorted(indicators(tmp_path)["symbol"].unique()) == ["AAA", "BB B", "BBB"]


def test_timestamps_as_strings_in_several_formats(tmp_path, capsys):
    """ISO 8601 in any spelling is parsed (offsets to UTC); rows in another format are rejected."""
    frame = with_row(bars(), 0, timestamp="2024-01-01T00:00:00Z")
    frame = with_row(frame, 1, timestamp="20240102")              # ISO 8601 basic format
    frame = with_row(frame, 2, timestamp="2024-01-03 05:00:00+05:00")
    frame = with_row(frame, 3, timestamp="Jan 4 2024")            # not ISO: rejected
    frame = with_row(frame, 4, timestamp="01/05/2024")            # not ISO: rejected
    frame = with_row(frame, 5, timestamp="not a date")
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)))
    assert_quarantined(tmp_path, rc, err, "bad_timestamp: unparseable or missing", [3, 4, 5])
    aaa = indicators(tmp_path).query("symbol == 'AAA'")["timestamp"]
    assert list(aaa.iloc[:3]) == list(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_relative_words_and_bare_times_are_not_dates(tmp_path, capsys, fmt):
    """"now" and "today" became the run's clock time, and a bare time of day took today's date:
    only a written date is a bar's date."""
    words = {3: "now", 4: "today", 5: "yesterday", 6: "tomorrow", 7: "10:00", 8: "23:59:59",
             9: "10:00 UTC", 10: "10:00 1", 11: "NOW", 12: "noon", 13: "midnight"}
    frame = bars()
    for row, word in words.items():
        frame = with_row(frame, row, timestamp=word)
    if fmt == "csv":
        path = write_csv(tmp_path, frame)
    else:
        path = tmp_path / "bars.parquet"
        frame.astype({"timestamp": "str"}).to_parquet(path, index=False)
    rc, out, err = run(tmp_path, capsys, "--data", str(path))
    rejected = assert_quarantined(tmp_path, rc, err, "bad_timestamp: unparseable or missing", list(words))
    assert (rejected["source_file"] == 0).all()
    assert indicators(tmp_path)["timestamp"].max() == pd.Timestamp("2024-02-09")
    assert len(indicators(tmp_path)) == ROWS - len(words)


def test_a_column_that_starts_with_a_bare_time_is_not_dated_today(tmp_path, capsys):
    """The first value decides which format pandas infers; a time alone must not make every row
    take today's date."""
    frame = with_row(bars(), 0, timestamp="09:30")
    frame = with_row(frame, 1, timestamp="now")
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)))
    assert_quarantined(tmp_path, rc, err, "bad_timestamp: unparseable or missing", [0, 1])
    aaa = indicators(tmp_path).query("symbol == 'AAA'")["timestamp"]
    assert list(aaa) == list(pd.date_range("2024-01-03", periods=N_BARS - 2, freq="D"))


def test_one_consistent_non_iso_format_is_parsed(tmp_path, capsys):
    frame = bars()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.strftime("%m/%d/%Y")
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)))
    assert rc == 0, err
    assert indicators(tmp_path)["timestamp"].min() == pd.Timestamp("2024-01-01")


# ---------------------------------------------------------------------------------------------
# Data files: odd but well defined
# ---------------------------------------------------------------------------------------------


def test_mixed_time_zones_become_utc(tmp_path, capsys):
    """+00:00, -05:00 and +09:00 offsets (and naive text, taken as UTC) in one column."""
    frame = bars()
    days = pd.to_datetime(frame["timestamp"])
    offsets = ["+00:00", "-05:00", "+09:00", ""]
    local = [(d + pd.Timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%S") + offsets[i % 4] for i, d in enumerate(days)]
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame.assign(timestamp=local))))
    assert rc == 0, err
    assert f"{ROWS} accepted, 0 rejected" in out
    shift = {"+00:00": 0, "-05:00": 5, "+09:00": -9, "": 0}
    expected = sorted(d + pd.Timedelta(hours=12 + shift[offsets[i % 4]]) for i, d in enumerate(days[:N_BARS]))
    got = indicators(tmp_path).query("symbol == 'AAA'")["timestamp"]
    assert list(got) == expected


def test_symbol_column_of_numbers(tmp_path, capsys):
    """Integer symbols are text; an integer column with a gap (read as floats) prints them the same."""
    frame = typed(bars()).assign(symbol=[7203.0] * N_BARS + [6758.0] * N_BARS)
    frame.loc[5, "symbol"] = np.nan
    frame.to_parquet(tmp_path / "num.parquet", index=False)
    rc, out, err = run(tmp_path, capsys, "--data", str(tmp_path / "num.parquet"))
    assert_quarantined(tmp_path, rc, err, "missing_symbol", [5])
    assert sorted(indicators(tmp_path)["symbol"].unique()) == ["6758", "7203"]


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


def config_case(tmp_path, capsys, text: str | bytes, *fragments):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    data = write_csv(tmp_path, bars())
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--config", str(cfg))[::2], *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, fragments", [
    ("gpu:\n  enabled: maybe\n", ["c.yaml: gpu.enabled: Input should be a valid boolean"]),
    ("gpu:\n  enabled: maybe\ndata:\n  symbols_per_partition: lots\n",
     ["gpu.enabled", "; ", "data.symbols_per_partition"]),                    # two problems, one line
    ("indicators:\n  sma: [-5]\n", ["c.yaml: indicators: sma.period: must be positive, got -5"]),
    ("indicators:\n  sma: [.inf]\n", ["indicators.sma.0.float: Input should be a finite number (got inf)"]),
    ("indicators:\n  sma: [.nan]\n", ["indicators.sma.0.float: Input should be a finite number (got nan)"]),
    ("indicators:\n  sma: [{period: .inf}]\n", ["sma.period: expected int, got inf"]),  # was an OverflowError
    ("indicators:\n  bbands: [{period: 20, nbdev: .inf}]\n", ["bbands.nbdev: expected float, got inf"]),
    ("indicators:\n  sma: [1000000000000]\n", ["c.yaml: indicators: sma.period: must be in [1, 100000]"]),
    ("indicators:\n  smaa: [5]\n", ["unknown indicator 'smaa' (did you mean 'sma'?)"]),
    ("indicators:\n  sma: ['20']\n", ["c.yaml: indicators.sma"]),
    ("- a\n- b\n", ["c.yaml: expected a mapping at the top level, got list"]),
    ("gpu:\n  enabled: [true\n", ["c.yaml: not valid YAML at line 3, column 1"]),
    ("gpu:\n\tenabled: true\n", ["c.yaml: not valid YAML at line 2"]),
    (b"\xff\xfe\x00garbage", ["c.yaml: cannot read config"]),
    ("data:\n  columns: {timestamp: date, timestmp: x}\n", ["unknown standard column 'timestmp'"]),
    ("portfolio:\n  min_weight: 0.5\n  max_weight: 0.1\n", ["max_weight 0.1 is below min_weight 0.5"]),
    ("portfolio:\n  risk_free_rate: .nan\n", ["c.yaml: portfolio.risk_free_rate: Input should be a finite number"]),
    ("backtest:\n  take_profit: .inf\n", ["c.yaml: backtest.take_profit: Input should be a finite number"]),
    # costs of 200 % a fill made exits pay to close: equity below zero, a -100.3 % drawdown
    ("backtest:\n  commission_bps: 20000\n", ["c.yaml: backtest.commission_bps: Input should be less than 1000"]),
    ("backtest:\n  commission_bps: -1\n", ["backtest.commission_bps: Input should be greater than or equal to 0"]),
    ("backtest:\n  slippage_bps: 1000\n", ["c.yaml: backtest.slippage_bps: Input should be less than 1000"]),
    ("backtest:\n  stop_loss: 1.0\n", ["c.yaml: backtest.stop_loss: Input should be less than 1"]),
    ("backtest:\n  take_profit: 1.0e+6\n", ["backtest.take_profit: Input should be less than or equal to 100"]),
    ("backtest:\n  size_fraction: 2\n", ["c.yaml: backtest.size_fraction: Input should be less than or equal to 1"]),
    ("models:\n  signal:\n    slippage_bps: 5000\n", ["models.signal.slippage_bps: Input should be less than 1000"]),
    ("portfolio:\n  risk_free_rate: 5\n", ["portfolio.risk_free_rate: Input should be less than or equal to 1"]),
    ("backtest:\n  random_sample: 500000000\n",  # 4 GB of indices before the first backtest
     ["c.yaml: backtest.random_sample: Input should be less than or equal to 1000000"]),
    ("backtest:\n  seed: " + "9" * 5000 + "\n", ["c.yaml: not valid YAML: Exceeds the limit (4300 digits)"]),
    ("backtest:\n  grid: {fast: " + "1" * 40 + "}\n", ["grid parameter 'fast': '1111", "is out of range"]),
    ("gpu:\n  enabled: true\n  enabled: false\n", ["c.yaml: gpu.enabled: key given twice (lines 2 and 3)"]),
    ("data:\n  path: a.csv\nindicators:\n  sma: [5]\ndata:\n  path: b.csv\n", ["c.yaml: data: key given twice"]),
])
def test_bad_config(tmp_path, capsys, text, fragments):
    config_case(tmp_path, capsys, text, *fragments)


def test_yaml_python_tag_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    config_case(tmp_path, capsys, f"gpu: !!python/object/apply:os.system ['touch {marker}']\n",
                "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'")
    assert not marker.exists()


def test_yaml_alias_bomb_gives_a_short_error(tmp_path, capsys):
    """A billion-laughs style config (9**7 leaves, shared by reference) fails fast with a short line."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, 7):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    text = "x:\n" + "\n".join("  " + line for line in lines) + "\nindicators:\n  sma: *a6\n"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    rc, _, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, bars())), "--config", str(cfg))
    assert_error(rc, err, "c.yaml: indicators.sma.0", "more")
    assert len(err) < 2000


def test_config_that_is_not_a_regular_file(tmp_path, capsys):
    data = write_csv(tmp_path, bars())
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--config", "/dev/zero")[::2],
                 "/dev/zero: not a regular file")
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--config", str(big))[::2], "big.yaml: ", "bytes")


# ---------------------------------------------------------------------------------------------
# Command-line arguments and output paths
# ---------------------------------------------------------------------------------------------


def test_output_path_that_is_a_file_or_the_data_file(tmp_path, capsys):
    data = write_csv(tmp_path, bars())
    before = data.read_bytes()
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--out", str(data))[::2],
                 "bars.csv: output path exists and is not a folder")
    assert data.read_bytes() == before


def test_output_inside_or_equal_to_the_input_folder(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    bars().to_csv(folder / "a.csv", index=False)
    assert_error(*run(tmp_path, capsys, "--data", str(folder), "--out", str(folder / "report"))[::2],
                 "inside the input folder")
    assert_error(*run(tmp_path, capsys, "--data", str(folder), "--out", str(folder))[::2],
                 f"the input {folder} is inside it")
    assert_error(*run(tmp_path, capsys, "--data", str(folder / "a.csv"), "--out", str(tmp_path))[::2],
                 "a.csv is inside it")
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]  # nothing written, nothing replaced


def test_output_folder_that_is_not_a_report_is_never_replaced(tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    data = write_csv(tmp_path, bars())
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--out", str(mine))[::2],
                 "thesis: folder exists, is not empty and is not a report")
    assert (mine / "chapter1.tex").read_text() == "years of work"
    rc, out, err = run(tmp_path, capsys, "--data", str(data), "--out", str(tmp_path / "rep"))
    assert rc == 0, err
    rc, out, err = run(tmp_path, capsys, "--data", str(data), "--out", str(tmp_path / "rep"))
    assert rc == 0, err  # a previous report is replaced


def hidden_or_stray(folder) -> list[str]:
    """What a run left beside its report: scratch, lock or probe folders."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or ".kept-" in p.name)


@pytest.mark.parametrize("cmd", ["daily", "backtest", "portfolio", "models"])
def test_output_folder_holding_someone_elses_manifest_is_never_replaced(tmp_path, capsys, cmd):
    """``--out app`` deleted a web app whose manifest.json made it look like a report."""
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "manifest.json").write_text('{"name": "x"}')
    (app / "src" / "main.js").write_text("keep")
    data = write_csv(tmp_path, bars())
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--out", str(app), cmd=cmd)[::2],
                 f"{app}: folder exists, is not empty and is not a report")
    assert (app / "src" / "main.js").read_text() == "keep" and sorted(p.name for p in app.iterdir()) == \
        ["manifest.json", "src"]


def test_a_report_that_gained_a_file_or_predates_the_mark_is_refused(tmp_path, capsys):
    data = write_csv(tmp_path, bars())
    rep = tmp_path / "rep"
    rc, _, err = run(tmp_path, capsys, "--data", str(data), "--out", str(rep))
    assert rc == 0, err
    (rep / "notes.txt").write_text("mine")
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--out", str(rep))[::2],
                 f"{rep}: a report folder holding 1 file(s) the report did not write (notes.txt)")
    assert (rep / "notes.txt").read_text() == "mine"
    (rep / "notes.txt").unlink()
    manifest = json.loads((rep / "manifest.json").read_text())
    del manifest["alphapulse_report"]  # as written before reports were marked
    (rep / "manifest.json").write_text(json.dumps(manifest))
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--out", str(rep))[::2],
                 f"{rep}: folder exists", "older AlphaPulse", "delete or move it yourself")
    assert (rep / "indicators.parquet").exists() and hidden_or_stray(tmp_path) == []


@pytest.mark.parametrize("layout", ["single", "partitioned"])
def test_output_through_a_symbolic_link_writes_into_its_folder(tmp_path, capsys, layout):
    """The link was replaced by a folder and a ``.link.tmp-*`` folder was left behind."""
    target = tmp_path / "store" / "daily"
    target.mkdir(parents=True)
    link = tmp_path / "link"
    os.symlink(target, link)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(("data:\n  bars_per_partition: 30\n" if layout == "partitioned" else "")
                   + "indicators:\n  sma: [5]\n")
    typed(bars()).to_parquet(tmp_path / "bars.parquet", index=False)
    for _ in range(2):  # a new report, then one replacing it
        rc, out, err = run(tmp_path, capsys, "--data", str(tmp_path / "bars.parquet"), "--config", str(cfg),
                           "--out", str(link))
        assert rc == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["input"]["partitions"] == (2 if layout == "partitioned" else 1)
    assert len(pd.read_parquet(target / manifest["output"]["path"])) == ROWS
    assert hidden_or_stray(tmp_path) == [] and hidden_or_stray(target.parent) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.parquet", "c.yaml", "link", "store"]


def test_output_through_a_broken_link_is_refused(tmp_path, capsys):
    link = tmp_path / "link"
    os.symlink(tmp_path / "nowhere", link)
    assert_error(*run(tmp_path, capsys, "--data", str(write_csv(tmp_path, bars())), "--out", str(link))[::2],
                 f"{link}: a broken or looping symbolic link")
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("where", ["/proc/alphapulse-report", "/sys/alphapulse-report"])
def test_output_where_nothing_can_be_created(tmp_path, capsys, where):
    """os.access says yes to root everywhere; the check tries it (it was a traceback at the write)."""
    data = write_csv(tmp_path, bars())
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--out", where, out=None)[::2],
                 f"{where}: cannot create it")


COMMANDS = ["daily", "backtest", "portfolio", "models"]


@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("flag, message", [
    ("--data", "no input: give --data"),
    ("--out", "no output folder: give --out"),
])
def test_empty_path_arguments_do_not_fall_back_to_the_config(tmp_path, capsys, cmd, flag, message):
    """``--data "$UNSET"`` once ran on the config's bundled sample, a silently wrong report."""
    data = write_csv(tmp_path, bars())
    args = {"--data": str(data), "--out": str(tmp_path / "out"), flag: ""}
    assert_error(*run(tmp_path, capsys, *[x for kv in args.items() for x in kv], out=None, cmd=cmd)[::2], message)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_no_command_writes_into_or_over_its_input(tmp_path, capsys, cmd):
    folder = tmp_path / "data"
    folder.mkdir()
    bars().to_csv(folder / "a.csv", index=False)
    assert_error(*run(tmp_path, capsys, "--data", str(folder), "--out", str(folder / "report"), cmd=cmd)[::2],
                 "inside the input folder")
    assert_error(*run(tmp_path, capsys, "--data", str(folder / "a.csv"), "--out", str(folder), cmd=cmd)[::2],
                 "a.csv is inside it")
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]


def test_missing_data_path(tmp_path, capsys):
    assert_error(*run(tmp_path, capsys, "--data", str(tmp_path / "nope.parquet"))[::2],
                 "nope.parquet: no such file or folder")


@pytest.mark.parametrize("grid, fragments", [
    ("fast=1:100000,slow=1:100000", ["10,000,000,000 combinations (more than 1,000,000)", "random_sample"]),
    ("fast=1:1000000", ["range '1:1000000' has 1,000,000 values (at most 100,000)"]),
    ("fast=abc", ["grid parameter 'fast': 'abc' is not a number"]),
    ("fast=5:50:0", ["range '5:50:0' needs a positive step"]),
    ("fastt=5", ["grid parameter 'fastt': not a parameter of sma_cross (did you mean 'fast'?)"]),
    ("fast=-5,slow=20", ["period: must be in [1, 100000], got -5"]),
    ("fast=1e308", ["grid parameter 'fast': '1e308' is out of range"]),
    ("fast=1e999999999", ["'1e999999999' is out of range"]),       # was a billion-digit int
    ("fast=5:50:1e-999999999", ["'1e-999999999' is out of range"]),  # was decimal.Overflow
    ("fast=1:1e999999999", ["'1e999999999' is out of range"]),
    ("", ["empty grid"]),
])
def test_bad_grid(tmp_path, capsys, grid, fragments):
    data = write_csv(tmp_path, bars())
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--strategy", "sma_cross", "--grid", grid,
                      cmd="backtest")[::2], *fragments)


def test_unknown_strategy_and_cluster(tmp_path, capsys):
    data = write_csv(tmp_path, bars())
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--strategy", "sma_crosss", cmd="backtest")[::2],
                 "unknown strategy 'sma_crosss' (did you mean 'sma_cross'?)")
    assert_error(*run(tmp_path, capsys, "--data", str(data), "--cluster", "ftp://x", cmd="backtest")[::2],
                 "not 'ftp://x'")


def test_argparse_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["daily", "--backend", "tpu"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tpu'" in err and "Traceback" not in err


@pytest.mark.parametrize("extra_column, mapped", [("Name", "symbol"), ("date", "timestamp")])
def test_a_mapped_column_beside_its_standard_name(tmp_path, capsys, extra_column, mapped):
    """The default config maps symbol: Name and timestamp: date; a file with both spellings was an
    AttributeError deep in the load."""
    path = write_csv(tmp_path, bars().assign(**{extra_column: bars()[mapped]}))
    assert_error(*run(tmp_path, capsys, "--data", str(path))[::2],
                 f"bars.csv: columns ['{mapped}', '{extra_column}'] would both be '{mapped}'")


@pytest.mark.parametrize("cmd, extra", [
    ("daily", []),
    ("backtest", ["--strategy", "sma_cross", "--grid", "fast=5:10:5,slow=20:30:10"]),
    ("portfolio", ["--config", "portfolio.yaml"]),
])
def test_every_pipeline_quarantines_and_points_to_rejected_parquet(tmp_path, capsys, cmd, extra):
    """300 bars of 3 symbols with a 1e308 bar, a year-2200 bar, a padded symbol and a repeated bar."""
    n = 300
    days = pd.bdate_range("2022-01-03", periods=n)
    rng = np.random.default_rng(0)
    parts = []
    for sym in ("AAA", "BBB", "ÅÄÖ"):
        c = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        parts.append(pd.DataFrame({"timestamp": days.strftime("%Y-%m-%d"), "symbol": sym, "open": c,
                                   "high": c * 1.01, "low": c * 0.99, "close": c, "volume": 1e6}))
    frame = with_row(pd.concat(parts, ignore_index=True), 3, open=1e308, high=1e308, low=1e308, close=1e308)
    frame = with_row(frame, 10, timestamp="2200-01-01")
    frame = with_row(frame, 20, symbol=" AAA")
    frame = pd.concat([frame, frame.iloc[[30]]], ignore_index=True)
    (tmp_path / "portfolio.yaml").write_text("portfolio:\n  lookback_bars: 200\n  min_history_bars: 150\n"
                                             "  monte_carlo:\n    n_paths: 1000\n")
    extra = [str(tmp_path / e) if e.endswith(".yaml") else e for e in extra]
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)), *extra, cmd=cmd)
    assert rc == 0, err
    rejected = pd.read_parquet(tmp_path / "out" / "rejected.parquet")
    assert dict(zip(rejected["source_row"], rejected["reason"])) == {
        3: "out_of_range: open (outside [1e-15, 1e+15])", 10: OUT_OF_TIME, 20: BAD_SYMBOL, 3 * n: DUPLICATE}
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "4 rejected" in summary and "rejected.parquet" in summary and OUT_OF_TIME in summary


def test_all_rows_rejected_in_a_partitioned_daily_run(tmp_path, capsys):
    """Parquet over data.bars_per_partition runs partition by partition; the whole-input check holds."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  bars_per_partition: 30\nindicators:\n  sma: [5]\n")
    typed(bars()).assign(close=-1.0).to_parquet(tmp_path / "neg.parquet", index=False)
    assert_error(*run(tmp_path, capsys, "--data", str(tmp_path / "neg.parquet"), "--config", str(cfg))[::2],
                 f"all {ROWS} rows rejected (non_positive: close: {ROWS})")
    assert not (tmp_path / "out").exists()
    frame = typed(bars())
    frame.loc[3, ["open", "high", "low", "close"]] = 1e308
    frame.loc[50, "timestamp"] = pd.Timestamp("2200-01-01")
    frame.to_parquet(tmp_path / "bad.parquet", index=False)
    rc, out, err = run(tmp_path, capsys, "--data", str(tmp_path / "bad.parquet"), "--config", str(cfg))
    assert_quarantined(tmp_path, rc, err, OUT_OF_TIME, [50])
    assert_quarantined(tmp_path, rc, err, "out_of_range: open (outside [1e-15, 1e+15])", [3])
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["input"]["partitions"] == 2


def test_a_header_of_thousands_of_columns_gives_a_short_line(tmp_path, capsys):
    path = tmp_path / "wide.csv"
    names = [f"c{i}" for i in range(5000)]
    path.write_text(",".join(["timestamp", "symbol", "open", "high", "low", "close", "volume", *names]) + "\n")
    rc, _, err = run(tmp_path, capsys, "--data", str(path))
    assert_error(rc, err, "wide.csv: unexpected column(s) ['c0', 'c1',", "(4,990 more)]")
    assert len(err) < 600


def test_tickers_that_look_like_nulls_or_numbers_survive_a_csv(tmp_path, capsys):
    """"NA" (a NASDAQ ticker) and "NULL" were missing values to the CSV parser; "0700" (Tencent in
    Hong Kong) became the integer 700. Only an empty field is missing."""
    frame = bars()
    frame["symbol"] = ["NA"] * 20 + ["NULL"] * 20 + ["0700"] * 20 + ["0005"] * 20
    frame.loc[5, "symbol"] = ""
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)))
    assert_quarantined(tmp_path, rc, err, "missing_symbol", [5])
    assert sorted(indicators(tmp_path)["symbol"].unique()) == ["0005", "0700", "NA", "NULL"]


def test_ambiguous_day_month_order_is_refused(tmp_path, capsys):
    """03/04/2024 on every row with days up to 12: 3 April or March 4? No row tells, so no guess."""
    frame = bars()
    days = pd.to_datetime(frame["timestamp"]).dt.day.clip(upper=12)
    frame["timestamp"] = [f"{d:02d}/{m:02d}/2024" for d, m in zip(days, [1] * N_BARS + [2] * N_BARS)]
    frame = frame.drop_duplicates(["symbol", "timestamp"])
    assert_error(*run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)))[::2],
                 "bars.csv: column 'timestamp': day and month order is ambiguous (row 1, '02/01/2024', is "
                 "2024-02-01 or 2024-01-02", "ISO 8601")


def test_day_first_dates_are_read_day_first_when_a_row_shows_it(tmp_path, capsys):
    """European 03/01/2024 .. 09/02/2024: rows with a day over 12 settle the order; none is swapped."""
    frame = bars()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.strftime("%d/%m/%Y")
    rc, out, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, frame)))
    assert rc == 0, err
    got = indicators(tmp_path).query("symbol == 'AAA'")["timestamp"]
    assert list(got) == list(pd.date_range("2024-01-01", periods=N_BARS, freq="D"))


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="Linux /proc only")
def test_a_file_even_root_cannot_read(tmp_path, capsys):
    """Permissions do not stop root; /proc/self/mem is a regular file whose read fails with EIO."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  format: csv\nindicators:\n  sma: [5]\n")
    assert_error(*run(tmp_path, capsys, "--data", "/proc/self/mem", "--config", str(cfg))[::2],
                 "/proc/self/mem: cannot read as csv: OSError: [Errno 5] Input/output error")


# ---------------------------------------------------------------------------------------------
# Sizes: every size a config or argument controls is bounded before it is allocated
# ---------------------------------------------------------------------------------------------

GIB = 2**30


@pytest.fixture
def machine(monkeypatch):
    """The memory the budget sees as available (21 GiB unless a test says otherwise), so that a
    case is refused on every machine the same way and nothing is allocated to find out."""
    import alphapulse.pipelines.runtime.budget as budget

    def available(nbytes: int = 21 * GIB):
        monkeypatch.setattr(budget, "available_bytes", lambda: nbytes)
    available()
    return available


SMALL_PORTFOLIO = ("portfolio:\n  lookback_bars: 30\n  min_history_bars: 20\n  correlation_lookback_bars: 10\n"
                   "  correlation_min_periods: 5\n")
SMALL_REGIMES = "{vol_window_bars: 5, corr_window_bars: 5, trend_window_bars: 5, n_clusters: 2"
SMALL_MODELS = ("models:\n  horizon_bars: 1\n"
                "  walk_forward: {train_bars: 15, test_bars: 5, validation_bars: 0, min_train_rows: 5}\n"
                "  ensemble: {methods: [mean]}\n  min_symbols: 2\n")
SMALL_FEATURES = "return_windows: [3], volatility_windows: [3], indicators: {rsi: [3]}, rank_features: []"


def budget_case(tmp_path, capsys, cmd, text, *fragments, data=None, args=()):
    """``alphapulse cmd --config c.yaml``: refused with one line, nothing written."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    data = data or write_csv(tmp_path, bars())
    rc, _, err = run(tmp_path, capsys, "--data", str(data), "--config", str(cfg), *args, cmd=cmd)
    assert_error(rc, err, *fragments)
    assert not (tmp_path / "out").exists()
    return err


@pytest.mark.parametrize("text, fragments", [
    ("portfolio:\n  monte_carlo: {n_paths: 1000000000000}\n",
     ["c.yaml: portfolio.monte_carlo.n_paths: ", "range [100, 1000000000]"]),
    ("portfolio:\n  monte_carlo: {n_paths: 1.0e+12}\n", ["portfolio.monte_carlo.n_paths", "range [100, 1000000000]"]),
    ("portfolio:\n  monte_carlo: {horizons_bars: [1, 1000000000]}\n",
     ["c.yaml: portfolio.monte_carlo.horizons_bars.1: ", "range [1, 10000]"]),
    ("portfolio:\n  regimes: {n_init: 100000000}\n", ["c.yaml: portfolio.regimes.n_init: ", "range [1, 1000]"]),
    ("models:\n  features: {return_lags: 100000}\n", ["c.yaml: models.features.return_lags: ", "range [0, 1000]"]),
    ("models:\n  models: [{kind: knn, n_neighbors: 1000000000}]\n",
     ["c.yaml: models.models.0.n_neighbors: ", "range [1, 10000]"]),
    ("models:\n  models: [{kind: random_forest, scope: pooled, n_estimators: 1000000000}]\n",
     ["c.yaml: models.models.0.n_estimators: ", "range [1, 10000]"]),
    ("gpu:\n  monitoring: {sample_interval_s: 1.0e+308}\n",
     ["c.yaml: gpu.monitoring.sample_interval_s: ", "range [0.05, 3600]"]),
    ("gpu:\n  monitoring: {sample_interval_s: 0.000001}\n", ["gpu.monitoring.sample_interval_s", "range [0.05, 3600]"]),
    ("budget:\n  memory_fraction: 0\n", ["c.yaml: budget.memory_fraction: ", "range (0, 1]"]),
    ("budget:\n  max_hours: 1.0e+300\n", ["c.yaml: budget.max_hours: ", "range (0, 8760]"]),
])
def test_sizes_out_of_their_documented_range(tmp_path, capsys, text, fragments):
    """Each was a MemoryError traceback, or hours of work, before the range was enforced."""
    config_case(tmp_path, capsys, text, *fragments)


@pytest.mark.parametrize("block", ["indicators", "models.features.indicators"])
def test_twenty_thousand_indicator_columns(tmp_path, capsys, block):
    """20,000 SMA columns printed thousands of warnings and aborted at 8.4 GB."""
    periods = "[" + ", ".join(str(p) for p in range(1, 20_001)) + "]"
    text = (f"indicators:\n  sma: {periods}\n" if block == "indicators"
            else f"models:\n  features:\n    indicators:\n      sma: {periods}\n")
    config_case(tmp_path, capsys, text, f"c.yaml: {block}: 20,000 output columns (at most 1,000)")
    assert len(capsys.readouterr().err) < 600


def test_a_thousand_indicator_columns_without_a_warning_each(tmp_path, capsys):
    """At the limit the run works, without pandas' fragmentation warning at each column past 100."""
    import warnings

    cfg = tmp_path / "c.yaml"
    cfg.write_text("indicators:\n  sma: [" + ", ".join(str(p) for p in range(1, 1001)) + "]\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, _, err = run(tmp_path, capsys, "--data", str(write_csv(tmp_path, bars())), "--config", str(cfg))
    assert rc == 0, err
    assert [w for w in caught if issubclass(w.category, pd.errors.PerformanceWarning)] == []
    assert indicators(tmp_path).shape == (ROWS, 1002)


@pytest.mark.parametrize("style", ["block", "flow", "under a key"])
def test_config_nested_hundreds_of_levels_deep(tmp_path, capsys, style):
    """600 levels gave a 3,000-line RecursionError traceback."""
    if style == "block":
        text = "".join("  " * i + f"k{i}:\n" for i in range(600)) + "  " * 600 + "x: 1\n"
    elif style == "flow":
        text = "data: " + "[" * 600 + "]" * 600 + "\n"
    else:
        text = "data:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(600)) + "  " * 601 + "x: 1\n"
    config_case(tmp_path, capsys, text, "c.yaml: nested more than 32 levels deep at line ")


def test_monte_carlo_paths_over_the_memory(tmp_path, capsys, machine):
    """n_paths: 300,000,000 was a MemoryError traceback; the estimate names the setting and the means."""
    budget_case(tmp_path, capsys, "portfolio",
                SMALL_PORTFOLIO + f"  regimes: {SMALL_REGIMES}}}\n  monte_carlo: {{n_paths: 300000000}}\n",
                "portfolio.monte_carlo.n_paths = 300000000 needs ~", " GiB (n_paths x ", "8 B",
                "this machine has 21 GiB available", "budget.memory_fraction")


def test_monte_carlo_horizon_over_the_memory(tmp_path, capsys, machine):
    """One path of 10,000 bars of 2 assets is small; 1,000,000,000 paths of it are not."""
    machine(256 * 2**20)
    budget_case(tmp_path, capsys, "portfolio",
                SMALL_PORTFOLIO + f"  regimes: {SMALL_REGIMES}}}\n"
                "  monte_carlo: {n_paths: 1000000, horizons_bars: [10000]}\n",
                "portfolio.monte_carlo.n_paths = 1000000 needs ~", "256 MiB available")


def test_portfolio_of_twenty_thousand_symbols(tmp_path, capsys, machine):
    """20,000 symbols x 40 bars: the covariance alone is 3.2 GB and the optimisers, the rolling
    correlation and the regimes' correlations several times that: refused, not a MemoryError."""
    n, n_bars = 20_000, N_BARS
    rng = np.random.default_rng(0)
    c = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, n_bars)), axis=1)).ravel()
    names = np.char.add("S", np.arange(n).astype(str)).astype(object)
    frame = pd.DataFrame({"timestamp": np.tile(pd.date_range("2024-01-01", periods=n_bars, freq="D"), n),
                          "symbol": np.repeat(names, n_bars), "open": c, "high": c * 1.01, "low": c * 0.99,
                          "close": c, "volume": 1e6})
    frame.to_parquet(tmp_path / "wide.parquet", index=False)
    budget_case(tmp_path, capsys, "portfolio", SMALL_PORTFOLIO + f"  regimes: {SMALL_REGIMES}}}\n",
                "portfolio: 20,000 symbols", "need ~", "GiB", "this machine has 21 GiB available",
                data=tmp_path / "wide.parquet")


def test_backtest_grid_at_the_combination_limit(tmp_path, capsys, machine):
    """1,000,000 combinations (the limit) over 1,259 bars: the grid's bookkeeping (portfolio sums
    and counts, bars x combinations) tried to allocate 18.7 GiB; now estimated and refused."""
    n_bars = 1259
    days = pd.bdate_range("2013-02-08", periods=n_bars)
    parts = [pd.DataFrame({"timestamp": days.strftime("%Y-%m-%d"), "symbol": sym, "open": c, "high": c + 1,
                           "low": c - 1, "close": c + 0.5, "volume": 1000.0})
             for sym, c in (("AAA", 10 + np.arange(n_bars) * 0.01), ("BBB", 50 + np.arange(n_bars) * 0.01))]
    data = write_csv(tmp_path, pd.concat(parts, ignore_index=True))
    budget_case(tmp_path, capsys, "backtest", "indicators:\n  sma: [5]\n",
                "backtest.grid: 1,000,000 combinations x 1,259 bars x 2 symbols need ~", "GiB",
                "this machine has 21 GiB available",
                data=data, args=("--strategy", "sma_cross", "--grid", "fast=1:1000,slow=1001:2000"))


def test_indicator_columns_over_the_memory(tmp_path, capsys, machine):
    """1,000 columns are within range; their panels and frame over the means are refused."""
    machine(2**20)
    periods = "[" + ", ".join(str(p) for p in range(1, 1001)) + "]"
    budget_case(tmp_path, capsys, "daily", f"indicators:\n  sma: {periods}\n",
                "indicators: 1,000 output columns x 80 bars (40 timestamps x 2 symbols) need ~", "MiB",
                "this machine has 1.0 MiB available")


@pytest.mark.parametrize("models, fragments", [
    ("[{kind: ridge}]", ["models.features: 1,003 features x 40 bars x 2 symbols need ~"]),
    ("[{kind: knn, n_neighbors: 10000}]", ["models.models.0.n_neighbors = 10000 needs ~"]),
])
def test_model_sizes_over_the_memory(tmp_path, capsys, machine, models, fragments):
    machine(2**20)
    budget_case(tmp_path, capsys, "models",
                SMALL_MODELS + f"  features: {{return_lags: 1000, {SMALL_FEATURES}}}\n  models: {models}\n"
                if "ridge" in models else SMALL_MODELS + f"  features: {{return_lags: 2, {SMALL_FEATURES}}}\n"
                f"  models: {models}\n", *fragments, "this machine has 1.0 MiB available")


@pytest.mark.parametrize("cmd, text, fragment", [
    ("portfolio", SMALL_PORTFOLIO + f"  regimes: {SMALL_REGIMES}, n_init: 1000}}\n  monte_carlo: {{n_paths: 1000}}\n",
     "portfolio.regimes.n_init = 1000 plans at least ~"),
    ("models", SMALL_MODELS + f"  features: {{return_lags: 2, {SMALL_FEATURES}}}\n"
     "  models: [{kind: random_forest, scope: pooled, n_estimators: 10000, min_samples_leaf: 1}]\n",
     "models.models.0.n_estimators = 10000 plans at least ~"),
])
def test_work_over_the_time_budget(tmp_path, capsys, cmd, text, fragment):
    """n_init and n_estimators ran for hours; within range, the estimate is held to budget.max_hours."""
    budget_case(tmp_path, capsys, cmd, text + "budget:\n  max_hours: 0.000001\n", fragment, "budget.max_hours")


@pytest.mark.parametrize("value", ["inf", "nan", "1e308", "0.001", "-1"])
def test_serve_sample_interval_out_of_range(tmp_path, capsys, monkeypatch, value):
    """--sample-interval inf crashed the server's sampler thread with a traceback."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # nothing is served either way
    capsys.readouterr()
    rc = main(["serve", "--reports", str(tmp_path), f"--sample-interval={value}", "-q"])
    assert_error(rc, capsys.readouterr().err, "--sample-interval ", "expected 0 (none) or 0.05 to 3600 seconds")


@pytest.mark.parametrize("value", ["inf", "1e308", "0.001"])
def test_gpu_utilization_interval_out_of_range(capsys, value):
    capsys.readouterr()
    rc = main(["gpu", "utilization", "--seconds", "0", f"--interval={value}"])
    assert_error(rc, capsys.readouterr().err, "--interval ", "expected 0.05 to 3600 seconds")
