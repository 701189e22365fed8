"""The indicator store: any sequence of incremental runs equals one full run, commits are atomic, and a
run recomputes what changed and says why (``alphapulse.pipelines.daily.store`` / ``.incremental``)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapulse.pipelines.config import load_config, parse_config
from alphapulse.pipelines.daily import store as store_
from alphapulse.pipelines.daily.incremental import update_store
from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily
from alphapulse.pipelines.data.panel import bars_to_panel, panel_to_frame
from alphapulse.pipelines.errors import DataError
from alphapulse.transforms.indicators.registry import IndicatorSpec, compute_indicators
from tests.pipelines.conftest import SAMPLE
from tests.transforms.indicators.test_indicators_properties import SMALL_SPECS

FIELDS = ["open", "high", "low", "close", "volume"]


def _bars(seed: int, n_days: int = 60, symbols=("AAA", "BBB", "CCC"), *, listing: int = 0, gaps=()) -> pd.DataFrame:
    """Long bars on business days, sorted by (symbol, timestamp); the last symbol lists at ``listing``,
    ``gaps`` are (symbol, day) pairs missing."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-01", periods=n_days)
    frames = []
    for k, sym in enumerate(symbols):
        close = np.round(50 + np.cumsum(rng.normal(size=n_days)), 2).clip(1)
        f = pd.DataFrame({"timestamp": days, "symbol": sym, "open": close + 0.1, "high": close + 0.5,
                          "low": close - 0.5, "close": close, "volume": rng.integers(0, 10**6, n_days).astype(float)})
        if k == len(symbols) - 1:
            f = f.iloc[listing:]
        frames.append(f[~f["timestamp"].isin([days[d] for s, d in gaps if s == sym])])
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "timestamp"], ignore_index=True)


def _full(bars: pd.DataFrame, specs, dtype=np.float64) -> pd.DataFrame:
    """The oracle: every indicator over all the bars at once, as the daily pipeline's indicators stage."""
    panel = bars_to_panel(bars, fields=FIELDS, dtype=dtype, xp=np, order="F")
    values = compute_indicators(panel.fields, specs)
    return panel_to_frame(panel, values, keys=bars[["timestamp", "symbol"]])


def _read(root: Path) -> pd.DataFrame:
    frame = pd.read_parquet(root)
    return frame.sort_values(["symbol", "timestamp"], ignore_index=True)


def _assert_store_equals(root: Path, bars: pd.DataFrame, specs, dtype=np.float64) -> None:
    got = _read(root)
    want = _full(bars, specs, dtype)
    got["timestamp"] = got["timestamp"].astype(want["timestamp"].dtype)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def _assert_bars(root: Path, bars: pd.DataFrame) -> None:
    """The store keeps exactly the bars its rows came from (hidden from readers under data/_bars/)."""
    got = store_.read_bars(root, store_.read_manifest(root), bars["symbol"].unique())
    got = got.astype(bars.dtypes.to_dict()).sort_values(["symbol", "timestamp"], ignore_index=True)
    pd.testing.assert_frame_equal(got, bars.sort_values(["symbol", "timestamp"], ignore_index=True), check_exact=True)


def _state(root: Path) -> pd.DataFrame:
    return store_.open_store(root).state


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_sequence_of_runs_equals_the_full_run(tmp_path_factory, data):
    """Random day splits (one day, several days, some runs re-sending whole histories), interior gaps,
    a late listing, and a vendor correction of a past bar: the store equals the full run bit for bit."""
    n_days = data.draw(st.integers(25, 70), label="days")
    listing = data.draw(st.integers(0, n_days - 2), label="listing")
    gap_days = data.draw(st.lists(st.integers(0, n_days - 1), max_size=4), label="gaps")
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    bars = _bars(data.draw(st.integers(0, 10**6), label="seed"), n_days, listing=listing,
                 gaps=[("AAA", d) for d in gap_days])
    days = bars["timestamp"].drop_duplicates().sort_values().to_list()
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(days) - 1), min_size=1, max_size=5), label="cuts")))
    root = tmp_path_factory.mktemp("store") / "s"
    edges = [0, *cuts, len(days)]
    current = bars
    for a, b in zip(edges, edges[1:]):
        upto = bars[bars["timestamp"] <= days[b - 1]]
        if data.draw(st.booleans(), label="whole history"):
            batch = upto
        else:
            batch = upto[upto["timestamp"] >= days[a]]
        if b == len(days) and data.draw(st.booleans(), label="correction"):
            # the vendor corrects a past close of BBB and re-sends BBB's whole history
            fixed = bars.copy()
            row = fixed.index[(fixed["symbol"] == "BBB")][data.draw(st.integers(0, len(days) - 1), label="row")]
            fixed.loc[row, "close"] = fixed.loc[row, "close"] + 0.25
            current = fixed
            batch = pd.concat([batch[batch["symbol"] != "BBB"], fixed[fixed["symbol"] == "BBB"]])
            batch = batch.sort_values(["symbol", "timestamp"], ignore_index=True)
        update_store(root, batch.reset_index(drop=True), SMALL_SPECS, dtype=np.dtype(dtype))
    _assert_store_equals(root, current, SMALL_SPECS, dtype)
    _assert_bars(root, current)
    assert not list(root.glob("_staging-*"))


def test_one_day_appends_new_files_only_and_reads_no_history(tmp_path, monkeypatch):
    bars = _bars(1, 40)
    days = sorted(bars["timestamp"].unique())
    root = tmp_path / "s"
    update_store(root, bars[bars["timestamp"] < days[-1]].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    before = {p: p.stat().st_ino for p in (root / "data").glob("*.parquet")}
    real_read = pd.read_parquet

    def no_history(path, *a, **k):
        assert "_state" in str(path), f"the append read {path}"
        return real_read(path, *a, **k)

    monkeypatch.setattr(store_.pd, "read_parquet", no_history)
    _, section, _ = update_store(root, bars[bars["timestamp"] == days[-1]].reset_index(drop=True), SMALL_SPECS,
                                 dtype=np.float64)
    monkeypatch.undo()
    assert section["bars_computed"] == 3 and section["appended"] == ["AAA", "BBB", "CCC"]
    after = {p: p.stat().st_ino for p in (root / "data").glob("*.parquet")}
    assert all(after[p] == ino for p, ino in before.items())  # the same files (hard links), none rewritten
    assert len(after) == len(before) + 1
    _assert_store_equals(root, bars, SMALL_SPECS)


def test_a_run_that_fails_before_its_commit_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    bars = _bars(2, 50)
    days = sorted(bars["timestamp"].unique())
    root = tmp_path / "s"
    first = bars[bars["timestamp"] < days[30]].reset_index(drop=True)
    update_store(root, first, SMALL_SPECS, dtype=np.float64)
    rows, state = _read(root), _state(root)

    def crash(*args, **kwargs):
        raise RuntimeError("killed between writing the files and the commit")

    monkeypatch.setattr(store_, "_swap", crash)
    with pytest.raises(Exception, match="killed"):
        update_store(root, bars[bars["timestamp"] >= days[30]].reset_index(drop=True), SMALL_SPECS,
                     dtype=np.float64)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(_read(root), rows)
    pd.testing.assert_frame_equal(_state(root), state)
    # a process killed outright leaves its staging tree; readers skip it, the next run removes it
    (root / "_staging-dead" / "data").mkdir(parents=True)
    (root / "_staging-dead" / "data" / "part-999999-00000.parquet").write_bytes(b"half")
    pd.testing.assert_frame_equal(_read(root), rows)
    update_store(root, bars[bars["timestamp"] >= days[30]].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    assert not list(root.glob("_staging-*"))
    _assert_store_equals(root, bars, SMALL_SPECS)


def test_a_run_killed_between_the_fallback_renames_is_undone(tmp_path):
    """Without renameat2 the swap is two renames; killed between them, data/ is missing and the next
    run puts the committed tree back before anything else."""
    bars = _bars(3, 40)
    days = sorted(bars["timestamp"].unique())
    root = tmp_path / "s"
    update_store(root, bars[bars["timestamp"] < days[20]].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    (root / "_staging-killed").mkdir()
    os.rename(root / "data", root / "_staging-killed" / "old")
    update_store(root, bars[bars["timestamp"] >= days[20]].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    _assert_store_equals(root, bars, SMALL_SPECS)


def test_computed_floats_are_written_without_a_dictionary(tmp_path):
    """pyarrow's default dictionary costs computed floats time and size (frames.write_computed);
    the keys keep it, and so do the input's prices under ``_bars/``, which repeat."""
    import pyarrow.parquet as pq

    update_store(tmp_path / "s", _bars(1, 40), SMALL_SPECS, dtype=np.float64)
    data = tmp_path / "s" / "data"

    def dictionary(path: Path) -> dict[str, bool]:
        meta = pq.ParquetFile(path).metadata
        group = meta.row_group(0)
        return {meta.schema.column(i).name: "PLAIN_DICTIONARY" in group.column(i).encodings
                or "RLE_DICTIONARY" in group.column(i).encodings for i in range(meta.num_columns)}

    for path in [*data.glob("part-*.parquet"), *data.glob("_state/*.parquet")]:
        encoded = dictionary(path)
        assert encoded["symbol"] and encoded["timestamp" if "timestamp" in encoded else "last_timestamp"]
        frame = pd.read_parquet(path)
        floats = [c for c, t in frame.dtypes.items() if t.kind == "f"]
        assert floats and not any(encoded[c] for c in floats), path
    bars = dictionary(next(data.glob("_bars/*.parquet")))
    assert bars["close"] and bars["symbol"]


def test_recomputes_say_why(tmp_path, monkeypatch):
    bars = _bars(4, 50)
    days = sorted(bars["timestamp"].unique())
    root = tmp_path / "s"
    _, s1, _ = update_store(root, bars[bars["timestamp"] < days[40]].reset_index(drop=True), SMALL_SPECS,
                            dtype=np.float64)
    assert s1["full_recompute"] == ["first run on an empty store"]
    # day 40: AAA's history re-sent with a back-filled... changed bar, a new symbol DDD, the others append
    fixed = bars.copy()
    fixed.loc[fixed.index[fixed["symbol"] == "AAA"][5], "high"] += 1.0
    new = _bars(5, 50, symbols=("DDD",))
    batch = pd.concat([fixed[(fixed["symbol"] == "AAA") & (fixed["timestamp"] <= days[40])],
                       bars[(bars["symbol"] != "AAA") & (bars["timestamp"] == days[40])],
                       new[new["timestamp"] <= days[40]]])
    batch = batch.sort_values(["symbol", "timestamp"], ignore_index=True)
    _, s2, _ = update_store(root, batch, SMALL_SPECS, dtype=np.float64)
    assert s2["appended"] == ["BBB", "CCC"]
    assert s2["recomputed"]["DDD"] == "new symbol"
    assert s2["recomputed"]["AAA"].startswith("history changed")
    assert s2["full_recompute"] == []
    effective = pd.concat([fixed[fixed["symbol"] == "AAA"], bars[bars["symbol"] != "AAA"], new])
    effective = effective[effective["timestamp"] <= days[40]].sort_values(["symbol", "timestamp"], ignore_index=True)
    _assert_store_equals(root, effective, SMALL_SPECS)
    runs = json.loads((root / "data" / "_manifest.json").read_text())["runs"]
    assert [r["recomputed"] for r in runs] == [3, 2]

    # every whole history again, unchanged: nothing to do, nothing committed
    _, s3, _ = update_store(root, effective, SMALL_SPECS, dtype=np.float64)
    assert s3["bars_computed"] == 0 and s3["version"] == 2

    # a changed config, precision or code: everything, with the reasons (the input holds every history)
    everything = effective
    other = [IndicatorSpec("sma", {"period": 3}), IndicatorSpec("rsi", {"period": 4})]
    _, s4, _ = update_store(root, everything, other, dtype=np.float64)
    assert s4["full_recompute"] == ["the indicators config changed"]
    _assert_store_equals(root, everything, other)
    _, s5, _ = update_store(root, everything, other, dtype=np.float32)
    assert s5["full_recompute"] == ["the precision changed (float64 -> float32)"]
    monkeypatch.setattr(store_, "code_version", lambda: "another")
    _, s6, _ = update_store(root, everything, other, dtype=np.float32)
    assert s6["full_recompute"] == ["the indicator code changed (code version)"]
    _assert_store_equals(root, everything, other, np.float32)


def test_inputs_that_cannot_be_appended_nor_recomputed_are_refused(tmp_path):
    bars = _bars(6, 40)
    days = sorted(bars["timestamp"].unique())
    root = tmp_path / "s"
    update_store(root, bars[bars["timestamp"] < days[30]].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    rows = _read(root)
    partial = bars[bars["timestamp"] >= days[25]].reset_index(drop=True)  # overlaps without whole histories
    with pytest.raises(DataError, match="AAA: the input holds 5 bar.*not its whole history"):
        update_store(root, partial, SMALL_SPECS, dtype=np.float64)
    pd.testing.assert_frame_equal(_read(root), rows)


def test_a_changed_config_recomputes_from_the_stored_bars(tmp_path):
    """A day-only input after a config (or code) change: the store supplies each history from its own
    bars, so the scheduled run goes on, and the store equals a full run on every bar."""
    bars = _bars(6, 40, listing=12, gaps=[("AAA", 17)])
    days = sorted(bars["timestamp"].unique())
    root = tmp_path / "s"
    update_store(root, bars[bars["timestamp"] < days[30]].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    other = [IndicatorSpec("sma", {"period": 3}), IndicatorSpec("stoch")]
    overlapping = bars[(bars["timestamp"] >= days[28]) & (bars["timestamp"] <= days[30])].reset_index(drop=True)
    with pytest.raises(DataError, match=r"AAA: the input holds 2 bar\(s\) at or before its last stored bar"):
        update_store(root, overlapping, other, dtype=np.float64)
    newday = bars[bars["timestamp"] == days[30]].reset_index(drop=True)
    _, section, _ = update_store(root, newday, other, dtype=np.float64)
    assert section["full_recompute"] == ["the indicators config changed"]
    upto = bars[bars["timestamp"] <= days[30]].reset_index(drop=True)
    _assert_store_equals(root, upto, other)
    _assert_bars(root, upto)
    # the store's bars of a symbol the day did not bring are carried too
    rest = bars[(bars["timestamp"] > days[30]) & (bars["symbol"] != "BBB")].reset_index(drop=True)
    update_store(root, rest, SMALL_SPECS, dtype=np.float64)
    effective = bars[(bars["timestamp"] <= days[30]) | (bars["symbol"] != "BBB")].reset_index(drop=True)
    _assert_store_equals(root, effective, SMALL_SPECS)
    _assert_bars(root, effective)


def test_many_small_runs_merge_the_bar_files_not_the_rows(tmp_path, monkeypatch):
    """Each day adds a small bar file; every BARS_COMPACT_FILES of them are merged, so reading the
    histories back opens a few files after years of runs. The rows readers read are never rewritten,
    and a correction after a merge still rewrites the merged file without the symbol."""
    monkeypatch.setattr(store_, "BARS_COMPACT_FILES", 4)
    bars = _bars(9, 40, listing=5, gaps=[("BBB", 22)])
    days = sorted(bars["timestamp"].unique())
    root = tmp_path / "s"
    update_store(root, bars[bars["timestamp"] < days[25]].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    first_rows = (root / "data" / "part-000001-00000.parquet").stat().st_ino
    for d in days[25:]:
        update_store(root, bars[bars["timestamp"] == d].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    manifest = json.loads((root / "data" / "_manifest.json").read_text())
    assert len(manifest["bars"]) < 4 + 2 and any("merged" in f["path"] for f in manifest["bars"])
    assert len(manifest["files"]) == 1 + len(days[25:])  # a file per run, none rewritten
    assert (root / "data" / "part-000001-00000.parquet").stat().st_ino == first_rows
    assert sorted(p.name for p in (root / "data" / "_bars").iterdir()) == \
        sorted(Path(f["path"]).name for f in manifest["bars"])
    _assert_bars(root, bars)
    _assert_store_equals(root, bars, SMALL_SPECS)
    # what DuckDB and polars are told to read, DIR/data/*.parquet, is the rows and nothing hidden
    globbed = pd.concat([pd.read_parquet(f) for f in sorted((root / "data").glob("*.parquet"))], ignore_index=True)
    pd.testing.assert_frame_equal(globbed.sort_values(["symbol", "timestamp"], ignore_index=True), _read(root))
    fixed = bars.copy()
    fixed.loc[fixed.index[fixed["symbol"] == "AAA"][3], "close"] += 0.5  # AAA's whole history, corrected
    _, section, _ = update_store(root, fixed[fixed["symbol"] == "AAA"].reset_index(drop=True), SMALL_SPECS,
                                 dtype=np.float64)
    assert list(section["recomputed"]) == ["AAA"]
    _assert_bars(root, fixed)
    _assert_store_equals(root, fixed, SMALL_SPECS)


def test_a_changed_config_on_a_store_without_bars_is_refused(tmp_path):
    bars = _bars(6, 40)
    days = sorted(bars["timestamp"].unique())
    root = tmp_path / "s"
    update_store(root, bars[bars["timestamp"] < days[30]].reset_index(drop=True), SMALL_SPECS, dtype=np.float64)
    manifest_path = root / "data" / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest.pop("bars"):  # as a store written before it kept bars
        (root / "data" / entry["path"]).unlink()
    manifest_path.write_text(json.dumps(manifest))
    rows = _read(root)
    newday = bars[bars["timestamp"] == days[30]].reset_index(drop=True)
    with pytest.raises(DataError, match="AAA: the indicators config changed, so the store is recomputed in full, "
                                        "but neither the input nor the store holds"):
        update_store(root, newday, [IndicatorSpec("sma", {"period": 3})], dtype=np.float64)
    pd.testing.assert_frame_equal(_read(root), rows)


def test_only_stores_are_written(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    with pytest.raises(store_.StoreError, match="not an AlphaPulse store"):
        store_.check_store(foreign)
    with pytest.raises(store_.StoreError, match="overlap"):
        store_.check_store(tmp_path / "s", inputs=[tmp_path])
    with pytest.raises(store_.StoreError, match="report folder"):
        store_.check_store(tmp_path / "r" / "s", out_dir=tmp_path / "r")
    root = tmp_path / "s"
    update_store(root, _bars(7, 30), SMALL_SPECS, dtype=np.float64)
    assert store_.check_store(root) == root
    (root / "data" / "notes.txt").write_text("mine")
    with pytest.raises(store_.StoreError, match="notes.txt, a file the store did not write"):
        update_store(root, _bars(7, 31), SMALL_SPECS, dtype=np.float64)
    assert (root / "data" / "notes.txt").read_text() == "mine"


def test_fingerprints_continue_across_splits():
    bars = _bars(8, 30)
    syms, whole = store_.bar_fingerprints(bars)
    head, tail = bars[bars["timestamp"] < "2020-01-20"], bars[bars["timestamp"] >= "2020-01-20"]
    _, part = store_.bar_fingerprints(head)
    _, joined = store_.bar_fingerprints(tail, start=part)
    assert list(syms) == ["AAA", "BBB", "CCC"]
    np.testing.assert_array_equal(joined, whole)
    changed = bars.copy()
    changed.loc[3, "volume"] += 1
    assert (store_.bar_fingerprints(changed)[1][0] != whole[0]).any()
    assert (store_.bar_fingerprints(changed)[1][1:] == whole[1:]).all()


def test_the_fold_in_steps_is_the_compiled_fold():
    """A day's fingerprints fold bar by bar over every symbol in NumPy (no Numba start-up), longer runs
    in the compiled loop: the same uint64 arithmetic, so the same bits, and either continues the other."""
    rng = np.random.default_rng(3)
    counts = np.array([0, 1, 2, 5, store_.STEP_BARS, 40, 3])
    ends = np.cumsum(counts)
    starts = ends - counts
    words = rng.integers(0, 2**64 - 1, size=(int(ends[-1]), 6), dtype=np.uint64, endpoint=True)
    seed = rng.integers(0, 2**64 - 1, size=(len(counts), 2), dtype=np.uint64, endpoint=True)
    compiled, stepped = seed.copy(), seed.copy()
    store_._fold(words, starts, ends, compiled)
    store_._fold_in_steps(words, starts, ends, stepped)
    np.testing.assert_array_equal(stepped, compiled)
    assert (compiled[1:] != seed[1:]).all() and (compiled[0] == seed[0]).all()


def test_sample_split_by_date_equals_the_full_daily_run(tmp_path):
    """The bundled S&P 500 sample in two runs through ``run_daily(prepare_daily(..., store=))``."""
    bars = pd.read_parquet(SAMPLE)
    cut = pd.Timestamp("2016-06-01")
    bars[bars["date"] < cut].to_parquet(tmp_path / "a.parquet", index=False)
    bars[bars["date"] >= cut].to_parquet(tmp_path / "b.parquet", index=False)
    cfg = load_config()
    store = tmp_path / "store"
    r1 = run_daily(prepare_daily(cfg, data_path=str(tmp_path / "a.parquet"), out_dir=str(tmp_path / "r1"),
                                 backend="cpu", store=store))
    r2 = run_daily(prepare_daily(cfg, data_path=str(tmp_path / "b.parquet"), out_dir=str(tmp_path / "r2"),
                                 backend="cpu", store=store))
    full = run_daily(prepare_daily(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "full"), backend="cpu"))
    inc = r2.manifest["incremental"]
    assert r1.manifest["incremental"]["full_recompute"] == ["first run on an empty store"]
    assert len(inc["appended"]) == 47 and set(inc["recomputed"].values()) == {"new symbol"}
    assert inc["bars_computed"] == len(r2.indicators) == r2.manifest["input"]["rows_accepted"]
    assert "## Incremental run" in (r2.out_dir / "summary.md").read_text()
    got = _read(store)
    want = full.indicators.sort_values(["symbol", "timestamp"], ignore_index=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # float32: the same split equals the float32 full run too
    cfg32 = parse_config({**cfg.model_dump(mode="json"), "gpu": {"operations": {"precision": "float32"}}})
    store32 = tmp_path / "store32"
    for name in ("a", "b"):
        run_daily(prepare_daily(cfg32, data_path=str(tmp_path / f"{name}.parquet"), out_dir=str(tmp_path / f"{name}32"),
                                backend="cpu", store=store32))
    full32 = run_daily(prepare_daily(cfg32, data_path=str(SAMPLE), out_dir=str(tmp_path / "f32"), backend="cpu"))
    pd.testing.assert_frame_equal(_read(store32),
                                  full32.indicators.sort_values(["symbol", "timestamp"], ignore_index=True),
                                  check_exact=True)
    # a rebuilt store writes the same bytes
    again = tmp_path / "again"
    shutil.copytree(store, tmp_path / "kept")
    for name in ("a", "b"):
        run_daily(prepare_daily(cfg, data_path=str(tmp_path / f"{name}.parquet"), out_dir=str(tmp_path / f"{name}2"),
                                backend="cpu", store=again))
    for p in sorted((store / "data").rglob("*.parquet")):
        assert p.read_bytes() == (again / "data" / p.relative_to(store / "data")).read_bytes(), p.name
