"""Larger than memory: partitions of whole symbols give exactly the whole-input results.

The oracle is the unpartitioned run (one whole load through ``alphapulse.pipelines.data.load.load_bars``) on the
real S&P sample; the partitioned runs read it split by symbol or by time (one file per year), so
a partition must regroup each symbol's whole history from every file.
"""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alphapulse.pipelines.config import load_config, parse_config
from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily
from alphapulse.pipelines.data.load import inspect_input
from alphapulse.pipelines.data.partitions import load_partition, plan_partitions
from tests.pipelines.conftest import SAMPLE


def _config(bars_per_partition: int, columns=None):
    raw = load_config().model_dump(mode="json")
    raw["data"]["bars_per_partition"] = bars_per_partition
    if columns is not None:
        raw["data"]["columns"] = columns
    return parse_config(raw)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "rep"
    return run_daily(prepare_daily(load_config(), data_path=str(SAMPLE), out_dir=str(out), backend="cpu"))


@pytest.fixture(scope="module")
def by_year(tmp_path_factory):
    """The sample as one parquet file per year (small row groups), rows shuffled within a file."""
    folder = tmp_path_factory.mktemp("by_year")
    df = pd.read_parquet(SAMPLE)
    for year, g in df.groupby(pd.to_datetime(df["date"]).dt.year):
        g.sample(frac=1.0, random_state=int(year)).to_parquet(folder / f"bars-{year}.parquet", index=False,
                                                             row_group_size=2000)
    return folder


def test_time_split_partitions_equal_the_whole_run(whole, by_year, tmp_path):
    cfg = _config(8_000)
    res = run_daily(prepare_daily(cfg, data_path=str(by_year), out_dir=str(tmp_path / "rep"), backend="cpu"))
    m, w = res.manifest, whole.manifest
    assert m["output"]["path"] == "indicators" and m["output"]["partitions"] >= 7
    parts = sorted((res.out_dir / "indicators").iterdir())
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(m["output"]["partitions"])]
    # each part holds whole symbols: no symbol in two parts, and no lookback was cut
    seen = [set(pd.read_parquet(p, columns=["symbol"])["symbol"]) for p in parts]
    assert sum(len(s) for s in seen) == len(set().union(*seen)) == 50
    pd.testing.assert_frame_equal(res.indicators, whole.indicators)  # exact: same arithmetic, same order
    for k in ("rows_read", "rows_accepted", "rows_rejected", "rejected_by_reason", "symbols", "first_timestamp",
              "last_timestamp"):
        assert m["input"][k] == w["input"][k], k
    assert m["short_history"] == w["short_history"] == {"APTV": 44}
    assert m["output"]["rows"] == w["output"]["rows"] and m["output"]["columns"] == w["output"]["columns"]
    # the same rejected rows, with their reasons (files and row numbers differ: other files)
    cols = ["reason", "timestamp", "symbol", "open", "high", "low", "close", "volume"]
    a = pd.read_parquet(res.out_dir / "rejected.parquet")[cols]
    b = pd.read_parquet(whole.out_dir / "rejected.parquet")[cols]
    pd.testing.assert_frame_equal(a, b)
    # and each rejected row's file and row number point at that row
    rej = pd.read_parquet(res.out_dir / "rejected.parquet")
    files = m["input"]["files"]
    for r in rej.itertuples():
        row = pd.read_parquet(files[r.source_file]).iloc[r.source_row]
        assert (row["Name"], pd.Timestamp(row["date"])) == (r.symbol, r.timestamp)


def test_partitions_of_one_file_reject_exactly_what_the_whole_load_does(whole, tmp_path):
    res = run_daily(prepare_daily(_config(5_000), data_path=str(SAMPLE), out_dir=str(tmp_path / "rep"),
                                  backend="cpu"))
    assert res.manifest["output"]["partitions"] > 10
    pd.testing.assert_frame_equal(pd.read_parquet(res.out_dir / "rejected.parquet"),
                                  pd.read_parquet(whole.out_dir / "rejected.parquet"))
    pd.testing.assert_frame_equal(res.indicators, whole.indicators)
    assert res.manifest["input"] == {**whole.manifest["input"], "partitions": res.manifest["output"]["partitions"]}
    assert res.manifest["short_history"] == whole.manifest["short_history"]


def test_plan_groups_whole_symbols_within_the_budget(by_year):
    inputs = inspect_input(by_year, columns={"timestamp": "date", "symbol": "Name"})
    counts = pd.read_parquet(SAMPLE)["Name"].value_counts()
    plan = plan_partitions(inputs, bars_per_partition=3_000)
    assert [p.index for p in plan] == list(range(len(plan)))
    symbols = [s for p in plan for s in p.symbols]
    assert symbols == sorted(counts.index)  # every symbol once, in order
    for p in plan:
        assert p.bars == counts[list(p.symbols)].sum()
        # within the budget, unless one symbol alone exceeds it
        assert p.bars <= 3_000 or len(p.symbols) == 1
        assert p.files == tuple(range(len(inputs.paths)))  # every year file holds some of them
    assert [p.nulls for p in plan] == [False] * (len(plan) - 1) + [True]
    # input that fits one partition, and CSV input, are one whole partition
    assert [p.whole for p in plan_partitions(inputs, bars_per_partition=10**9)] == [True]


def test_fingerprint_changes_with_a_file(by_year, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in by_year.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    inputs = inspect_input(folder, columns={"timestamp": "date", "symbol": "Name"})
    before = [p.fingerprint for p in plan_partitions(inputs, bars_per_partition=20_000)]
    assert before == [p.fingerprint for p in plan_partitions(inputs, bars_per_partition=20_000)]
    target = folder / "bars-2017.parquet"
    df = pd.read_parquet(target)
    df.loc[0, "close"] = df.loc[0, "close"] * 1.01
    df.to_parquet(target, index=False)
    after = [p.fingerprint for p in plan_partitions(inputs, bars_per_partition=20_000)]
    assert all(a != b for a, b in zip(before, after))  # every partition reads every year file


def test_fingerprint_changes_when_a_file_index_shifts(tmp_path):
    """A file added before another shifts its index (which rejected rows name): a partition
    reading only the unchanged file must not reuse a cached result."""
    df = pd.read_parquet(SAMPLE)
    names = sorted(df["Name"].unique())
    folder = tmp_path / "in"
    folder.mkdir()
    df[df["Name"].isin(names[:25])].to_parquet(folder / "b.parquet", index=False)
    df[df["Name"].isin(names[25:])].to_parquet(folder / "c.parquet", index=False)
    cols = {"timestamp": "date", "symbol": "Name"}
    before = plan_partitions(inspect_input(folder, columns=cols), bars_per_partition=1_300)  # about a symbol each
    df[df["Name"] == names[0]].assign(Name="AAAA").to_parquet(folder / "a.parquet", index=False)
    after = plan_partitions(inspect_input(folder, columns=cols), bars_per_partition=1_300)  # about a symbol each
    last_before, last_after = before[-1], after[-1]
    assert last_before.symbols == last_after.symbols and [1] == list(last_before.files)
    assert list(last_after.files) == [2]  # the same file, now the third
    assert last_before.fingerprint != last_after.fingerprint


def test_rows_without_a_symbol_are_rejected_in_the_last_partition(tmp_path, rows):
    # two files of whole symbols, one row without a symbol, small row groups sorted by symbol
    many = pd.concat([rows.assign(symbol=rows["symbol"] + str(k)) for k in range(6)], ignore_index=True)
    many["timestamp"] = pd.to_datetime(many["timestamp"])
    many.loc[4, "symbol"] = None
    folder = tmp_path / "in"
    folder.mkdir()
    half = len(many) // 2
    for k, part in enumerate((many.iloc[:half], many.iloc[half:])):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"f{k}.parquet", row_group_size=3)
    inputs = inspect_input(folder)
    plan = plan_partitions(inputs, bars_per_partition=7)
    assert len(plan) > 2
    loaded = [load_partition(inputs, p) for p in plan]
    rejected = pd.concat([x.rejected for x in loaded], ignore_index=True)
    assert list(rejected["reason"]) == ["missing_symbol"]
    assert (rejected["source_file"].item(), rejected["source_row"].item()) == (0, 4)
    assert len(loaded[-1].rejected) == 1
    bars = pd.concat([x.bars for x in loaded], ignore_index=True)
    assert len(bars) == len(many) - 1 and bars["symbol"].is_monotonic_increasing
