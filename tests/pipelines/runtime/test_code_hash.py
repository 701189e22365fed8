"""Cache keys hash the code a result comes from: the whole ``alphapulse`` import closure of the
stage's module (``alphapulse.pipelines.runtime.code``), never a hand-kept list.

- the static closure holds what each cached stage calls (the modules the hand-kept lists missed);
- it is complete: every ``alphapulse`` module loaded by actually running a cached stage on the
  bundled sample (in a fresh interpreter) is in its root's closure;
- a stale cache cannot happen: on a copy of the source tree, editing a deep module of the closure
  changes the daily partition key, editing a module outside it does not.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from alphapulse.pipelines.runtime.code import code_hash, import_closure
from tests.pipelines.conftest import SAMPLE, SP500_COLUMNS

ROOT = Path(__file__).resolve().parents[3]
DAILY = "alphapulse.pipelines.daily.pipeline"
BACKTEST = "alphapulse.pipelines.backtest.compute"
MODELS = "alphapulse.pipelines.models.pipeline"
SOURCES = ("alphapulse", "transforms", "pipelines", "flows")


def _config(**blocks) -> dict:
    from alphapulse.pipelines.config import default_config_text

    raw = yaml.safe_load(default_config_text())
    raw["data"]["columns"] = SP500_COLUMNS
    for name, block in blocks.items():
        raw[name].update(block)
    return raw


def _python(script: str, *, pythonpath: Path = ROOT, cwd: Path = ROOT, env: dict | None = None, timeout=300) -> dict:
    """Run ``script`` in a fresh interpreter with ``pythonpath`` first; its last stdout line is JSON."""
    environ = {**os.environ, "PYTHONPATH": str(pythonpath), **(env or {})}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_closure_holds_what_the_stages_call():
    daily, backtest, models = import_closure(DAILY), import_closure(BACKTEST), import_closure(MODELS)
    # the daily key's hand-kept list left out kernels (compute_indicators' recurrences) and frames
    assert {"alphapulse.transforms.kernels", "alphapulse.pipelines.data.frames",
            "alphapulse.transforms.indicators.registry", "alphapulse.transforms.indicators.series",
            "alphapulse.pipelines.data.partitions", "alphapulse.pipelines.runtime.oom"} <= set(daily)
    assert {"alphapulse.transforms.kernels", "alphapulse.pipelines.backtest.sweep",
            "alphapulse.pipelines.backtest.block", "alphapulse.pipelines.backtest.panel",
            "alphapulse.transforms.backtest.metrics", "alphapulse.transforms.backtest.returns_metrics",
            "alphapulse.transforms.backtest.walk_forward"} <= set(backtest)
    assert {"alphapulse.transforms.backtest.metrics", "alphapulse.transforms.backtest.returns_metrics",
            "alphapulse.transforms.kernels", "alphapulse.pipelines.models.estimators",
            "alphapulse.transforms.models.training", "alphapulse.transforms.models.ensemble"} <= set(models)
    # packages above each module are in (their __init__ runs), the GPU HTTP API and the flows are not
    assert {"alphapulse", "alphapulse.transforms", "alphapulse.transforms.indicators"} <= set(daily)
    assert not any(m.startswith(("alphapulse.flows", "alphapulse.pipelines.gpu.api")) for m in daily + models)
    # the key functions' own modules
    assert DAILY in daily and BACKTEST in backtest and MODELS in models
    assert "alphapulse.pipelines.runtime.code" in daily  # result_key imports it


def test_lazy_exports_relative_and_attribute_imports_are_followed():
    # ``from alphapulse.pipelines.backtest import prepare_backtest`` (a lazily exported name)
    # leads to the module defining it; frames is imported as ``from ...data import frames as frames``
    front = import_closure("alphapulse.research")
    assert "alphapulse.pipelines.backtest.request" in front
    # the daily flow reaches the pipeline through ``daily.partition_key`` on a bound module, and
    # pipelines.runtime's exports through ``from alphapulse.pipelines.runtime.stages import ...``
    assert DAILY in import_closure("alphapulse.flows.daily")
    with pytest.raises(ModuleNotFoundError):
        import_closure("alphapulse.pipelines.no_such_module")


def test_code_hash_is_cached_and_order_free():
    a = code_hash(DAILY, MODELS)
    assert code_hash(MODELS, DAILY) == a and code_hash(DAILY) != a and len(a) == 64


# A fresh interpreter runs a cached stage as its flow task does, and lists the alphapulse modules
# it loaded. Nothing else is imported first (the config is validated by the schema the pipeline
# imports anyway), so every module listed is one the stage's code loaded.
_RUNS = {
    DAILY: """
        from alphapulse.pipelines.daily import pipeline as daily
        request = daily.prepare_daily(config, data_path=SAMPLE, out_dir=OUT, backend="cpu", cluster="none")
        backend = cpu_backend("test")
        for part in daily.plan_stage(request):
            daily.partition_key(request, backend, part)
        daily.run_daily(request)
    """,
    BACKTEST: """
        from alphapulse.pipelines.backtest import compute, panel, request as req
        request = req.prepare_backtest(config, data_path=SAMPLE, out_dir=OUT, grid="fast=5:20:5,slow=30:60:10",
                                       backend="cpu", cluster=None)
        backend = cpu_backend("test")
        compute.compute_key(request, backend)
        loaded = panel.load_stage(request, backend)
        compute.compute_stage(panel.panel_stage(loaded.bars, backend), request, backend)
    """,
    MODELS: """
        from alphapulse.pipelines.models import pipeline as models
        request = models.prepare_models(config, data_path=SAMPLE, out_dir=OUT, backend="cpu")
        models.compute_key(request, cpu_backend("test"))
        models.run_models(request)
    """,
}
_MODELS_FAST = {"walk_forward": {"train_bars": 252, "test_bars": 126, "validation_bars": 42},
                "models": [{"kind": "ridge"}, {"kind": "logistic"}, {"kind": "knn", "n_neighbors": 15},
                           {"kind": "random_forest", "scope": "pooled", "n_estimators": 4, "max_depth": 3}]}


@pytest.mark.parametrize("root", [DAILY, BACKTEST, MODELS], ids=["daily", "backtest", "models"])
def test_closure_holds_every_module_a_run_loads(root, tmp_path):
    raw = _config(models=_MODELS_FAST) if root == MODELS else _config()
    script = f"""
        import json, sys
        import {root}
        from alphapulse.pipelines.config.schema import Config
        from alphapulse.pipelines.runtime.backend import cpu_backend
        config = Config.model_validate(json.loads({json.dumps(json.dumps(raw))}))
        SAMPLE, OUT = {str(SAMPLE)!r}, {str(tmp_path / "out")!r}
    """ + textwrap.dedent(_RUNS[root]) + """
        import alphapulse
        loaded = sorted(m for m in sys.modules if m == "alphapulse" or m.startswith("alphapulse."))
        print(json.dumps({"file": alphapulse.__file__, "loaded": loaded}))
    """
    out = _python(textwrap.dedent(script).replace("\n        ", "\n"))
    assert out["file"] == str(ROOT / "alphapulse" / "__init__.py")
    missing = set(out["loaded"]) - set(import_closure(root))
    assert not missing, f"loaded by the run but not hashed in the key of {root}: {sorted(missing)}"
    assert len(out["loaded"]) > 20


def _copy_sources(into: Path) -> Path:
    for name in SOURCES:
        shutil.copytree(ROOT / name, into / name, ignore=shutil.ignore_patterns("__pycache__"))
    return into


_DAILY_KEY = """
    import json
    import alphapulse
    from alphapulse.pipelines.config.schema import Config
    from alphapulse.pipelines.daily import pipeline as daily
    from alphapulse.pipelines.runtime.backend import cpu_backend
    config = Config.model_validate(json.loads({raw!r}))
    request = daily.prepare_daily(config, data_path={data!r}, out_dir={out!r}, backend="cpu", cluster="none")
    keys = [daily.partition_key(request, cpu_backend("test"), part) for part in daily.plan_stage(request)]
    print(json.dumps({{"file": alphapulse.__file__, "keys": keys}}))
"""


def test_editing_a_deep_module_changes_the_daily_key(tmp_path):
    tree = _copy_sources(tmp_path / "tree")
    script = textwrap.dedent(_DAILY_KEY).format(raw=json.dumps(_config()), data=str(SAMPLE),
                                                out=str(tmp_path / "out"))

    def keys():
        out = _python(script, pythonpath=tree, cwd=tree)
        assert out["file"] == str(tree / "alphapulse" / "__init__.py")  # the copy's code, not the checkout's
        return out["keys"]

    before = keys()
    assert keys() == before  # deterministic across processes
    # outside the closure (the GPU host's HTTP API): the key stays
    assert "alphapulse.pipelines.gpu.api" not in import_closure(DAILY)
    with open(tree / "pipelines" / "gpu" / "api.py", "a") as f:
        f.write("\n\ndef _unused_by_the_daily_pipeline():\n    return None\n")
    assert keys() == before
    # a deep module (compute_indicators' recurrences, missing from the old hand-kept list): the key changes
    with open(tree / "transforms" / "kernels.py", "a") as f:
        f.write("\n\ndef _harmless_addition():\n    return None\n")
    after = keys()
    assert len(after) == len(before) and all(a != b for a, b in zip(after, before))
