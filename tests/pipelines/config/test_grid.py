"""alphapulse.pipelines.config.grid: the grid syntax, checks against a strategy, expansion and seeded sampling."""
import pytest

from alphapulse.pipelines.config.grid import GridError, check_grid, expand_grid, grid_size, parse_grid, parse_values

SMA = {"fast": int, "slow": int}
RSI = {"period": int, "lower": float, "upper": float}


@pytest.mark.parametrize("text, expected", [
    ("fast=5:50:5,slow=20:200:10", {"fast": list(range(5, 51, 5)), "slow": list(range(20, 201, 10))}),
    ("lower=20,25,30;upper=70,80", {"lower": [20, 25, 30], "upper": [70, 80]}),
    ("lower=20,25,30,upper=70,80", {"lower": [20, 25, 30], "upper": [70, 80]}),
    ("lower=20,25,30 upper=70,80", {"lower": [20, 25, 30], "upper": [70, 80]}),
    (" fast = 5 : 15 : 5 , 30 ;  slow=40 ", {"fast": [5, 10, 15, 30], "slow": [40]}),
    ("nbdev=1.5:2.5:0.5", {"nbdev": [1.5, 2.0, 2.5]}),
    ("x=0.1:0.3:0.1", {"x": [0.1, 0.2, 0.3]}),  # exact decimal steps, stop included
    ("fast=5:12:5", {"fast": [5, 10]}),  # stop included only when a step reaches it
    ("fast=3:5", {"fast": [3, 4, 5]}),
    ("x=-1:1:1", {"x": [-1, 0, 1]}),
])
def test_good_grids(text, expected):
    assert parse_grid(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "empty grid"),
    ("fast", "value 'fast' before any 'name='"),
    ("5,fast=3", "value '5' before any 'name='"),
    ("fast=", "empty value"),
    ("fast=1,,2", "empty value"),
    ("fast=a", "'a' is not a number"),
    ("fast=5:1", "stop < start"),
    ("fast=1:5:0", "positive step"),
    ("fast=1:5:2:1", "start:stop or start:stop:step"),
    ("fast=1,1", "value 1 given twice"),
    ("fast=1:5,3", "value 3 given twice"),
    ("fast=1;fast=2", "'fast' given twice"),
    ("9x=1", "not a parameter name"),
    ("fast=1:10000000", "at most"),
])
def test_bad_grids_are_one_line_errors(text, message):
    with pytest.raises(GridError, match=message) as e:
        parse_grid(text)
    assert "\n" not in str(e.value)


def test_config_values():
    assert parse_values("fast", "5:15:5") == [5, 10, 15]
    assert parse_values("fast", [5, "10:20:10", 30]) == [5, 10, 20, 30]
    assert parse_values("lower", 25) == [25]
    assert parse_values("nbdev", [1.5, 2]) == [1.5, 2]
    for bad in ([], [True], True, {"a": 1}, "1:"):
        with pytest.raises(GridError):
            parse_values("x", bad)


def test_check_against_the_strategy():
    assert check_grid({"lower": [20, 25]}, strategy_name="rsi_reversion", params=RSI) == {"lower": [20.0, 25.0]}
    assert check_grid({"fast": [10.0]}, strategy_name="sma_cross", params=SMA) == {"fast": [10]}
    with pytest.raises(GridError, match=r"'fsat': not a parameter of sma_cross \(did you mean 'fast'\?\)"):
        check_grid({"fsat": [1]}, strategy_name="sma_cross", params=SMA)
    with pytest.raises(GridError, match="takes integers, got 2.5"):
        check_grid({"fast": [2.5]}, strategy_name="sma_cross", params=SMA)


def test_expansion_is_the_product_in_order():
    grid = {"fast": [5, 10], "slow": [20, 30, 40]}
    combos = expand_grid(grid)
    assert grid_size(grid) == 6 == len(combos)
    assert combos[:4] == [{"fast": 5, "slow": 20}, {"fast": 5, "slow": 30}, {"fast": 5, "slow": 40},
                          {"fast": 10, "slow": 20}]
    assert expand_grid({}) == [{}]


def test_random_sample_is_seeded_without_replacement_and_in_product_order():
    grid = parse_grid("fast=1:40,slow=1:50")
    full = expand_grid(grid)
    a = expand_grid(grid, random_sample=100, seed=7)
    assert a == expand_grid(grid, random_sample=100, seed=7)
    assert a != expand_grid(grid, random_sample=100, seed=8)
    assert len({tuple(c.values()) for c in a}) == 100
    positions = [full.index(c) for c in a]
    assert positions == sorted(positions)
    assert expand_grid(grid, random_sample=10**6, seed=0) == full  # a sample as big as the grid is the grid
    huge = {f"p{k}": list(range(100)) for k in range(4)}  # 1e8 combinations
    with pytest.raises(GridError, match="random_sample"):
        expand_grid(huge)
    assert len(expand_grid(huge, random_sample=5, seed=1)) == 5
