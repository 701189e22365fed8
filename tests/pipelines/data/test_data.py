"""Loader and validation: one test per rule, on CSV and parquet, plus the real data."""
import numpy as np
import pandas as pd
import pytest

from alphapulse.pipelines.data.load import DataError, inspect_input, load_bars
from alphapulse.pipelines.data.rules import REASONS
from tests.pipelines.conftest import SAMPLE, SHARED_SP500, SP500_COLUMNS


def load(path, **kw):
    return load_bars(inspect_input(path, **kw))


def test_good_csv_loads_sorted_and_typed(rows, write_csv):
    loaded = load(write_csv(rows.sample(frac=1, random_state=3)))  # unsorted input
    bars = loaded.bars
    assert list(bars.columns) == ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    assert bars["timestamp"].dtype == "datetime64[ns]" and bars["close"].dtype == np.float64
    assert list(bars["symbol"]) == ["AAA"] * 3 + ["BBB"] * 3
    assert bars.groupby("symbol")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    assert loaded.stats["rows_rejected"] == 0 and len(loaded.rejected) == 0


def test_parquet_file_and_folder_give_the_same_bars(rows, tmp_path):
    rows = rows.assign(timestamp=pd.to_datetime(rows["timestamp"]))
    rows.to_parquet(tmp_path / "one.parquet", index=False)
    folder = tmp_path / "parts"
    folder.mkdir()
    # Symbols split across files on purpose: the shuffle must bring each symbol's bars together.
    rows.iloc[[0, 3, 4]].to_parquet(folder / "part-0.parquet", index=False)
    rows.iloc[[1, 2, 5]].to_parquet(folder / "part-1.parquet", index=False)
    one = load(tmp_path / "one.parquet").bars
    many = load_bars(inspect_input(folder), symbols_per_partition=1)
    assert many.stats["partitions"] == 2
    pd.testing.assert_frame_equal(one, many.bars)


def test_column_mapping(rows, write_csv):
    renamed = rows.rename(columns={"timestamp": "Date", "symbol": "Ticker"})
    loaded = load(write_csv(renamed), columns={"timestamp": "Date", "symbol": "Ticker"})
    assert len(loaded.bars) == 6


def test_missing_column_is_named(rows, write_csv):
    path = write_csv(rows.drop(columns="volume"))
    with pytest.raises(DataError, match=r"bars\.csv: missing column\(s\) 'volume'"):
        inspect_input(path)
    with pytest.raises(DataError, match=r"'symbol' \(mapped from 'Name'\)"):
        inspect_input(write_csv(rows.drop(columns="symbol"), "b2.csv"), columns={"symbol": "Name"})


def test_extra_column_is_named(rows, write_csv):
    with pytest.raises(DataError, match=r"unexpected column\(s\) \['adj_close'\]"):
        inspect_input(write_csv(rows.assign(adj_close=1.0)))


def test_wrong_dtype_column(rows, tmp_path):
    path = tmp_path / "b.parquet"
    rows.assign(close=True).to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"column 'close' has dtype bool"):
        load(path)


def test_unreadable_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        inspect_input(empty)
    trunc = tmp_path / "trunc.parquet"
    trunc.write_bytes(b"PAR1" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"trunc\.parquet: cannot read as parquet"):
        inspect_input(trunc)
    with pytest.raises(DataError, match="no such file"):
        inspect_input(tmp_path / "missing.csv")
    odd = tmp_path / "bars.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        inspect_input(odd)


def test_header_only_file_has_no_rows(rows, write_csv):
    with pytest.raises(DataError, match="no rows"):
        load(write_csv(rows.iloc[:0]))


def rejected_reason(rows, write_csv, **change):
    """Load rows where row 1 (AAA, 2024-01-03) has ``change``; return the reasons rejected."""
    bad = rows.astype(object).copy()
    for col, value in change.items():
        bad.loc[1, col] = value
    loaded = load(write_csv(bad))
    assert loaded.stats["rows_read"] == 6
    assert len(loaded.bars) + len(loaded.rejected) == 6  # nothing dropped silently
    assert set(loaded.rejected["source_row"]) == {1}
    return list(loaded.rejected["reason"])


@pytest.mark.parametrize("change, reason", [
    ({"timestamp": "2024-13-45"}, "bad_timestamp: unparseable or missing"),
    ({"timestamp": None}, "bad_timestamp: unparseable or missing"),
    ({"symbol": None}, "missing_symbol"),
    ({"close": "abc"}, "not_a_number: close"),
    ({"open": np.nan}, "nan: open"),
    ({"high": np.inf}, "inf: high"),
    ({"low": -1.0}, "non_positive: low"),
    ({"open": 0.0, "low": 0.0}, "non_positive: open"),
    ({"volume": -5}, "negative: volume"),
    ({"volume": np.nan}, "nan: volume"),
    ({"high": 9.0}, "high_below_low"),
    ({"open": 11.5, "high": 11.0}, "open_outside_low_high"),
    ({"close": 9.0}, "close_outside_low_high"),
])
def test_each_row_rule(rows, write_csv, change, reason):
    assert reason in REASONS
    assert rejected_reason(rows, write_csv, **change) == [reason]


def test_duplicate_bars_keep_the_first(rows, write_csv):
    dup = pd.concat([rows, rows.iloc[[1]].assign(close=10.3)], ignore_index=True)
    loaded = load(write_csv(dup))
    assert len(loaded.bars) == 6
    assert list(loaded.rejected["reason"]) == ["duplicate: (symbol, timestamp) seen earlier"]
    assert list(loaded.rejected["source_row"]) == [6]
    kept = loaded.bars[(loaded.bars.symbol == "AAA") & (loaded.bars.timestamp == "2024-01-03")]
    assert kept["close"].item() == 10.2


def test_timezone_aware_timestamps_become_utc(rows, write_csv):
    tz = rows.assign(timestamp=["2024-01-02T09:30:00-05:00", "2024-01-03T09:30:00-05:00",
                                "2024-01-04T09:30:00-05:00"] * 2)
    bars = load(write_csv(tz)).bars
    assert str(bars["timestamp"].iloc[0]) == "2024-01-02 14:30:00"


def test_times_of_day_without_a_date_are_rejected(rows, write_csv):
    """pyarrow types a CSV column that holds only times of day as time, not text: still no date."""
    with pytest.raises(DataError, match=r"all 6 rows rejected \(bad_timestamp: unparseable or missing: 6\)"):
        load(write_csv(rows.assign(timestamp=["10:00", "10:30:00", "11:00"] * 2)))


def test_numeric_symbols_are_text(rows, write_csv):
    bars = load(write_csv(rows.assign(symbol=[7203] * 3 + [6758] * 3))).bars
    assert sorted(bars["symbol"].unique()) == ["6758", "7203"]


def test_bundled_sample_real_glitches():
    loaded = load(SAMPLE, columns=SP500_COLUMNS)
    s = loaded.stats
    assert (s["rows_read"], s["rows_accepted"], s["rows_rejected"], s["symbols"]) == (58100, 58084, 16, 50)
    assert s["rejected_by_reason"] == {"close_outside_low_high": 4, "high_below_low": 1, "nan: open": 8,
                                       "open_outside_low_high": 3}
    # rejected rows point back at the source: BHF's NaN-open bar of 2017-07-26
    raw = pd.read_parquet(SAMPLE)
    bhf = loaded.rejected[loaded.rejected.symbol == "BHF"].iloc[0]
    assert raw.iloc[bhf.source_row]["Name"] == "BHF" and np.isnan(raw.iloc[bhf.source_row]["open"])


@pytest.mark.skipif(not SHARED_SP500.exists(), reason="../shared/data is not present (a user's fresh clone)")
def test_full_sp500_file_matches_its_readme():
    s = load(SHARED_SP500, columns=SP500_COLUMNS).stats
    # README: 619,040 rows, 505 symbols, 11 NaN opens and 12 rows that break the high/low bounds
    assert (s["rows_read"], s["symbols"]) == (619040, 505)
    assert s["rejected_by_reason"]["nan: open"] == 11
    assert s["rows_rejected"] - 11 == 12


def test_a_rejected_row_never_hides_a_good_duplicate(rows, write_csv):
    bad_first = pd.concat([rows.iloc[[1]].assign(open=np.nan), rows], ignore_index=True)
    loaded = load(write_csv(bad_first))
    assert len(loaded.bars) == 6
    assert list(loaded.rejected["reason"]) == ["nan: open"]


def test_duplicate_column_names(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("timestamp,symbol,open,high,low,close,volume,close\n2024-01-02,A,1,2,0.5,1.5,10,1.5\n")
    with pytest.raises(DataError, match=r"duplicate column name\(s\) \['close'\]"):
        inspect_input(path)
