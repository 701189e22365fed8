"""The config's backtest block: documented defaults, validation with the key named."""
import pytest

from alphapulse.pipelines.config import ConfigError, load_config, parse_config


def test_defaults():
    bt = load_config().backtest
    assert bt.strategy == "sma_cross"
    assert bt.grid_values() == {"fast": list(range(5, 51, 5)), "slow": list(range(20, 201, 10))}
    assert (bt.direction, bt.trade_on, bt.periods_per_year, bt.definitions, bt.top_n) == \
        ("long", "open", 252, "alphapulse", 10)
    assert bt.walk_forward is None and bt.cluster is None and bt.symbols_per_chunk == "auto"
    assert parse_config({}).backtest.grid == {}  # the code default is an empty grid (strategy defaults)


def test_full_block():
    cfg = parse_config({"backtest": {
        "strategy": "rsi_reversion", "grid": {"period": [10, 14], "lower": "20:30:5", "upper": 70},
        "random_sample": 3, "seed": 1, "direction": "both", "trade_on": "close", "size_fraction": 0.5,
        "commission_bps": 1, "slippage_bps": 2.5, "stop_loss": 0.05, "take_profit": 0.1,
        "periods_per_year": 52, "definitions": "backtesting.py", "top_n": 3,
        "walk_forward": {"train_bars": 100, "test_bars": 20, "metric": "sortino", "select": "median"},
        "cluster": "tcp://10.0.0.1:8786", "workers": 2, "symbols_per_chunk": 64}})
    bt = cfg.backtest
    assert bt.grid_values() == {"period": [10, 14], "lower": [20.0, 25.0, 30.0], "upper": [70.0]}
    assert bt.walk_forward.select == "median"
    assert cfg.hash() != load_config().hash()


@pytest.mark.parametrize("block, message", [
    ({"strategy": "sma_crss"}, r"backtest\.strategy: unknown strategy 'sma_crss' \(did you mean 'sma_cross'\?\)"),
    ({"grid": {"fsat": "1:3"}}, r"backtest\.grid: grid parameter 'fsat': not a parameter of sma_cross"),
    ({"grid": {"fast": "1:a"}}, r"backtest\.grid: grid parameter 'fast': 'a' is not a number"),
    ({"grid": {"fast": [1.5]}}, r"takes integers"),
    ({"strategy": "rsi_reversion", "grid": {"fast": [1]}}, r"not a parameter of rsi_reversion"),
    ({"grd": {}}, r"backtest\.grd: unknown key \(did you mean 'grid'\?\)"),
    ({"direction": "sideways"}, r"backtest\.direction"),
    ({"trade_on": "noon"}, r"backtest\.trade_on"),
    ({"stop_loss": 2}, r"backtest\.stop_loss"),
    ({"size_fraction": 0}, r"backtest\.size_fraction"),
    ({"commission_bps": -1}, r"backtest\.commission_bps"),
    ({"random_sample": 0}, r"backtest\.random_sample"),
    ({"definitions": "zipline"}, r"backtest\.definitions"),
    ({"cluster": "yarn"}, r"backtest\.cluster: cluster must be null, 'local', 'processes', 'cuda' or a scheduler"),
    ({"symbols_per_chunk": 0}, r"backtest\.symbols_per_chunk"),
    ({"walk_forward": {"train_bars": 10}}, r"backtest\.walk_forward\.test_bars"),
    ({"walk_forward": {"train_bars": 10, "test_bars": 5, "metric": "trades"}},
     r"backtest\.walk_forward\.metric"),
    ({"walk_forward": {"train_bars": 10, "test_bars": 5, "oos": 1}},
     r"backtest\.walk_forward\.oos: unknown key"),
])
def test_bad_backtest_blocks(block, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"backtest": block})


@pytest.mark.parametrize("old, new", [("in_sample_bars", "train_bars"), ("out_of_sample_bars", "test_bars")])
def test_renamed_walk_forward_keys_name_the_new_key(tmp_path, old, new):
    path = tmp_path / "c.yaml"
    path.write_text(f"backtest:\n  walk_forward: {{{old}: 100, metric: sharpe}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: backtest.walk_forward.{old} was renamed {new}"
    with pytest.raises(ConfigError, match=rf"^config: backtest\.walk_forward\.{old} was renamed {new}$"):
        parse_config({"backtest": {"walk_forward": {old: 100}}})
