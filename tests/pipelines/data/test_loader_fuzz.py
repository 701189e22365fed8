"""Property-based fuzzing of the loader (``alphapulse.pipelines.data.load.inspect_input`` + ``load_bars``).

Hypothesis builds frames mixing valid bars with hostile values (unicode, empty, padded and
control-character symbols; NaT, duplicate, unsorted, out-of-range and unparseable timestamps;
nan, inf, 1e308, negative and textual numbers; dropped columns), writes them to a real CSV or
parquet file and loads them. Whatever the input, the loader either raises :class:`DataError` with
a one-line message, or returns accepted and rejected rows that account for every row read, every
accepted row valid by the documented rules and every rejected row carrying a reason that is true
of it.
"""
from __future__ import annotations

import math
import re
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapulse.pipelines.data.load import DataError, inspect_input, load_bars
from alphapulse.pipelines.data.rules import (BAD_SYMBOL, DUPLICATE, EARLIEST, FUTURE_SLACK, MAX_PRICE, MAX_VOLUME,
                                             MIN_PRICE, OUT_OF_TIME, REASONS)

COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
GOOD_SYMBOLS = ["AAA", "BBB", "ÅÄÖ", "日本株", "7203"]
GOOD_TIMES = [f"2024-01-{d:02d}" for d in range(1, 8)] + ["2024-01-02T09:30:00+01:00", "2023-12-31T23:00:00-05:00"]

hostile_symbol = st.one_of(
    st.sampled_from(["", " ", "  AAA", "AAA ", "A\tB", "\x00", "é", "NaN", "None", "0", "-1.5", "AAA\u200b",
                     "\ufeffAAA", "A\u2028B", "A\u00adB", "A\u00a0B", "BRK A"]),
    st.text(max_size=6),
    st.none(),
)
hostile_time = st.one_of(
    st.sampled_from(["2200-01-01", "9999-12-31", "1500-06-01", "0001-01-01", "junk", "", "2024-13-45", "03/04/2024",
                     "2024-01-02T25:00:00", "Jan 3 2024", "1704067200", "2024-02-30", "now", "today", "yesterday",
                     "tomorrow", "10:00", "10:00 1", "23:59:59Z"]),
    st.datetimes(min_value=pd.Timestamp("1700-01-01").to_pydatetime(),
                 max_value=pd.Timestamp("2250-01-01").to_pydatetime()).map(lambda d: d.isoformat()),
    st.none(),
)
hostile_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e15, 1e16, 1e-300, 0.0, -0.0, -1.0, 1e19]),
    st.sampled_from(["abc", "inf", "-inf", "NaN", "1,5", " 12 ", "0x10", "1e400"]),
    st.none(),
)


@st.composite
def good_row(draw):
    low = draw(st.floats(min_value=0.01, max_value=1e6))
    high = low * draw(st.floats(min_value=1.0, max_value=1.5))
    inside = st.floats(min_value=0.0, max_value=1.0).map(lambda f: low + f * (high - low))
    return {"timestamp": draw(st.sampled_from(GOOD_TIMES)), "symbol": draw(st.sampled_from(GOOD_SYMBOLS)),
            "open": draw(inside), "high": high, "low": low, "close": draw(inside),
            "volume": draw(st.floats(min_value=0.0, max_value=1e12))}


@st.composite
def hostile_row(draw):
    row = draw(good_row())
    for col in draw(st.sets(st.sampled_from(COLUMNS), min_size=1, max_size=3)):
        row[col] = draw(hostile_time if col == "timestamp" else hostile_symbol if col == "symbol" else hostile_number)
    return row


@st.composite
def frames(draw):
    rows = draw(st.lists(st.one_of(good_row(), hostile_row()), min_size=0, max_size=25))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    dropped = draw(st.one_of(st.none(), st.sampled_from(COLUMNS)) if draw(st.integers(0, 9)) == 0 else st.none())
    if dropped:
        frame = frame.drop(columns=dropped)
    return frame, dropped


def write(frame: pd.DataFrame, folder: Path, fmt: str) -> Path:
    if fmt == "csv":
        path = folder / "bars.csv"
        frame.to_csv(path, index=False)
        return path
    path = folder / "bars.parquet"
    out = frame.copy()
    for col in out.columns:
        values = out[col].tolist()
        kinds = {type(v) for v in values if v is not None}
        if col in ("timestamp", "symbol") or str in kinds:
            # one arrow type a column: text wherever a value is text (as a CSV export would be)
            out[col] = pd.Series([None if v is None else str(v) for v in values], dtype=object)
        else:
            out[col] = pd.Series([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    out.to_parquet(path, index=False)
    return path


def refused_symbol(s: str) -> bool:
    """The symbol rule, character by character: blank, padded, or holding a control, format, line or
    paragraph separator character, or a space other than U+0020."""
    return (s == "" or s != s.strip()
            or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
                   or (unicodedata.category(ch) == "Zs" and ch != " ") for ch in s))


def year_written(ts: pd.Timestamp, raw_years: set[int]) -> bool:
    """Whether a bar's year is one the input wrote (or the next or previous one where a time zone
    moves a New Year's Eve or Day across): never the run's clock."""
    return ts.year in raw_years or (ts.month == 1 and ts.day == 1 and ts.year - 1 in raw_years) or \
        (ts.month == 12 and ts.day == 31 and ts.year + 1 in raw_years)


def reason_holds(reason: str, row: pd.Series, accepted_keys: set) -> bool:
    """Whether a rejected row's reason is true of its parsed values (rules about the raw text, such
    as not_a_number and unparseable timestamps, are true of what the parse left: NaN / NaT)."""
    kind, _, col = reason.partition(": ")
    col = col.split(" ")[0]
    if reason == "bad_timestamp: unparseable or missing":
        return pd.isna(row["timestamp"])
    if reason == OUT_OF_TIME:
        return pd.isna(row["timestamp"])  # out-of-range timestamps are stored as NaT
    if reason == "missing_symbol":
        return True  # the raw value was null; the text column may show "nan" or None
    if reason == BAD_SYMBOL:
        return refused_symbol(row["symbol"])
    if reason == DUPLICATE:
        return (row["symbol"], row["timestamp"]) in accepted_keys
    if kind in ("not_a_number", "nan"):
        return math.isnan(row[col])
    if kind == "inf":
        return math.isinf(row[col])
    if kind == "non_positive":
        return row[col] <= 0
    if reason == "negative: volume":
        return row["volume"] < 0
    if kind == "out_of_range":
        return row[col] > MAX_VOLUME if col == "volume" else not MIN_PRICE <= row[col] <= MAX_PRICE
    if reason == "high_below_low":
        return row["high"] < row["low"]
    if reason == "open_outside_low_high":
        return not row["low"] <= row["open"] <= row["high"]
    if reason == "close_outside_low_high":
        return not row["low"] <= row["close"] <= row["high"]
    return False


def check_loaded(frame: pd.DataFrame, loaded) -> None:
    n = len(frame)
    bars, rejected = loaded.bars, loaded.rejected
    # nothing dropped silently
    assert loaded.rows_read == n
    assert len(bars) + len(rejected) == n
    assert loaded.stats["rows_accepted"] == len(bars) and loaded.stats["rows_rejected"] == len(rejected)
    assert rejected["source_row"].between(0, n - 1).all() and rejected["source_row"].is_unique
    assert len(bars) > 0  # a load where everything is rejected is a DataError
    # every accepted row valid
    late = pd.Timestamp.now(tz="UTC").tz_localize(None) + FUTURE_SLACK
    assert bars["timestamp"].notna().all()
    assert (bars["timestamp"] >= EARLIEST).all() and (bars["timestamp"] <= late).all()
    assert all(isinstance(s, str) and not refused_symbol(s) for s in bars["symbol"])
    raw_years = {int(y) for t in frame["timestamp"].dropna() for y in re.findall(r"[0-9]{4}", str(t))} \
        if "timestamp" in frame else set()
    assert all(year_written(t, raw_years) for t in bars["timestamp"]), (sorted(raw_years), bars["timestamp"])
    prices = bars[["open", "high", "low", "close"]].to_numpy()
    assert np.isfinite(prices).all() and (prices >= MIN_PRICE).all() and (prices <= MAX_PRICE).all()
    vol = bars["volume"].to_numpy()
    assert np.isfinite(vol).all() and (vol >= 0).all() and (vol <= MAX_VOLUME).all()
    assert (bars["low"] <= bars["high"]).all()
    assert bars["open"].between(bars["low"], bars["high"]).all()
    assert bars["close"].between(bars["low"], bars["high"]).all()
    assert not bars.duplicated(["symbol", "timestamp"]).any()
    order = bars.sort_values(["symbol", "timestamp"], kind="stable")
    assert order.index.equals(bars.index)
    # every rejected row carries a true reason
    accepted_keys = set(zip(bars["symbol"], bars["timestamp"]))
    for _, row in rejected.iterrows():
        assert row["reason"] in REASONS and row["reason"] != "ok"
        assert reason_holds(row["reason"], row, accepted_keys), row.to_dict()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=frames())
def test_loader_accounts_for_every_row(fmt, case):
    frame, dropped = case
    with tempfile.TemporaryDirectory() as tmp:
        path = write(frame, Path(tmp), fmt)
        try:
            loaded = load_bars(inspect_input(path))
        except DataError as e:
            message = str(e)
            assert message and "\n" not in message and "\r" not in message
            assert str(path) in message or "bars." in message  # names the file
            if dropped:
                assert f"missing column(s) '{dropped}'" in message
            return
        assert dropped is None, "a file missing a column must be refused"
        check_loaded(frame, loaded)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(good_row(), min_size=1, max_size=20), fmt=st.sampled_from(["csv", "parquet"]))
def test_valid_bars_are_all_accepted_but_repeats(rows, fmt):
    """Nothing valid is refused: only repeated (symbol, timestamp) bars are rejected."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_bars(inspect_input(write(frame, Path(tmp), fmt)))
    keys = pd.DataFrame({"symbol": frame["symbol"], "timestamp": pd.to_datetime(frame["timestamp"], utc=True,
                                                                               format="ISO8601")})
    assert len(loaded.bars) == len(keys.drop_duplicates())
    assert set(loaded.rejected["reason"]) <= {DUPLICATE}
    check_loaded(frame, loaded)
