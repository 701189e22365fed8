import pytest

from alphapulse.pipelines.config import ConfigError, load_config, parse_config, parse_size


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_default_config_loads_and_has_the_required_outputs():
    cfg = load_config()
    names = [n for s in cfg.indicator_specs() for n in s.column_names()]
    for col in ["sma_20", "sma_50", "ema_12", "ema_26", "rsi_14", "macd_12_26_9", "macd_signal_12_26_9",
                "macd_hist_12_26_9", "bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2", "atr_14"]:
        assert col in names
    assert cfg.gpu.operations.precision == "float64"
    assert cfg.data.columns == {"timestamp": "date", "symbol": "Name"}


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"gpu\.memory_managment: unknown key \(did you mean 'memory_management'\?\)"):
        load_config(write(tmp_path, "gpu:\n  memory_managment:\n    pool_size: 8GB\n"))


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match=r"indicator: unknown key \(did you mean 'indicators'\?\)"):
        load_config(write(tmp_path, "indicator:\n  sma: [20]\n"))


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"gpu\.operations\.precision"):
        load_config(write(tmp_path, "gpu:\n  operations:\n    precision: float16\n"))
    with pytest.raises(ConfigError, match=r"gpu\.operations\.batch_size"):
        load_config(write(tmp_path, "gpu:\n  operations:\n    batch_size: -5\n"))
    with pytest.raises(ConfigError, match=r"gpu\.fallback\.cpu_fallback"):
        load_config(write(tmp_path, "gpu:\n  fallback:\n    cpu_fallback: maybe\n"))


def test_pool_size_and_growth_mode(tmp_path):
    cfg = load_config(write(tmp_path, "gpu:\n  memory_management:\n    pool_size: 8GB\n    growth_mode: fixed\n"))
    assert parse_size(cfg.gpu.memory_management.pool_size) == 8 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    with pytest.raises(ConfigError, match="pool_size"):
        load_config(write(tmp_path, "gpu:\n  memory_management:\n    pool_size: lots\n"))
    with pytest.raises(ConfigError, match="growth_mode"):
        load_config(write(tmp_path, "gpu:\n  memory_management:\n    growth_mode: elastic\n"))


@pytest.mark.parametrize("block, message", [
    ("smaa: [20]", r"unknown indicator 'smaa' \(did you mean 'sma'\?\)"),
    ("sma: [-5]", r"sma\.period: must be positive"),
    ("sma: [0]", r"sma\.period: must be positive"),
    ("sma: [2.5]", r"sma\.period: expected int"),
    ("sma: [{periode: 5}]", r"sma: unknown parameter 'periode' \(did you mean 'period'\?\)"),
    ("macd: [12]", r"macd: give the parameters"),
    ("rsi: ['14']", r"indicators\.rsi"),
])
def test_bad_indicator_entries(tmp_path, block, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, f"indicators:\n  {block}\n"))


def test_indicator_shorthand_and_defaults():
    cfg = parse_config({"indicators": {"sma": [5, {"period": 7}], "macd": [{"fast": 5}]}})
    specs = cfg.indicator_specs()
    assert [s.column_names()[0] for s in specs] == ["sma_5", "sma_7", "macd_5_26_9"]


def test_config_is_frozen_and_hash_is_stable():
    a, b = load_config(), load_config()
    assert a.hash() == b.hash()
    with pytest.raises(Exception):
        a.gpu.enabled = False
    c = parse_config({"gpu": {"enabled": False}})
    assert c.hash() != a.hash()


def test_yaml_is_safe_loaded(tmp_path):
    # A python object tag would run code under yaml.load; safe_load refuses it.
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "gpu: !!python/object/apply:os.system ['echo hacked']\n"))


def test_missing_and_non_mapping_configs(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    assert load_config(write(tmp_path, "")).gpu.enabled  # empty file = all defaults


def test_column_mapping_validation():
    with pytest.raises(ConfigError, match=r"unknown standard column 'timestamps' \(did you mean 'timestamp'\?\)"):
        parse_config({"data": {"columns": {"timestamps": "date"}}})
    with pytest.raises(ConfigError, match="same file column"):
        parse_config({"data": {"columns": {"open": "x", "close": "x"}}})


def test_device_selection():
    assert parse_config({"gpu": {"device_selection": 1}}).gpu.device_selection == 1
    with pytest.raises(ConfigError, match="device_selection"):
        parse_config({"gpu": {"device_selection": "first"}})
